"""The runs list: one page of runs, the count of all that match, and the bulk actions on them.

Ordered most recent first, ties broken by id, so every run has one place in the order and paging
never skips or repeats one. Pages are found by key, never by OFFSET over whole rows: a page starts
at a run's key (started_at, id) and asks for `limit + 1` rows from there, the one more telling
whether a next page exists (and giving its first key). A page known only by its number (a deep
link, "page 1,000", "last page") first finds its first key by skipping over key columns only:
from whichever end of the list is nearer, and, far from both ends, inside the one day that holds
it (`DayCounts` says which). Only the rows on screen ever reach pandas.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate

import pandas as pd

from runs_store import settings
from runs_store.queries.filters import (
    ORDER_BY,
    REVERSED_ORDER_BY,
    RunFilter,
    RunKey,
    build_day,
    build_seek,
    build_where,
    where_also,
)
from runs_store.queries.named_params import named
from runs_store.store import backend, rollups
from runs_store.store.backend import CLICKHOUSE, dialect, latest
from runs_store.store.database import bump_generation, transaction

LIST_COLUMNS = (
    "id, flow_name, status, started_at, duration_ms, failed_step, "
    "failed_step_display, error_message, archived_at, finish_time"
)
STUCK_AFTER = timedelta(hours=1)
# A position this close to an end of the list is found by skipping keys from that end: DuckDB
# keeps the few keys it needs in a top-N heap and skips row groups by their min/max. Farther in,
# it would sort every key of the view, so the day that holds the position is looked up instead.
NEAR_END = 1_000


@dataclass(frozen=True)
class RunsPage:
    rows: pd.DataFrame
    total: int
    offset: int
    limit: int
    has_next: bool
    next_key: RunKey | None = None  # the first run of the next page, when there is one

    @property
    def page_count(self) -> int:
        return page_count(self.total, self.limit)

    def position_text(self) -> str:
        """ "51-100 of 12,345 runs", as the list's footer says it."""
        noun = "run" if self.total == 1 else "runs"
        if self.rows.empty:
            return f"0 of {self.total:,} {noun}"
        return f"{self.offset + 1:,}-{self.offset + len(self.rows):,} of {self.total:,} {noun}"


@dataclass(frozen=True)
class DayCounts:
    """How many runs of a view start on each (UTC) day, newest day first.

    Its sum is the view's total, and its running sum says which day holds the run at any
    position of the list, so a deep page skips keys inside one day instead of the whole view.
    """

    days: tuple[tuple[date, int], ...] = ()

    @property
    def total(self) -> int:
        return sum(count for _day, count in self.days)

    def locate(self, position: int) -> tuple[date, int, int]:
        """(day, index of the run among that day's runs newest first, runs that day) for the
        run at a 0-based position of the list."""
        if not 0 <= position < self.total:
            raise IndexError(f"position {position} is outside a list of {self.total}")
        ends = list(accumulate(count for _day, count in self.days))
        found = bisect_right(ends, position)
        day, count = self.days[found]
        return day, position - (ends[found] - count), count


def count_runs(con, run_filter: RunFilter) -> int:
    return _count(con, *build_where(run_filter))


def _rows(con, sql: str, params: list) -> list[tuple]:
    """The rows of SQL written with positional `?` placeholders, on either engine."""
    return backend.rows(con, *named(sql, params, "p"))


def _count(con, where: str, params: list) -> int:
    return _rows(con, f"SELECT count(*) FROM {latest(con, 'runs')} {where}", params)[0][0]


def count_days(con, run_filter: RunFilter) -> DayCounts:
    """The view's runs counted per day (one GROUP BY over the start column): its total, and
    where in the list each day's runs are."""
    where, params = build_where(run_filter)
    found = _rows(
        con,
        f"SELECT started_at::DATE AS day, count(*) FROM {latest(con, 'runs')} {where} "
        "GROUP BY day ORDER BY day DESC",
        params,
    )
    return DayCounts(tuple((day, count) for day, count in found))


def list_runs(
    con,
    run_filter: RunFilter,
    limit: int,
    offset: int = 0,
    total: int | None = None,
    days: DayCounts | None = None,
) -> RunsPage:
    """The `limit` runs from 0-based position `offset` of the list, and whether more follow.

    `total` and `days`, when given, must describe this filter on this state of the data (the
    Runs page passes its cached `count_days`); either is counted when missing and needed.
    """
    if total is None:
        total = days.total if days is not None else count_runs(con, run_filter)
    start = None
    if offset > 0:
        start = key_at(con, run_filter, offset, total, days)
        if start is None:
            return RunsPage(_no_rows(con), total, offset, limit, has_next=False)
    return _page_from(con, run_filter, start, limit, offset, total)


def next_page(con, run_filter: RunFilter, page: RunsPage) -> RunsPage:
    """The page after `page`, by key alone: the runs from its `next_key` on."""
    offset = page.offset + page.limit
    if page.next_key is None:
        return RunsPage(page.rows.iloc[0:0], page.total, offset, page.limit, has_next=False)
    return _page_from(con, run_filter, page.next_key, page.limit, offset, page.total)


def key_at(
    con, run_filter: RunFilter, position: int, total: int, days: DayCounts | None = None
) -> RunKey | None:
    """The key of the run at a 0-based position of the list, or None past either end.

    Only the key columns are read: from the nearer end when the position is close to one, else
    inside the day that holds it (from that day's nearer end).
    """
    if not 0 <= position < total:
        return None
    where = build_where(run_filter)
    from_end = total - 1 - position
    if min(position, from_end) <= NEAR_END:
        return _skip_keys(con, where, position, from_end)
    day, index, count = (days or count_days(con, run_filter)).locate(position)
    return _skip_keys(con, where_also(where, build_day(day)), index, count - 1 - index)


def _skip_keys(con, where: tuple[str, list], from_start: int, from_end: int) -> RunKey | None:
    """The key `from_start` runs into the listed runs, counted from whichever end is nearer."""
    sql, params = where
    order, skip = (
        (ORDER_BY, from_start) if from_start <= from_end else (REVERSED_ORDER_BY, from_end)
    )
    found = _rows(
        con,
        f"SELECT started_at, id FROM {latest(con, 'runs')} {sql} {order} LIMIT 1 OFFSET ?",
        [*params, skip],
    )
    return RunKey(*found[0]) if found else None


def _page_from(
    con, run_filter: RunFilter, start: RunKey | None, limit: int, offset: int, total: int
) -> RunsPage:
    where = build_where(run_filter)
    sql, params = where_also(where, build_seek(start)) if start is not None else where
    rows = backend.frame(
        con,
        *named(
            f"SELECT {LIST_COLUMNS} FROM {latest(con, 'runs')} {sql} {ORDER_BY} LIMIT ?",
            [*params, limit + 1],
            "p",
        ),
    )
    next_key = _key_of(rows, limit) if len(rows) > limit else None
    return RunsPage(
        rows.head(limit).reset_index(drop=True),
        total,
        offset,
        limit,
        has_next=next_key is not None,
        next_key=next_key,
    )


def _key_of(rows: pd.DataFrame, index: int) -> RunKey:
    started = pd.Timestamp(rows["started_at"].iloc[index]).to_pydatetime()
    return RunKey(started, str(rows["id"].iloc[index]))


def _no_rows(con) -> pd.DataFrame:
    return backend.frame(con, f"SELECT {LIST_COLUMNS} FROM {latest(con, 'runs')} LIMIT 0")


def page_offset(page: int, limit: int) -> int:
    """Rows before the first one of a 1-based page."""
    return (max(1, page) - 1) * limit


def page_count(total: int, limit: int) -> int:
    return max(1, -(-total // limit))


def count_stuck_running(
    con, run_filter: RunFilter, now: datetime, after: timedelta = STUCK_AFTER
) -> int:
    """Runs in the view still RUNNING more than `after` after they started (engine hiccups)."""
    stuck = run_filter.with_(statuses=("RUNNING",))
    return _count(con, *where_also(build_where(stuck), ("started_at < ?", [now - after])))


def failed_step_label(display_name, name) -> str:
    """What the Failed Step column shows: the display name, else the name, else a dash."""
    for text in (display_name, name):
        if isinstance(text, str) and text.strip():
            return text
    return "-"


def flow_names(con) -> list[str]:
    sql = f"SELECT DISTINCT flow_name FROM {latest(con, 'runs')} ORDER BY flow_name"
    return [row[0] for row in backend.rows(con, sql)]


def newest_start(con):
    """The most recent start time in the store, or None when it is empty (the newest start
    read, not max(): ClickHouse's max of no rows is 1970, not NULL)."""
    found = backend.rows(
        con, f"SELECT started_at FROM {latest(con, 'runs')} ORDER BY started_at DESC LIMIT 1"
    )
    return found[0][0] if found else None


def total_runs(con) -> int:
    return backend.rows(con, f"SELECT count(*) FROM {latest(con, 'runs')}")[0][0]


def set_archived(con, run_ids: list[str], archived: bool) -> int:
    """Archives (or restores) the given runs; returns how many changed.

    The archive time is naive UTC like every time in the store (DuckDB's own now() would be in
    the server's timezone once cast to TIMESTAMP).
    """
    if not run_ids:
        return 0
    condition = "archived_at IS NULL" if archived else "archived_at IS NOT NULL"
    when = datetime.now(UTC).replace(tzinfo=None) if archived else None
    if dialect(con) == CLICKHOUSE:
        return _set_archived_clickhouse(con, list(run_ids), condition, when)
    with transaction(con):
        changed = con.execute(
            "UPDATE runs SET archived_at = ?::TIMESTAMP "
            f"WHERE id IN (SELECT unnest(?::VARCHAR[])) AND {condition}",
            [when, list(run_ids)],
        ).fetchall()[0][0]
        rollups.refresh(con, _hours_of(con, list(run_ids)))
        bump_generation(con)
    return changed


def _hours_of(con, run_ids: list[str]) -> list[datetime]:
    """The UTC hours the given runs started in (their rollups change with them)."""
    hour = backend.by_dialect(con, rollups.DUCKDB_HOUR, rollups.CLICKHOUSE_HOUR)
    found = backend.rows(
        con,
        f"SELECT DISTINCT {hour} FROM {latest(con, 'runs')} WHERE "
        + backend.by_dialect(con, "list_contains($ids, id)", "has($ids, id)"),
        {"ids": run_ids},
    )
    return [row[0] for row in found]


def retention_notice(con, run_filter: RunFilter) -> str | None:
    """What the Runs page says when the filter's range reaches before the retention boundary
    (the oldest raw hour kept): the runs there are gone, their counts are in the rollups.
    None when the whole range has raw runs."""
    kept_from = rollups.boundary(con)
    if kept_from is None or (run_filter.since is not None and run_filter.since >= kept_from):
        return None
    days = settings.current().retention_days
    since = f"{kept_from:%Y-%m-%d %H:%M} UTC"
    kept = f"raw runs are kept {days} days" if days else f"raw runs are kept from {since}"
    if run_filter.until is not None and run_filter.until <= kept_from:
        return (
            f"This range is past retention ({kept}); Insights still shows its counts from rollups."
        )
    return (
        f"Runs before {since} are past retention ({kept}); Insights still shows their counts "
        "from rollups."
    )


def _set_archived_clickhouse(con, run_ids: list[str], condition: str, when: datetime | None) -> int:
    """ClickHouse has no UPDATE in place nor transactions: each run that changes is written
    again as it is, with the same version (`updated_at`) and its new archive time. Of rows with
    one version ReplacingMergeTree keeps the one inserted last, so reads (FINAL) see the new
    archive time and the run's steps (kept by that version) stay its steps. The statement
    copies the newest version of each run as it is read, so it cannot bring back an older one;
    a run loaded again later comes as a strictly newer version, as on DuckDB."""
    from runs_store.store.clickhouse.schema import bump_generation as bump

    found = "id IN $ids AND " + condition
    changing = [
        run_id
        for (run_id,) in backend.rows(
            con, f"SELECT id FROM {latest(con, 'runs')} WHERE {found}", {"ids": run_ids}
        )
    ]
    if not changing:
        return 0
    archived_at = "$when" if when is not None else "NULL"
    params: dict = {"ids": changing} | ({"when": when} if when is not None else {})
    con.command(
        *backend.clickhouse_params(
            # the rows picked in a subquery: in ClickHouse a SELECT's alias (archived_at, the
            # new value) would also be what its own WHERE reads
            f"INSERT INTO runs SELECT * REPLACE ({archived_at} AS archived_at) "
            f"FROM (SELECT * FROM {latest(con, 'runs')} WHERE {found})",
            params,
        )
    )
    rollups.refresh(con, _hours_of(con, changing))
    bump(con)
    return len(changing)
