"""Opening the DuckDB file, its schema, and the change counter.

DuckDB lets one process at a time hold a database file. The app and the CLI therefore open the
file only for the span of one piece of work (a page render, one ingest) and close it again; when
the other process holds it, `connect` waits up to RUNS_LOCK_WAIT_SECONDS and then raises
`DatabaseBusy` with what to do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from runs_store import settings
from runs_store.domain.errors import DatabaseBusy, DatabaseUnreadable
from runs_store.store import agent_facts
from runs_store.store.rollups import DUCKDB_REBUILD, DUCKDB_TABLE

SCHEMA_VERSION = "4"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR NOT NULL,
    project_id VARCHAR,
    flow_id VARCHAR,
    flow_version_id VARCHAR,
    flow_name VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,      -- the run's `created`: when its trigger fired
    start_time TIMESTAMP,               -- when execution began (`startTime`)
    finish_time TIMESTAMP,
    duration_ms BIGINT,
    failed_step VARCHAR,
    failed_step_display VARCHAR,
    error_message VARCHAR,
    error_signature VARCHAR,
    archived_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    tags VARCHAR[],
    parent_run_id VARCHAR,
    tasks INTEGER,
    steps_count INTEGER,
    has_steps BOOLEAN NOT NULL,
    pause_metadata VARCHAR,
    source VARCHAR,
    triggered_by VARCHAR,
    logs_file_id VARCHAR,
    steps_data_truncated BOOLEAN,
    timeline VARCHAR,                   -- JSON: {legs: [[{name, durationMs}]]}
    internal_error VARCHAR              -- JSON: {source, message, code, occurredAt}
);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    display_name VARCHAR,
    type VARCHAR,
    status VARCHAR,
    duration_ms BIGINT,
    piece_name VARCHAR,
    action_name VARCHAR,
    -- step payloads are long JSON text: zstd stores them in a third of the space dictionary and
    -- FSST compression take, in less than half the time, for a few ms more per run opened
    input VARCHAR USING COMPRESSION zstd,
    output VARCHAR USING COMPRESSION zstd,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS rejects (
    source VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    position BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw VARCHAR NOT NULL,
    rejected_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL);
"""

# How far each pull from a live engine got, per engine and project, and the runs it read while
# they were unfinished (read again until they finish).
PULL_TABLES = """
CREATE TABLE IF NOT EXISTS pull_state (
    source VARCHAR NOT NULL,
    project_id VARCHAR NOT NULL,
    marker VARCHAR,                     -- JSON, the source's own: where the next page starts
    last_pull_at TIMESTAMP,
    last_ok_at TIMESTAMP,
    runs_pulled BIGINT NOT NULL DEFAULT 0,
    last_error VARCHAR
);
CREATE TABLE IF NOT EXISTS pull_unfinished (
    source VARCHAR NOT NULL,
    project_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL
);
"""

SCHEMA += PULL_TABLES
# Hourly counts of the runs, kept after the raw runs are pruned (see store/rollups.py).
SCHEMA += DUCKDB_TABLE
# The facts of every Run Agent step (see store/agent_facts.py).
SCHEMA += agent_facts.DUCKDB_TABLES


def _agent_facts_from_steps(con: duckdb.DuckDBPyConnection) -> None:
    """The agent facts tables, filled from the steps the store holds (its files are not read)."""
    con.execute(agent_facts.DUCKDB_TABLES)
    agent_facts.backfill(con)


# Each step from one schema version to the next, for a store made by an earlier release: SQL, or
# a function of the connection where Python does the work.
MIGRATIONS: dict[str, str | Callable[[duckdb.DuckDBPyConnection], None]] = {
    # DuckDB alters no table that has an index: ensure_schema makes it again afterwards
    "1": """
DROP INDEX IF EXISTS runs_by_id;
ALTER TABLE runs ADD COLUMN triggered_by VARCHAR;
ALTER TABLE runs ADD COLUMN logs_file_id VARCHAR;
ALTER TABLE runs ADD COLUMN steps_data_truncated BOOLEAN;
ALTER TABLE runs ADD COLUMN timeline VARCHAR;
ALTER TABLE runs ADD COLUMN internal_error VARCHAR;
"""
    + PULL_TABLES,
    # the hourly rollups, counted from every run the store holds
    "2": DUCKDB_TABLE + DUCKDB_REBUILD,
    # every agent step's facts, worked out from its stored input and output
    "3": _agent_facts_from_steps,
}

_LOCK_HOLDER = re.compile(r"\(PID (?P<pid>\d+)\)")


def _connect_once(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": str(settings.current().memory_limit)
    }
    return duckdb.connect(str(path), read_only=read_only, config=config)


def _busy_message(path: Path, error: Exception) -> str:
    match = _LOCK_HOLDER.search(str(error))
    holder = f" (process {match.group('pid')})" if match else ""
    return (
        f"The database {path} is in use by another process{holder}, for example an ingest "
        f"or another Runs Explorer. Wait for it to finish and try again, or use the app's "
        f"Import page instead of the CLI while the app is running."
    )


def connect(path: Path, read_only: bool = False, wait_seconds: float | None = None):
    """Open the database, creating it and its schema if needed; waits while another holds it."""
    if wait_seconds is None:
        wait_seconds = settings.current().lock_wait_seconds
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            con = _connect_once(path, read_only)
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise DatabaseUnreadable(f"Cannot open the database {path}: {error}") from None
            if time.monotonic() >= deadline:
                raise DatabaseBusy(_busy_message(path, error)) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        except duckdb.Error as error:
            raise DatabaseUnreadable(f"Cannot open the database {path}: {error}") from None
    if not read_only:
        ensure_schema(con)
    elif _has_schema(con) and schema_version(con) != SCHEMA_VERSION:
        con.close()  # a store of an earlier release: migrated once, by a writer, then read
        with open_db(path, wait_seconds=wait_seconds):
            pass
        con = _connect_once(path, read_only)
    return con


@contextmanager
def open_db(
    path: Path, read_only: bool = False, wait_seconds: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only, wait_seconds=wait_seconds)
    try:
        yield con
    finally:
        con.close()


# Opening one run looks it up by id among millions, which a scan of the id columns makes cost
# tens of milliseconds per million runs; these make it a point lookup. Created on any database
# opened for writing that lacks them (a store from before they existed gets them once).
INDEXES = """
CREATE INDEX IF NOT EXISTS runs_by_id ON runs (id);
CREATE INDEX IF NOT EXISTS run_steps_by_run ON run_steps (run_id);
"""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    if not _has_schema(con):
        con.execute(SCHEMA)
        con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?), ('generation', '0')", [SCHEMA_VERSION]
        )
    migrate(con)
    if len(_index_names(con)) < 2:
        con.execute(INDEXES)


def schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return rows[0][0] if rows else None


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Brings a store made by an earlier release up to SCHEMA_VERSION, one step at a time, each
    in one transaction."""
    version = schema_version(con)
    while version in MIGRATIONS:
        with transaction(con):
            step = MIGRATIONS[version]
            if callable(step):
                step(con)
            else:
                con.execute(step)
            version = str(int(version) + 1)
            con.execute(
                "UPDATE meta SET value = $version WHERE key = 'schema_version'",
                {"version": version},
            )


def _has_schema(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the schema was created (its meta table exists), by a catalog lookup: asking the
    catalog views (information_schema, duckdb_tables()) costs ~15 ms on a fresh connection to a
    large file, and every page render opens one."""
    try:
        con.table("meta")
    except duckdb.CatalogException:
        return False
    return True


def _index_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            "SELECT index_name FROM duckdb_indexes() WHERE database_name = current_database() "
            "AND index_name IN ('runs_by_id', 'run_steps_by_run')"
        ).fetchall()
    ]


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block in one transaction: committed when it ends, rolled back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def generation(con: duckdb.DuckDBPyConnection) -> int:
    """A counter bumped by every write: caches key on it to notice new data."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
    return int(rows[0][0]) if rows else 0


def bump_generation(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE meta SET value = (value::BIGINT + 1)::VARCHAR WHERE key = 'generation'")


@contextmanager
def arrow_as(con: duckdb.DuckDBPyConnection, name: str, table) -> Iterator[None]:
    """An Arrow table visible to SQL as `name` for the length of the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def insert_arrow(con: duckdb.DuckDBPyConnection, table_name: str, batch) -> None:
    """Appends an Arrow table to a table with the same column names."""
    with arrow_as(con, "arrow_batch", batch):
        con.execute(f"INSERT INTO {table_name} BY NAME SELECT * FROM arrow_batch")
