"""What a view of the runs is narrowed to, and the SQL WHERE clause that narrows it.

`RunFilter` is the one frozen object a page, the CLI's export and the insights build; `build_where`
turns it into a SQL fragment and its parameters. Values only ever travel as parameters.

The list order is defined here too: newest first, the id breaking ties, so every run has one
place. `RunKey` is a run's place in that order and `build_seek` the condition "this place and every
one after it", which pages the list by key instead of by counting rows to skip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from runs_store.domain.agents import FAILED as CALL_FAILED
from runs_store.domain.agents import UNFINISHED as CALL_UNFINISHED
from runs_store.store.agent_facts import NO_MODEL, NO_STATUS, model_label_sql, status_label_sql

PAGE_SIZES = (10, 25, 50, 100)
# The outcomes a tool call filter picks (a call that succeeded is not a drill-down of any number).
TOOL_OUTCOMES = (CALL_FAILED, CALL_UNFINISHED)
DEFAULT_PAGE_SIZE = 25

DATE_PRESETS: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "all": None,
}
PRESET_LABELS = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "all": "All time",
    "custom": "Custom range",
}
DEFAULT_PRESET = "7d"
# The runs list and its export: newest first, the id breaking ties so that pages never overlap.
ORDER_BY = "ORDER BY started_at DESC, id DESC"
# The same order read from its other end (the oldest run first), to reach the last pages cheaply.
REVERSED_ORDER_BY = "ORDER BY started_at ASC, id ASC"


@dataclass(frozen=True)
class RunFilter:
    flows: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    since: datetime | None = None  # inclusive, naive UTC
    until: datetime | None = None  # exclusive, naive UTC
    include_archived: bool = False
    search: str = ""
    failed_steps: tuple[str, ...] = ()  # step names
    signature: str = ""
    flow_version_ids: tuple[str, ...] = ()
    # The agents' filters (the facts of store/agent_facts.py, in the run's current version):
    tool: str = ""  # runs with a call to this tool (with tool_outcome: a call that ended so)
    tool_outcome: str = ""  # runs with a tool call that ended so: one of TOOL_OUTCOMES
    agent_model: str = ""  # runs with an agent on this model (provider/model); with a tool or
    # an outcome, the call was this model's agent's
    agent_status: str = ""  # runs with an agent step that ended in this status (or NO_STATUS)
    max_steps: bool = False  # runs with an agent step that stopped at maxSteps (with
    # agent_status: that step ended in that status)
    tool_calls: int | None = None  # runs whose agent steps made this many tool calls in all

    def with_(self, **changes) -> RunFilter:
        return replace(self, **changes)


@dataclass(frozen=True, order=True)
class RunKey:
    """A run's place in the list order: its start, then its id (both NOT NULL, the id unique).

    Keys compare as the list sorts them read backwards: a later key comes earlier in the list.
    """

    started_at: datetime
    id: str


def build_seek(key: RunKey, alias: str = "") -> tuple[str, list]:
    """(condition, parameters) keeping the run at `key` and every run after it in the list order.

    `started_at <= t` on its own lets DuckDB skip row groups by their min/max; the OR then keeps,
    of the runs that start exactly at t, those whose id is not greater (ties break by id DESC).
    """
    col = f"{alias}." if alias else ""
    return (
        f"{col}started_at <= ? AND ({col}started_at < ? OR {col}id <= ?)",
        [key.started_at, key.started_at, key.id],
    )


def build_day(day: date, alias: str = "") -> tuple[str, list]:
    """(condition, parameters) keeping the runs that start on this (UTC) day."""
    col = f"{alias}." if alias else ""
    start = datetime.combine(day, time.min)
    return f"{col}started_at >= ? AND {col}started_at < ?", [start, start + timedelta(days=1)]


def where_also(where: tuple[str, list], *conditions: tuple[str, list]) -> tuple[str, list]:
    """A `build_where` result narrowed by more (condition, parameters) pairs, all ANDed."""
    sql, params = where
    clauses = [sql[len("WHERE ") :]] if sql else []
    params = list(params)
    for condition, values in conditions:
        clauses.append(f"({condition})")
        params.extend(values)
    return ("WHERE " + " AND ".join(clauses), params) if clauses else ("", params)


def preset_window(preset: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(since, until) for a named preset; `now` is rounded down to the minute so caches hit."""
    span = DATE_PRESETS[preset]
    if span is None:
        return None, None
    return now.replace(second=0, microsecond=0) - span, None


def day_window(first: date, last: date, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """A custom range of whole days in the user's timezone, as naive UTC (since, until).

    Each end is the local midnight of its own day, so a range across a daylight-saving change
    still covers exactly its days.
    """
    return _utc_midnight(first, tz), _utc_midnight(last + timedelta(days=1), tz)


def _utc_midnight(day: date, tz: tzinfo) -> datetime:
    local = datetime.combine(day, time.min, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


# The escape character of the search's LIKE patterns: not a backslash, which ClickHouse's LIKE
# would also read as one (and its string literals as the start of an escape) where DuckDB's
# reads it as itself. With `ESCAPE '!'` both engines read a pattern alike.
LIKE_ESCAPE = "!"


def _escape_like(text: str) -> str:
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def _one_of(values: tuple[str, ...]) -> str:
    """`(?, ?, ...)`: a list of values each bound on its own, as both engines read `IN`."""
    return "(" + ", ".join("?" for _ in values) + ")"


# Runs (in their current version) with an agent fact meeting conditions: the facts of
# store/agent_facts.py, each row stamped with the version of the run it was read from.
FACTS_OF_RUNS = (
    "({col}id, {col}updated_at) IN (SELECT run_id, run_updated_at FROM {table} WHERE {conditions})"
)
# Runs whose agent steps made this many tool calls in all (a step counted once, should a store
# hold a row twice), as the Agents view's "Tool calls per run" counts them.
CALLS_OF_RUNS = (
    "({col}id, {col}updated_at) IN (SELECT run_id, run_updated_at FROM "
    "(SELECT DISTINCT run_id, run_updated_at, position, tool_calls FROM agent_steps) AS s "
    "GROUP BY run_id, run_updated_at HAVING sum(tool_calls) = ?)"
)


def _tool_condition(run_filter: RunFilter, col: str) -> tuple[str, list]:
    """The runs with one tool call that meets the filter's tool, outcome and model."""
    conditions, values = [], []
    if run_filter.tool:
        conditions.append("c.tool = ?")
        values.append(run_filter.tool)
    if run_filter.tool_outcome:
        conditions.append("c.outcome = ?")
        values.append(run_filter.tool_outcome)
    if run_filter.agent_model:
        conditions.append(f"{model_label_sql('c', '?')} = ?")
        values += [NO_MODEL, run_filter.agent_model]
    sql = FACTS_OF_RUNS.format(
        col=col, table="agent_tool_calls AS c", conditions=" AND ".join(conditions)
    )
    return sql, values


def _agent_condition(run_filter: RunFilter, col: str) -> tuple[str, list]:
    """The runs with one agent step that meets the filter's model, status and maxSteps."""
    conditions, values = [], []
    if run_filter.agent_model:
        conditions.append(f"{model_label_sql('a', '?')} = ?")
        values += [NO_MODEL, run_filter.agent_model]
    if run_filter.agent_status:
        conditions.append(f"{status_label_sql('a', '?')} = ?")
        values += [NO_STATUS, run_filter.agent_status]
    if run_filter.max_steps:
        conditions.append("a.hit_max_steps")
    sql = FACTS_OF_RUNS.format(
        col=col, table="agent_steps AS a", conditions=" AND ".join(conditions)
    )
    return sql, values


def agent_filtered(run_filter: RunFilter) -> bool:
    """Whether the filter narrows by an agent fact (which only raw runs hold)."""
    return bool(
        run_filter.tool
        or run_filter.tool_outcome
        or run_filter.agent_model
        or run_filter.agent_status
        or run_filter.max_steps
        or run_filter.tool_calls is not None
    )


def build_where(run_filter: RunFilter, alias: str = "") -> tuple[str, list]:
    """(`WHERE ...` fragment or "", parameters) for the filter. The fragment is SQL that DuckDB
    and ClickHouse read alike (lists as `IN (?, ...)`, the search as `ILIKE ? ESCAPE '!'`)."""
    col = f"{alias}." if alias else ""
    clauses: list[str] = []
    params: list = []

    def add(sql: str, *values) -> None:
        clauses.append(sql)
        params.extend(values)

    def add_in(column: str, values: tuple[str, ...]) -> None:
        add(f"{col}{column} IN {_one_of(values)}", *values)

    if not run_filter.include_archived:
        add(f"{col}archived_at IS NULL")
    if run_filter.flows:
        add_in("flow_name", run_filter.flows)
    if run_filter.statuses:
        add_in("status", run_filter.statuses)
    if run_filter.since is not None:
        add(f"{col}started_at >= ?", run_filter.since)
    if run_filter.until is not None:
        add(f"{col}started_at < ?", run_filter.until)
    if run_filter.failed_steps:
        add_in("failed_step", run_filter.failed_steps)
    if run_filter.signature:
        add(f"{col}error_signature = ?", run_filter.signature)
    if run_filter.flow_version_ids:
        add_in("flow_version_id", run_filter.flow_version_ids)
    if run_filter.tool or run_filter.tool_outcome:
        condition, values = _tool_condition(run_filter, col)
        add(condition, *values)
    if run_filter.agent_model or run_filter.agent_status or run_filter.max_steps:
        condition, values = _agent_condition(run_filter, col)
        add(condition, *values)
    if run_filter.tool_calls is not None:
        add(CALLS_OF_RUNS.format(col=col), run_filter.tool_calls)
    if run_filter.search.strip():
        pattern = f"%{_escape_like(run_filter.search.strip())}%"
        like = f"ILIKE ? ESCAPE '{LIKE_ESCAPE}'"
        add(
            f"({col}id {like} OR {col}failed_step {like} "
            f"OR {col}failed_step_display {like} "
            f"OR {col}error_message {like})",
            pattern,
            pattern,
            pattern,
            pattern,
        )
    if not clauses:
        return "", []
    return "WHERE " + " AND ".join(clauses), params
