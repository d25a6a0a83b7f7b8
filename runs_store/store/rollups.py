"""Hourly rollups of the runs, and retention: what Insights reads once raw runs are gone.

`run_rollups` counts the runs of each UTC hour per flow (id and name), flow version (id),
status, failed step, archived or not, and duration bucket, with the first and last start of
each group: every count, rate and quota figure of Insights is a sum of such rows, and its
duration percentiles are read from the buckets. Both engines keep the same columns
(`DUCKDB_TABLE` here, `schema.ROLLUPS` on ClickHouse).

What each column is for in Insights: `hour` places a group in the filter's dates and in the
local hour, day or week buckets (exact for every zone whose offset is whole hours); `flow_name`
and `flow_id` give the per-flow trends, failure rates, failed steps and quota per flow, and the
flow filter; `flow_version_id` the version rates (with `first_started_at`, a version's first
run); `status` the headline, the failure rates (finished / failed states) and the quota figures
(QUOTA_EXCEEDED per day, flow and month); `failed_step` and `failed_step_display` the Failed
steps tab and its drill-down filter; `archived` the Show archived filter; `duration_bucket` the
duration percentiles; `runs` every count; `first_started_at` / `last_started_at` the span of
"All time". A search or an error signature needs raw runs (the rollups hold no error text).

**The duration sketch.** A run's duration falls in a log-scale bucket: bucket 0 holds durations
under 1 ms, bucket b >= 1 those in [2^((b-1)/4), 2^(b/4)) ms, four buckets per doubling
(`duration_bucket`). Counts of buckets merge by adding them (across hours, flows, engines), so a
percentile of any set of groups is read from their cumulative bucket counts: the ranks the
percentile interpolates between (as DuckDB's quantile_cont does) are located in their buckets and
each is taken as its bucket's geometric middle, 2^((b-1/2)/4) ms (`percentiles`). The estimate is
then within a factor 2^(1/8) of the exact percentile: at most 9.1% off.

**Maintenance.** After every apply (an ingest's file or a pull's batch, and archiving), the UTC
hours that new or updated runs start in are counted again from the raw runs: that hour's rows
deleted, its new aggregate inserted (`refresh`). On DuckDB this is in the apply's transaction; on
ClickHouse a lightweight DELETE then an INSERT ... SELECT from `runs FINAL` (a reader in between
may see the hour missing for a moment; the rows are exact once the INSERT returns).

**Retention.** `prune` deletes rollup rows older than RUNS_ROLLUP_DAYS and, with
RUNS_RETENTION_DAYS set, raw runs and their steps that started before the boundary (the UTC hour
that many days ago), after rolling up any hour before it that has no rollup rows yet. The
boundary, the oldest raw hour kept, is recorded in `meta` (`retention_boundary`) and only ever
moves forward; hours before it are final: a run older than it loaded later is not counted again
and is pruned at the next `prune`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runs_store import settings
from runs_store.store import agent_facts, backend
from runs_store.store.backend import CLICKHOUSE, dialect

TABLE = "run_rollups"
BOUNDARY_KEY = "retention_boundary"
BUCKETS_PER_DOUBLING = 4
HOURS_PER_STATEMENT = 5_000
SPAN_GAP = timedelta(days=1)

DUCKDB_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    hour TIMESTAMP NOT NULL,            -- the UTC hour the runs started in
    flow_id VARCHAR,
    flow_name VARCHAR NOT NULL,
    flow_version_id VARCHAR,
    status VARCHAR NOT NULL,
    failed_step VARCHAR,
    failed_step_display VARCHAR,        -- the group's (max) display name of its failed step
    archived BOOLEAN NOT NULL,
    duration_bucket SMALLINT,           -- NULL: no duration (see runs_store/store/rollups.py)
    runs BIGINT NOT NULL,
    first_started_at TIMESTAMP NOT NULL,
    last_started_at TIMESTAMP NOT NULL
);
"""

# The bucket of a duration in ms, as SQL of each engine (NULL for no duration).
DUCKDB_BUCKET = (
    "CASE WHEN duration_ms IS NULL THEN NULL WHEN duration_ms < 1 THEN 0 "
    f"ELSE (floor(log2(duration_ms) * {BUCKETS_PER_DOUBLING}) + 1)::SMALLINT END"
)
CLICKHOUSE_BUCKET = (
    "CAST(CASE WHEN duration_ms IS NULL THEN NULL WHEN duration_ms < 1 THEN 0 "
    f"ELSE floor(log2(duration_ms) * {BUCKETS_PER_DOUBLING}) + 1 END, 'Nullable(Int16)')"
)


def _aggregate(hour: str, bucket: str, runs: str, where: str) -> str:
    return f"""
SELECT {hour} AS hour, flow_id, flow_name, flow_version_id, status, failed_step,
       max(failed_step_display) AS failed_step_display, archived_at IS NOT NULL AS archived,
       {bucket} AS duration_bucket, count(*) AS runs,
       min(started_at) AS first_started_at, max(started_at) AS last_started_at
FROM {runs} {where}
GROUP BY hour, flow_id, flow_name, flow_version_id, status, failed_step, archived,
         duration_bucket"""


DUCKDB_HOUR = "date_trunc('hour', started_at)"
CLICKHOUSE_HOUR = "toDateTime64(toStartOfHour(started_at), 6, 'UTC')"

# Every hour counted from the raw runs (a store made before rollups, at its migration).
DUCKDB_REBUILD = f"INSERT INTO {TABLE} {_aggregate(DUCKDB_HOUR, DUCKDB_BUCKET, 'runs', '')};"


def clickhouse_rebuild(database: str) -> str:
    """The same on ClickHouse, the tables named in `database` (a quoted identifier)."""
    select = _aggregate(CLICKHOUSE_HOUR, CLICKHOUSE_BUCKET, f"{database}.runs FINAL", "")
    return f"INSERT INTO {database}.{TABLE} {select}"


# ---------------------------------------------------------------- keeping them up to date


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def boundary(con) -> datetime | None:
    """The retention boundary: the oldest UTC hour whose raw runs are kept (None: all are)."""
    found = backend.rows(
        con,
        f"SELECT value FROM {backend.latest(con, 'meta')} WHERE key = $key",
        {"key": BOUNDARY_KEY},
    )
    return datetime.fromisoformat(found[0][0]) if found else None


def refresh(con, hours: Iterable[datetime]) -> int:
    """Counts these UTC hours again from the raw runs (their rollup rows replaced); hours before
    the retention boundary are final and left as they are. Returns how many hours."""
    kept_from = boundary(con)
    wanted = sorted({hour_of(h) for h in hours if kept_from is None or h >= kept_from})
    for group in _spans(wanted):
        _refresh(con, group)
    return len(wanted)


def _spans(hours: list[datetime]) -> list[list[datetime]]:
    """Sorted hours in groups of nearby ones (at most HOURS_PER_STATEMENT, no gap over a day), so
    that each statement reads only the runs of its span: one stray old run in a batch of new ones
    must not make the recount read every run between them."""
    groups: list[list[datetime]] = []
    for hour in hours:
        last = groups[-1] if groups else None
        if last and len(last) < HOURS_PER_STATEMENT and hour - last[-1] <= SPAN_GAP:
            last.append(hour)
        else:
            groups.append([hour])
    return groups


def _refresh(con, hours: list[datetime]) -> None:
    params = {"hours": hours, "first": hours[0], "end": hours[-1] + timedelta(hours=1)}
    within = "started_at >= $first AND started_at < $end"
    if dialect(con) == CLICKHOUSE:
        _delete(con, "has($hours, hour)", {"hours": hours})
        where = f"WHERE {within} AND has($hours, {CLICKHOUSE_HOUR})"
        select = _aggregate(CLICKHOUSE_HOUR, CLICKHOUSE_BUCKET, "runs FINAL", where)
        con.command(*backend.clickhouse_params(f"INSERT INTO {TABLE} {select}", params))
        return
    con.execute(f"DELETE FROM {TABLE} WHERE list_contains($hours, hour)", {"hours": hours})
    where = f"WHERE {within} AND list_contains($hours, {DUCKDB_HOUR})"
    con.execute(
        f"INSERT INTO {TABLE} {_aggregate(DUCKDB_HOUR, DUCKDB_BUCKET, 'runs', where)}", params
    )


def _delete(con, condition: str, params: dict) -> None:
    """A lightweight DELETE on ClickHouse (on a cluster, of every node's table)."""
    from runs_store.store.clickhouse.writer import delete_where

    sql, bound = backend.clickhouse_params(condition, params)
    delete_where(con, TABLE, sql, bound)


def rebuild(con) -> None:
    """Every hour counted again from the raw runs (what a migration does)."""
    if dialect(con) == CLICKHOUSE:
        cluster = getattr(con, "cluster", None)
        if cluster:
            from runs_store.store.clickhouse.schema import identifier, local_name

            con.command(f"TRUNCATE TABLE {local_name(TABLE)} ON CLUSTER {identifier(cluster)}")
        else:
            con.command(f"TRUNCATE TABLE {TABLE}")
        everything = _aggregate(CLICKHOUSE_HOUR, CLICKHOUSE_BUCKET, "runs FINAL", "")
        con.command(f"INSERT INTO {TABLE} {everything}")
        return
    con.execute(f"DELETE FROM {TABLE}")
    con.execute(DUCKDB_REBUILD)


# ---------------------------------------------------------------- retention


@dataclass(frozen=True)
class Pruned:
    runs: int
    rollup_rows: int
    boundary: datetime | None  # the oldest raw hour kept, None when every run is kept

    def line(self) -> str:
        kept = (
            f"raw runs kept from {self.boundary:%Y-%m-%d %H:00} UTC"
            if self.boundary
            else "every raw run kept"
        )
        return (
            f"pruned {self.runs:,} runs (with their steps) and {self.rollup_rows:,} rollup rows; "
            f"{kept}"
        )


def prune(con, now: datetime | None = None) -> Pruned:
    """Deletes rollup rows older than RUNS_ROLLUP_DAYS and, when RUNS_RETENTION_DAYS is set, the
    raw runs (and steps) that started before its boundary, once their hours are rolled up; the
    boundary is recorded in meta first, so a reader (or a prune cut short and run again) never
    takes an hour before it from raw runs. On DuckDB in one transaction."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    chosen = settings.current()
    with _atomic(con):
        rollups_from = hour_of(now - timedelta(days=chosen.rollup_days))
        old_rows = _count(con, f"SELECT count(*) FROM {TABLE} WHERE hour < $t", rollups_from)
        if old_rows:
            _delete_rows(con, TABLE, "hour < $t", rollups_from)
        recorded = boundary(con)
        if chosen.retention_days is None:
            if old_rows:
                _bump(con)
            return Pruned(0, old_rows, recorded)
        kept_from = hour_of(now - timedelta(days=chosen.retention_days))
        if recorded is not None and recorded > kept_from:
            kept_from = recorded
        _roll_up_missing(con, recorded, kept_from)
        if recorded != kept_from:
            _set_boundary(con, kept_from)
        runs = _count(
            con,
            f"SELECT count(*) FROM {backend.latest(con, 'runs')} WHERE started_at < $t",
            kept_from,
        )
        if runs:
            steps_of_old = "run_id IN (SELECT id FROM runs WHERE started_at < $t)"
            for table in ("run_steps", *agent_facts.TABLES):  # and the agents' facts
                _delete_rows(con, table, steps_of_old, kept_from)
            _delete_rows(con, "runs", "started_at < $t", kept_from)
        if runs or old_rows or recorded != kept_from:
            _bump(con)
    return Pruned(runs, old_rows, kept_from)


@contextmanager
def _atomic(con) -> Iterator[None]:
    """A DuckDB transaction; on ClickHouse (which has none) the statements one by one."""
    if dialect(con) == CLICKHOUSE:
        yield
        return
    from runs_store.store.database import transaction

    with transaction(con):
        yield


def _roll_up_missing(con, recorded: datetime | None, kept_from: datetime) -> None:
    """Rolls up the hours before `kept_from` (and from the old boundary) that have raw runs but
    no rollup rows yet, so that pruning never loses a count."""
    since = "AND started_at >= $since" if recorded is not None else ""
    hour = backend.by_dialect(con, DUCKDB_HOUR, CLICKHOUSE_HOUR)
    params: dict = {"t": kept_from} | ({"since": recorded} if recorded is not None else {})
    missing = backend.rows(
        con,
        f"""
        SELECT DISTINCT {hour} AS h FROM {backend.latest(con, "runs")}
        WHERE started_at < $t {since}
          AND {hour} NOT IN (SELECT DISTINCT hour FROM {TABLE} WHERE hour < $t)""",
        params,
    )
    for group in _spans(sorted(row[0] for row in missing)):
        _refresh(con, group)


def _count(con, sql: str, moment: datetime) -> int:
    return int(backend.rows(con, sql, {"t": moment})[0][0])


def _delete_rows(con, table: str, condition: str, moment: datetime) -> None:
    if dialect(con) == CLICKHOUSE:
        from runs_store.store.clickhouse.writer import delete_where

        sql, bound = backend.clickhouse_params(condition, {"t": moment})
        delete_where(con, table, sql, bound)
        return
    con.execute(f"DELETE FROM {table} WHERE {condition}", {"t": moment})


def _set_boundary(con, moment: datetime) -> None:
    value = moment.isoformat(sep=" ")
    if dialect(con) == CLICKHOUSE:
        con.command(
            "INSERT INTO meta (key, value) SELECT {key:String}, {value:String}",
            {"key": BOUNDARY_KEY, "value": value},
        )
        return
    con.execute("DELETE FROM meta WHERE key = $key", {"key": BOUNDARY_KEY})
    con.execute("INSERT INTO meta VALUES ($key, $value)", {"key": BOUNDARY_KEY, "value": value})


def _bump(con) -> None:
    if dialect(con) == CLICKHOUSE:
        from runs_store.store.clickhouse.schema import bump_generation

        bump_generation(con)
        return
    from runs_store.store.database import bump_generation as bump_duckdb

    bump_duckdb(con)


# ---------------------------------------------------------------- reading the sketch


def bucket_middle(bucket: int) -> float:
    """The duration (ms) a bucket stands for: its geometric middle (0 for bucket 0)."""
    if bucket <= 0:
        return 0.0
    return 2.0 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING)


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """[low, high) of a bucket, in ms."""
    if bucket <= 0:
        return (-math.inf, 1.0)
    return (2.0 ** ((bucket - 1) / BUCKETS_PER_DOUBLING), 2.0 ** (bucket / BUCKETS_PER_DOUBLING))


def percentiles(counts: Iterable[tuple[int, int]], levels: Iterable[float]) -> list[float | None]:
    """Percentiles from (bucket, runs) counts, interpolated between the two ranks around each
    level as quantile_cont does, each rank taken as its bucket's middle; None for no runs."""
    ordered = sorted((int(b), int(n)) for b, n in counts if n)
    total = sum(n for _, n in ordered)
    if not total:
        return [None for _ in levels]
    ends, running = [], 0
    for bucket, n in ordered:
        running += n
        ends.append((running, bucket))

    def at_rank(rank: int) -> float:  # 0-based
        for end, bucket in ends:
            if rank < end:
                return bucket_middle(bucket)
        return bucket_middle(ends[-1][1])

    found: list[float | None] = []
    for level in levels:
        position = (total - 1) * level
        low = math.floor(position)
        fraction = position - low
        value = at_rank(low)
        if fraction:
            value += fraction * (at_rank(low + 1) - value)
        found.append(value)
    return found
