"""Reading the run logs an engine keeps in object storage (S3, or MinIO, R2, ... speaking S3).

With `AP_FILE_STORAGE_LOCATION=S3` the engine puts run logs and sliced step outputs in a bucket:
their `file` row has `location` S3, no data, and the object's key in `"s3Key"`. The object holds the
bytes the engine uploaded, as a row's `data` would (zstd or raw JSON; `logs` decodes both). The
Postgres source reads them through an `ObjectStore`: GetObject only, a few objects at a time,
retried by botocore's own retry policy. An object that is not there is reported per key (the run
loads without it); a store that cannot be read at all (credentials refused, no such bucket, no
answer) ends the pull with one line that names what to fix and never holds the secret.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from runs_store.ingest.engine.source import PullError, PullRefused
from runs_store.settings import Secret, Settings

# botocore's "standard" retry mode: throttling, 5xx, timeouts and resets, with jittered backoff.
ATTEMPTS = 3
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
DEFAULT_KEY_NAMES = ("RUNS_S3_ACCESS_KEY_ID", "RUNS_S3_SECRET_ACCESS_KEY")
DEFAULT_CHAIN = "boto3's default credentials (AWS_* variables, a profile, an instance or IRSA role)"

_REFUSED_KEY = {"InvalidAccessKeyId": "it knows no such access key id"}
_REFUSED_SECRET = {"SignatureDoesNotMatch": "the secret access key does not match the key id"}
_EXPIRED = {"ExpiredToken", "InvalidToken", "TokenRefreshRequired"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem"}
_OTHER_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "Redirect"}


class NotRead(enum.Enum):
    """Why an object was not read; the run loads without it."""

    MISSING = "missing from S3"
    TOO_LARGE = "too large"


@dataclass(frozen=True)
class S3Config:
    """Where the engine's objects are and how to sign in: an access key, or boto3's default
    credential chain when none is given. `key_names` are the variables the key came from, for
    messages."""

    bucket: str
    endpoint: str = ""
    region: str = ""
    access_key_id: str = field(default="", repr=False)
    secret_access_key: Secret = field(default_factory=lambda: Secret(""))
    key_names: tuple[str, str] = DEFAULT_KEY_NAMES

    @classmethod
    def from_settings(cls, current: Settings) -> S3Config | None:
        """RUNS_S3_*; None when no bucket is set."""
        if not current.s3_bucket:
            return None
        return cls(
            bucket=current.s3_bucket,
            endpoint=current.s3_endpoint,
            region=current.s3_region,
            access_key_id=current.s3_access_key_id,
            secret_access_key=current.s3_secret_access_key,
        )

    @property
    def place(self) -> str:
        return f"S3 bucket {self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")

    @property
    def credentials(self) -> str:
        """Where the credentials come from, in a few words."""
        return " and ".join(self.key_names) if self.access_key_id else DEFAULT_CHAIN

    def key_problem(self) -> str | None:
        """A key id without its secret, or a secret without its key id."""
        id_name, secret_name = self.key_names
        if bool(self.access_key_id) == bool(self.secret_access_key):
            return None
        given, missing = (id_name, secret_name) if self.access_key_id else (secret_name, id_name)
        return (
            f"{given} is set but {missing} is not: set both to read {self.place}, or neither "
            "to use boto3's default credentials"
        )


class ObjectStore:
    """The engine's bucket, read-only: `read_many` gets objects by key, a few at a time."""

    def __init__(self, config: S3Config, concurrency: int = 8):
        self.config = config
        self.concurrency = concurrency
        self._client: Any = None

    def check(self) -> None:
        """PullError when the settings cannot work (a key id without its secret, ...); makes no
        request: the first read says whether the store lets us in."""
        problem = self.config.key_problem()
        if problem is not None:
            raise PullRefused(problem)
        self.client()

    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = new_client(self.config, self.concurrency)
            except BotoCoreError as error:
                raise failure(error, self.config, key=None) from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def read(self, key: str, limit: int) -> bytes | NotRead:
        """The object's bytes; NotRead when it is missing or holds more than `limit` bytes.
        PullError (one line) when the store cannot be read."""
        try:
            answer = self.client().get_object(Bucket=self.config.bucket, Key=key)
            with closing(answer["Body"]) as body:
                if answer.get("ContentLength", 0) > limit:
                    return NotRead.TOO_LARGE
                data = body.read(limit + 1)
        except ClientError as error:
            if error_code(error) == "NoSuchKey":
                return NotRead.MISSING
            raise refusal(error, self.config, key) from None
        except BotoCoreError as error:
            raise failure(error, self.config, key) from None
        return NotRead.TOO_LARGE if len(data) > limit else data

    def read_many(self, keys: Sequence[str], limit: int) -> Iterator[tuple[str, bytes | NotRead]]:
        """Each key with its object (or why not), as they arrive: `concurrency` reads at a time,
        and no more objects held than that while the caller takes them one by one."""
        self.check()
        waiting = iter(keys)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-read")
        running: dict[Future, str] = {}

        def start_next() -> None:
            key = next(waiting, None)
            if key is not None:
                running[pool.submit(self.read, key, limit)] = key

        try:
            for _ in range(self.concurrency):
                start_next()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    key = running.pop(future)
                    yield key, future.result()
                    start_next()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def new_client(config: S3Config, concurrency: int) -> Any:
    """An S3 client as the engine's own (`file/s3-helper.ts`): path-style addressing and checksums
    only when required at a custom endpoint; no key given: boto3's default credential chain."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id or None,
        aws_secret_access_key=config.secret_access_key.reveal() or None,
        region_name=config.region or None,
    )
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": ATTEMPTS},
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "max_pool_connections": concurrency,
    }
    if config.endpoint:
        options.update(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    return session.client("s3", endpoint_url=config.endpoint or None, config=Config(**options))


# ---------------------------------------------------------------- one line per failure


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


def refusal(error: ClientError, config: S3Config, key: str) -> PullError:
    """What the store answered, as one line naming what to fix."""
    code = error_code(error)
    place, credentials = config.place, config.credentials
    if code == "NoSuchBucket":
        at = f" at {config.endpoint}" if config.endpoint else ""
        return PullError(
            f"S3 has no bucket {config.bucket}{at}: set the bucket the engine's AP_S3_BUCKET names"
        )
    if code in _REFUSED_KEY or code in _REFUSED_SECRET:
        why = _REFUSED_KEY.get(code) or _REFUSED_SECRET[code]
        return PullRefused(f"{place} refused the credentials ({credentials}): {why}")
    if code in _EXPIRED:
        return PullRefused(
            f"{place} refused the credentials ({credentials}): their session token has expired "
            "or is not valid"
        )
    if code in _DENIED:
        return PullRefused(
            f"{place} denied reading {key} with the credentials ({credentials}): grant them "
            "s3:GetObject on the engine's objects (and s3:ListBucket, so that a missing object "
            "reads as missing)"
        )
    if code in _OTHER_REGION:
        return PullError(
            f"{place} is not in region {config.region or 'boto3 defaults to'}: set the region to "
            "the engine's AP_S3_REGION"
        )
    message = first_line(str(error.response.get("Error", {}).get("Message", "")))
    return PullError(f"reading s3://{config.bucket}/{key} failed: {code or 'error'} {message}")


def failure(error: BotoCoreError, config: S3Config, key: str | None) -> PullError:
    """What went wrong on our side of the store (no credentials, no answer), as one line."""
    place = config.place
    if isinstance(error, NoCredentialsError):
        id_name, secret_name = config.key_names
        return PullRefused(
            f"no credentials to read {place}: set {id_name} and {secret_name}, or give boto3 "
            "its own (AWS_* variables, a profile, an instance or IRSA role)"
        )
    if isinstance(error, PartialCredentialsError | CredentialRetrievalError):
        why = first_line(str(error))
        return PullRefused(f"boto3's credentials for {place} cannot be used: {why}")
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return PullError(
            f"nothing answers for {place} ({ATTEMPTS} attempts): is the endpoint right and up?"
        )
    if isinstance(error, ReadTimeoutError):
        return PullError(
            f"{place} did not answer within {READ_TIMEOUT_SECONDS} s ({ATTEMPTS} attempts)"
        )
    what = f"reading s3://{config.bucket}/{key}" if key else f"opening {place}"
    return PullError(f"{what} failed: {first_line(str(error))}")
