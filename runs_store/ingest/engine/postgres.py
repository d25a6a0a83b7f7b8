"""Pulling runs straight from a self-hosted engine's PostgreSQL database, read-only.

The engine's REST API pages its runs by creation time and, in older releases, skips runs that
share a second (its issue #9357); reading its database gives every run exactly once, with its
steps, however many there are. A `PostgresSource` gives the runs of a project in the shape
`GET /v1/flow-runs/{id}` has: the run's columns, `flowVersion: {id, displayName, trigger}` of the
run's own flow version (the Runs page's flow name, which renaming the flow later does not change
for past runs; the step graph the store names steps, pieces and actions from), and `steps` read
from the run's log file (`logs`), sliced outputs put back.

Incremental by a keyset of its own, `("updated", "id")` ascending: a page's marker is the last run
it settled, and the next pull starts after it. Only production runs are read, as the engine's Runs
page shows them (test runs are never stored anyway). Runs are streamed from one server-side cursor
per pull, so memory stays that of a page whatever the number of runs; each page's flow versions'
step graphs, logs and slices are read in one query each (a version's graph once per page, however
many of its runs the page holds).

Safe on a production database: the session is read-only (every transaction too), statements have
a timeout, and nothing of the password is ever shown: errors name the user, host, port and
database only. Columns are detected, so older engines (with `flowDisplayName`, `failedStepName`,
`duration`, `tasks`) read as well as 0.85. Logs and slices the engine keeps in S3 (`location` S3,
the key in `"s3Key"`) are read from its bucket when the source is given its settings
(`object_storage`); without them those runs load without steps and are counted.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from runs_store import settings
from runs_store.domain.bounded_json import TooDeep, loads_bounded, too_deep_reason
from runs_store.domain.statuses import UNFINISHED
from runs_store.ingest import limits
from runs_store.ingest.engine.logs import (
    LogTooLarge,
    LogUnreadable,
    decode_log,
    decode_slice,
    slice_file_ids,
    with_slices,
)
from runs_store.ingest.engine.object_storage import NotRead, ObjectStore, S3Config
from runs_store.ingest.engine.source import PullError, PullRefused, RunPage

PRODUCTION = "PRODUCTION"
_NO_OFFSET = timedelta(0)
CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 300
S3 = "S3"
# A run's `updated` is the time its writer's transaction (or the engine's metadata queue) began,
# so a run can become visible after runs with a later `updated`. The marker never passes runs
# this recent: the next pull reads them again (finding them unchanged) rather than skipping one.
SETTLE = timedelta(seconds=30)
FILES_IN_FLIGHT = 16  # log and slice rows held at once while a page's files stream in

# Since the engine's first schema; the rest are detected (newer or older engines lack some).
REQUIRED_RUN_COLUMNS = (
    "id",
    "created",
    "updated",
    "projectId",
    "flowId",
    "flowVersionId",
    "logsFileId",
    "environment",
    "status",
    "startTime",
    "finishTime",
)
OPTIONAL_RUN_COLUMNS = (
    "tags",
    "parentRunId",
    "failParentOnFailure",
    "triggeredBy",
    "stepNameToTest",
    "pauseMetadata",
    "failedStep",
    "archivedAt",
    "stepsCount",
    "timeline",
    # older engines only
    "flowDisplayName",
    "failedStepName",
    "terminationReason",
    "duration",
    "tasks",
)
ENGINE_TABLES = ("flow_run", "flow_version", "file", "project")

_RUNS = """
SELECT {columns},
       fv."displayName" AS "_versionName",
       f.id AS "_logId",
       {location} AS "_logLocation",
       {s3_key} AS "_logKey",
       octet_length(f.data) AS "_logBytes"
FROM flow_run r
LEFT JOIN flow_version fv ON fv.id = r."flowVersionId"
LEFT JOIN file f ON f.id = r."logsFileId"
WHERE {where}
ORDER BY r.updated, r.id COLLATE "C"
"""
_AFTER = (
    '(r.updated > %(after_updated)s OR (r.updated = %(after_updated)s AND r.id COLLATE "C" > '
    "%(after_id)s))"
)
# A page's flow versions' step graphs, as text (parsed within the depth bound), within the bound.
_VERSIONS = """
SELECT id, CASE WHEN octet_length(graph) <= %(limit)s THEN graph END AS graph
FROM (SELECT id, "trigger"::text AS graph FROM flow_version
      WHERE id = ANY(%(ids)s) AND "trigger" IS NOT NULL) AS v
"""
_LOGS = "SELECT id, data FROM file WHERE id = ANY(%(ids)s) AND data IS NOT NULL"
_SLICES = """
SELECT id, {location} AS location, {s3_key} AS s3_key, octet_length(data) AS bytes,
       CASE WHEN octet_length(data) <= %(limit)s THEN data END AS data
FROM file WHERE id = ANY(%(ids)s)
"""


# ---------------------------------------------------------------- times and positions


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.utcoffset() == _NO_OFFSET else moment.astimezone(UTC)


def iso_ms(moment: datetime | None) -> str | None:
    """A moment as the engine's API writes it: UTC, milliseconds, `Z` (2026-11-03T09:14:02.118Z)."""
    if moment is None:
        return None
    return _utc(moment).isoformat(timespec="milliseconds")[:23] + "Z"


def iso_us(moment: datetime) -> str:
    """A moment to the microsecond PostgreSQL keeps, so a marker names a run's `updated` exactly."""
    utc = _utc(moment)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}Z"


@dataclass(frozen=True)
class Position:
    """A run's place in the keyset order: its `updated`, then its id."""

    updated: datetime
    id: str

    def marker(self) -> dict:
        return {"updated": iso_us(self.updated), "id": self.id}

    @classmethod
    def from_marker(cls, marker: dict | None) -> Position | None:
        if marker is None:
            return None
        try:
            updated = datetime.fromisoformat(marker["updated"].replace("Z", "+00:00"))
            return cls(_utc(updated), str(marker["id"]))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise PullError(
                f"the saved position {marker!r} is not one the Postgres source writes "
                '({"updated": ISO time, "id": run id}); pull again without it'
            ) from None


def last_settled(rows: Sequence[dict], before: datetime) -> Position | None:
    """The last of these rows (in keyset order) updated before `before`."""
    settled = [row for row in rows if row["updated"] <= before]
    return Position(settled[-1]["updated"], settled[-1]["id"]) if settled else None


# ---------------------------------------------------------------- run objects


def api_value(value: Any) -> Any:
    return iso_ms(value) if isinstance(value, datetime) else value


def run_object(row: dict, optional_columns: Sequence[str]) -> dict:
    """A flow_run row (joined with its version's name) as the engine's API gives the run, steps
    still to be read."""
    run: dict[str, Any] = {
        "id": row["id"],
        "created": iso_ms(row["created"]),
        "updated": iso_ms(row["updated"]),
        "projectId": row["projectId"],
        "flowId": row["flowId"],
        "flowVersionId": row["flowVersionId"],
    }
    if row["_versionName"] is not None:
        run["flowVersion"] = {"id": row["flowVersionId"], "displayName": row["_versionName"]}
    run.update(
        logsFileId=row["logsFileId"],
        environment=row["environment"],
        status=row["status"],
        startTime=iso_ms(row["startTime"]),
        finishTime=iso_ms(row["finishTime"]),
    )
    run.update((column, api_value(row[column])) for column in optional_columns)
    run["steps"] = None
    return run


# ---------------------------------------------------------------- notes of a page


def some_ids(ids: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


class Notes:
    """What a page could not give in full, one line per kind of trouble, naming a few runs."""

    def __init__(self) -> None:
        self._runs: dict[str, list[str]] = {}

    def add(self, trouble: str, run_id: str) -> None:
        runs = self._runs.setdefault(trouble, [])
        if run_id not in runs:
            runs.append(run_id)

    def lines(self) -> list[str]:
        return [f"{len(ids)} {trouble} ({some_ids(ids)})" for trouble, ids in self._runs.items()]


LOG_IN_S3 = (
    "run(s) loaded without steps: their log is in S3, which this source reads once "
    "RUNS_S3_BUCKET names its bucket"
)
LOG_WITHOUT_KEY = "run(s) loaded without steps: their log is in S3 but its row has no s3Key"
SLICE_GONE = (
    "run(s) keep the reference of a sliced step output whose file is gone (expired with the "
    "engine's retention)"
)
SLICE_IN_S3 = (
    "run(s) keep the reference of a sliced step output stored in S3, which this source reads "
    "once RUNS_S3_BUCKET names its bucket"
)
GRAPH_TOO_DEEP = (
    f"run(s) loaded without step names: their flow version's step graph is {too_deep_reason()}"
)


def _megabytes() -> str:
    return f"RUNS_MAX_RECORD_MB ({settings.current().max_record_mb:g} MB)"


def log_too_large() -> str:
    return f"run(s) loaded without steps: their log unpacks to more than {_megabytes()}"


def log_unreadable(reason: str) -> str:
    return f"run(s) loaded without steps: their log cannot be read ({reason})"


def slice_too_large() -> str:
    return (
        "run(s) keep the reference of a sliced step output that would take them past "
        f"{_megabytes()}"
    )


def graph_too_large() -> str:
    return (
        "run(s) loaded without step names: their flow version's step graph is larger than "
        f"{_megabytes()}"
    )


def slice_unreadable(reason: str) -> str:
    return f"run(s) keep the reference of a sliced step output that cannot be read ({reason})"


def log_missing(bucket: str) -> str:
    return (
        f"run(s) loaded without steps: their log is missing from S3 bucket {bucket} (expired "
        "with the engine's retention, or never uploaded)"
    )


def slice_missing(bucket: str) -> str:
    return (
        "run(s) keep the reference of a sliced step output missing from S3 bucket "
        f"{bucket} (expired with the engine's retention, or never uploaded)"
    )


# ---------------------------------------------------------------- one page


@dataclass
class PageBuilder:
    """Reads the logs and slices of one page of flow_run rows into their run objects."""

    conn: psycopg.Connection
    rows: Sequence[dict]
    schema: Schema
    objects: ObjectStore | None = None  # the engine's bucket, when the source was given it
    limit: int = field(default_factory=limits.max_record_chars)
    notes: Notes = field(default_factory=Notes)

    def __post_init__(self) -> None:
        self.runs = [run_object(row, self.schema.optional_run_columns) for row in self.rows]
        self.by_id = {run["id"]: run for run in self.runs}
        self.room: dict[str, int] = {}  # run id -> bytes its slices may still add
        self.unread: dict[str, str] = {}  # slice file id -> why it was not read, in a few words
        self.incomplete: set[str] = set()
        self.steps_json: dict[str, bytes] = {}  # run id -> its steps as JSON text (no slices)
        self.requests = 0

    def build(self) -> RunPage:
        self.read_versions()
        self.read_logs()
        self.read_slices()
        return RunPage(
            runs=self.runs,
            marker=None,
            listed=len(self.rows),
            without_steps=len(self.incomplete),
            requests=self.requests,
            unfinished=[run["id"] for run in self.runs if run["status"] in UNFINISHED],
            notes=self.notes.lines(),
            steps_json=self.steps_json,
        )

    def lacks(self, run_id: str, trouble: str) -> None:
        self.incomplete.add(run_id)
        self.notes.add(trouble, run_id)

    # -- flow versions

    def read_versions(self) -> None:
        """Each flow version's step graph (`trigger`), read once for the whole page and shared by
        its runs: the store builds the steps' display, piece and action names from it."""
        wanted = sorted({run["flowVersion"]["id"] for run in self.runs if "flowVersion" in run})
        if not wanted:
            return
        self.requests += 1
        graphs: dict[str, Any] = {}
        troubles: dict[str, str] = {}
        params = {"ids": wanted, "limit": self.limit}
        for version_id, text in self.conn.execute(_VERSIONS, params):
            if text is None:
                troubles[version_id] = graph_too_large()
                continue
            try:
                graphs[version_id] = loads_bounded(text)
            except TooDeep:
                troubles[version_id] = GRAPH_TOO_DEEP
        for run in self.runs:
            version = run.get("flowVersion")
            if version is None:
                continue
            if version["id"] in graphs:
                version["trigger"] = graphs[version["id"]]
            elif version["id"] in troubles:
                self.notes.add(troubles[version["id"]], run["id"])

    # -- logs

    def logs_to_read(self) -> tuple[dict[str, str], dict[str, str]]:
        """Log file id -> run id of the runs whose log is in the database and within bounds,
        and S3 key -> run id of those whose log is in the bucket; the others are noted."""
        in_database, in_bucket = {}, {}
        for row in self.rows:
            if row["_logId"] is None or (row["_logBytes"] is None and row["_logLocation"] != S3):
                continue  # never started, or its log was purged: steps null, as the API says
            if row["_logLocation"] == S3:
                if self.objects is None:
                    self.lacks(row["id"], LOG_IN_S3)
                elif not row["_logKey"]:
                    self.lacks(row["id"], LOG_WITHOUT_KEY)
                else:
                    in_bucket[row["_logKey"]] = row["id"]
            elif row["_logBytes"] > self.limit:
                self.lacks(row["id"], log_too_large())
            else:
                in_database[row["_logId"]] = row["id"]
        return in_database, in_bucket

    def read_logs(self) -> None:
        in_database, in_bucket = self.logs_to_read()
        if in_database:
            self.requests += 1
            params = {"ids": list(in_database)}
            for file_id, data in stream(self.conn, "page_logs", _LOGS, params):
                self.add_log(in_database[file_id], bytes(data))
        if in_bucket:
            self.read_bucket_logs(in_bucket)

    def read_bucket_logs(self, wanted: dict[str, str]) -> None:
        """The logs kept in S3 (S3 key -> run id), a few at a time."""
        assert self.objects is not None
        self.requests += len(wanted)
        for key, data in self.objects.read_many(list(wanted), self.limit):
            run_id = wanted[key]
            if data is NotRead.MISSING:
                self.lacks(run_id, log_missing(self.objects.config.bucket))
            elif data is NotRead.TOO_LARGE:
                self.lacks(run_id, log_too_large())
            else:
                self.add_log(run_id, data)

    def add_log(self, run_id: str, data: bytes) -> None:
        try:
            log = decode_log(data, self.limit, steps_as_text=True)
        except LogTooLarge:
            self.lacks(run_id, log_too_large())
            return
        except LogUnreadable as error:
            self.lacks(run_id, log_unreadable(str(error)))
            return
        run = self.by_id[run_id]
        if log.steps_json is not None:
            self.steps_json[run_id] = log.steps_json
        else:
            run["steps"] = log.steps
        if log.internal_error is not None:
            run["internalError"] = log.internal_error
        if "tags" not in run and log.tags is not None:
            run["tags"] = log.tags
        self.room[run_id] = self.limit - log.size

    # -- slices

    def read_slices(self) -> None:
        wanted = {
            file_id: run["id"]
            for run in self.runs
            if run["steps"]
            for file_id in slice_file_ids(run["steps"])
        }
        if not wanted:
            return
        self.requests += 1
        outputs: dict[str, dict[str, Any]] = {run_id: {} for run_id in set(wanted.values())}
        query = sql.SQL(_SLICES).format(
            location=self.schema.file_column("location"), s3_key=self.schema.file_column("s3Key")
        )
        found = set()
        in_bucket: dict[str, str] = {}  # S3 key -> slice file id
        for file_id, place, key, size, data in stream(
            self.conn, "page_slices", query, {"ids": list(wanted), "limit": self.limit}
        ):
            found.add(file_id)
            if place == S3 and self.objects is not None and key:
                in_bucket[key] = file_id
            else:
                self.add_slice(wanted[file_id], file_id, place, size, data, outputs)
        for file_id in wanted.keys() - found:
            self.not_read(wanted[file_id], file_id, SLICE_GONE, "expired")
        if in_bucket:
            self.read_bucket_slices(in_bucket, wanted, outputs)
        for run_id, materialised in outputs.items():
            run = self.by_id[run_id]
            run["steps"] = with_slices(run["steps"], materialised, self.unread)

    def not_read(self, run_id: str, file_id: str, trouble: str, why: str) -> None:
        self.lacks(run_id, trouble)
        self.unread[file_id] = why

    def add_slice(
        self,
        run_id: str,
        file_id: str,
        place: str | None,
        size: int | None,
        data: bytes | None,
        outputs: dict[str, dict[str, Any]],
    ) -> None:
        if place == S3:
            self.not_read(run_id, file_id, SLICE_IN_S3, "in S3")
        elif size is None:
            self.not_read(run_id, file_id, SLICE_GONE, "expired")
        elif data is None:
            self.not_read(run_id, file_id, slice_too_large(), "too large")
        else:
            self.take_slice(run_id, file_id, bytes(data), outputs)

    def read_bucket_slices(
        self, in_bucket: dict[str, str], wanted: dict[str, str], outputs: dict[str, dict[str, Any]]
    ) -> None:
        """The slices kept in S3 (S3 key -> slice file id), a few at a time."""
        assert self.objects is not None
        self.requests += len(in_bucket)
        for key, data in self.objects.read_many(list(in_bucket), self.limit):
            file_id = in_bucket[key]
            run_id = wanted[file_id]
            if data is NotRead.MISSING:
                trouble = slice_missing(self.objects.config.bucket)
                self.not_read(run_id, file_id, trouble, NotRead.MISSING.value)
            elif data is NotRead.TOO_LARGE:
                self.not_read(run_id, file_id, slice_too_large(), "too large")
            else:
                self.take_slice(run_id, file_id, data, outputs)

    def take_slice(
        self, run_id: str, file_id: str, data: bytes, outputs: dict[str, dict[str, Any]]
    ) -> None:
        """A slice's output into `outputs`, unless it cannot be read or takes its run past the
        record bound."""
        try:
            value, unpacked = decode_slice(data, self.limit)
        except LogTooLarge:
            self.not_read(run_id, file_id, slice_too_large(), "too large")
            return
        except LogUnreadable as error:
            self.not_read(run_id, file_id, slice_unreadable(str(error)), "unreadable")
            return
        if unpacked > self.room[run_id]:
            self.not_read(run_id, file_id, slice_too_large(), "too large")
            return
        self.room[run_id] -= unpacked
        outputs[run_id][file_id] = value


def transaction_start(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def stream(conn: psycopg.Connection, name: str, query, params: dict) -> Iterator[tuple]:
    """The rows of a query through a server-side cursor, a few at a time (they hold files)."""
    with conn.cursor(name=name) as cursor:
        cursor.itersize = FILES_IN_FLIGHT
        cursor.execute(query, params)
        yield from cursor


# ---------------------------------------------------------------- the source


@dataclass(frozen=True)
class Target:
    """Where the DSN points, without its secret."""

    host: str
    port: str
    dbname: str
    user: str

    @classmethod
    def of(cls, dsn: str) -> Target:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise PullError(
                "the Postgres DSN cannot be read: give it as postgresql://USER@HOST:PORT/DBNAME "
                "or 'host=HOST port=PORT dbname=DBNAME user=USER'"
            ) from None
        user = str(params.get("user") or os.environ.get("PGUSER") or getpass.getuser())
        return cls(
            host=str(params.get("host") or os.environ.get("PGHOST") or "localhost"),
            port=str(params.get("port") or os.environ.get("PGPORT") or 5432),
            dbname=str(params.get("dbname") or os.environ.get("PGDATABASE") or user),
            user=user,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def connection_error(error: psycopg.Error, target: Target) -> PullError:
    """One line for a failed connection, naming what to fix (never the password)."""
    message, where, user = str(error), target.address, target.user
    if "password authentication failed" in message:
        return PullRefused(
            f"the database refused the password for user {user} at {where}: check the password "
            "in the DSN or RUNS_PG_PASSWORD"
        )
    if "no password supplied" in message:
        return PullRefused(
            f"the database at {where} asks for a password for user {user}: give it in the DSN or "
            "in RUNS_PG_PASSWORD"
        )
    if re.search(r'role ".*" does not exist', message):
        return PullRefused(f"the database at {where} has no user {user}")
    if "no pg_hba.conf entry" in message:
        return PullRefused(
            f"the server at {where} does not let user {user} connect from here (pg_hba.conf)"
        )
    if re.search(r'database ".*" does not exist', message):
        return PullError(f"the server at {where} has no database {target.dbname}")
    if "resolve host" in message or "translate host name" in message:
        return PullError(
            f"unknown host {target.host} (port {target.port}): its name does not resolve"
        )
    if "Connection refused" in message:
        return PullError(
            f"nothing accepts connections at {where}: is PostgreSQL running there, on that port?"
        )
    if "timeout expired" in message:
        return PullError(f"{where} did not answer within {CONNECT_TIMEOUT_SECONDS} s")
    return PullError(f"cannot connect to {where}/{target.dbname}: {first_line(message)}")


def first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


@dataclass(frozen=True)
class Schema:
    """What this database's engine release has: flow_run's optional columns, and file's columns
    (`location` and `"s3Key"` came with SupportS3Files1726364421096)."""

    optional_run_columns: tuple[str, ...]
    file_columns: frozenset[str]

    @property
    def run_columns(self) -> tuple[str, ...]:
        return REQUIRED_RUN_COLUMNS + self.optional_run_columns

    def file_column(self, column: str, table: str | None = None) -> sql.Composable:
        """A column of `file` (of its alias `table`), or NULL when this release has none."""
        if column not in self.file_columns:
            return sql.SQL("NULL")
        return sql.Identifier(table, column) if table else sql.Identifier(column)


class PostgresSource:
    """An engine's runs, read from its PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        password: str | None = None,
        page_size: int = 500,
        s3: S3Config | None = None,
        s3_concurrency: int = 8,
    ):
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._dsn = dsn
        self._password = password
        self.page_size = page_size
        # the engine's bucket; None: runs whose log is in S3 load without steps, counted
        self.objects = ObjectStore(s3, s3_concurrency) if s3 is not None else None
        self.target = Target.of(dsn)
        self.key = f"postgres {self.target.address}/{self.target.dbname}"
        self._conn: psycopg.Connection | None = None
        self._schema: Schema | None = None

    # -- the EngineSource protocol

    def check(self) -> None:
        if self.objects is not None:
            self.objects.check()
        with self._translated():
            self._read_schema(self.connection())

    def projects(self, wanted: list[str]) -> list[str]:
        with self._translated():
            conn = self.connection()
            self._read_schema(conn)
            if not wanted:
                return [row[0] for row in conn.execute(_PROJECTS_WITH_RUNS, [PRODUCTION])]
            known = {row[0] for row in conn.execute(_KNOWN_PROJECTS, [list(wanted)])}
        for project in wanted:
            if project not in known:
                raise PullRefused(f"{self.key} has no project {project}")
        return list(dict.fromkeys(wanted))

    def pages(self, project: str, marker: dict | None, since: datetime | None) -> Iterator[RunPage]:
        """Runs updated after `marker`, and created at or after `since` when given (on every pull,
        not only the first: the bound stays as asked)."""
        after = Position.from_marker(marker)
        where, params = self._page_filter(project, after, since)
        with self._translated(), self._own_connection() as conn, conn.transaction():
            schema = self._read_schema(conn)
            settle_before = transaction_start(conn) - SETTLE
            total = self._count(conn, where, params)  # in the same snapshot: the ETA's share
            done = 0
            with conn.cursor(name="runs", row_factory=dict_row) as runs:
                runs.execute(self._runs_query(schema, where), params)
                while rows := runs.fetchmany(self.page_size):
                    page = self._page(conn, schema, rows)
                    after = last_settled(rows, settle_before) or after
                    page.marker = after.marker() if after else None
                    done += len(rows)
                    page.share = min(1.0, done / total) if total else None
                    yield page

    def refetch(self, project: str, run_ids: list[str]) -> Iterator[RunPage]:
        for start in range(0, len(run_ids), self.page_size):
            chunk = list(run_ids[start : start + self.page_size])
            where = sql.SQL('r."projectId" = %(project)s AND r.id = ANY(%(ids)s)')
            with self._translated():
                conn = self.connection()
                with conn.transaction():
                    schema = self._read_schema(conn)
                    rows = (
                        conn.cursor(row_factory=dict_row)
                        .execute(
                            self._runs_query(schema, where), {"project": project, "ids": chunk}
                        )
                        .fetchall()
                    )
                    page = self._page(conn, schema, rows)
            yield page

    # -- connections

    def connection(self) -> psycopg.Connection:
        """The source's read-only connection, opened on first use."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.objects is not None:
            self.objects.close()

    def __enter__(self) -> PostgresSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _own_connection(self) -> Iterator[psycopg.Connection]:
        """A connection of its own for a walk through pages, whose transaction stays open
        between pages: `refetch` and `projects` meanwhile see the database as it is now."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _connect(self) -> psycopg.Connection:
        options: dict[str, Any] = {"autocommit": True, "application_name": "runs-explorer pull"}
        if self._password is not None:
            options["password"] = self._password
        if "connect_timeout" not in conninfo_to_dict(self._dsn):
            options["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        try:
            conn = psycopg.connect(self._dsn, **options)
        except psycopg.Error as error:
            raise connection_error(error, self.target) from None
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            [f"{STATEMENT_TIMEOUT_SECONDS}s"],
        )
        return conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Database errors as one line each: a PullRefused for a missing grant."""
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as error:
            raise PullRefused(
                f"user {self.target.user} may not read {self.key}: {first_line(str(error))}; "
                "grant it SELECT on the engine's tables"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise PullError(
                f"a query on {self.key} ran past the statement timeout "
                f"({STATEMENT_TIMEOUT_SECONDS} s)"
            ) from None
        except psycopg.Error as error:
            raise PullError(f"reading {self.key} failed: {first_line(str(error))}") from None

    # -- the engine's schema

    def _read_schema(self, conn: psycopg.Connection) -> Schema:
        if self._schema is None:
            self._schema = self._detect_schema(conn)
        return self._schema

    def _detect_schema(self, conn: psycopg.Connection) -> Schema:
        for table in ENGINE_TABLES:
            if conn.execute(_TABLE_EXISTS, [table]).fetchone() == (None,):
                raise PullError(f"{self.key} is not an engine's database: it has no {table} table")
        if conn.execute(_MAY_READ, ["flow_run"]).fetchone() != (True,):
            raise PullRefused(
                f"user {self.target.user} may not read flow_run on {self.key}: grant it SELECT "
                "on the engine's tables"
            )
        run_columns = self._columns(conn, "flow_run")
        missing = [column for column in REQUIRED_RUN_COLUMNS if column not in run_columns]
        if missing:
            raise PullError(
                f"{self.key}: flow_run has no column {', '.join(missing)}: not an engine "
                "release this source can read"
            )
        return Schema(
            optional_run_columns=tuple(c for c in OPTIONAL_RUN_COLUMNS if c in run_columns),
            file_columns=frozenset(self._columns(conn, "file")),
        )

    @staticmethod
    def _columns(conn: psycopg.Connection, table: str) -> set[str]:
        return {row[0] for row in conn.execute(_COLUMNS, [table])}

    # -- queries

    def _page_filter(
        self, project: str, after: Position | None, since: datetime | None
    ) -> tuple[sql.Composable, dict]:
        parts = [sql.SQL('r."projectId" = %(project)s AND r.environment = %(environment)s')]
        params: dict[str, Any] = {"project": project, "environment": PRODUCTION}
        if after is not None:
            parts.append(sql.SQL(_AFTER))
            params.update(after_updated=after.updated, after_id=after.id)
        if since is not None:
            parts.append(sql.SQL("r.created >= %(since)s"))
            params["since"] = _utc(since)
        return sql.SQL(" AND ").join(parts), params

    @staticmethod
    def _count(conn: psycopg.Connection, where: sql.Composable, params: dict) -> int:
        """How many runs this pull will read (for the progress line's ETA)."""
        query = sql.SQL("SELECT count(*) FROM flow_run r WHERE {where}").format(where=where)
        found = conn.execute(query, params).fetchone()
        return int(found[0]) if found else 0

    @staticmethod
    def _runs_query(schema: Schema, where: sql.Composable) -> sql.Composed:
        columns = sql.SQL(", ").join(
            sql.SQL("r.{}").format(sql.Identifier(column)) for column in schema.run_columns
        )
        return sql.SQL(_RUNS).format(
            columns=columns,
            location=schema.file_column("location", "f"),
            s3_key=schema.file_column("s3Key", "f"),
            where=where,
        )

    def _page(self, conn: psycopg.Connection, schema: Schema, rows: Sequence[dict]) -> RunPage:
        builder = PageBuilder(conn, rows, schema, self.objects)
        page = builder.build()
        page.requests += 1  # the runs themselves
        return page


_TABLE_EXISTS = "SELECT to_regclass(%s)::text"
_MAY_READ = "SELECT has_table_privilege(to_regclass(%s), 'SELECT')"
_COLUMNS = """
SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped
"""
_PROJECTS_WITH_RUNS = """
SELECT p.id FROM project p
WHERE EXISTS (SELECT 1 FROM flow_run r WHERE r."projectId" = p.id AND r.environment = %s)
ORDER BY p.id
"""
_KNOWN_PROJECTS = "SELECT id FROM project WHERE id = ANY(%s)"
