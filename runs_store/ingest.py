"""Loading run records into the store: one transaction per file, nothing lost, nothing doubled.

A run's identity is its id. Within a file and against the store, the version with the later
`updated` wins and an older one never overwrites a newer one, so ingesting the same file twice
changes nothing. Records that cannot be read are kept in `rejects` with their file, position and
reason; re-ingesting a file replaces that file's rejects rather than adding to them. Test runs
(environment TESTING) are counted and dropped. The CLI and the app's Import page both call
`ingest_paths` / `ingest_file`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from runs_store.db import bump_generation, open_db
from runs_store.readers import Item, SourceFile, expand_paths
from runs_store.records import (RUN_COLUMNS, STEP_COLUMNS, RecordRejected, TestRun,
                                normalize_flat_row, normalize_run)

BATCH_RUNS = 5_000

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_TS = pa.timestamp("us")
_RUN_TYPES = {
    "started_at": _TS, "start_time": _TS, "finish_time": _TS, "archived_at": _TS,
    "updated_at": _TS, "duration_ms": pa.int64(), "tasks": pa.int32(), "steps_count": pa.int32(),
    "has_steps": pa.bool_(), "tags": pa.list_(pa.string()),
}
RUN_SCHEMA = pa.schema([(name, _RUN_TYPES.get(name, pa.string())) for name in RUN_COLUMNS]
                       + [("seq", pa.int64()), ("flat", pa.bool_())])
_STEP_TYPES = {"position": pa.int32(), "duration_ms": pa.int64()}
STEP_SCHEMA = pa.schema([(name, _STEP_TYPES.get(name, pa.string())) for name in STEP_COLUMNS]
                        + [("seq", pa.int64())])
REJECT_SCHEMA = pa.schema([("source", pa.string()), ("unit", pa.string()),
                           ("position", pa.int64()), ("reason", pa.string()), ("raw", pa.string())])


@dataclass
class Rejection:
    source: str
    unit: str
    position: int
    reason: str
    raw: str


@dataclass
class IngestSummary:
    files: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    test_runs: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, other: "IngestSummary") -> None:
        for name in ("files", "new", "updated", "unchanged", "rejected", "test_runs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def line(self) -> str:
        files = f"{self.files:,} file" + ("" if self.files == 1 else "s")
        return (f"{files}: {self.new:,} new, {self.updated:,} updated, "
                f"{self.unchanged:,} unchanged, {self.rejected:,} rejected, "
                f"{self.test_runs:,} test runs skipped")


def _looks_flat(value) -> bool:
    """A JSON object in the flat export columns (our own JSONL export) rather than a run object."""
    return isinstance(value, dict) and "started_at" in value and "created" not in value


class _Batches:
    """Collects normalised rows and rejects, and moves them into staging tables in batches."""

    def __init__(self, con, source: str):
        self.con = con
        self.source = source
        self.runs: dict[str, list] = {name: [] for name in RUN_SCHEMA.names}
        self.steps: list[tuple] = []
        self.rejects: list[Rejection] = []
        self.test_runs = 0
        self.seq = 0

    def take(self, item: Item) -> None:
        self.seq += 1
        if item.error:
            self._reject(item, item.error)
            return
        flat = item.flat or _looks_flat(item.value)
        try:
            normalized = (normalize_flat_row if flat else normalize_run)(item.value, self.source)
        except TestRun:
            self.test_runs += 1
            return
        except RecordRejected as rejection:
            self._reject(item, str(rejection))
            return
        row = normalized.row
        for name in RUN_COLUMNS:
            self.runs[name].append(row[name])
        self.runs["seq"].append(self.seq)
        self.runs["flat"].append(flat)
        self.steps.extend(step + (self.seq,) for step in normalized.steps)
        if len(self.runs["seq"]) >= BATCH_RUNS:
            self.flush()

    def _reject(self, item: Item, reason: str) -> None:
        raw = item.raw if item.raw is not None else json.dumps(item.value, default=str)
        self.rejects.append(Rejection(self.source, item.unit, item.position, reason, raw))

    def _insert(self, table_name: str, batch: pa.Table) -> None:
        insert_arrow(self.con, table_name, batch)

    def flush(self) -> None:
        if self.runs["seq"]:
            self._insert("staging_runs", pa.Table.from_pydict(self.runs, schema=RUN_SCHEMA))
            self.runs = {name: [] for name in RUN_SCHEMA.names}
        if self.steps:
            columns = list(zip(*self.steps))
            self._insert("staging_steps", pa.Table.from_arrays(
                [pa.array(column, type=kind.type) for column, kind in zip(columns, STEP_SCHEMA)],
                schema=STEP_SCHEMA))
            self.steps = []


_STAGING = """
CREATE OR REPLACE TEMP TABLE staging_runs AS SELECT *, 0::BIGINT AS seq, false AS flat
    FROM runs LIMIT 0;
CREATE OR REPLACE TEMP TABLE staging_steps AS SELECT *, 0::BIGINT AS seq FROM run_steps LIMIT 0;
"""

_DECIDE = """
CREATE OR REPLACE TEMP TABLE incoming AS
SELECT * FROM staging_runs
QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC, seq DESC) = 1;
CREATE OR REPLACE TEMP TABLE decided AS
SELECT i.id, i.seq, i.flat, r.has_steps AS old_has_steps,
       CASE WHEN r.id IS NULL THEN 'new'
            WHEN i.updated_at > r.updated_at THEN 'updated'
            ELSE 'unchanged' END AS outcome
FROM incoming i LEFT JOIN (SELECT id, updated_at, has_steps FROM runs) r ON r.id = i.id;
"""

_MERGE = """
DELETE FROM runs WHERE id IN (SELECT id FROM decided WHERE outcome = 'updated');
DELETE FROM run_steps WHERE run_id IN
    (SELECT id FROM decided WHERE outcome = 'updated' AND NOT flat);
INSERT INTO runs BY NAME
SELECT i.* EXCLUDE (seq, flat, has_steps),
       CASE WHEN d.flat THEN coalesce(d.old_has_steps, false) ELSE i.has_steps END AS has_steps
FROM incoming i JOIN decided d ON d.id = i.id
WHERE d.outcome IN ('new', 'updated')
ORDER BY i.started_at, i.id;
INSERT INTO run_steps BY NAME
SELECT s.* EXCLUDE (seq)
FROM staging_steps s JOIN decided d ON d.id = s.run_id AND d.seq = s.seq
WHERE d.outcome IN ('new', 'updated')
ORDER BY s.run_id, s.position;
"""


def insert_arrow(con, table_name: str, batch: pa.Table) -> None:
    """Appends an Arrow table to a table of the same column order."""
    con.register("arrow_batch", batch)
    try:
        con.execute(f"INSERT INTO {table_name} SELECT * FROM arrow_batch")
    finally:
        con.unregister("arrow_batch")


def _store_rejects(con, source: str, rejects: list[Rejection]) -> None:
    con.execute("DELETE FROM rejects WHERE source = ?", [source])
    if rejects:
        batch = pa.Table.from_pylist([r.__dict__ for r in rejects], schema=REJECT_SCHEMA)
        batch = batch.append_column("rejected_at", pa.array(
            [datetime.now(timezone.utc).replace(tzinfo=None)] * len(rejects), pa.timestamp("us")))
        insert_arrow(con, "rejects", batch)


def _outcomes(con) -> dict[str, int]:
    return dict(con.execute("SELECT outcome, count(*) FROM decided GROUP BY outcome").fetchall())


def ingest_items(con, items: Iterable[Item], source: str,
                 on_batch: Callable[[int], None] | None = None) -> IngestSummary:
    """Loads one file's records in a single transaction; on any error nothing is kept."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_STAGING)
        batches = _Batches(con, source)
        for item in items:
            batches.take(item)
            if on_batch and batches.seq % BATCH_RUNS == 0:
                on_batch(batches.seq)
        batches.flush()
        con.execute(_DECIDE)
        outcomes = _outcomes(con)
        con.execute(_MERGE)
        _store_rejects(con, source, batches.rejects)
        bump_generation(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute("DROP TABLE IF EXISTS staging_runs; DROP TABLE IF EXISTS staging_steps;"
                    "DROP TABLE IF EXISTS incoming; DROP TABLE IF EXISTS decided;")
    return IngestSummary(files=1, new=outcomes.get("new", 0), updated=outcomes.get("updated", 0),
                         unchanged=outcomes.get("unchanged", 0), rejected=len(batches.rejects),
                         test_runs=batches.test_runs, rejections=batches.rejects)


def ingest_file(con, source: SourceFile, progress: Progress | None = None) -> IngestSummary:
    def report(_records_read: int) -> None:
        if progress:
            progress(source.bytes_read, source.total_bytes)

    summary = ingest_items(con, source.items(), source.name, on_batch=report)
    if progress:
        progress(source.total_bytes, source.total_bytes)
    return summary


def ingest_paths(db_path: Path, paths: list, progress: Callable[[str, int, int], None] | None = None
                 ) -> IngestSummary:
    """Ingests files and directories; every path is checked before anything is loaded."""
    sources = [SourceFile(path) for path in expand_paths(paths)]
    total = IngestSummary()
    with open_db(db_path) as con:
        for source in sources:
            file_progress = (lambda done, size, name=source.name: progress(name, done, size)
                             ) if progress else None
            total.add(ingest_file(con, source, file_progress))
    return total


def records_as_items(records: Iterable[dict]) -> Iterator[Item]:
    """Engine run objects already in memory (the sample generator's) as ingest items."""
    for number, record in enumerate(records, 1):
        yield Item("item", number, None, record)
