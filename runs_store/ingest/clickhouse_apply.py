"""Ingest into a ClickHouse store: the same staging and normalising as for DuckDB, a different
apply.

Records are read, judged and normalised exactly as for a DuckDB store (`pipeline`), in a scratch
DuckDB database in the temp dir that stands in for the store while they are staged. Only the
apply step differs (`apply`, which the pipeline calls in place of its own for such a store): the
staged ids' stored versions are read from ClickHouse (FINAL), the file's latest version of each
run is judged new / updated / unchanged against them by the pipeline's own rule, the new and
strictly newer versions are built in the scratch database by the pipeline's own SQL (runs and
their steps, and the agent facts from those steps), and then written to ClickHouse: the steps
and agent facts first, each stamped with its run's `updated_at`, then the runs, then the
rejects, then the change counter. The outcomes are counted as for DuckDB.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from runs_store.store import agent_facts, rollups
from runs_store.store.clickhouse import writer
from runs_store.store.database import arrow_as, open_db, transaction

T = TypeVar("T")

# The ClickHouse store an ingest on a scratch DuckDB applies to (set by `on_scratch`).
TARGET: ContextVar = ContextVar("clickhouse_target", default=None)

# Rows handed to ClickHouse per insert (Arrow record batches read from the scratch database).
ROWS_PER_INSERT = 20_000

_HELD = "held_versions"


def scratch_folder() -> Path:
    return Path(tempfile.gettempdir())


@contextmanager
def _scratch_store() -> Iterator:
    from runs_store.ingest.pipeline import remove_dead_scratch, scratch_file

    folder = scratch_folder()
    remove_dead_scratch(folder)
    path = scratch_file(folder, ".duckdb")
    try:
        with open_db(path) as scratch:
            yield scratch
    finally:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)


def on_scratch(store, ingest: Callable[..., T]) -> T:
    """`ingest(scratch)`, the pipeline's ingest run on a scratch DuckDB store, its apply step
    writing to the ClickHouse `store`."""
    with _scratch_store() as scratch:
        token = TARGET.set(store)
        try:
            return ingest(scratch)
        finally:
            TARGET.reset(token)


def apply(store, con, batches, source: str) -> dict[str, int]:
    """The staged runs, steps and rejects on scratch `con` into the ClickHouse `store`."""
    from runs_store.ingest import pipeline

    decide = pipeline._DECIDE.replace("FROM main.runs\n", f"FROM {_HELD}\n")
    assert decide != pipeline._DECIDE
    staged = [row[0] for row in con.execute("SELECT DISTINCT id FROM stage.runs").fetchall()]
    held = writer.held_versions(store, staged)
    try:
        with transaction(con), arrow_as(con, _HELD, held):
            con.execute(decide)
            outcomes = pipeline._outcomes(con)
            con.execute(pipeline._APPLY)
            with batches.steps_progress():
                pipeline._insert_steps(con, batches.file_steps)
            pipeline.write_agent_facts(con)
            _write(store, con)
            rollups.refresh(store, pipeline.touched_hours(con))
            store_rejects(store, source, batches.rejects, batches.replace_rejects)
            writer.written(store)
    finally:
        con.execute("DROP TABLE IF EXISTS decided")
    return outcomes


def _write(store, con) -> None:
    """The runs the scratch store now holds (the new and updated) and their steps, steps first."""
    steps = con.sql(
        "SELECT s.*, r.updated_at AS run_updated_at FROM main.run_steps s "
        "JOIN main.runs r ON r.id = s.run_id"
    ).to_arrow_reader(ROWS_PER_INSERT)
    for batch in steps:
        writer.insert_steps(store, batch)
    for table in agent_facts.TABLES:  # each row carries its run's version already
        for batch in con.sql(f"SELECT * FROM main.{table}").to_arrow_reader(ROWS_PER_INSERT):
            writer.insert_facts(store, table, batch)
    carried = con.execute(
        "SELECT d.id, h.updated_at, r.updated_at FROM decided d "
        f"JOIN {_HELD} h ON h.id = d.id JOIN main.runs r ON r.id = d.id "
        "WHERE d.outcome = 'updated' AND d.flat AND h.has_steps"
    ).fetchall()
    if carried:
        ids, old, new = (list(column) for column in zip(*carried, strict=True))
        writer.carry_steps(store, ids, old, new)
    runs = con.sql("SELECT * FROM main.runs ORDER BY started_at, id").to_arrow_reader(
        ROWS_PER_INSERT
    )
    for batch in runs:
        writer.insert_runs(store, batch)


def store_rejects(store, source: str, rejects: list, replace: bool = True) -> None:
    from runs_store.ingest.pipeline import _arrow

    pa, schemas = _arrow()
    batch = pa.Table.from_pylist([r.__dict__ for r in rejects], schema=schemas.rejects)
    batch = batch.append_column(
        "rejected_at",
        pa.array([datetime.now(UTC).replace(tzinfo=None)] * len(rejects), pa.timestamp("us")),
    )
    writer.store_rejects(store, source, batch, replace)


def reject_file(store, source: str, rejects: list) -> None:
    store_rejects(store, source, rejects)
    writer.written(store)
