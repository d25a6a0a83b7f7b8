"""The same store on each backend, for tests that run on DuckDB and on ClickHouse (chdb).

A DuckDB store built by the real ingest from the sample generator is the reference. The shared
chdb store is built by the real ingest too, from the same records (`ingest_to_chdb`: the
ClickHouse writer, whose stores equal DuckDB's column for column, tests/test_clickhouse_ingest.py).
A store a test made or changed in DuckDB is copied as it is (Arrow, `copy_to_chdb`), each step row
stamped with its run's version (`run_updated_at`, which the ClickHouse schema keys steps by). So
both hold the very same runs, and a test compares what each backend answers against one oracle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import duckdb

from runs_store.store.clickhouse import open_store
from runs_store.store.location import ChdbLocation

# What each ClickHouse table takes from the DuckDB store (steps get their run's version).
COPIED = {
    "runs": "SELECT * FROM runs",
    "run_steps": "SELECT s.*, r.updated_at AS run_updated_at FROM run_steps s "
    "JOIN runs r ON r.id = s.run_id",
    "rejects": "SELECT * FROM rejects",
    # the agents' facts carry their run's version already (store/agent_facts.py)
    "agent_steps": "SELECT * FROM agent_steps",
    "agent_tool_calls": "SELECT * FROM agent_tool_calls",
}


def ingest_to_chdb(records: Iterable[dict], location: ChdbLocation, source: str) -> ChdbLocation:
    """Engine run objects loaded into a new chdb store at `location` by the real ingest."""
    from runs_store.ingest.pipeline import ingest_items, records_as_items
    from runs_store.store.backend import open_location

    with open_location(location) as con:
        ingest_items(con, records_as_items(records), source)
    return location


def copy_to_chdb(duckdb_path: Path, location: ChdbLocation) -> ChdbLocation:
    """The DuckDB store's runs, steps and rejects into a new chdb store at `location`."""
    source = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        with open_store(location) as con:
            for table, select in COPIED.items():
                rows = source.sql(select).to_arrow_table()
                if rows.num_rows:
                    con.insert_arrow(table, rows)
    finally:
        source.close()
    return location


# ---------------------------------------------------------------- more stores beside the shared one

BACKENDS = ("duckdb", "chdb")


def chdb_beside(shared: ChdbLocation, duckdb_path: Path, name: str = "") -> ChdbLocation:
    """A copy of a DuckDB store as its own database in the shared chdb store's directory (chdb
    holds one directory per process, so every chdb store of a test run lives in that one)."""
    database = name or f"t_{uuid.uuid4().hex[:12]}"
    return copy_to_chdb(duckdb_path, ChdbLocation(shared.path, database=database))


@contextmanager
def opened(backend: str, duckdb_path: Path, request, copies: dict | None = None, read_only=True):
    """A connection to the store `duckdb_path` on DuckDB, or to its chdb copy (made beside the
    shared chdb store, or taken from `copies`, where a new copy is kept for later tests).
    `read_only` is DuckDB's (then opened as factories.rows opens files, so a test may read the
    file beside it); a chdb copy belongs to the test (or to the `copies` holder)."""
    from runs_store.store.backend import open_location
    from runs_store.store.database import open_db

    if backend == "duckdb" and read_only:
        con = duckdb.connect(str(duckdb_path), read_only=True)
        try:
            yield con
        finally:
            con.close()
        return
    if backend == "duckdb":
        with open_db(duckdb_path) as con:
            yield con
        return
    location = None if copies is None else copies.get(duckdb_path)
    if location is None:
        location = chdb_beside(request.getfixturevalue("shared_chdb"), duckdb_path)
        if copies is not None:
            copies[duckdb_path] = location
    with open_location(location) as con:
        yield con
