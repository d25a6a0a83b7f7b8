"""Loading run records into the store: one transaction per file, nothing lost, nothing doubled.

A run's identity is its id. Within a file and against the store, the version with the later
`updated` wins and an older one never overwrites a newer one, so ingesting the same file twice
changes nothing. Records that cannot be read are kept in `rejects` with their file, position and
reason; re-ingesting a file replaces that file's rejects rather than adding to them. Test runs
(environment TESTING) are counted and dropped. The CLI and the app's Import page both call
`ingest_paths` / `ingest_file`. JSONL is read by DuckDB's JSON reader (`bulk_jsonl`); every other
format, and each record that reader leaves aside, is read and judged in Python (`records`).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import duckdb
import orjson

from runs_store import settings
from runs_store.domain.errors import OutOfMemory
from runs_store.domain.records import (
    RUN_COLUMNS,
    STEPS_TYPE,
    RecordRejected,
    TestRun,
    normalize_flat_row,
    normalize_run,
)
from runs_store.ingest.bulk_jsonl import (
    FILE_STEP_MAPS,
    BulkUnavailable,
    StepsNotUsual,
    reading_progress,
    stage_jsonl,
)
from runs_store.ingest.limits import FileTooLarge, check_settings
from runs_store.ingest.readers import Item, SourceFile, expand_paths
from runs_store.store import agent_facts, rollups
from runs_store.store.backend import CLICKHOUSE, dialect, open_store
from runs_store.store.database import (
    arrow_as,
    bump_generation,
    insert_arrow,
    transaction,
)

BATCH_RUNS = 5_000
# A file adding this many runs, and replacing none, brings row groups big enough to scan well of
# its own: its checkpoint leaves the store's row groups as they are. DuckDB 2.0's checkpoint would
# otherwise rewrite the store's partly filled last row groups together with the new rows (about
# 1 s a file into a store of a million runs). Smaller files, and files that replace runs (whose
# old rows are deleted), are merged and compacted as usual.
UNMERGED_FILE_RUNS = 16_384
_ORJSON_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME
SCRATCH_PREFIX = ".ingest-"  # + pid-random: staging databases and unpacked files

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

_BATCH_COLUMNS = (*RUN_COLUMNS, "seq", "flat", "steps_json", "catalog_key", "step_names")


@functools.cache
def _arrow():
    """pyarrow and the batch schemas, on first use: a JSONL file read by DuckDB never needs them,
    and importing pyarrow costs the CLI ~0.3 s."""
    import pyarrow as pa

    ts = pa.timestamp("us")
    types = {
        "started_at": ts,
        "start_time": ts,
        "finish_time": ts,
        "archived_at": ts,
        "updated_at": ts,
        "duration_ms": pa.int64(),
        "tasks": pa.int32(),
        "steps_count": pa.int32(),
        "has_steps": pa.bool_(),
        "steps_data_truncated": pa.bool_(),
        "tags": pa.list_(pa.string()),
        "seq": pa.int64(),
        "flat": pa.bool_(),
        "catalog_key": pa.int64(),
        "step_names": pa.list_(pa.string()),
    }
    schemas = SimpleNamespace(
        runs=pa.schema([(name, types.get(name, pa.string())) for name in _BATCH_COLUMNS]),
        catalog=pa.schema(
            [
                ("catalog_key", pa.int64()),
                ("name", pa.string()),
                ("display_name", pa.string()),
                ("piece_name", pa.string()),
                ("action_name", pa.string()),
            ]
        ),
        rejects=pa.schema(
            [
                ("source", pa.string()),
                ("unit", pa.string()),
                ("position", pa.int64()),
                ("reason", pa.string()),
                ("raw", pa.string()),
            ]
        ),
    )
    return pa, schemas


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
    read_by: str = "python"  # which reader parsed the records: "duckdb" (JSONL) or "python"

    def add(self, other: IngestSummary) -> None:
        if self.files == 0:
            self.read_by = other.read_by
        elif self.read_by != other.read_by:
            self.read_by = "mixed"
        for name in ("files", "new", "updated", "unchanged", "rejected", "test_runs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def line(self) -> str:
        files = f"{self.files:,} file" + ("" if self.files == 1 else "s")
        return f"{files}: {self.outcomes()}"

    def outcomes(self) -> str:
        """What became of the records: "3 new, 0 updated, ... 1 test runs skipped"."""
        return (
            f"{self.new:,} new, {self.updated:,} updated, "
            f"{self.unchanged:,} unchanged, {self.rejected:,} rejected, "
            f"{self.test_runs:,} test runs skipped"
        )


def _looks_flat(value) -> bool:
    """A JSON object in the flat export columns (our own JSONL export) rather than a run object."""
    return isinstance(value, dict) and "started_at" in value and "created" not in value


def _stage_batch(con, runs, catalog) -> None:
    """Writes one batch to the file's staging database (committed there, so memory stays flat)."""
    if catalog is not None:
        insert_arrow(con, "stage.catalog", catalog)
    with arrow_as(con, "arrow_batch", runs):
        con.execute(_STAGE_RUNS)


class _Batches:
    """Collects normalised rows and rejects, and stages them in DuckDB in batches."""

    def __init__(self, con, source: str):
        self.con = con
        self.source = source
        self.runs: dict[str, list] = {name: [] for name in _BATCH_COLUMNS}
        self.catalog_rows: list[tuple] = []
        self.catalog_keys: dict[int, tuple[int, dict]] = {}  # id(catalog) -> (key, catalog)
        self.rejects: list[Rejection] = []
        self.test_runs = 0
        self.seq = 0
        self.replace_rejects = True  # a file's rejects replace its earlier ones; a pull's add up
        self.file_steps: list | None = None  # FILE_STEP_MAPS parameters: steps left in the file
        # Reports while the steps are read from the file.
        self.steps_progress: Callable[[], AbstractContextManager[None]] = nullcontext

    def take(self, item: Item, seq: int | None = None) -> None:
        self.seq = self.seq + 1 if seq is None else seq
        if item.error:
            self._reject(item, item.error)
            return
        value = item.value
        flat = item.flat or _looks_flat(value)
        try:
            if flat and isinstance(value, dict):
                normalized = normalize_flat_row(value, self.source, item.raw)
            else:
                normalized = normalize_run(value, self.source, item.raw)
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
        self.runs["steps_json"].append(normalized.steps_json)
        self.runs["catalog_key"].append(self._catalog_key(normalized.catalog))
        self.runs["step_names"].append(normalized.step_names)
        if len(self.runs["seq"]) >= BATCH_RUNS:
            self.flush()

    def _catalog_key(self, catalog: dict | None) -> int | None:
        """A key for the step catalog; each distinct catalog is staged once per file."""
        if not catalog:
            return None
        known = self.catalog_keys.get(id(catalog))
        if known is not None:
            return known[0]
        key = len(self.catalog_keys) + 1
        self.catalog_keys[id(catalog)] = (key, catalog)  # keeps it alive so id() stays unique
        self.catalog_rows.extend(
            (key, name, entry.get("displayName"), entry.get("pieceName"), entry.get("actionName"))
            for name, entry in catalog.items()
        )
        return key

    def _reject(self, item: Item, reason: str) -> None:
        raw = item.raw if item.raw is not None else json.dumps(item.value, default=str)
        self.rejects.append(Rejection(self.source, item.unit, item.position, reason, raw))

    def flush(self) -> None:
        if not self.runs["seq"] and not self.catalog_rows:
            return
        pa, schemas = _arrow()
        catalog = None
        if self.catalog_rows:
            columns = [list(column) for column in zip(*self.catalog_rows, strict=True)]
            catalog = pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(columns, schemas.catalog, strict=True)],
                schema=schemas.catalog,
            )
            self.catalog_rows = []
        _stage_batch(self.con, pa.Table.from_pydict(self.runs, schema=schemas.runs), catalog)
        self.runs = {name: [] for name in _BATCH_COLUMNS}


_STAGE_TABLES = f"""
CREATE TABLE stage.runs AS
SELECT *, 0::BIGINT AS seq, false AS flat, NULL::{STEPS_TYPE} AS steps, NULL::BIGINT AS catalog_key,
       NULL::VARCHAR[] AS step_names
FROM main.runs LIMIT 0;
CREATE TABLE stage.catalog (catalog_key BIGINT, name VARCHAR, display_name VARCHAR,
    piece_name VARCHAR, action_name VARCHAR);
CREATE VIEW stage.run_step_maps AS SELECT seq, steps FROM stage.runs WHERE steps IS NOT NULL;
"""

# Each run's JSON is parsed once, into one entry per step: no row ever holds the whole document,
# so a run with a multi-megabyte output costs that output once, not once a step.
_STAGE_RUNS = f"""
INSERT INTO stage.runs BY NAME
SELECT * EXCLUDE (steps_json),
       json_transform(steps_json, '{{"steps": "{STEPS_TYPE}"}}').steps AS steps
FROM arrow_batch
"""

# The latest version of each run in the file, and what it does to the store.
_DECIDE = """
CREATE OR REPLACE TEMP TABLE decided AS
WITH latest AS (
    SELECT id, seq, updated_at, flat FROM stage.runs
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC, seq DESC) = 1
)
SELECT l.id, l.seq, l.flat, r.has_steps AS old_has_steps,
       CASE WHEN r.id IS NULL THEN 'new'
            WHEN l.updated_at > r.updated_at THEN 'updated'
            ELSE 'unchanged' END AS outcome
FROM latest l
LEFT JOIN (SELECT id, updated_at, has_steps FROM main.runs
           WHERE id IN (SELECT id FROM stage.runs)) r ON r.id = l.id;
"""

_APPLY = """
DELETE FROM main.runs WHERE id IN (SELECT id FROM decided WHERE outcome = 'updated');
DELETE FROM main.run_steps WHERE run_id IN
    (SELECT id FROM decided WHERE outcome = 'updated' AND NOT flat);
INSERT INTO main.runs BY NAME
SELECT s.* EXCLUDE (seq, flat, has_steps, catalog_key, steps, step_names),
       CASE WHEN d.flat THEN coalesce(d.old_has_steps, false) ELSE s.has_steps END AS has_steps
FROM stage.runs s JOIN decided d ON d.id = s.id AND d.seq = s.seq
WHERE d.outcome IN ('new', 'updated')
ORDER BY s.started_at, s.id;
"""

# One row per step of each run loaded. @STEP_MAPS@ is where the steps are: staged
# (stage.run_step_maps, by seq) or still in a clean JSONL file (bulk_jsonl.FILE_STEP_MAPS, by run
# id: such a file holds each run once).
_INSERT_STEPS = """
INSERT INTO main.run_steps BY NAME
WITH step AS (
    SELECT s.id AS run_id, s.catalog_key, s.step_names, unnest(map_entries(m.steps)) AS entry
    FROM (@STEP_MAPS@) m JOIN stage.runs s ON s.@KEY@ = m.@KEY@
    -- a semi-join: only the narrow `decided` is held in memory, never the staged steps
    WHERE s.seq IN (SELECT seq FROM decided WHERE outcome IN ('new', 'updated'))
      AND s.step_names IS NOT NULL
), parsed AS (
    SELECT run_id, catalog_key, entry.key AS name,
           (list_position(step_names, entry.key) - 1)::INTEGER AS position, entry.value AS v
    FROM step
)
SELECT p.run_id, p.position, p.name, c.display_name, v.type, v.status,
       v.duration::BIGINT AS duration_ms, c.piece_name, c.action_name,
       nullif(v.input::VARCHAR, 'null') AS input,
       nullif(v.output::VARCHAR, 'null') AS output,
       nullif(v.errorMessage::VARCHAR, 'null') AS error
FROM parsed p LEFT JOIN stage.catalog c ON c.catalog_key = p.catalog_key AND c.name = p.name;
"""


def _store_rejects(con, source: str, rejects: list[Rejection], replace: bool = True) -> None:
    if replace:
        con.execute("DELETE FROM rejects WHERE source = ?", [source])
    if rejects:
        pa, schemas = _arrow()
        batch = pa.Table.from_pylist([r.__dict__ for r in rejects], schema=schemas.rejects)
        batch = batch.append_column(
            "rejected_at",
            pa.array([datetime.now(UTC).replace(tzinfo=None)] * len(rejects), pa.timestamp("us")),
        )
        insert_arrow(con, "rejects", batch)


def _outcomes(con) -> dict[str, int]:
    return dict(con.execute("SELECT outcome, count(*) FROM decided GROUP BY outcome").fetchall())


def _scratch_path(con, suffix: str = ".duckdb") -> Path:
    folder = scratch_folder(con)
    remove_dead_scratch(folder)
    return scratch_file(folder, suffix)


def scratch_folder(con) -> Path:
    """Where scratch files go: beside the database (the temp dir for an in-memory one, or a
    ClickHouse store)."""
    if dialect(con) == CLICKHOUSE:
        return Path(tempfile.gettempdir())
    database = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0][0]
    return Path(database).parent if database else Path(tempfile.gettempdir())


def scratch_file(folder: Path, suffix: str) -> Path:
    """A scratch file's name, after this process: a later ingest can tell it is left over once
    the process is gone."""
    return folder / f"{SCRATCH_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def remove_dead_scratch(folder: Path) -> list[Path]:
    """Deletes the scratch files in `folder` of ingests whose process is gone (killed while
    loading: hundreds of MB each); those of live processes stay. Returns what it deleted."""
    removed = []
    for path in folder.glob(f"{SCRATCH_PREFIX}*"):
        pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def _memory_limit(con, limit: str) -> Iterator[None]:
    """Runs a block under another DuckDB memory limit (a size the settings checked), then puts
    the old one back."""
    previous = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    con.execute("SET memory_limit = ?", [limit])
    try:
        yield
    finally:
        con.execute("SET memory_limit = ?", [previous])


@contextmanager
def _uncompressed_writes(con) -> Iterator[None]:
    """Staging writes scratch data read once and deleted: compressing it only costs time
    (about 3x the write time of the staged JSON)."""
    con.execute("SET force_compression = 'uncompressed'")
    try:
        yield
    finally:
        con.execute("RESET force_compression")


@contextmanager
def _staging_database(con) -> Iterator[None]:
    """Attaches a fresh staging database as `stage`; detaches and deletes it afterwards."""
    path = _scratch_path(con)
    con.execute("ATTACH ? AS stage (ROW_GROUP_SIZE 8192)", [str(path)])
    try:
        con.execute(_STAGE_TABLES)
        yield
    finally:
        _drop_stage_tables(con)  # detaching would first write them out (~1 s per 200 MB)
        con.execute("DETACH stage")
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _drop_stage_tables(con) -> None:
    for (view,) in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = 'stage'"
    ).fetchall():
        con.execute(f'DROP VIEW stage."{view}"')
    for (table,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'stage'"
    ).fetchall():
        con.execute(f'DROP TABLE stage."{table}"')


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Records are short-lived trees of dicts: the cyclic garbage collector only slows loading."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _stage_all(
    con, source: str, items: Iterable[Item], on_batch: Callable[[int], None] | None
) -> _Batches:
    batches = _Batches(con, source)
    with _without_cyclic_gc():
        for item in items:
            batches.take(item)
            if on_batch and batches.seq % BATCH_RUNS == 0:
                on_batch(batches.seq)
        batches.flush()
    return batches


def ingest_items(
    con,
    items: Iterable[Item],
    source: str,
    on_batch: Callable[[int], None] | None = None,
    replace_rejects: bool = True,
) -> IngestSummary:
    """Loads one file's records in a single transaction; on any error nothing is kept. The
    source's earlier rejects are replaced (a file loaded again), or kept (`replace_rejects`
    False: the pages of a pull, each loaded on its own)."""
    if dialect(con) == CLICKHOUSE:
        return _on_clickhouse(con, ingest_items, items, source, on_batch, replace_rejects)

    def stage() -> _Batches:
        batches = _stage_all(con, source, items, on_batch)
        batches.replace_rejects = replace_rejects
        return batches

    return _ingest_staged(con, stage, source)


def _ingest_staged(con, stage: Callable[[], _Batches], source: str) -> IngestSummary:
    limit = str(settings.current().ingest_memory_limit)
    try:
        return _stage_and_apply(con, stage, source, limit)
    except duckdb.OutOfMemoryException as error:
        raise OutOfMemory(
            f"loading {source} needed more memory than RUNS_INGEST_MEMORY_LIMIT "
            f"({limit}) allows; nothing of it was loaded. Set a larger limit, e.g. "
            f"RUNS_INGEST_MEMORY_LIMIT=2GB, and load it again. "
            f"({str(error).splitlines()[0]})"
        ) from None


def _stage_and_apply(con, stage: Callable[[], _Batches], source: str, limit: str) -> IngestSummary:
    with _staging_database(con), _memory_limit(con, limit):
        with _uncompressed_writes(con):
            batches = stage()
        with _join_sides_as_written(con):
            outcomes = _applier()(con, batches, source)
    if outcomes.get("new", 0) >= UNMERGED_FILE_RUNS and not outcomes.get("updated", 0):
        _checkpoint_without_merging(con)
    return IngestSummary(
        files=1,
        new=outcomes.get("new", 0),
        updated=outcomes.get("updated", 0),
        unchanged=outcomes.get("unchanged", 0),
        rejected=len(batches.rejects),
        test_runs=batches.test_runs,
        rejections=batches.rejects,
    )


def _apply(con, batches: _Batches, source: str) -> dict[str, int]:
    """The file's runs, steps and rejects into the store, in one transaction."""
    try:
        with transaction(con):
            con.execute(_DECIDE)
            outcomes = _outcomes(con)
            con.execute(_APPLY)
            with batches.steps_progress():
                _insert_steps(con, batches.file_steps)
            write_agent_facts(con)
            rollups.refresh(con, touched_hours(con))
            _store_rejects(con, source, batches.rejects, batches.replace_rejects)
            bump_generation(con)
    finally:
        con.execute("DROP TABLE IF EXISTS decided")
    return outcomes


# The runs whose steps the apply wrote (their agent facts are worked out again from them), and
# the newer versions that kept their steps (a row of our flat export: their facts are kept too).
WITH_NEW_STEPS = "SELECT id FROM decided WHERE outcome IN ('new', 'updated') AND NOT flat"
KEEPING_STEPS = "SELECT id FROM decided WHERE outcome = 'updated' AND flat"


def write_agent_facts(con) -> None:
    """The agent facts of the decided runs, from the steps the apply just wrote, whichever path
    staged them (see store/agent_facts.py)."""
    agent_facts.refresh(con, WITH_NEW_STEPS)
    agent_facts.carry_version(con, KEEPING_STEPS)


# The UTC hours the file's new and updated runs start in: their rollups are counted again.
_TOUCHED_HOURS = """
SELECT DISTINCT date_trunc('hour', s.started_at) FROM stage.runs s
JOIN decided d ON d.id = s.id AND d.seq = s.seq WHERE d.outcome IN ('new', 'updated')
"""


def touched_hours(con) -> list:
    """The hours whose rollups the decided apply changes (see store/rollups.py)."""
    return [row[0] for row in con.execute(_TOUCHED_HOURS).fetchall()]


def _applier() -> Callable[..., dict[str, int]]:
    """The apply step: this module's, or for a ClickHouse store (its ingest staged on a scratch
    DuckDB, see clickhouse_apply) the one that writes to ClickHouse."""
    from runs_store.ingest import clickhouse_apply

    store = clickhouse_apply.TARGET.get()
    return _apply if store is None else functools.partial(clickhouse_apply.apply, store)


def _on_clickhouse(store, ingest: Callable[..., IngestSummary], *args) -> IngestSummary:
    """`ingest(scratch, *args)`: the DuckDB ingest on a scratch store, applied to ClickHouse."""
    from runs_store.ingest import clickhouse_apply

    return clickhouse_apply.on_scratch(store, lambda scratch: ingest(scratch, *args))


def _insert_steps(con, file_steps: list | None) -> None:
    if file_steps is None:
        step_maps = "SELECT seq, steps FROM stage.run_step_maps"
        con.execute(_INSERT_STEPS.replace("@STEP_MAPS@", step_maps).replace("@KEY@", "seq"))
        return
    try:
        con.execute(
            _INSERT_STEPS.replace("@STEP_MAPS@", FILE_STEP_MAPS).replace("@KEY@", "id"), file_steps
        )
    except (duckdb.InvalidInputException, duckdb.ConversionException) as error:
        raise StepsNotUsual(str(error).splitlines()[0]) from None


@contextmanager
def _join_sides_as_written(con) -> Iterator[None]:
    """DuckDB cannot tell how many rows a JSON file holds, and would build the hash tables of the
    steps' joins from the steps, holding every payload in memory. With this optimizer off each
    join builds from its right side as written: the staged runs, `decided`, the step catalog."""
    con.execute("SET disabled_optimizers = 'build_side_probe_side'")
    try:
        yield
    finally:
        con.execute("RESET disabled_optimizers")


def _checkpoint_without_merging(con) -> None:
    """Writes the file's rows to the database file as row groups of their own. A failed
    checkpoint (another connection of this process is mid-transaction) loses nothing: the rows
    are committed, and DuckDB checkpoints them later, merging as usual."""
    con.execute("SET max_vacuum_tasks = 0")
    try:
        con.execute("CHECKPOINT")
    except duckdb.Error:
        pass
    finally:
        con.execute("RESET max_vacuum_tasks")


def _stage_jsonl_in_duckdb(
    con, source: SourceFile, progress: Progress | None, careful: bool, replace_rejects: bool
) -> _Batches:
    batches = _Batches(con, source.name)
    batches.replace_rejects = replace_rejects
    with _without_cyclic_gc():
        try:
            batches.file_steps = stage_jsonl(con, source, batches, progress, careful)
            batches.steps_progress = lambda: reading_progress(con, source, progress, half=1)
        except duckdb.Error as error:  # out of memory too: DuckDB's reader needs more than Python
            raise BulkUnavailable(str(error)) from None
        batches.flush()
    return batches


def ingest_file(con, source: SourceFile, progress: Progress | None = None) -> IngestSummary:
    """One file in one transaction: JSONL through DuckDB's JSON reader when it can take it
    (see bulk_jsonl), every other format and any file it cannot take through Python. A file
    past RUNS_MAX_FILE_GB is not loaded: it is kept in `rejects` as one record, with the reason."""

    def report(_records_read: int) -> None:
        if progress:
            progress(source.bytes_read, source.total_bytes)

    if dialect(con) == CLICKHOUSE:
        return _on_clickhouse(con, ingest_file, source, progress)
    check_settings()
    try:
        source.check_size()
        summary = _ingest_by_duckdb(con, source, progress) if source.format == "jsonl" else None
        if summary is None:
            summary = ingest_items(con, source.items(), source.name, on_batch=report)
    except FileTooLarge as error:
        summary = _reject_file(con, source, str(error))
    if progress:
        progress(source.total_bytes, source.total_bytes)
    return summary


def _reject_file(con, source: SourceFile, reason: str) -> IngestSummary:
    rejection = Rejection(source.name, "file", 0, reason, "")
    from runs_store.ingest import clickhouse_apply

    store = clickhouse_apply.TARGET.get()
    if store is not None:
        clickhouse_apply.reject_file(store, source.name, [rejection])
        return IngestSummary(files=1, rejected=1, rejections=[rejection])
    with transaction(con):
        _store_rejects(con, source.name, [rejection])
        bump_generation(con)
    return IngestSummary(files=1, rejected=1, rejections=[rejection])


@contextmanager
def _unpacked(con, source: SourceFile) -> Iterator[SourceFile]:
    """The file as DuckDB's reader should take it: a gzip is unpacked beside the store first,
    streaming and bounded by RUNS_MAX_FILE_GB (DuckDB would inflate it unbounded, on one core)."""
    if not source.gzipped:
        yield source
        return
    path = _scratch_path(con, ".jsonl")
    try:
        with open(path, "wb") as out:
            source.copy_unpacked(out)
        yield SourceFile(path, display_name=source.name, format="jsonl")
    finally:
        path.unlink(missing_ok=True)


def _ingest_by_duckdb(con, source: SourceFile, progress: Progress | None) -> IngestSummary | None:
    """A JSONL file through DuckDB's reader; None when that cannot take it (read in Python)."""
    with _unpacked(con, source) as plain:
        return _ingest_plain_by_duckdb(con, plain, progress)


def _ingest_plain_by_duckdb(
    con, source: SourceFile, progress: Progress | None, replace_rejects: bool = True
) -> IngestSummary | None:
    for careful in (False, True):
        try:
            stage = functools.partial(
                _stage_jsonl_in_duckdb, con, source, progress, careful, replace_rejects
            )
            summary = _ingest_staged(con, stage, source.name)
        except StepsNotUsual:
            continue  # nothing was kept: read again, carefully
        except BulkUnavailable:
            return None
        summary.read_by = "duckdb"
        return summary
    return None


def ingest_paths(
    db: str | Path | None,
    paths: list,
    progress: Callable[[str, int, int], None] | None = None,
    cluster: str | None = None,
) -> IngestSummary:
    """Ingests files and directories into the store `db` names (a RUNS_DB value; None: RUNS_DB
    itself); every path is checked before anything is loaded."""
    sources = [SourceFile(path) for path in expand_paths(paths)]
    total = IngestSummary()
    with open_store(db, cluster=cluster) as con:
        for source in sources:
            file_progress = (
                (lambda done, size, name=source.name: progress(name, done, size))
                if progress
                else None
            )
            total.add(ingest_file(con, source, file_progress))
    return total


class RunSpool:
    """Engine run objects spooled as JSON lines to a scratch file beside the store, then loaded in
    one transaction by the fast path (normalised in SQL; Python takes what that cannot, as for a
    file). A pull's batch of many pages waits here on disk, not in memory as parsed objects."""

    def __init__(self, folder: Path):
        self.path = scratch_file(folder, ".jsonl")
        self._lines = open(self.path, "wb")  # noqa: SIM115 - closed by ingest() or discard()
        self.records = 0

    def add(self, records: list[dict], steps_json: Mapping[str, bytes] | None = None) -> None:
        """Spools the records; a record whose id is in `steps_json` gets those steps (JSON text)
        in place of its own `steps`."""
        if steps_json:
            self._lines.writelines(_line_with_steps(record, steps_json) for record in records)
        else:
            self._lines.writelines(map(json_line, records))
        self.records += len(records)

    def ingest(self, con, source: str) -> IngestSummary:
        """Loads the spooled runs; rejects add up to the source's earlier ones (each batch of a
        pull is loaded on its own). The scratch file is deleted, loaded or not."""
        if dialect(con) == CLICKHOUSE:
            return _on_clickhouse(con, self.ingest, source)
        self._lines.close()
        try:
            spooled = SourceFile(self.path, display_name=source, format="jsonl")
            summary = _ingest_plain_by_duckdb(con, spooled, None, replace_rejects=False)
            if summary is None:
                summary = ingest_items(con, spooled.items(), source, replace_rejects=False)
            return summary
        finally:
            self.discard()

    def discard(self) -> None:
        self._lines.close()
        self.path.unlink(missing_ok=True)


def ingest_records(
    con, records: list[dict], source: str, steps_json: Mapping[str, bytes] | None = None
) -> IngestSummary:
    """Engine run objects already in memory, in one transaction, by the fast path (RunSpool)."""
    spool = RunSpool(scratch_folder(con))
    try:
        spool.add(records, steps_json)
    except BaseException:
        spool.discard()
        raise
    return spool.ingest(con, source)


def json_line(record: dict) -> bytes:
    """A run object as one line of JSON, as `json.dumps(record, default=str)` writes it. By orjson
    (six times faster); by json what orjson refuses: integers past 64 bits, lone surrogates."""
    try:
        return orjson.dumps(record, default=str, option=_ORJSON_LINE)
    except TypeError:
        return json.dumps(record, default=str).encode() + b"\n"


def _line_with_steps(record: dict, steps_json: Mapping[str, bytes]) -> bytes:
    run_id = record.get("id")
    steps = steps_json.get(run_id) if isinstance(run_id, str) else None
    if steps is None:
        return json_line(record)
    line = json_line({key: value for key, value in record.items() if key != "steps"})
    return line[:-2] + b',"steps":' + steps + b"}\n"  # the object's closing brace moves last


def records_as_items(records: Iterable[dict]) -> Iterator[Item]:
    """Engine run objects already in memory (the sample generator's) as ingest items."""
    for number, record in enumerate(records, 1):
        yield Item("item", number, None, record)
