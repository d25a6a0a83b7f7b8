"""A real S3-compatible server for the Postgres source's S3 tests: moto's, over HTTP.

An engine with `AP_FILE_STORAGE_LOCATION=S3` keeps its run logs and sliced outputs in a bucket.
Mocking boto3 would test nothing of how the source signs in, asks, retries and fails, so these
fixtures start moto's `ThreadedMotoServer` in the test process, on 127.0.0.1 and a free port: the
source, in process or in a pull's subprocess, reaches it at its endpoint like any MinIO. Once the
bucket and three users are made (an admin that writes, a reader allowed s3:GetObject only, and one
allowed nothing), moto checks every request's signature and the user's policy
(`/moto-api/reset-auth`), so a wrong key is refused as S3 refuses it, and a pull that asked for
anything but GetObject would be denied. Nothing leaves the machine: every client is given the
endpoint, and AWS_EC2_METADATA_DISABLED keeps boto3 from probing instance metadata.
"""

from __future__ import annotations

import functools
import json
import socket
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

BUCKET = "engine-logs"
REGION = "us-east-1"
SETUP_KEY = ("setup", "setup")  # moto takes any key until auth is on
NO_AUTH = "inf"  # moto's count of requests let in unauthenticated: all of them


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class AccessKey:
    id: str
    secret: str


def _policy(actions: list[str], resource: str) -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@dataclass
class S3Server:
    """moto on 127.0.0.1: `endpoint`, the bucket, and the keys of its users."""

    server: ThreadedMotoServer
    endpoint: str
    admin: AccessKey
    reader: AccessKey
    denied: AccessKey

    def client(self, key: AccessKey | None = None) -> Any:
        key = key or self.admin
        session = boto3.session.Session(
            aws_access_key_id=key.id, aws_secret_access_key=key.secret, region_name=REGION
        )
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
        return session.client("s3", endpoint_url=self.endpoint, config=config)

    @functools.cached_property
    def engine_client(self) -> Any:
        """The engine's own client, made once (making one costs more than a request)."""
        return self.client(self.admin)

    def put(self, key: str, data: bytes, content_encoding: str | None = None) -> None:
        """An object as the engine uploads it (a zstd log with Content-Encoding: zstd)."""
        extra = {"ContentEncoding": content_encoding} if content_encoding else {}
        self.engine_client.put_object(Bucket=BUCKET, Key=key, Body=data, **extra)

    def delete(self, key: str) -> None:
        self.engine_client.delete_object(Bucket=BUCKET, Key=key)

    def stop(self) -> None:
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=NO_AUTH, timeout=10)
        self.server.stop()


def _user(iam: Any, name: str, policy: str | None) -> AccessKey:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return AccessKey(key["AccessKeyId"], key["SecretAccessKey"])


def start_s3_server() -> S3Server:
    """moto with the engine's bucket and its users, checking every request from then on."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    session = boto3.session.Session(
        aws_access_key_id=SETUP_KEY[0], aws_secret_access_key=SETUP_KEY[1], region_name=REGION
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    iam = session.client("iam", endpoint_url=endpoint)
    bucket = f"arn:aws:s3:::{BUCKET}"
    s3 = S3Server(
        server,
        endpoint,
        admin=_user(iam, "engine", _policy(["s3:*"], "*")),
        reader=_user(iam, "runs-reader", _policy(["s3:GetObject"], f"{bucket}/*")),
        denied=_user(iam, "nobody", None),
    )
    requests.post(f"{endpoint}/moto-api/reset-auth", data="0", timeout=10).raise_for_status()
    return s3
