"""The numbers behind the Insights page: trends, breakdowns and percentiles, computed in SQL.

Each function takes the connection and a `RunFilter` first and returns a small DataFrame or a
dataclass, so a page can cache it per filter. Everything is a GROUP BY, a quantile or a time
bucket in the store's engine, DuckDB or ClickHouse (runs_store.store.backend); only the
aggregated rows ever leave the database.

Both engines give the same answers in the same frames. A query both read alike is written once;
where they differ, the query (or the piece of it that differs: a local time, a quantile, the
runs table) has one text per dialect, side by side (`by_dialect`). On ClickHouse every read of
`runs` says FINAL, so each run counts once in its newest version, and a run's steps are those of
that version (`run_updated_at`). Frames from ClickHouse are made the frames DuckDB gives
(`_rows`): counts as int64, times as naive datetime64[us].

Time buckets are calendar hours, days or (Monday-based) weeks in the user's timezone, so a bar
labelled "Nov 10" holds the runs a person in that timezone would call Nov 10, and drilling into it
with a custom day range finds the same runs. Every real timezone offset is a multiple of 15
minutes, so a run's local bucket is that of its UTC quarter hour. In DuckDB converting every
run's time to local time would cost ~1.4 s per 10M runs: the trends add to each run the UTC
offset of its stretch of the range, looked up once per quarter hour of the range
(`utc_offsets`), where ClickHouse converts each run's quarter hour as it reads it; the other
views count runs per UTC quarter hour first and convert only those rows.
The timezone name is a parameter on both engines (`$tz`; ClickHouse takes a parameter where it
wants a constant zone), and a name an engine does not know is its error.

The Trends tab's three views share one pass over the runs in DuckDB (`trends`): the runs are
counted once per local bucket, flow, version and status into a temporary table, and each view is
a GROUP BY of that small table: grouping millions of runs is what costs, so it is done once for
all three. A ClickHouse connection keeps no session (each HTTP request stands alone), so there
each view reads the same counting as a subquery.

Every value reaches SQL as a named parameter (`$tz`, `$limit`; the filter's as `$filter_N`, see
runs_store.queries.named_params), so no query depends on the order of its values. Status names,
all from runs_store.domain.statuses, and the quantile levels are written into the SQL text as
constants.

Where raw runs are gone (RUNS_RETENTION_DAYS, see runs_store/store/rollups.py), a range that
reaches before the retention boundary is counted from the hourly rollups before it and the raw
runs from it (`_source`: one relation of rollup groups and runs, each with its count, whose
columns the filter's WHERE reads as it reads runs'); an hour of the rollups counts when it starts
in the range, in the local bucket of its start (exact for zones whose offset is whole hours).
Duration percentiles then come from the duration sketch; error signatures and slowest steps
need raw runs, and `retention_note` gives the lines the page shows about both.

The rules a page needs to turn a number into the runs it counts live here too (which statuses a
drill-down keeps, which days a time bucket covers), so the page only draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from runs_store import settings
from runs_store.domain.formatting import zone
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES, STATUS_NAMES, in_order
from runs_store.queries.filters import RunFilter, agent_filtered
from runs_store.queries.named_params import Params, merged, named_where
from runs_store.store import rollups
from runs_store.store.backend import CLICKHOUSE, arrow, by_dialect, dialect, frame, latest, rows

UNITS = ("hour", "day", "week")
_STEP = {"hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY"}
_SECONDS = {"hour": 3600, "day": 86_400, "week": 7 * 86_400}
HOURLY_UP_TO = timedelta(days=2)
DAILY_UP_TO = timedelta(days=90)
FAILED_STEP_STATUS = "FAILED"  # the status whose runs name the step that failed
QUOTA_STATUS = "QUOTA_EXCEEDED"
# the failed states a run is halted in by the platform rather than by a step, in the usual order
OTHER_FAILED_STATES = tuple(in_order(FAILED_STATES - {FAILED_STEP_STATUS}))
# the outcomes the headline counts one by one, after the total and the success rate
HEADLINE_STATUSES = ("FAILED", "QUOTA_EXCEEDED", "TIMEOUT", "INTERNAL_ERROR")
WORST_FLOWS = 5
NO_STEP = "(no failed step recorded)"
OFFSETS_AHEAD = timedelta(days=3 * 366)
TREND_COUNTS = "insights_trend_counts"


# ---------------------------------------------------------------- SQL pieces


def _status_literal(name: str) -> str:
    """A status name as SQL text; only names from runs_store.domain.statuses ever reach SQL text."""
    if name not in STATUS_NAMES:
        raise ValueError(f"not a status: {name!r}")
    return f"'{name}'"


def _status_list(names) -> str:
    """A SQL list of status names (see _status_literal)."""
    return "(" + ", ".join(_status_literal(name) for name in sorted(names)) + ")"


FAILED_SQL = _status_list(FAILED_STATES)
FINISHED_SQL = _status_list(FINISHED_STATES)


def _runs(con) -> str:
    """The runs table as a read names it: on ClickHouse each run once, in its newest version."""
    return latest(con, "runs")


# ---------------------------------------------------------------- raw runs or rollups


@dataclass(frozen=True)
class _Source:
    """Where a count reads its runs: `table` goes after FROM, `count` is the number of runs of
    a group, `first` / `last` the first and last start of a group's runs. The raw runs, or (for
    a range that reaches before the retention boundary) the hourly rollups before the boundary
    and the raw runs from it, one row per rollup group or run (`_counted`)."""

    table: str
    count: str
    first: str
    last: str
    params: Params
    rolled: bool = False


def _raw(con) -> _Source:
    return _Source(_runs(con), "count(*)", "started_at", "started_at", {})


def rollups_answer(run_filter: RunFilter) -> bool:
    """Whether the rollups can count this filter's runs: they hold no error text, signature,
    run id or agent fact, so a search, an error signature or an agent's tool or model filter
    needs raw runs."""
    return (
        not run_filter.search.strip()
        and not run_filter.signature
        and not agent_filtered(run_filter)
    )


def _source(con, run_filter: RunFilter, lifetime: bool = False) -> _Source:
    """The raw runs, or the rollups with them when the filter's range (every date, for a
    `lifetime` count) reaches before the retention boundary and the rollups can count it."""
    kept_from = rollups.boundary(con)
    if kept_from is None or not rollups_answer(run_filter):
        return _raw(con)
    if not lifetime and run_filter.since is not None and run_filter.since >= kept_from:
        return _raw(con)
    bucket = by_dialect(con, rollups.DUCKDB_BUCKET, rollups.CLICKHOUSE_BUCKET)
    table = f"""(
        SELECT hour AS started_at, first_started_at, last_started_at, flow_name,
               flow_version_id, status, failed_step, failed_step_display,
               CASE WHEN archived THEN hour END AS archived_at, duration_bucket,
               runs AS run_count
        FROM {rollups.TABLE} WHERE hour < $kept_from
        UNION ALL
        SELECT started_at, started_at AS first_started_at, started_at AS last_started_at,
               flow_name, flow_version_id, status, failed_step, failed_step_display,
               archived_at, {bucket} AS duration_bucket, 1::BIGINT AS run_count
        FROM {_runs(con)} WHERE started_at >= $kept_from) AS counted"""
    return _Source(
        table,
        "coalesce(sum(run_count), 0)::BIGINT",
        "first_started_at",
        "last_started_at",
        {"kept_from": kept_from},
        rolled=True,
    )


@dataclass(frozen=True)
class RetentionNote:
    """What Insights says about a range that reaches before the retention boundary
    (`kept_from`, the oldest raw hour kept): the counts there come from the hourly rollups
    (`rolled`), and the parts that need raw runs have none there."""

    kept_from: datetime
    retention_days: int | None
    rolled: bool

    def _kept(self) -> str:
        days = f"{self.retention_days} days" if self.retention_days else "from then on"
        return f"raw runs are kept {days} (RUNS_RETENTION_DAYS)"

    @property
    def since_text(self) -> str:
        return f"{self.kept_from:%Y-%m-%d %H:%M} UTC"

    @property
    def figures(self) -> str:
        """One line for the page's top."""
        if self.rolled:
            return f"Before {self.since_text} the figures come from hourly rollups: {self._kept()}."
        return (
            f"Before {self.since_text} there are no raw runs ({self._kept()}), and a search or "
            "an error signature needs them: the figures count the runs from then on."
        )

    @property
    def raw_only(self) -> str:
        """One line for the parts that need raw runs (error signatures, slowest steps)."""
        return (
            f"This part needs raw runs, and the range before {self.since_text} has none: "
            f"{self._kept()}."
        )


def retention_note(con, run_filter: RunFilter) -> RetentionNote | None:
    """The note for a range that reaches before the retention boundary; None otherwise."""
    kept_from = rollups.boundary(con)
    if kept_from is None or (run_filter.since is not None and run_filter.since >= kept_from):
        return None
    return RetentionNote(
        kept_from, settings.current().retention_days, rolled=rollups_answer(run_filter)
    )


def _where(con, run_filter: RunFilter, *conditions: str) -> tuple[str, Params]:
    """The filter's WHERE clause (SQL both engines read alike) with fixed extra conditions (no
    values in them) ANDed on."""
    where, params = named_where(run_filter)
    extra = " AND ".join(conditions)
    if extra:
        where = f"{where} AND {extra}" if where else f"WHERE {extra}"
    return where, params


def _slot(con) -> str:
    """SQL: the UTC quarter hour holding a run's start."""
    return by_dialect(
        con,
        "time_bucket(INTERVAL 15 MINUTE, started_at)",
        "toStartOfInterval(started_at, INTERVAL 15 MINUTE)",
    )


def _local(con, unit: str, column: str) -> str:
    """SQL: the start of the local calendar unit holding a naive-UTC timestamp column.

    The timezone name is its parameter `$tz`.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown time unit {unit!r}")
    start = {"hour": "toStartOfHour", "day": "toStartOfDay", "week": "toMonday"}[unit]
    return by_dialect(
        con,
        f"date_trunc('{unit}', {_local_time(con, column)})",
        f"toDateTime64({start}({_local_time(con, column)}), 6, 'UTC')",
    )


def _local_time(con, column: str) -> str:
    """SQL: a naive-UTC timestamp column in the timezone `$tz`, as a naive time (ClickHouse: a
    time labelled UTC whose clock reads the local time, the moment plus its UTC offset there;
    a zoned time would come back as its UTC instant)."""
    return by_dialect(
        con,
        f"timezone($tz, timezone('UTC', {column}))",
        f"addSeconds({column}, timeZoneOffset(toTimeZone({column}, $tz)))",
    )


def _nullable(con, expression: str) -> str:
    """SQL: the expression as a type that holds NULL (ClickHouse's lag/lead give a type's
    default value, not NULL, past the partition's edge unless it is Nullable)."""
    return by_dialect(con, expression, f"toNullable({expression})")


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rows(con, sql: str, params: Params) -> pd.DataFrame:
    """The query's result as a DataFrame, the same columns and dtypes from either engine: as
    DuckDB gives them (ClickHouse's unsigned counts as int64, integers with NULLs as Int64,
    every time as naive datetime64[us])."""
    if dialect(con) != CLICKHOUSE:
        return frame(con, sql, params)
    return _like_duckdb(arrow(con, sql, params))


def _like_duckdb(table) -> pd.DataFrame:
    """A ClickHouse result (an Arrow table) as DuckDB's .df() gives the same result."""
    import pyarrow as pa  # imported when used, as the store's seam does

    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind):
            values = column.to_pandas().astype("Int64" if column.null_count else "int64")
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            values = column.cast(pa.timestamp("us")).to_pandas()
        elif (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and not len(column):
            values = column.to_pandas().astype(object)  # DuckDB's empty text column
        else:
            values = column.to_pandas()
        columns[name] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


# ---------------------------------------------------------------- ranges and buckets


def choose_unit(length: timedelta) -> str:
    """Hours for up to two days, days for up to 90 days, weeks beyond."""
    if length <= HOURLY_UP_TO:
        return "hour"
    if length <= DAILY_UP_TO:
        return "day"
    return "week"


def range_limits(con, run_filter: RunFilter) -> tuple[datetime, datetime] | None:
    """(first, last) naive-UTC moments the view covers; None when an open range has no runs.

    A set date range is taken as is (open end = now); "All time" spans the matching runs.
    """
    if run_filter.since is not None:
        return run_filter.since, run_filter.until or max(_utc_now(), run_filter.since)
    where, params = _where(con, run_filter)
    src = _source(con, run_filter)
    # counted, as ClickHouse's min and max of no rows are 1970, not NULL
    found, first, last = rows(
        con,
        f"SELECT {src.count}, min({src.first}), max({src.last}) FROM {src.table} {where}",
        merged(params, src.params),
    )[0]
    if not found:
        return None
    return first, (run_filter.until or last)


def time_unit(con, run_filter: RunFilter) -> str:
    limits = range_limits(con, run_filter)
    return choose_unit(limits[1] - limits[0]) if limits else "day"


def previous_filter(run_filter: RunFilter, now: datetime) -> RunFilter | None:
    """The range of the same length just before this one; None for "All time".

    An open range ends now, rounded down to the minute like the presets, so the result (a cache
    key) stays the same for a minute.
    """
    if run_filter.since is None:
        return None
    length = (run_filter.until or now.replace(second=0, microsecond=0)) - run_filter.since
    return run_filter.with_(since=run_filter.since - length, until=run_filter.since)


def bucket_days(bucket: str, unit: str) -> tuple[date, date]:
    """The first and last calendar day of a local time bucket (an hour's is its whole day)."""
    first = datetime.fromisoformat(bucket).date()
    return first, (first + timedelta(days=6) if unit == "week" else first)


def narrowed_statuses(run_filter: RunFilter, wanted) -> list[str]:
    """The wanted statuses that the filter also allows, in the usual order: what a drill-down
    from a number counting `wanted` runs opens."""
    allowed = set(run_filter.statuses or STATUS_NAMES)
    return in_order(set(wanted) & allowed)


# ---------------------------------------------------------------- headline numbers


@dataclass(frozen=True)
class Headline:
    total: int
    finished: int
    succeeded: int
    failed: int
    quota_exceeded: int
    timeout: int
    internal_error: int

    @property
    def success_rate(self) -> float | None:
        """Succeeded among finished runs (queued, running and paused have no outcome yet)."""
        return self.succeeded / self.finished if self.finished else None

    def value(self, measure: str):
        """A measure by name: "total", "success_rate", or a status of HEADLINE_STATUSES."""
        return getattr(self, measure.lower())

    def change(self, before: Headline | None, measure: str):
        """This range's measure minus the previous range's; None when either is unknown."""
        if before is None:
            return None
        now_value, before_value = self.value(measure), before.value(measure)
        if now_value is None or before_value is None:
            return None
        return now_value - before_value


def headline(con, run_filter: RunFilter) -> Headline:
    where, params = _where(con, run_filter)
    src = _source(con, run_filter)
    outcomes = ("SUCCEEDED", *HEADLINE_STATUSES)
    counted = ",\n               ".join(
        f"coalesce(sum(n) FILTER (WHERE status = {_status_literal(name)}), 0)::BIGINT"
        for name in outcomes
    )
    row = rows(
        con,
        f"""
        WITH by_status AS (
            -- counting per status first and classifying the few groups after is about three
            -- times as fast on millions of runs as testing every run against each outcome
            SELECT status, {src.count} AS n FROM {src.table} {where} GROUP BY status)
        SELECT coalesce(sum(n), 0)::BIGINT,
               coalesce(sum(n) FILTER (WHERE status IN {FINISHED_SQL}), 0)::BIGINT,
               {counted}
        FROM by_status""",
        merged(params, src.params),
    )[0]
    total, finished, *counts = row
    by_outcome = {name.lower(): n for name, n in zip(outcomes, counts, strict=True)}
    return Headline(total, finished, **by_outcome)


# ---------------------------------------------------------------- local time buckets


def utc_offsets(
    con, first: datetime, last: datetime, tz_name: str
) -> list[tuple[datetime, datetime, timedelta]]:
    """(start, end, offset) of each stretch of one UTC offset over the UTC quarter hours from
    the one holding `first` to the one holding `last`, as the engine's own conversion gives the
    offset at each quarter hour; `end` is exclusive."""
    found = rows(
        con,
        by_dialect(
            con,
            """
            WITH quarters AS (
                SELECT unnest(generate_series(
                    time_bucket(INTERVAL 15 MINUTE, $first::TIMESTAMP),
                    time_bucket(INTERVAL 15 MINUTE, $last::TIMESTAMP),
                    INTERVAL 15 MINUTE)) AS slot),
            offsets AS (
                SELECT slot, timezone($tz, timezone('UTC', slot)) - slot AS utc_offset
                FROM quarters),
            changes AS (
                SELECT slot, utc_offset FROM offsets
                QUALIFY utc_offset IS DISTINCT FROM lag(utc_offset) OVER (ORDER BY slot))
            SELECT slot,
                   coalesce(lead(slot) OVER (ORDER BY slot),
                            time_bucket(INTERVAL 15 MINUTE, $last::TIMESTAMP)
                                + INTERVAL 15 MINUTE),
                   utc_offset
            FROM changes ORDER BY slot""",
            """
            WITH quarters AS (
                -- DateTime64: rows of a DateTime come back in the process's zone
                SELECT toDateTime64(addMinutes(first_quarter, 15 * step), 6, 'UTC') AS slot
                FROM (SELECT toStartOfInterval(toDateTime64($first, 6, 'UTC'),
                                               INTERVAL 15 MINUTE) AS first_quarter,
                             toStartOfInterval(toDateTime64($last, 6, 'UTC'),
                                               INTERVAL 15 MINUTE) AS last_quarter)
                ARRAY JOIN range(toUInt64(dateDiff('minute', first_quarter, last_quarter) / 15)
                                 + 1) AS step),
            offsets AS (
                SELECT slot, timeZoneOffset(toTimeZone(slot, $tz)) AS utc_offset FROM quarters),
            changes AS (
                SELECT slot, utc_offset FROM offsets
                QUALIFY utc_offset IS DISTINCT FROM
                        lag(toNullable(utc_offset)) OVER (ORDER BY slot))
            SELECT slot,
                   coalesce(lead(toNullable(slot)) OVER (ORDER BY slot),
                            toDateTime64(addMinutes(toStartOfInterval(
                                toDateTime64($last, 6, 'UTC'), INTERVAL 15 MINUTE), 15), 6, 'UTC')),
                   utc_offset
            FROM changes ORDER BY slot""",
        ),
        {"first": first, "last": last, "tz": tz_name},
    )
    if dialect(con) == CLICKHOUSE:  # the offset in seconds
        return [(start, end, timedelta(seconds=offset)) for start, end, offset in found]
    return found


def _offset_limits(con, run_filter: RunFilter) -> tuple[datetime, datetime] | None:
    """The span whose UTC offsets are looked up ahead: the view's range, at most its last
    OFFSETS_AHEAD (a stray run years away must not cost a table of every quarter hour between)."""
    limits = range_limits(con, run_filter)
    if limits is None:
        return None
    first, last = limits
    return max(first, last - OFFSETS_AHEAD), last


def _local_bucket(con, run_filter: RunFilter, unit: str, tz_name: str) -> tuple[str, Params]:
    """SQL for the local `unit` bucket holding each run's started_at, and its parameters.

    The same bucket as `_local(con, unit, _slot(con))`: the local time of the run's UTC quarter
    hour, truncated. ClickHouse converts each run's time as fast as it reads it, and takes that
    SQL as it is. In DuckDB converting every run's time costs ~1.4 s per 10M runs, so within the
    view's range the UTC offset of each stretch is looked up once (utc_offsets) and added, which
    gives the same bucket when the offset is a whole number of quarter hours (then a quarter
    hour never straddles a local hour, day or week). Runs outside the range, and stretches with
    another offset, are converted one by one.
    """
    if unit not in UNITS:
        raise ValueError(f"unknown time unit {unit!r}")
    if dialect(con) == CLICKHOUSE:
        return _local(con, unit, _slot(con)), {"tz": tz_name}
    converted = _local_time(con, _slot(con))
    limits = _offset_limits(con, run_filter)
    if limits is None:
        return f"date_trunc('{unit}', {converted})", {"tz": tz_name}
    stretches = utc_offsets(con, *limits, tz_name)
    cases = [f"WHEN started_at < $offsets_from THEN {converted}"]
    params: Params = {"offsets_from": stretches[0][0], "tz": tz_name}
    for number, (_, end, offset) in enumerate(stretches, 1):
        params[f"stretch_{number}_end"] = end
        if offset % timedelta(minutes=15):
            cases.append(f"WHEN started_at < $stretch_{number}_end THEN {converted}")
        else:
            cases.append(
                f"WHEN started_at < $stretch_{number}_end "
                f"THEN started_at + $stretch_{number}_offset::INTERVAL"
            )
            params[f"stretch_{number}_offset"] = offset
    sql = f"date_trunc('{unit}', CASE {' '.join(cases)} ELSE {converted} END)"
    return sql, params


# ---------------------------------------------------------------- trends


@dataclass(frozen=True)
class _Counts:
    """Where the trend views read the counted runs: `source` goes after FROM, with `params`."""

    source: str
    params: Params


@contextmanager
def _counted_by_bucket(
    con, run_filter: RunFilter, unit: str | None, tz_name: str
) -> Iterator[_Counts]:
    """The one pass over the runs behind every trend: the filter's runs counted per local
    `unit` bucket (no bucket when unit is None), flow, version and status, with each group's
    first start.

    In DuckDB they are counted once, into a temporary table, which is dropped after. A
    ClickHouse connection has no session to keep a temporary table in (each HTTP request stands
    alone), so there the counting is a subquery each view reads.
    """
    bucket, bucket_params = (
        _local_bucket(con, run_filter, unit, tz_name)
        if unit
        else (by_dialect(con, "NULL::TIMESTAMP", "CAST(NULL, 'Nullable(DateTime64(6))')"), {})
    )
    where, params = _where(con, run_filter)
    src = _source(con, run_filter)
    params = merged(params, src.params)
    counting = f"""
        SELECT {bucket} AS bucket, flow_name, flow_version_id, status, {src.count} AS n,
               min({src.first}) AS first_run
        FROM {src.table} {where} GROUP BY ALL"""
    if dialect(con) == CLICKHOUSE:
        yield _Counts(f"({counting}) AS counts", merged(bucket_params, params))
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {TREND_COUNTS} AS {counting}",
        merged(bucket_params, params),
    )
    try:
        yield _Counts(f"temp.{TREND_COUNTS}", {})
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{TREND_COUNTS}")


def _runs_over_time(con, counts: _Counts) -> pd.DataFrame:
    return _rows(
        con,
        f"""
        SELECT bucket, status, sum(n)::BIGINT AS runs FROM {counts.source}
        GROUP BY ALL ORDER BY bucket, status""",
        counts.params,
    )


def _flow_failure_rates(con, counts: _Counts, top: int) -> pd.DataFrame:
    return _rows(
        con,
        f"""
        WITH by_status AS (
            SELECT bucket, flow_name, status, sum(n) AS n FROM {counts.source} GROUP BY ALL),
        worst AS (
            SELECT flow_name FROM by_status WHERE status IN {FAILED_SQL}
            GROUP BY flow_name ORDER BY sum(n) DESC, flow_name LIMIT $top),
        buckets AS (
            SELECT bucket, flow_name,
                   coalesce(sum(n) FILTER (WHERE status IN {FINISHED_SQL}), 0)::BIGINT AS finished,
                   coalesce(sum(n) FILTER (WHERE status IN {FAILED_SQL}), 0)::BIGINT AS failed
            FROM by_status WHERE flow_name IN (SELECT flow_name FROM worst) GROUP BY ALL)
        SELECT bucket, flow_name, finished, failed,
               CASE WHEN finished > 0 THEN failed / finished END AS rate
        FROM buckets ORDER BY flow_name, bucket""",
        merged(counts.params, {"top": top}),
    )


def _lifetime_by_status(con, counts: _Counts, run_filter: RunFilter) -> tuple[str, Params]:
    """SQL (and parameters) for the versioned runs over all dates, per flow, version and status:
    first_seen, n. Without a date range those are the counts table's runs."""
    if run_filter.since is None and run_filter.until is None:
        return (
            f"""
            SELECT flow_name, flow_version_id, status, min(first_run) AS first_seen, sum(n) AS n
            FROM {counts.source} WHERE flow_version_id IS NOT NULL GROUP BY ALL""",
            counts.params,
        )
    every_date = run_filter.with_(since=None, until=None)
    where, params = _where(con, every_date, "flow_version_id IS NOT NULL")
    src = _source(con, every_date, lifetime=True)
    return (
        f"""
        SELECT flow_name, flow_version_id, status, min({src.first}) AS first_seen,
               {src.count} AS n
        FROM {src.table} {where} GROUP BY ALL""",
        merged(params, src.params),
    )


def _version_failure_rates(
    con, counts: _Counts, run_filter: RunFilter, tz_name: str
) -> pd.DataFrame:
    lifetime_sql, lifetime_params = _lifetime_by_status(con, counts, run_filter)
    return _rows(
        con,
        f"""
        WITH in_range AS (
            SELECT flow_name, flow_version_id, sum(n)::BIGINT AS runs,
                   coalesce(sum(n) FILTER (WHERE status IN {FINISHED_SQL}), 0)::BIGINT AS finished,
                   coalesce(sum(n) FILTER (WHERE status IN {FAILED_SQL}), 0)::BIGINT AS failed
            FROM {counts.source} WHERE flow_version_id IS NOT NULL GROUP BY ALL),
        lifetime_by_status AS ({lifetime_sql}),
        lifetime AS (
            -- only the flows in range, picked after grouping: picking them from millions of
            -- runs before costs more than grouping the other flows' runs too
            SELECT flow_name, flow_version_id, min(first_seen) AS first_seen,
                   coalesce(sum(n) FILTER (WHERE status IN {FINISHED_SQL}), 0)::BIGINT AS finished,
                   coalesce(sum(n) FILTER (WHERE status IN {FAILED_SQL}), 0)::BIGINT AS failed
            FROM lifetime_by_status WHERE flow_name IN (SELECT flow_name FROM in_range)
            GROUP BY ALL),
        ordered AS (
            SELECT flow_name, flow_version_id, first_seen,
                   lag(flow_version_id) OVER flow_order AS previous_version,
                   lag(CASE WHEN finished > 0 THEN failed / finished END) OVER flow_order
                       AS previous_rate,
                   lag({_nullable(con, "finished")}) OVER flow_order AS previous_finished
            FROM lifetime
            WINDOW flow_order AS (PARTITION BY flow_name ORDER BY first_seen, flow_version_id))
        SELECT i.flow_name, i.flow_version_id, {_local_time(con, "o.first_seen")} AS first_seen,
               i.runs, i.finished, i.failed,
               CASE WHEN i.finished > 0 THEN i.failed / i.finished END AS rate,
               o.previous_version, o.previous_rate, o.previous_finished
        FROM in_range i JOIN ordered o USING (flow_name, flow_version_id)
        ORDER BY i.flow_name, o.first_seen DESC, i.flow_version_id""",
        merged(counts.params, lifetime_params, {"tz": tz_name}),
    )


@dataclass(frozen=True)
class Trends:
    """The Trends tab: runs_over_time, flow_failure_rates and versions (see the functions of
    those names), from one pass over the runs."""

    runs_over_time: pd.DataFrame
    flow_failure_rates: pd.DataFrame
    versions: pd.DataFrame


def trends(con, run_filter: RunFilter, unit: str, tz_name: str, top: int = WORST_FLOWS) -> Trends:
    """runs_over_time, flow_failure_rates and version_failure_rates, grouping the runs once."""
    with _counted_by_bucket(con, run_filter, unit, tz_name) as counts:
        return Trends(
            _runs_over_time(con, counts),
            _flow_failure_rates(con, counts, top),
            _version_failure_rates(con, counts, run_filter, tz_name),
        )


def runs_over_time(con, run_filter: RunFilter, unit: str, tz_name: str) -> pd.DataFrame:
    """bucket (local start), status, runs: one row per bucket and status that has runs."""
    with _counted_by_bucket(con, run_filter, unit, tz_name) as counts:
        return _runs_over_time(con, counts)


def flow_failure_rates(
    con, run_filter: RunFilter, unit: str, tz_name: str, top: int = WORST_FLOWS
) -> pd.DataFrame:
    """bucket, flow_name, finished, failed, rate for the `top` flows with most failed-state runs.

    The failure rate is runs in a failed state among finished runs of that bucket.
    """
    with _counted_by_bucket(con, run_filter, unit, tz_name) as counts:
        return _flow_failure_rates(con, counts, top)


def version_failure_rates(con, run_filter: RunFilter, tz_name: str) -> pd.DataFrame:
    """The flow versions that ran in range, newest first per flow: flow_name, flow_version_id,
    first_seen (local), runs, finished, failed, rate (in range), and previous_version,
    previous_rate, previous_finished: the flow's version first seen just before it.

    A version is a lifetime fact, so its first run and the previous version's failure rate are
    taken over all dates (with the filter's other conditions): a version deployed before the
    range still shows what it changed.
    """
    with _counted_by_bucket(con, run_filter, None, tz_name) as counts:
        return _version_failure_rates(con, counts, run_filter, tz_name)


def rate_changes(versions: pd.DataFrame) -> pd.Series:
    """Each version's failure rate (in range) minus its flow's previous version's (lifetime);
    NaN where either is unknown."""
    return versions["rate"] - versions["previous_rate"]


@dataclass(frozen=True)
class VersionJump:
    flow_name: str
    flow_version_id: str
    first_seen: datetime
    before: float
    after: float


def biggest_version_jump(
    versions: pd.DataFrame, min_finished: int = 20, min_rise: float = 0.05
) -> VersionJump | None:
    """The version whose failure rate (in range) rose most over the flow's previous version's
    (over its lifetime).

    Both need `min_finished` finished runs and the rise must be at least `min_rise`, so a
    handful of runs cannot make a headline.
    """
    if versions.empty:
        return None
    enough = versions[
        (versions["finished"] >= min_finished)
        & (versions["previous_finished"].fillna(0) >= min_finished)
    ]
    rises = rate_changes(enough).dropna()
    if rises.empty or rises.max() < min_rise:
        return None
    row = enough.loc[rises.idxmax()]
    return VersionJump(
        row["flow_name"],
        row["flow_version_id"],
        pd.Timestamp(row["first_seen"]).to_pydatetime(),
        float(row["previous_rate"]),
        float(row["rate"]),
    )


# ---------------------------------------------------------------- failure breakdowns


def failed_steps(con, run_filter: RunFilter, limit: int = 100) -> pd.DataFrame:
    """FAILED runs per flow and failed step: flow_name, failed_step (name, None if unknown),
    step_label (display name), runs, share (of that flow's FAILED runs); most first."""
    where, params = _where(con, run_filter, f"status = {_status_literal(FAILED_STEP_STATUS)}")
    src = _source(con, run_filter)
    return _rows(
        con,
        f"""
        WITH steps AS (
            SELECT flow_name, failed_step,
                   coalesce(max(failed_step_display), failed_step, $no_step) AS step_label,
                   {src.count} AS runs
            FROM {src.table} {where} GROUP BY flow_name, failed_step)
        SELECT *, runs / sum(runs) OVER (PARTITION BY flow_name) AS share FROM steps
        ORDER BY runs DESC, flow_name, step_label LIMIT $limit""",
        merged(params, src.params, {"no_step": NO_STEP, "limit": limit}),
    )


def other_failed_states(con, run_filter: RunFilter) -> pd.DataFrame:
    """flow_name, status, runs, share (of that flow's runs in any failed state), for the
    OTHER_FAILED_STATES; most first."""
    where, params = _where(con, run_filter, f"status IN {FAILED_SQL}")
    src = _source(con, run_filter)
    params = merged(params, src.params)
    return _rows(
        con,
        f"""
        WITH per_state AS (
            SELECT flow_name, status, {src.count} AS runs FROM {src.table} {where}
            GROUP BY ALL),
        shared AS (
            SELECT *, runs / sum(runs) OVER (PARTITION BY flow_name) AS share FROM per_state)
        SELECT * FROM shared WHERE status IN {_status_list(OTHER_FAILED_STATES)}
        ORDER BY runs DESC, flow_name, status""",
        params,
    )


# ---------------------------------------------------------------- error signatures


def error_signatures(
    con, run_filter: RunFilter, unit: str, tz_name: str, limit: int = 50
) -> pd.DataFrame:
    """The most frequent error signatures in range: signature, runs, flows, steps (lists),
    first_seen / last_seen (local, over the whole store), new (first seen within this range),
    trend (runs per time bucket across the range, zeros included), total (signatures in range).
    """
    limits = range_limits(con, run_filter)
    if limits is None:
        return pd.DataFrame(
            columns=[
                "signature",
                "runs",
                "flows",
                "steps",
                "first_seen",
                "last_seen",
                "new",
                "trend",
                "total",
            ]
        )
    where, params = _where(con, run_filter, "error_signature IS NOT NULL")
    # The same on both engines: the matching runs, and the top signatures' runs per bucket.
    matching = f"""matching AS (
                SELECT error_signature, flow_name,
                       coalesce(failed_step_display, failed_step) AS step, started_at
                FROM {_runs(con)} {where})"""
    bucketed = f"""overall AS (
                SELECT error_signature, min(started_at) AS first_seen,
                       max(started_at) AS last_seen
                FROM {_runs(con)}
                WHERE error_signature IN (SELECT error_signature FROM top) GROUP BY ALL),
            slots AS (
                SELECT error_signature, {_slot(con)} AS slot, count(*) AS runs FROM matching
                WHERE error_signature IN (SELECT error_signature FROM top) GROUP BY ALL),
            buckets AS (
                SELECT error_signature, {_local(con, unit, "slot")} AS bucket, sum(runs) AS runs
                FROM slots GROUP BY ALL)"""
    return _rows(
        con,
        by_dialect(
            con,
            f"""
            WITH {matching},
            top AS (
                SELECT error_signature, count(*) AS runs,
                       list(DISTINCT flow_name ORDER BY flow_name) AS flows,
                       coalesce(list(DISTINCT step ORDER BY step) FILTER (WHERE step IS NOT NULL),
                                []) AS steps,
                       count(*) OVER () AS total
                FROM matching GROUP BY error_signature
                ORDER BY runs DESC, error_signature LIMIT $limit),
            {bucketed},
            series AS (
                SELECT unnest(generate_series({_local(con, unit, "$range_first::TIMESTAMP")},
                                              {_local(con, unit, "$range_last::TIMESTAMP")},
                                              {_STEP[unit]})) AS bucket),
            trends AS (
                SELECT t.error_signature,
                       list(coalesce(b.runs, 0)::BIGINT ORDER BY s.bucket) AS trend
                FROM top t CROSS JOIN series s
                LEFT JOIN buckets b
                    ON b.error_signature = t.error_signature AND b.bucket = s.bucket
                GROUP BY t.error_signature)
            SELECT t.error_signature AS signature, t.runs, t.flows, t.steps,
                   {_local_time(con, "o.first_seen")} AS first_seen,
                   {_local_time(con, "o.last_seen")} AS last_seen,
                   coalesce(o.first_seen >= $since::TIMESTAMP, false) AS new,
                   tr.trend, t.total
            FROM top t JOIN overall o USING (error_signature)
            JOIN trends tr USING (error_signature)
            ORDER BY t.runs DESC, signature""",
            f"""
            WITH {matching},
            top AS (
                SELECT error_signature, count(*) AS runs,
                       arraySort(groupUniqArray(flow_name)) AS flows,
                       arraySort(groupUniqArray(step)) AS steps,
                       count(*) OVER () AS total
                FROM matching GROUP BY error_signature
                ORDER BY runs DESC, error_signature LIMIT $limit),
            {bucketed},
            series AS (
                SELECT addSeconds(first_bucket, step * {_SECONDS[unit]}) AS bucket
                FROM (SELECT {_local(con, unit, "toDateTime64($range_first, 6, 'UTC')")}
                                 AS first_bucket,
                             {_local(con, unit, "toDateTime64($range_last, 6, 'UTC')")}
                                 AS last_bucket)
                ARRAY JOIN range(toUInt64(dateDiff('second', first_bucket, last_bucket)
                                          / {_SECONDS[unit]}) + 1) AS step),
            trends AS (
                -- each bucket's count, in the order of the buckets
                SELECT t.error_signature AS error_signature,
                       arrayMap(pair -> pair.2, arraySort(groupArray(
                           (s.bucket, toInt64(coalesce(b.runs, 0)))))) AS trend
                FROM top t CROSS JOIN series s
                LEFT JOIN buckets b
                    ON b.error_signature = t.error_signature AND b.bucket = s.bucket
                GROUP BY t.error_signature)
            SELECT t.error_signature AS signature, t.runs AS runs, t.flows AS flows,
                   t.steps AS steps,
                   {_local_time(con, "o.first_seen")} AS first_seen,
                   {_local_time(con, "o.last_seen")} AS last_seen,
                   coalesce(o.first_seen >= $since, false)::Bool AS new,
                   tr.trend AS trend, t.total AS total
            FROM top t JOIN overall o USING (error_signature)
            JOIN trends tr USING (error_signature)
            ORDER BY t.runs DESC, signature""",
        ),
        merged(
            params,
            {
                "limit": limit,
                "tz": tz_name,
                "range_first": limits[0],
                "range_last": limits[1] - timedelta(microseconds=1),
                "since": run_filter.since,
            },
        ),
    )


# ---------------------------------------------------------------- quota exceeded


def quota_per_day(con, run_filter: RunFilter, tz_name: str) -> pd.DataFrame:
    """day (local), runs: Quota Exceeded runs per calendar day that has any."""
    where, params = _where(con, run_filter, f"status = {_status_literal(QUOTA_STATUS)}")
    src = _source(con, run_filter)
    return _rows(
        con,
        f"""
        WITH slots AS (
            SELECT {_slot(con)} AS slot, {src.count} AS runs FROM {src.table} {where}
            GROUP BY ALL)
        SELECT {_local(con, "day", "slot")} AS day, sum(runs)::BIGINT AS runs
        FROM slots GROUP BY ALL ORDER BY day""",
        merged(params, src.params, {"tz": tz_name}),
    )


def quota_per_flow(con, run_filter: RunFilter) -> pd.DataFrame:
    """flow_name, runs, share (of all Quota Exceeded runs in range); most first."""
    where, params = _where(con, run_filter, f"status = {_status_literal(QUOTA_STATUS)}")
    src = _source(con, run_filter)
    return _rows(
        con,
        f"""
        SELECT flow_name, {src.count} AS runs, {src.count} / sum({src.count}) OVER () AS share
        FROM {src.table} {where} GROUP BY flow_name ORDER BY runs DESC, flow_name""",
        merged(params, src.params),
    )


@dataclass(frozen=True)
class QuotaMonth:
    this_month: int
    last_month: int
    month_start: datetime  # local, first day of this month
    last_month_start: datetime  # local
    last_month_end: datetime  # local, exclusive: the same point in last month as now

    @property
    def change(self) -> int:
        """Runs this month so far minus the same part of last month."""
        return self.this_month - self.last_month

    @property
    def last_month_last_day(self) -> date:
        """The last calendar day the same part of last month reaches into."""
        return (self.last_month_end - timedelta(minutes=1)).date()


def month_periods(now: datetime, tz_name: str) -> tuple[datetime, datetime, datetime, datetime]:
    """Local (this month start, now, last month start, same moment last month), naive local."""
    local_now = now.replace(tzinfo=UTC).astimezone(zone(tz_name)).replace(tzinfo=None)
    start = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_start = (start - timedelta(days=1)).replace(day=1)
    last_end = min(last_start + (local_now - start), start)
    return start, local_now, last_start, last_end


def _to_utc(local: datetime, tz_name: str) -> datetime:
    return local.replace(tzinfo=zone(tz_name)).astimezone(UTC).replace(tzinfo=None)


def quota_month_to_date(con, run_filter: RunFilter, now: datetime, tz_name: str) -> QuotaMonth:
    """Quota Exceeded runs this calendar month so far, and in the same span of last month.

    Uses the filter's flows, statuses, archived and search, but its own dates.
    """
    start, local_now, last_start, last_end = month_periods(now, tz_name)
    counts = []
    for since, until in ((start, local_now), (last_start, last_end)):
        period = run_filter.with_(since=_to_utc(since, tz_name), until=_to_utc(until, tz_name))
        where, params = _where(con, period, f"status = {_status_literal(QUOTA_STATUS)}")
        src = _source(con, period)
        sql = f"SELECT {src.count} FROM {src.table} {where}"
        counts.append(rows(con, sql, merged(params, src.params))[0][0])
    return QuotaMonth(counts[0], counts[1], start, last_start, last_end)


# ---------------------------------------------------------------- durations


def duration_percentiles(con, run_filter: RunFilter) -> pd.DataFrame:
    """flow_name, runs, p50, p95, p99 (ms) over finished runs with a duration; slowest p95 first.

    For a range that reaches before the retention boundary they are read from the duration
    sketch (the runs' duration buckets, see store/rollups.py): within 9.1% of the exact value.
    """
    src = _source(con, run_filter)
    if src.rolled:
        return _sketched_percentiles(con, run_filter, src)
    where, params = _where(con, run_filter, f"status IN {FINISHED_SQL}", "duration_ms IS NOT NULL")
    return _rows(
        con,
        f"""
        WITH q AS (
            SELECT flow_name, count(*) AS runs,
                   {_quantiles(con, "duration_ms", (0.5, 0.95, 0.99))} AS p
            FROM {_runs(con)} {where} GROUP BY flow_name)
        SELECT flow_name, runs, p[1] AS p50, p[2] AS p95, p[3] AS p99 FROM q
        ORDER BY p95 DESC, flow_name""",
        params,
    )


PERCENTILE_COLUMNS = ("p50", "p95", "p99")


def _sketched_percentiles(con, run_filter: RunFilter, src: _Source) -> pd.DataFrame:
    where, params = _where(
        con, run_filter, f"status IN {FINISHED_SQL}", "duration_bucket IS NOT NULL"
    )
    counts = _rows(
        con,
        f"""
        SELECT flow_name, duration_bucket AS bucket, {src.count} AS runs FROM {src.table} {where}
        GROUP BY flow_name, duration_bucket""",
        merged(params, src.params),
    )
    found = []
    for flow_name, group in counts.groupby("flow_name", sort=False):
        pairs = zip(group["bucket"], group["runs"], strict=True)
        values = rollups.percentiles(pairs, (0.5, 0.95, 0.99))
        found.append((flow_name, int(group["runs"].sum()), *values))
    result = pd.DataFrame(found, columns=["flow_name", "runs", *PERCENTILE_COLUMNS])
    result = result.astype({"runs": "int64", **dict.fromkeys(PERCENTILE_COLUMNS, "float64")})
    if result.empty:
        result["flow_name"] = result["flow_name"].astype(object)
    return result.sort_values(["p95", "flow_name"], ascending=[False, True], ignore_index=True)


def slowest_steps(con, run_filter: RunFilter, limit: int = 15) -> pd.DataFrame:
    """flow_name, step, step_label, runs, avg_ms, p95_ms for the steps (of the filter's runs)
    with the highest p95 duration; one SQL, the filter applied to runs and joined on run id."""
    where, params = _where(con, run_filter)
    steps_of_runs = by_dialect(
        con,
        f"run_steps s JOIN (SELECT id, flow_name FROM runs {where}) r ON s.run_id = r.id",
        # the steps of each run's current version only (see store/clickhouse/schema.py)
        "(SELECT run_id, name, display_name, duration_ms, run_updated_at "
        f"FROM {latest(con, 'run_steps')}) s "
        f"JOIN (SELECT id, flow_name, updated_at FROM {latest(con, 'runs')} {where}) r "
        "ON s.run_id = r.id AND s.run_updated_at = r.updated_at",
    )
    return _rows(
        con,
        f"""
        SELECT r.flow_name AS flow_name, s.name AS step,
               coalesce(max(s.display_name), s.name) AS step_label,
               count(*) AS runs, avg(s.duration_ms) AS avg_ms,
               {_quantile(con, "s.duration_ms", 0.95)} AS p95_ms
        FROM {steps_of_runs}
        WHERE s.duration_ms IS NOT NULL
        GROUP BY r.flow_name, s.name ORDER BY p95_ms DESC, r.flow_name, step LIMIT $limit""",
        merged(params, {"limit": limit}),
    )


def _quantiles(con, column: str, levels: tuple[float, ...]) -> str:
    """SQL: the list of a column's continuous quantiles at fixed levels, interpolated linearly
    between the two nearest values (DuckDB's quantile_cont; ClickHouse's exact inclusive
    quantiles, R's type 7, interpolate the same way)."""
    written = ", ".join(repr(float(level)) for level in levels)
    return by_dialect(
        con,
        f"quantile_cont({column}, [{written}])",
        f"quantilesExactInclusive({written})({column})",
    )


def _quantile(con, column: str, level: float) -> str:
    """SQL: one continuous quantile of a column (see _quantiles)."""
    return by_dialect(
        con,
        f"quantile_cont({column}, {float(level)!r})",
        f"quantileExactInclusive({float(level)!r})({column})",
    )
