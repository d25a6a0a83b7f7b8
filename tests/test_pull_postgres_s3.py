"""`pull --postgres` reading the logs an engine keeps in S3 (`AP_FILE_STORAGE_LOCATION=S3`).

The engine's database is a real PostgreSQL (tests/engine_postgres.py) whose writer puts every
other run's log and its sliced outputs in a bucket as the engine does (row: location S3, the key
in s3Key, no data; object: the bytes uploaded, zstd with Content-Encoding: zstd or raw JSON); the
bucket is moto's S3 server over HTTP (tests/engine_s3.py), checking every request's signature and
policy. The pull reads as a user allowed s3:GetObject only. Given the bucket, the runs load with
their steps and sliced outputs exactly as from a file; without it, they load without steps and are
counted; a missing object costs its run only, with a note; settings the store refuses end the pull
in one line, exit 2; the secret is never shown and never stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, refused_port
from engine_postgres import LOG_GENERATIONS, LoadedEngine, load_engine, shared_server
from engine_s3 import BUCKET, REGION, S3Server, start_s3_server
from runs_store.ingest.engine.logs import SLICE_OUTPUT_TYPE, slice_reference
from runs_store.ingest.engine.object_storage import NotRead, ObjectStore, S3Config
from runs_store.ingest.engine.postgres import PostgresSource, log_missing, slice_missing
from runs_store.ingest.engine.sources_file import SourcesFileError, read_sources
from runs_store.settings import Secret
from test_pull_postgres import (
    ADMIN_PASSWORD,
    PULL_DEADLINE_SECONDS,
    READER_PASSWORD,
    assert_same_rows,
    environment,
    from_file,
    one_project,
    pull_command,
    reader_dsn,
    secrets_in_store,
    some_runs,
    summary_counts,
)
from test_pull_postgres_source import pull_all, runs_of

pytestmark = pytest.mark.store

WRONG_SECRET = "wrong-secret-5f0c9e1d"
NO_AWS = {
    "AWS_EC2_METADATA_DISABLED": "true",  # boto3 must not probe instance metadata
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory):
    yield from shared_server(tmp_path_factory)


@pytest.fixture(scope="module")
def s3():
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_aws_of_this_machine(monkeypatch):
    """In process too: no credentials, profile or instance metadata but the test's own."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in NO_AWS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def engine(engine_server, s3) -> LoadedEngine:
    """Two projects; every other log in S3 with its slices (loops too), in every generation."""
    runs = some_runs(240, seed=96, test_share=0.03)
    return load_engine(engine_server, "s3_engine", runs, slice_bytes=120, s3_every=2, bucket=s3)


def s3_settings(s3: S3Server, **overrides: str) -> dict[str, str]:
    """RUNS_S3_* for the reader: allowed s3:GetObject on the bucket, nothing else."""
    values = {
        "RUNS_S3_BUCKET": BUCKET,
        "RUNS_S3_ENDPOINT": s3.endpoint,
        "RUNS_S3_REGION": REGION,
        "RUNS_S3_ACCESS_KEY_ID": s3.reader.id,
        "RUNS_S3_SECRET_ACCESS_KEY": s3.reader.secret,
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value}


def pull_environment(variables: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environment().items() if not k.startswith("AWS_")}
    return {**env, **NO_AWS, **variables}


def run_pull(engine_server, db: Path, variables: dict[str, str], *arguments: str):
    return subprocess.run(
        pull_command(reader_dsn(engine_server, "s3_engine"), db, *arguments, progress="always"),
        cwd=ROOT,
        env=pull_environment(variables),
        capture_output=True,
        text=True,
        timeout=PULL_DEADLINE_SECONDS,
    )


def assert_no_secret(db: Path, output: str, s3: S3Server, *more: str) -> None:
    secrets = (s3.reader.secret, s3.admin.secret, s3.denied.secret, READER_PASSWORD, *more)
    assert [secret for secret in secrets if secret in output] == []
    if db.exists():
        assert secrets_in_store(db, *secrets, ADMIN_PASSWORD) == []


def summary_line(done: subprocess.CompletedProcess) -> str:
    return done.stdout.splitlines()[0]


# ------------------------------------------------------------------ given the bucket


def test_the_fixture_puts_every_kind_of_log_and_slice_in_s3(engine):
    in_s3 = engine.s3_runs - engine.test_runs
    assert {engine.log_generation[run_id] for run_id in in_s3} == set(LOG_GENERATIONS)
    assert engine.sliced_runs & in_s3 and engine.loop_sliced_runs & in_s3
    assert engine.internal_errors.keys() & in_s3, "a server rewrite with its internalError"
    slices = [f for f, run_id in engine.slice_files.items() if run_id in engine.s3_runs]
    assert slices and all(f in engine.s3_keys for f in slices)
    keys = set(engine.s3_keys.values())
    assert any(k.startswith("platform/") for k in keys) and any(
        k.startswith("project/") for k in keys
    )


def test_runs_with_logs_in_s3_load_with_their_steps_and_sliced_outputs(
    engine, engine_server, s3, tmp_path
):
    db = tmp_path / "pulled.duckdb"
    done = run_pull(engine_server, db, s3_settings(s3))
    assert done.returncode == 0, done.stderr
    assert "without steps" not in summary_line(done) and len(done.stdout.splitlines()) == 1
    counts = summary_counts(summary_line(done))
    assert counts["new"] == len(engine.production()), done.stdout
    expected = from_file(tmp_path / "file.duckdb", engine.file_records())
    assert_same_rows(db, expected, len(engine.production()))
    assert_no_secret(db, done.stdout + done.stderr, s3)


def test_without_the_bucket_runs_with_logs_in_s3_load_without_steps_and_are_counted(
    engine, engine_server, s3, tmp_path
):
    db = tmp_path / "unread.duckdb"
    done = run_pull(engine_server, db, {})
    assert done.returncode == 0, done.stderr
    in_s3 = engine.s3_runs - engine.test_runs
    assert summary_counts(summary_line(done))["without steps"] == len(in_s3)
    notes = done.stdout.splitlines()[1:]
    assert len(notes) == len(engine.projects())  # one line per page, naming a few runs
    for note in notes:
        assert (
            note.startswith("note: ")
            and (
                "their log is in S3, which this source reads once RUNS_S3_BUCKET names its bucket ("
            )
            in note
        )
    expected = from_file(tmp_path / "file.duckdb", engine.file_records(s3_read=False))
    assert_same_rows(db, expected, len(engine.production()))


def test_boto3s_default_credentials_are_used_when_no_key_is_given(
    engine, engine_server, s3, tmp_path
):
    project = sorted(engine.projects())[0]
    variables = {
        **s3_settings(s3, RUNS_S3_ACCESS_KEY_ID="", RUNS_S3_SECRET_ACCESS_KEY=""),
        "AWS_ACCESS_KEY_ID": s3.reader.id,  # the first link of boto3's default chain
        "AWS_SECRET_ACCESS_KEY": s3.reader.secret,
    }
    db = tmp_path / "chain.duckdb"
    done = run_pull(engine_server, db, variables, "--project", project)
    assert done.returncode == 0, done.stderr
    assert "without steps" not in done.stdout
    expected = from_file(tmp_path / "file.duckdb", engine.file_records(project))
    assert_same_rows(db, expected, len(engine.production(project)))
    assert_no_secret(db, done.stdout + done.stderr, s3)


def test_a_sources_file_names_the_bucket_and_the_variables_holding_its_key(
    engine, engine_server, s3, tmp_path
):
    project = sorted(engine.projects())[-1]
    sources = tmp_path / "sources.toml"
    sources.write_text(
        '[[sources]]\nname = "Self-hosted"\n'
        f'postgres = "{reader_dsn(engine_server, "s3_engine")}"\n'
        f'projects = ["{project}"]\n'
        "[sources.s3]\n"
        f'bucket = "{BUCKET}"\nendpoint = "{s3.endpoint}"\nregion = "{REGION}"\n'
        'access_key_id = "env:LOGS_KEY_ID"\nsecret_access_key = "env:LOGS_SECRET"\n'
    )
    db = tmp_path / "by-name.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "runs_store", "pull", "--source", "Self-hosted", "--db", str(db)],
        cwd=ROOT,
        env=pull_environment(
            {
                "RUNS_SOURCES": str(sources),
                "LOGS_KEY_ID": s3.reader.id,
                "LOGS_SECRET": s3.reader.secret,
                "RUNS_S3_SECRET_ACCESS_KEY": WRONG_SECRET,  # the source's own variables win
            }
        ),
        capture_output=True,
        text=True,
        timeout=PULL_DEADLINE_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    assert "without steps" not in done.stdout
    expected = from_file(tmp_path / "file.duckdb", engine.file_records(project))
    assert_same_rows(db, expected, len(engine.production(project)))
    assert_no_secret(db, done.stdout + done.stderr + sources.read_text(), s3, WRONG_SECRET)


# ------------------------------------------------------------------ objects that are not there


def test_a_missing_object_costs_its_run_only_with_a_note(engine_server, s3):
    loaded = load_engine(
        engine_server,
        "s3_missing",
        one_project(some_runs(40, seed=72, test_share=0.0)),
        slice_bytes=300,
        s3_every=1,
        bucket=s3,
    )
    top_level_slices = loaded.sliced_runs - loaded.loop_sliced_runs - loaded.internal_errors.keys()
    log_gone, slice_run = sorted(top_level_slices)[:2]
    s3.delete(loaded.s3_keys[loaded.api_runs[log_gone]["logsFileId"]])
    slice_gone = next(f for f, run_id in loaded.slice_files.items() if run_id == slice_run)
    s3.delete(loaded.s3_keys[slice_gone])

    config = S3Config(BUCKET, s3.endpoint, REGION, s3.reader.id, Secret(s3.reader.secret))
    with PostgresSource(loaded.dsn, s3=config, s3_concurrency=4) as source:
        pages = pull_all(source)
    pulled = runs_of(pages)
    assert sum(page.without_steps for page in pages) == 2
    notes = [note for page in pages for note in page.notes]
    assert sorted(notes) == sorted(
        [
            f"1 {log_missing(BUCKET)} ({log_gone})",
            f"1 {slice_missing(BUCKET)} ({slice_run})",
        ]
    )
    assert pulled[log_gone]["steps"] is None
    kept = [step for step in pulled[slice_run]["steps"].values() if slice_reference(step)]
    assert [step["output"]["fileId"] for step in kept] == [slice_gone]
    assert kept[0]["outputType"] == SLICE_OUTPUT_TYPE
    assert kept[0]["output"]["notRead"] == f"sliced output not read ({NotRead.MISSING.value})"
    assert "url" not in kept[0]["output"]
    for run_id in loaded.production().keys() - {log_gone, slice_run}:
        assert pulled[run_id]["steps"] == loaded.records[run_id]["steps"], run_id


# ------------------------------------------------------------------ refusals


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections for the whole test (see conftest.refused_port)."""
    with refused_port() as port:
        yield port


def test_settings_the_store_refuses_end_the_pull_in_one_line_without_the_secret(
    engine, engine_server, s3, tmp_path, closed_port
):
    unreachable = f"http://127.0.0.1:{closed_port}"
    cases = {
        "wrong secret": (
            s3_settings(s3, RUNS_S3_SECRET_ACCESS_KEY=WRONG_SECRET),
            (
                f"S3 bucket {BUCKET} at {s3.endpoint} refused the credentials "
                "(RUNS_S3_ACCESS_KEY_ID and RUNS_S3_SECRET_ACCESS_KEY): the secret access key "
                "does not match the key id"
            ),
        ),
        "unknown key id": (
            s3_settings(s3, RUNS_S3_ACCESS_KEY_ID="AKIAUNKNOWN000000000"),
            (
                "refused the credentials (RUNS_S3_ACCESS_KEY_ID and RUNS_S3_SECRET_ACCESS_KEY): "
                "it knows no such access key id"
            ),
        ),
        "a key allowed nothing": (
            s3_settings(
                s3, RUNS_S3_ACCESS_KEY_ID=s3.denied.id, RUNS_S3_SECRET_ACCESS_KEY=s3.denied.secret
            ),
            "denied reading ",
        ),
        "unknown bucket": (
            s3_settings(  # a key allowed everything: moto checks the policy first
                s3,
                RUNS_S3_BUCKET="no-such-bucket",
                RUNS_S3_ACCESS_KEY_ID=s3.admin.id,
                RUNS_S3_SECRET_ACCESS_KEY=s3.admin.secret,
            ),
            (
                f"S3 has no bucket no-such-bucket at {s3.endpoint}: set the bucket the engine's "
                "AP_S3_BUCKET names"
            ),
        ),
        "nothing at the endpoint": (
            s3_settings(s3, RUNS_S3_ENDPOINT=unreachable),
            f"nothing answers for S3 bucket {BUCKET} at {unreachable} (3 attempts)",
        ),
        "a key id without its secret": (
            s3_settings(s3, RUNS_S3_SECRET_ACCESS_KEY=""),
            "RUNS_S3_ACCESS_KEY_ID is set but RUNS_S3_SECRET_ACCESS_KEY is not",
        ),
    }
    children = {  # all at once: each is a process start and a few requests
        name: subprocess.Popen(
            pull_command(
                reader_dsn(engine_server, "s3_engine"),
                tmp_path / f"{number}.duckdb",
                "--project",
                sorted(engine.projects())[0],
            ),
            cwd=ROOT,
            env=pull_environment(variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number, (name, (variables, _)) in enumerate(cases.items())
    }
    for number, (name, child) in enumerate(children.items()):
        stdout, stderr = child.communicate(timeout=PULL_DEADLINE_SECONDS)
        lines = stderr.splitlines()
        assert child.returncode == 2, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, stderr)
        assert cases[name][1] in lines[0], (name, lines[0])
        assert "Traceback" not in stderr and stdout == "", name
        assert_no_secret(tmp_path / f"{number}.duckdb", stdout + stderr, s3, WRONG_SECRET)


# ------------------------------------------------------------------ the sources file


def test_each_mistake_in_a_sources_s3_table_is_one_line_without_the_secret(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[sources]]\nname = "A"\npostgres = "postgresql://r@db/ap"\n[sources.s3]\n'
        'bucket = "logs"\naccess_key_id = "env:K"\nsecret_access_key = "hunter2-literal"\n'
        '[[sources]]\nname = "B"\npostgres = "postgresql://r@db/ap"\n[sources.s3]\n'
        'region = "eu-west-1"\nendpoint = "ftp://minio"\ncolour = "red"\n'
        '[[sources]]\nname = "C"\npostgres = "postgresql://r@db/ap"\n[sources.s3]\n'
        'bucket = "logs"\naccess_key_id = "env:K"\n'
        '[[sources]]\nname = "D"\napi = "https://x.example/api"\nprojects = ["p"]\n'
        '[sources.s3]\nbucket = "logs"\n'
    )
    with pytest.raises(SourcesFileError) as raised:
        read_sources(path)
    lines = str(raised.value).splitlines()
    expected = [
        "sources[1] (A) s3: `secret_access_key` must name an environment variable",
        "sources[2] (B) s3: unknown key 'colour'",
        "sources[2] (B) s3: `bucket` must name the engine's bucket",
        "sources[2] (B) s3: `endpoint` must be an http:// or https:// URL",
        "sources[3] (C) s3: give both `access_key_id` and `secret_access_key`, or neither",
        "sources[4] (D) s3: `s3` is a table of a `postgres` source",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: {start}"), line
    assert "hunter2-literal" not in str(raised.value)


def test_a_postgres_source_without_an_s3_table_reads_the_runs_s3_settings(tmp_path, monkeypatch):
    path = tmp_path / "sources.toml"
    path.write_text('[[sources]]\nname = "A"\npostgres = "postgresql://r@db/ap"\n')
    (config,) = read_sources(path)
    assert config.s3_config() is None
    monkeypatch.setenv("RUNS_S3_BUCKET", BUCKET)
    monkeypatch.setenv("RUNS_S3_SECRET_ACCESS_KEY", "from-the-environment")
    found = config.s3_config()
    assert found is not None and found.bucket == BUCKET
    assert found.secret_access_key.reveal() == "from-the-environment"
    assert "from-the-environment" not in repr(found)


# ------------------------------------------------------------------ bounded reads


class CountingStore(ObjectStore):
    """Reads that take a while and count how many run at once (no server)."""

    def __init__(self, concurrency: int):
        super().__init__(S3Config(BUCKET), concurrency)
        self.lock = threading.Lock()
        self.running = self.most = 0

    def check(self) -> None:
        pass

    def read(self, key: str, limit: int) -> bytes | NotRead:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.01)
        with self.lock:
            self.running -= 1
        return NotRead.MISSING if key.endswith("7") else key.encode()


def test_objects_are_read_a_few_at_a_time_each_once():
    store = CountingStore(concurrency=4)
    keys = [f"k{number}" for number in range(40)]
    got = dict(store.read_many(keys, limit=100))
    assert sorted(got) == sorted(keys)
    assert got["k7"] is NotRead.MISSING and got["k8"] == b"k8"
    assert store.most == 4
