"""The filter and its SQL: build_where as a pure function (table-driven, like datasette's
test_build_where), the date windows, and every filter run against real databases and checked
against an independent Python decision over all their runs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from backends import BACKENDS, chdb_beside
from factories import simple_run
from list_oracle import ids, keeps, load_runs, matching
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.queries.filters import (
    DATE_PRESETS,
    DEFAULT_PRESET,
    ORDER_BY,
    PRESET_LABELS,
    REVERSED_ORDER_BY,
    RunFilter,
    RunKey,
    build_day,
    build_seek,
    build_where,
    day_window,
    preset_window,
    where_also,
)
from runs_store.queries.named_params import named, named_where
from runs_store.store.backend import latest, open_location
from runs_store.store.backend import rows as backend_rows
from runs_store.store.database import open_db

SINCE = datetime(2026, 11, 1, 8, 30)
UNTIL = datetime(2026, 11, 8, 0, 0)
IN_1, IN_2 = "IN (?)", "IN (?, ?)"
SEARCH_SQL = (
    "(id ILIKE ? ESCAPE '!' OR failed_step ILIKE ? ESCAPE '!' "
    "OR failed_step_display ILIKE ? ESCAPE '!' OR error_message ILIKE ? ESCAPE '!')"
)


# ------------------------------------------------------------------ build_where, pure

WHERE_CASES = [
    ("nothing: archived runs are hidden", RunFilter(), "WHERE archived_at IS NULL", []),
    ("archived shown: no condition at all", RunFilter(include_archived=True), "", []),
    (
        "flows",
        RunFilter(flows=("A", "B")),
        f"WHERE archived_at IS NULL AND flow_name {IN_2}",
        ["A", "B"],
    ),
    (
        "statuses",
        RunFilter(statuses=("FAILED",)),
        f"WHERE archived_at IS NULL AND status {IN_1}",
        ["FAILED"],
    ),
    ("since", RunFilter(since=SINCE), "WHERE archived_at IS NULL AND started_at >= ?", [SINCE]),
    ("until", RunFilter(until=UNTIL), "WHERE archived_at IS NULL AND started_at < ?", [UNTIL]),
    (
        "failed steps",
        RunFilter(failed_steps=("step_2",)),
        f"WHERE archived_at IS NULL AND failed_step {IN_1}",
        ["step_2"],
    ),
    (
        "error signature",
        RunFilter(signature="sig-1"),
        "WHERE archived_at IS NULL AND error_signature = ?",
        ["sig-1"],
    ),
    (
        "flow versions",
        RunFilter(flow_version_ids=("v1", "v2")),
        f"WHERE archived_at IS NULL AND flow_version_id {IN_2}",
        ["v1", "v2"],
    ),
    (
        "search",
        RunFilter(search="timeout"),
        f"WHERE archived_at IS NULL AND {SEARCH_SQL}",
        ["%timeout%"] * 4,
    ),
    (
        "search is trimmed",
        RunFilter(search="  timeout \t"),
        f"WHERE archived_at IS NULL AND {SEARCH_SQL}",
        ["%timeout%"] * 4,
    ),
    ("blank search adds nothing", RunFilter(search="   "), "WHERE archived_at IS NULL", []),
    (
        "everything combined, in a fixed order",
        RunFilter(
            flows=("A",),
            statuses=("FAILED", "TIMEOUT"),
            since=SINCE,
            until=UNTIL,
            include_archived=True,
            search="x",
            failed_steps=("step_1",),
            signature="s",
            flow_version_ids=("v",),
        ),
        (
            f"WHERE flow_name {IN_1} AND status {IN_2} "
            "AND started_at >= ? AND started_at < ? "
            f"AND failed_step {IN_1} AND error_signature = ? AND flow_version_id {IN_1} "
            f"AND {SEARCH_SQL}"
        ),
        ["A", "FAILED", "TIMEOUT", SINCE, UNTIL, "step_1", "s", "v"] + ["%x%"] * 4,
    ),
]


# The agents' filters: runs with such a fact in their current version (store/agent_facts.py).
FACTS_SQL = "(id, updated_at) IN (SELECT run_id, run_updated_at FROM {} WHERE {})"
CALLS_SQL = FACTS_SQL.format("agent_tool_calls AS c", "{}")
STEPS_SQL = FACTS_SQL.format("agent_steps AS a", "{}")
MODEL_OF = (
    "CASE WHEN {0}.model IS NULL THEN ? WHEN {0}.provider IS NULL THEN {0}.model "
    "ELSE concat({0}.provider, '/', {0}.model) END = ?"
)
CALL_COUNT_SQL = (
    "(id, updated_at) IN (SELECT run_id, run_updated_at FROM "
    "(SELECT DISTINCT run_id, run_updated_at, position, tool_calls FROM agent_steps) AS s "
    "GROUP BY run_id, run_updated_at HAVING sum(tool_calls) = ?)"
)
WHERE_CASES += [
    (
        "a tool",
        RunFilter(tool="exa_search"),
        "WHERE archived_at IS NULL AND " + CALLS_SQL.format("c.tool = ?"),
        ["exa_search"],
    ),
    (
        "a failed tool call",
        RunFilter(tool_outcome="failed", include_archived=True),
        "WHERE " + CALLS_SQL.format("c.outcome = ?"),
        ["failed"],
    ),
    (
        "an unfinished call to a tool, with a flow",
        RunFilter(flows=("A",), tool="exa_search", tool_outcome="unfinished"),
        f"WHERE archived_at IS NULL AND flow_name {IN_1} AND "
        + CALLS_SQL.format("c.tool = ? AND c.outcome = ?"),
        ["A", "exa_search", "unfinished"],
    ),
    (
        "a failed call by an agent on a model: the same call, and an agent step on the model",
        RunFilter(agent_model="openai/gpt-4o", tool_outcome="failed", include_archived=True),
        "WHERE "
        + CALLS_SQL.format("c.outcome = ? AND " + MODEL_OF.format("c"))
        + " AND "
        + STEPS_SQL.format(MODEL_OF.format("a")),
        ["failed", "(no model recorded)", "openai/gpt-4o"] * 1
        + ["(no model recorded)", "openai/gpt-4o"],
    ),
    (
        "an agent status that stopped at maxSteps: one agent step",
        RunFilter(agent_status="FAILED", max_steps=True, include_archived=True),
        "WHERE " + STEPS_SQL.format("coalesce(a.agent_status, ?) = ? AND a.hit_max_steps"),
        ["(none recorded)", "FAILED"],
    ),
    (
        "stopped at maxSteps",
        RunFilter(max_steps=True, include_archived=True),
        "WHERE " + STEPS_SQL.format("a.hit_max_steps"),
        [],
    ),
    (
        "no tool calls in all (a number, not a flag: 0 counts)",
        RunFilter(tool_calls=0, include_archived=True),
        "WHERE " + CALL_COUNT_SQL,
        [0],
    ),
]


def test_a_model_filter_matches_the_agents_view_name_and_binds_its_values():
    sql, params = build_where(RunFilter(agent_model="openai/gpt-4o", include_archived=True))
    assert sql.startswith("WHERE (id, updated_at) IN (SELECT run_id, run_updated_at FROM ")
    assert "concat(a.provider, '/', a.model)" in sql and "gpt-4o" not in sql
    assert params == ["(no model recorded)", "openai/gpt-4o"]


def test_an_agent_filter_names_the_outer_run_by_its_alias_and_binds_its_values():
    hostile = "'; DROP TABLE runs; --"
    run_filter = RunFilter(
        tool=hostile,
        tool_outcome="failed",
        agent_model=hostile,
        agent_status=hostile,
        max_steps=True,
        tool_calls=3,
    )
    sql, params = build_where(run_filter, "r")
    assert sql.count("(r.id, r.updated_at) IN (SELECT run_id, run_updated_at") == 3
    assert "DROP" not in sql and sql.count("?") == len(params)
    assert params.count(hostile) == 4 and 3 in params


@pytest.mark.parametrize(
    "name, run_filter, sql, params", WHERE_CASES, ids=[case[0] for case in WHERE_CASES]
)
def test_build_where_gives_this_sql_and_these_parameters(name, run_filter, sql, params):
    assert build_where(run_filter) == (sql, params)


def test_an_alias_prefixes_every_column():
    everything = RunFilter(
        flows=("A",),
        statuses=("FAILED",),
        since=SINCE,
        until=UNTIL,
        search="x",
        failed_steps=("s",),
        signature="g",
        flow_version_ids=("v",),
    )
    plain, params = build_where(everything)
    aliased, aliased_params = build_where(everything, alias="r")
    columns = (
        "archived_at",
        "flow_name",
        "status",
        "started_at",
        "failed_step",
        "failed_step_display",
        "error_signature",
        "flow_version_id",
        "id",
        "error_message",
    )
    for column in columns:
        assert re.search(rf"(?<![\w.]){column}\b", plain), column
        assert not re.search(rf"(?<![\w.]){column}\b", aliased), f"{column} left unprefixed"
        assert f"r.{column}" in aliased
    assert aliased_params == params


@pytest.mark.parametrize(
    "search, pattern",
    [
        ("50%", "%50!%%"),
        ("step_2", "%step!_2%"),
        ("a!b", "%a!!b%"),
        ("%_!", "%!%!_!!%"),
        ("a\\b", "%a\\b%"),  # a backslash is itself: no engine reads it as an escape here
        ("plain", "%plain%"),
    ],
)
def test_search_escapes_like_wildcards_and_the_escape_character(search, pattern):
    sql, params = build_where(RunFilter(search=search, include_archived=True))
    assert params == [pattern] * 4
    assert sql.count("ESCAPE '!'") == 4


HOSTILE = ["'; DROP TABLE runs; --", "O'Brien", 'say "hi"', "x) OR (1=1", "%' OR '1'='1"]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_only_travel_as_parameters_never_in_the_sql_text(value):
    run_filter = RunFilter(
        flows=(value,),
        statuses=(value,),
        failed_steps=(value,),
        signature=value,
        flow_version_ids=(value,),
        search=value,
        since=SINCE,
        until=UNTIL,
    )
    sql, params = build_where(run_filter)
    assert value not in sql and value.strip() not in sql
    assert str(SINCE) not in sql and SINCE.isoformat() not in sql
    assert sql.count("?") == len(params)
    assert params.count(value) == 5  # flows, statuses, failed steps, signature, flow versions
    assert SINCE in params and UNTIL in params


def test_with_changes_one_field_and_leaves_the_filter_frozen():
    base = RunFilter(flows=("A",), search="x")
    changed = base.with_(statuses=("RUNNING",))
    assert changed.statuses == ("RUNNING",) and changed.flows == ("A",) and changed.search == "x"
    assert base.statuses == ()
    with pytest.raises(AttributeError):
        base.search = "y"  # type: ignore[misc]


# ------------------------------------------------------------------ the list order and its keys

KEY = RunKey(datetime(2026, 11, 2, 10, 0, 0, 1000), "run-42")
SEEK = "started_at <= ? AND (started_at < ? OR id <= ?)"
DAY = date(2026, 11, 2)
DAY_SQL = "started_at >= ? AND started_at < ?"
DAY_PARAMS = [datetime(2026, 11, 2), datetime(2026, 11, 3)]


@pytest.mark.parametrize(
    "name, built, sql, params",
    [
        (
            "a key and every run after it",
            build_seek(KEY),
            SEEK,
            [KEY.started_at, KEY.started_at, "run-42"],
        ),
        (
            "the same, aliased",
            build_seek(KEY, "r"),
            "r.started_at <= ? AND (r.started_at < ? OR r.id <= ?)",
            [KEY.started_at, KEY.started_at, "run-42"],
        ),
        ("one UTC day", build_day(DAY), DAY_SQL, DAY_PARAMS),
        ("nothing narrowed", where_also(("", [])), "", []),
        ("a filter narrowed by nothing", where_also(("WHERE a = ?", [1])), "WHERE a = ?", [1]),
        (
            "no filter, one condition",
            where_also(("", []), build_day(DAY)),
            f"WHERE ({DAY_SQL})",
            DAY_PARAMS,
        ),
        (
            "a filter narrowed twice, parameters in order",
            where_also(
                build_where(RunFilter(statuses=("FAILED",))), build_day(DAY), build_seek(KEY)
            ),
            (f"WHERE archived_at IS NULL AND status {IN_1} AND ({DAY_SQL}) AND ({SEEK})"),
            ["FAILED", *DAY_PARAMS, KEY.started_at, KEY.started_at, "run-42"],
        ),
    ],
)
def test_key_builders_give_this_sql_and_these_parameters(name, built, sql, params):
    assert built == (sql, params)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_key_travels_as_parameters_only(value):
    sql, params = build_seek(RunKey(SINCE, value))
    assert value not in sql and sql.count("?") == len(params) == 3 and params[2] == value


def test_the_two_orders_are_one_order_read_from_either_end():
    assert ORDER_BY == "ORDER BY started_at DESC, id DESC"
    assert REVERSED_ORDER_BY == "ORDER BY started_at ASC, id ASC"


def test_keys_compare_as_the_list_reads_backwards():
    earlier = RunKey(datetime(2026, 11, 2, 9), "z")
    assert earlier < RunKey(datetime(2026, 11, 2, 10), "a") < RunKey(datetime(2026, 11, 2, 10), "b")


def test_a_seek_keeps_exactly_the_runs_at_or_after_the_key_in_the_list_order(store_con, runs):
    """Against the real database, on each backend: for keys taken from the list (ties included),
    the seek keeps the key's run and every run the Python order puts after it."""
    ordered = sorted(runs, key=lambda run: (run["started_at"], run["id"]), reverse=True)
    for position in (0, 1, len(ordered) // 2, len(ordered) - 1):
        key = RunKey(ordered[position]["started_at"], ordered[position]["id"])
        sql, params = named(*where_also(("", []), build_seek(key)), "seek")
        table = latest(store_con, "runs")
        found = backend_rows(store_con, f"SELECT id FROM {table} {sql} {ORDER_BY}", params)
        assert [run_id for (run_id,) in found] == ids(ordered[position:]), position


# ------------------------------------------------------------------ date windows, pure

NOW = datetime(2026, 11, 24, 15, 42, 37, 123456)
MINUTE = datetime(2026, 11, 24, 15, 42)


@pytest.mark.parametrize(
    "preset, since",
    [
        ("24h", MINUTE - timedelta(hours=24)),
        ("7d", MINUTE - timedelta(days=7)),
        ("30d", MINUTE - timedelta(days=30)),
        ("90d", MINUTE - timedelta(days=90)),
        ("all", None),
    ],
)
def test_a_preset_counts_back_from_now_cut_to_the_minute(preset, since):
    assert preset_window(preset, NOW) == (since, None)


def test_every_preset_has_a_label_and_the_default_is_last_7_days():
    assert set(DATE_PRESETS) | {"custom"} == set(PRESET_LABELS)
    assert PRESET_LABELS[DEFAULT_PRESET] == "Last 7 days"
    assert list(PRESET_LABELS.values()) == [
        "Last 24 hours",
        "Last 7 days",
        "Last 30 days",
        "Last 90 days",
        "All time",
        "Custom range",
    ]


def test_an_unknown_preset_is_an_error_not_a_silent_window():
    with pytest.raises(KeyError):
        preset_window("2w", NOW)


@pytest.mark.parametrize(
    "first, last, tz, since, until",
    [
        (date(2026, 11, 3), date(2026, 11, 3), UTC, datetime(2026, 11, 3), datetime(2026, 11, 4)),
        (date(2026, 11, 1), date(2026, 11, 7), UTC, datetime(2026, 11, 1), datetime(2026, 11, 8)),
        (
            date(2026, 11, 1),
            date(2026, 11, 7),
            ZoneInfo("Asia/Tokyo"),
            datetime(2026, 10, 31, 15),
            datetime(2026, 11, 7, 15),
        ),
        (
            date(2026, 11, 10),
            date(2026, 11, 12),
            ZoneInfo("America/Los_Angeles"),
            datetime(2026, 11, 10, 8),
            datetime(2026, 11, 13, 8),
        ),
        # New York leaves daylight saving time on 2025-11-02: each end keeps its own offset.
        (
            date(2025, 10, 30),
            date(2025, 11, 3),
            ZoneInfo("America/New_York"),
            datetime(2025, 10, 30, 4),
            datetime(2025, 11, 4, 5),
        ),
        # Paris enters summer time on 2026-03-29.
        (
            date(2026, 3, 28),
            date(2026, 3, 29),
            ZoneInfo("Europe/Paris"),
            datetime(2026, 3, 27, 23),
            datetime(2026, 3, 29, 22),
        ),
    ],
)
def test_a_day_range_covers_whole_local_days_as_naive_utc(first, last, tz, since, until):
    assert day_window(first, last, tz) == (since, until)


# ------------------------------------------------------------------ against real databases


@pytest.fixture(scope="module")
def runs(shared_db):
    return load_runs(shared_db)


@pytest.fixture(scope="module")
def connections():
    """One read-only DuckDB connection per database file for the module, closed at its end; and
    the chdb copy of each database file, made once."""
    opened: dict = {"chdb": {}}
    yield opened
    for db, con in opened.items():
        if db != "chdb":
            con.close()


@pytest.fixture(params=BACKENDS)
def select(request, connections):
    """The ids a filter's WHERE clause selects from a database file, on each backend (on chdb,
    from a copy of the file)."""

    def selected_ids(db, run_filter: RunFilter) -> set[str]:
        where, params = named_where(run_filter)
        if request.param == "duckdb":
            if db not in connections:
                connections[db] = duckdb.connect(str(db), read_only=True)
            return {
                found[0]
                for found in backend_rows(connections[db], f"SELECT id FROM runs {where}", params)
            }
        copies = connections["chdb"]
        if db not in copies:
            copies[db] = chdb_beside(request.getfixturevalue("shared_chdb"), db)
        with open_location(copies[db]) as con:
            sql = f"SELECT id FROM {latest(con, 'runs')} {where}"
            return {found[0] for found in backend_rows(con, sql, params)}

    return selected_ids


def typical(runs) -> dict:
    """Values that really occur in the shared database, picked from its runs."""
    failed = sorted((r for r in runs if r["failed_step"]), key=lambda r: r["id"])
    flows = sorted({r["flow_name"] for r in runs})
    starts = sorted(r["started_at"] for r in runs)
    live = sorted((r for r in runs if r["archived_at"] is None), key=lambda r: r["id"])
    versions = sorted({r["flow_version_id"] for r in failed if r["flow_version_id"]})
    return {
        "flows": (flows[0], flows[3]),
        "run": live[len(live) // 2],  # not archived: the id searches leave archived runs out
        "failed": failed[len(failed) // 3],
        "since": starts[len(starts) // 4],  # a real start time: since is inclusive
        "until": starts[3 * len(starts) // 4],  # and until exclusive
        "version": versions[0],
    }


def filter_cases(runs) -> dict[str, RunFilter]:
    t = typical(runs)
    failed = t["failed"]
    return {
        "default": RunFilter(),
        "archived included": RunFilter(include_archived=True),
        "two flows": RunFilter(flows=t["flows"]),
        "failed or quota exceeded": RunFilter(statuses=("FAILED", "QUOTA_EXCEEDED")),
        "since a run's start": RunFilter(since=t["since"]),
        "until a run's start": RunFilter(until=t["until"]),
        "between": RunFilter(since=t["since"], until=t["until"], include_archived=True),
        "failed step": RunFilter(failed_steps=(failed["failed_step"],)),
        "error signature": RunFilter(signature=failed["error_signature"]),
        "flow version": RunFilter(flow_version_ids=(t["version"],), include_archived=True),
        "search a whole id": RunFilter(search=t["run"]["id"], include_archived=True),
        "search part of an id, other case": RunFilter(search=t["run"]["id"][3:9].swapcase()),
        "search a failed step name": RunFilter(search=failed["failed_step"]),
        "search a failed step's display name": RunFilter(search=failed["failed_step_display"]),
        "search error text": RunFilter(search="ETIMEDOUT"),
        "search error text, lower case": RunFilter(search="rate limit"),
        "search an underscore": RunFilter(search="_", include_archived=True),
        "search a percent sign": RunFilter(search="%", include_archived=True),
        "search a backslash": RunFilter(search="\\", include_archived=True),
        "combined": RunFilter(
            flows=t["flows"], statuses=("SUCCEEDED", "FAILED"), since=t["since"], search="e"
        ),
        "nothing matches": RunFilter(search="no run has this text 9f8e7d"),
    }


# An unescaped % would find every run; the shared database has no literal one.
MAY_FIND_NOTHING = {"search a percent sign"}
CASE_NAMES = [
    "default",
    "archived included",
    "two flows",
    "failed or quota exceeded",
    "since a run's start",
    "until a run's start",
    "between",
    "failed step",
    "error signature",
    "flow version",
    "search a whole id",
    "search part of an id, other case",
    "search a failed step name",
    "search a failed step's display name",
    "search error text",
    "search error text, lower case",
    "search an underscore",
    "search a percent sign",
    "search a backslash",
    "combined",
    "nothing matches",
]


def test_the_case_table_is_complete(runs):
    assert list(filter_cases(runs)) == CASE_NAMES


@pytest.mark.parametrize("case", CASE_NAMES)
def test_each_filter_selects_exactly_the_runs_python_selects(select, shared_db, runs, case):
    run_filter = filter_cases(runs)[case]
    expected = {run["id"] for run in runs if keeps(run, run_filter)}
    assert select(shared_db, run_filter) == expected


@pytest.mark.parametrize("case", [name for name in CASE_NAMES if name != "nothing matches"])
def test_each_filter_case_is_a_real_test_neither_everything_nor_nothing(runs, case):
    """Guards the table above: a case that kept every run or none would prove little."""
    run_filter = filter_cases(runs)[case]
    kept = [run for run in runs if keeps(run, run_filter)]
    if case == "archived included":
        assert len(kept) == len(runs)
        assert any(run["archived_at"] is not None for run in runs)
        return
    assert len(kept) < len(runs)
    assert kept or case in MAY_FIND_NOTHING


# ------------------------------------------------------------------ the agents' filters


@pytest.fixture(scope="module")
def facts(shared_db) -> dict:
    """Every agent step and tool call of the runs' current versions, read straight from the
    store's fact tables, with the model as the Agents view names it."""

    def label(provider, model):
        return (
            "(no model recorded)" if model is None else f"{provider}/{model}" if provider else model
        )

    joined = "JOIN runs r ON f.run_id = r.id AND f.run_updated_at = r.updated_at"
    with duckdb.connect(str(shared_db), read_only=True) as con:
        steps = con.execute(
            "SELECT f.run_id, f.provider, f.model, f.agent_status, f.hit_max_steps, f.tool_calls "
            f"FROM agent_steps f {joined}"
        ).fetchall()
        calls = con.execute(
            "SELECT f.run_id, f.tool, f.outcome, f.provider, f.model "
            f"FROM agent_tool_calls f {joined}"
        ).fetchall()
    return {
        "steps": [
            {"run": r, "model": label(p, m), "status": s or "(none recorded)", "hit": h, "calls": n}
            for r, p, m, s, h, n in steps
        ],
        "calls": [
            {"run": r, "tool": t, "outcome": o, "model": label(p, m)} for r, t, o, p, m in calls
        ],
    }


def agent_keeps(facts: dict, run_id: str, f: RunFilter) -> bool:
    """Whether the filter's agent conditions keep a run, decided over its facts in Python: one
    call meets the tool, outcome (and model), one agent step the model, status and maxSteps, and
    the run's agent steps made `tool_calls` calls in all."""
    steps = [step for step in facts["steps"] if step["run"] == run_id]
    calls = [call for call in facts["calls"] if call["run"] == run_id]
    if (f.tool or f.tool_outcome) and not any(
        (not f.tool or c["tool"] == f.tool)
        and (not f.tool_outcome or c["outcome"] == f.tool_outcome)
        and (not f.agent_model or c["model"] == f.agent_model)
        for c in calls
    ):
        return False
    if (f.agent_model or f.agent_status or f.max_steps) and not any(
        (not f.agent_model or a["model"] == f.agent_model)
        and (not f.agent_status or a["status"] == f.agent_status)
        and (not f.max_steps or a["hit"])
        for a in steps
    ):
        return False
    return f.tool_calls is None or (bool(steps) and sum(a["calls"] for a in steps) == f.tool_calls)


def agent_cases(facts: dict, runs: list[dict]) -> dict[str, RunFilter]:
    calls, steps = facts["calls"], facts["steps"]
    flows = {run["id"]: run["flow_name"] for run in runs}
    stopped = sorted(a["run"] for a in steps if a["hit"])
    per_run: dict[str, int] = {}
    for a in steps:
        per_run[a["run"]] = per_run.get(a["run"], 0) + a["calls"]
    failing = sorted({c["tool"] for c in calls if c["outcome"] == "failed"})
    hanging = sorted({c["tool"] for c in calls if c["outcome"] == "unfinished"})
    models = sorted({a["model"] for a in steps})
    flagged = sorted({c["model"] for c in calls if c["outcome"] == "failed"})
    return {
        "a tool": RunFilter(tool=failing[0]),
        "a failed tool call": RunFilter(tool_outcome="failed"),
        "an unfinished tool call": RunFilter(tool_outcome="unfinished", include_archived=True),
        "a failed call to a tool": RunFilter(tool=failing[-1], tool_outcome="failed"),
        "an unfinished call to a tool": RunFilter(tool=hanging[0], tool_outcome="unfinished"),
        "a model": RunFilter(agent_model=models[0]),
        "a failed call by a model's agent": RunFilter(
            agent_model=flagged[-1], tool_outcome="failed"
        ),
        "an agent that completed": RunFilter(agent_status="COMPLETED"),
        "an agent that failed": RunFilter(agent_status="FAILED", include_archived=True),
        "stopped at maxSteps": RunFilter(max_steps=True),
        "failed and stopped at maxSteps, in a flow": RunFilter(
            flows=(flows[stopped[0]],), agent_status="FAILED", max_steps=True
        ),
        "completed and stopped at maxSteps: none": RunFilter(
            agent_status="COMPLETED", max_steps=True
        ),
        "the fewest tool calls in all": RunFilter(tool_calls=min(per_run.values())),
        "three tool calls in all": RunFilter(tool_calls=3),
        "many tool calls in all": RunFilter(tool_calls=max(a["calls"] for a in steps)),
        "everything at once": RunFilter(
            tool=failing[0], tool_outcome="failed", agent_status="FAILED", tool_calls=3
        ),
    }


AGENT_CASES = [
    "a tool",
    "a failed tool call",
    "an unfinished tool call",
    "a failed call to a tool",
    "an unfinished call to a tool",
    "a model",
    "a failed call by a model's agent",
    "an agent that completed",
    "an agent that failed",
    "stopped at maxSteps",
    "failed and stopped at maxSteps, in a flow",
    "completed and stopped at maxSteps: none",
    "the fewest tool calls in all",
    "three tool calls in all",
    "many tool calls in all",
    "everything at once",
]
MAY_KEEP_NONE = {"completed and stopped at maxSteps: none", "everything at once"}


def test_the_agent_case_table_is_complete(facts, runs):
    assert list(agent_cases(facts, runs)) == AGENT_CASES


@pytest.mark.parametrize("case", AGENT_CASES)
def test_each_agent_filter_selects_exactly_the_runs_their_facts_say(
    select, shared_db, runs, facts, case
):
    run_filter = agent_cases(facts, runs)[case]
    expected = {
        run["id"]
        for run in runs
        if keeps(run, run_filter) and agent_keeps(facts, run["id"], run_filter)
    }
    assert select(shared_db, run_filter) == expected
    assert expected or case in MAY_KEEP_NONE
    assert len(expected) < len(runs)


def test_search_finds_a_run_by_its_whole_id_alone(select, shared_db, runs):
    run = typical(runs)["run"]
    assert select(shared_db, RunFilter(search=run["id"], include_archived=True)) == {run["id"]}


def test_the_time_bounds_are_inclusive_since_and_exclusive_until(select, shared_db, runs):
    start = typical(runs)["since"]
    at_start = {r["id"] for r in runs if r["started_at"] == start and r["archived_at"] is None}
    assert at_start
    assert at_start <= select(shared_db, RunFilter(since=start))
    assert not at_start & select(shared_db, RunFilter(until=start))


# A small database whose texts hold the LIKE wildcards and the escape character themselves.
ESCAPES = [
    simple_run(
        "esc-percent",
        created="2026-11-02T10:00:00Z",
        status="FAILED",
        failedStep={
            "name": "step_1",
            "displayName": "Charge 100% of the order",
            "message": "Refused: discount of 100% is not allowed",
        },
    ),
    simple_run(
        "esc-under",
        created="2026-11-02T11:00:00Z",
        status="FAILED",
        failedStep={
            "name": "send_mail",
            "displayName": "Send mail",
            "message": "invalid_grant: token revoked",
        },
    ),
    simple_run(
        "esc-slash",
        created="2026-11-02T12:00:00Z",
        status="FAILED",
        failedStep={
            "name": "step_2",
            "displayName": "Write file",
            "message": "ENOENT: no such file C:\\temp\\out.csv",
        },
    ),
    simple_run(
        "escXplain",
        created="2026-11-02T13:00:00Z",
        status="FAILED",
        failedStep={
            "name": "stepA",
            "displayName": "Plain step",
            "message": "Plain error 1000 without any special character",
        },
    ),
    simple_run("esc-ok", created="2026-11-02T14:00:00Z"),
]


@pytest.fixture(scope="module")
def escapes_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("escapes") / "runs.duckdb"
    with open_db(db) as con:
        ingest_items(con, records_as_items(ESCAPES), "escapes")
    return db


@pytest.mark.parametrize(
    "search, expected",
    [
        ("%", {"esc-percent"}),
        ("100%", {"esc-percent"}),
        ("0%", {"esc-percent"}),
        (
            "_",
            {"esc-percent", "esc-under", "esc-slash"},
        ),  # step_1, send_mail / invalid_grant, step_2
        ("id_g", {"esc-under"}),
        ("\\", {"esc-slash"}),
        ("C:\\temp", {"esc-slash"}),
        ("esc_plain", set()),  # an unescaped _ would match "escXplain"
        ("1%0", set()),  # an unescaped % would match "1000"
        ("PLAIN ERROR", {"escXplain"}),
    ],
)
def test_wildcards_in_a_search_match_only_themselves(select, escapes_db, search, expected):
    run_filter = RunFilter(search=search)
    assert select(escapes_db, run_filter) == expected
    assert set(ids(matching(load_runs(escapes_db), run_filter))) == expected  # the oracle agrees
