"""The runs list: one page of runs, the count of all that match, and the bulk actions on them.

Ordered most recent first, ties broken by id, so every run has one place in the order and paging
never skips or repeats one. A page asks for one row more than it shows to know whether a next page
exists; only the rows on screen ever reach pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd

from runs_store.db import bump_generation
from runs_store.filters import ORDER_BY, RunFilter, build_where

LIST_COLUMNS = ("id, flow_name, status, started_at, duration_ms, failed_step, "
                "failed_step_display, error_message, archived_at, finish_time")
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
STUCK_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class RunsPage:
    rows: pd.DataFrame
    total: int
    offset: int
    limit: int
    has_next: bool

    @property
    def page_count(self) -> int:
        return page_count(self.total, self.limit)

    def position_text(self) -> str:
        """"51-100 of 12,345 runs", as the list's footer says it."""
        noun = "run" if self.total == 1 else "runs"
        if self.rows.empty:
            return f"0 of {self.total:,} {noun}"
        return f"{self.offset + 1:,}-{self.offset + len(self.rows):,} of {self.total:,} {noun}"


def count_runs(con, run_filter: RunFilter) -> int:
    where, params = build_where(run_filter)
    return con.execute(f"SELECT count(*) FROM runs {where}", params).fetchall()[0][0]


def list_runs(con, run_filter: RunFilter, limit: int, offset: int = 0,
              total: int | None = None) -> RunsPage:
    where, params = build_where(run_filter)
    rows = con.execute(
        f"SELECT {LIST_COLUMNS} FROM runs {where} {ORDER_BY} LIMIT ? OFFSET ?",
        params + [limit + 1, offset]).df()
    if total is None:
        total = count_runs(con, run_filter)
    return RunsPage(rows.head(limit).reset_index(drop=True), total, offset, limit,
                    has_next=len(rows) > limit)


def page_offset(page: int, limit: int) -> int:
    """Rows before the first one of a 1-based page."""
    return (max(1, page) - 1) * limit


def page_count(total: int, limit: int) -> int:
    return max(1, -(-total // limit))


def count_stuck_running(con, run_filter: RunFilter, now: datetime,
                        after: timedelta = STUCK_AFTER) -> int:
    """Runs in the view still RUNNING more than `after` after they started (engine hiccups)."""
    stuck = run_filter.with_(statuses=("RUNNING",))
    where, params = build_where(stuck)
    where = (where + " AND " if where else "WHERE ") + "started_at < ?"
    return con.execute(f"SELECT count(*) FROM runs {where}",
                       params + [now - after]).fetchall()[0][0]


def failed_step_label(display_name, name) -> str:
    """What the Failed Step column shows: the display name, else the name, else a dash."""
    for text in (display_name, name):
        if isinstance(text, str) and text.strip():
            return text
    return "-"


def flow_names(con) -> list[str]:
    return [row[0] for row in con.execute(
        "SELECT DISTINCT flow_name FROM runs ORDER BY flow_name").fetchall()]


def newest_start(con):
    """The most recent start time in the store, or None when it is empty."""
    return con.execute("SELECT max(started_at) FROM runs").fetchall()[0][0]


def total_runs(con) -> int:
    return con.execute("SELECT count(*) FROM runs").fetchall()[0][0]


def set_archived(con, run_ids: list[str], archived: bool) -> int:
    """Archives (or restores) the given runs; returns how many changed.

    The archive time is naive UTC like every time in the store (DuckDB's own now() would be in
    the server's timezone once cast to TIMESTAMP).
    """
    if not run_ids:
        return 0
    condition = "archived_at IS NULL" if archived else "archived_at IS NOT NULL"
    when = datetime.now(timezone.utc).replace(tzinfo=None) if archived else None
    con.execute("BEGIN TRANSACTION")
    try:
        changed = con.execute(
            "UPDATE runs SET archived_at = ?::TIMESTAMP "
            f"WHERE id IN (SELECT unnest(?::VARCHAR[])) AND {condition}",
            [when, list(run_ids)]).fetchall()[0][0]
        bump_generation(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return changed
