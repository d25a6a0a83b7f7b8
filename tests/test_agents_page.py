"""Insights' Agents view, the Runs page's tool filters and the run page's agent summary, in
Streamlit's AppTest on a generated store (issue #18).

The figures shown must be the agents service's for the same view (runs_store.services.agents,
itself checked against an oracle in test_agents.py), and every drill-down must land on the Runs
page with the URL state naming the runs its number counted; the Runs page's count is checked
against the store's tool-call facts read directly here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from conftest import app_test
from markdown_text import as_read
from runs_store.domain.formatting import short_duration
from runs_store.queries.view_state import RunsView
from runs_store.services import agents
from runs_store.services.agent_prices import ModelPrice
from runs_store.store.database import open_db
from test_insights_page import (
    TABS,
    last_days,
    open_tab,
    runs_page_total,
    select_row,
    subheaders,
    table_by_key,
)

SECTIONS = TABS["Agents"]
QUERY = last_days(30)
PRICES_TOML = """
[models."openai/gpt-4o"]
input_per_million = 2.5
output_per_million = 10.0

[models."anthropic/claude-sonnet-4"]
input_per_million = 3.0
output_per_million = 15.0
"""


def view_filter(query: dict):
    """The filter the page builds for these URL parameters (AppTest's timezone is UTC)."""
    view, _ = RunsView.from_query({key: [value] for key, value in query.items()})
    now = datetime.now(UTC).replace(tzinfo=None)
    return view.run_filter(now, now.date(), UTC)


def service(shared_db, func, *args, query=QUERY):
    with open_db(shared_db, read_only=True) as con:
        return func(con, view_filter(query), *args)


def durations(values) -> list[str]:
    return [short_duration(value) or "–" for value in values]


def runs_with_calls(
    db, query: dict, tool: str = "", failed: bool = False, model: str = "", outcome: str = ""
) -> int:
    """Runs in the view with a call to `tool` (and/or a failed call, or one of that `outcome`,
    a call by an agent on `model`) in their current version, read straight from the store's
    facts."""
    run_filter = view_filter(query)
    conditions = ["r.archived_at IS NULL", "r.started_at >= ?", "r.started_at < ?"]
    params: list = [run_filter.since, run_filter.until]
    if tool:
        conditions.append("c.tool = ?")
        params.append(tool)
    if failed or outcome:
        conditions.append("c.outcome = ?")
        params.append(outcome or "failed")
    if model:
        conditions.append("concat(c.provider, '/', c.model) = ?")
        params.append(model)
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(DISTINCT r.id) FROM runs r JOIN agent_tool_calls c "
            "ON c.run_id = r.id AND c.run_updated_at = r.updated_at WHERE "
            + " AND ".join(conditions),
            params,
        ).fetchone()[0]


def select_cell(at, key: str, row: int, column: str):
    at.session_state[key] = {"selection": {"rows": [], "columns": [], "cells": [[row, column]]}}
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def agents_view(app_env, shared_db, monkeypatch):
    monkeypatch.delenv("RUNS_AGENT_PRICES", raising=False)
    app_env(shared_db)
    return open_tab("Agents", QUERY)


# ---------------------------------------------------------------- the figures


def test_the_agents_view_shows_every_section(agents_view):
    assert subheaders(agents_view) == SECTIONS
    assert len(agents_view.get("plotly_chart")) == 3  # per tool, per model, calls per run


def test_the_tools_table_is_the_services(agents_view, shared_db):
    found = service(shared_db, agents.tools)
    shown = table_by_key(agents_view, "agent_tools").value
    assert list(shown["Tool"]) == list(found["tool"])
    assert list(shown["Type"]) == list(found["type"])
    for column, name in (("Calls", "calls"), ("Failed", "failed"), ("Runs", "runs")):
        assert list(shown[column]) == list(found[name])
    assert list(shown["Failure rate"]) == pytest.approx(list(found["failure_rate"] * 100))
    assert list(shown["P95"]) == durations(found["p95_ms"])
    assert found["failed"].sum() > 0 and found["unfinished"].sum() > 0


def test_slowest_tools_models_status_and_max_steps_are_the_services(agents_view, shared_db):
    slow = service(shared_db, agents.slowest_tools)
    shown = table_by_key(agents_view, "slowest_tools_agents").value
    assert list(shown["Tool"]) == list(slow["tool"])
    assert list(shown["P50"]) == durations(slow["p50_ms"])
    models = service(shared_db, agents.models)
    shown = table_by_key(agents_view, "agent_models").value
    assert list(shown["Model"]) == list(models["model"])
    assert list(shown["Agent steps"]) == list(models["agent_steps"])
    assert list(shown["Failed calls"]) == list(models["failed_calls"])
    assert len(models) >= 4
    status = service(shared_db, agents.status_by_flow)
    shown = table_by_key(agents_view, "agent_status_by_flow").value
    assert list(shown["Flow"]) == list(status["flow_name"])
    assert list(shown["Agent steps"]) == list(status["steps"])
    stopped = service(shared_db, agents.max_steps_runs)
    shown = table_by_key(agents_view, "max_steps_runs").value
    assert len(shown) == len(stopped) > 0
    assert list(shown["Run"]) == [f"run?id={run_id}" for run_id in stopped["run_id"]]


def test_the_charts_draw_the_services_series(agents_view, shared_db):
    unit = "day"
    charts = {chart.proto.id.rsplit("-", 1)[-1]: chart for chart in agents_view.get("plotly_chart")}
    for key, by in (("tool_rates", "tool"), ("model_rates", "model")):
        figure = json.loads(charts[key].proto.spec)
        found = service(shared_db, agents.failure_over_time, unit, "UTC", by)
        assert sorted(trace["name"] for trace in figure["data"]) == sorted(set(found["key"]))
        assert sum(len(trace["customdata"]) for trace in figure["data"]) == len(found)
    figure = json.loads(charts["calls_per_run"].proto.spec)
    per_run = service(shared_db, agents.calls_per_run)
    assert figure["data"][0]["hovertemplate"].startswith("%{x:,} tool calls")
    assert len(per_run) > 3


def test_tokens_show_without_cost_and_say_how_to_price_them(agents_view, shared_db):
    shown = table_by_key(agents_view, "agent_tokens").value
    found = service(shared_db, agents.tokens_and_cost, {})
    assert "Cost" not in shown.columns
    assert list(shown["Total tokens"]) == list(found["total_tokens"])
    said = " ".join(as_read(caption.value) for caption in agents_view.caption)
    assert "RUNS_AGENT_PRICES" in said and "docs/agents.md" in said


def test_with_a_price_file_each_flow_and_model_has_its_cost(
    app_env, shared_db, tmp_path, monkeypatch
):
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES_TOML)
    monkeypatch.setenv("RUNS_AGENT_PRICES", str(prices))
    app_env(shared_db)
    at = open_tab("Agents", QUERY)
    shown = table_by_key(at, "agent_tokens").value
    found = service(
        shared_db,
        agents.tokens_and_cost,
        {
            "openai/gpt-4o": ModelPrice(2.5, 10.0),
            "anthropic/claude-sonnet-4": ModelPrice(3.0, 15.0),
        },
    )
    assert list(shown["Cost"].fillna(-1)) == pytest.approx(list(found["cost"].fillna(-1)))
    priced = shown[shown["Model"] == "openai/gpt-4o"].iloc[0]
    assert priced["Cost"] == pytest.approx(
        (priced["Input tokens"] * 2.5 + priced["Output tokens"] * 10.0) / 1_000_000
    )
    assert shown[shown["Model"] == "google/gemini-2.0-flash"]["Cost"].isna().all()


def test_a_price_file_with_mistakes_is_named_and_the_view_still_shows(
    app_env, shared_db, tmp_path, monkeypatch
):
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."openai/gpt-4o"]\ninput_per_million = "cheap"\n')
    monkeypatch.setenv("RUNS_AGENT_PRICES", str(prices))
    app_env(shared_db)
    at = open_tab("Agents", QUERY)
    assert subheaders(at) == SECTIONS
    assert any("input_per_million" in as_read(error.value) for error in at.error)


def test_an_empty_range_says_so_in_every_section(app_env, shared_db):
    app_env(shared_db)
    far = {"range": "Custom range", "from": "2019-01-01", "to": "2019-01-07"}
    at = open_tab("Agents", far)
    assert subheaders(at) == SECTIONS
    assert not at.dataframe and not at.get("plotly_chart")


# ---------------------------------------------------------------- drill-downs


def test_a_tool_row_opens_the_runs_that_called_it(agents_view, shared_db):
    shown = table_by_key(agents_view, "agent_tools").value
    tool, expected = shown["Tool"].iloc[1], int(shown["Runs"].iloc[1])
    at = select_row(agents_view, "agent_tools", 1)
    assert [title.value for title in at.title] == ["Runs"]
    assert at.query_params["tool"] == tool and "tool_outcome" not in at.query_params
    assert at.query_params["from"] == QUERY["from"]
    assert runs_page_total(at) == expected == runs_with_calls(shared_db, QUERY, tool)


@pytest.mark.parametrize("column, outcome", [("Failed", "failed"), ("Unfinished", "unfinished")])
def test_a_failed_or_unfinished_cell_opens_the_runs_holding_such_a_call(
    agents_view, shared_db, column, outcome
):
    """The cell counts calls; the Runs page counts the runs holding them (the caption says so)."""
    shown = table_by_key(agents_view, "agent_tools").value
    row = int((shown[column] > 0).to_numpy().argmax())
    tool = shown["Tool"].iloc[row]
    at = select_cell(agents_view, "agent_tools", row, column)
    assert at.query_params["tool"] == tool and at.query_params["tool_outcome"] == outcome
    expected = runs_with_calls(shared_db, QUERY, tool, outcome=outcome)
    assert 0 < runs_page_total(at) == expected <= int(shown[column].iloc[row])


def test_the_tools_caption_says_a_cell_counts_calls_and_opens_their_runs(agents_view):
    said = " ".join(as_read(caption.value) for caption in agents_view.caption)
    assert "Failed or Unfinished cell" in said and "a run may hold several" in said


def agent_steps_runs(db, query: dict, flow: str, status: str, max_steps: bool = False) -> int:
    """Runs in the view of `flow` with an agent step that ended in `status` (and stopped at
    maxSteps), read straight from the store's facts."""
    run_filter = view_filter(query)
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(DISTINCT r.id) FROM runs r JOIN agent_steps a "
            "ON a.run_id = r.id AND a.run_updated_at = r.updated_at "
            "WHERE r.archived_at IS NULL AND r.started_at >= ? AND r.started_at < ? "
            "AND r.flow_name = ? AND coalesce(a.agent_status, '(none recorded)') = ? "
            "AND (a.hit_max_steps OR NOT ?)",
            [run_filter.since, run_filter.until, flow, status, max_steps],
        ).fetchone()[0]


def test_a_status_by_flow_row_opens_the_flows_runs_whose_agent_ended_so(agents_view, shared_db):
    shown = table_by_key(agents_view, "agent_status_by_flow").value
    row = int((shown["Agent status"] == "FAILED").to_numpy().argmax())
    flow, status = shown["Flow"].iloc[row], shown["Agent status"].iloc[row]
    at = select_row(agents_view, "agent_status_by_flow", row)
    assert [title.value for title in at.title] == ["Runs"]
    assert (at.query_params["flow"], at.query_params["agent_status"]) == (flow, status)
    assert "max_steps" not in at.query_params
    expected = agent_steps_runs(shared_db, QUERY, flow, status)
    assert runs_page_total(at) == int(shown["Runs"].iloc[row]) == expected
    chips = [button.label for button in at.button if button.label.startswith("Agent status")]
    assert chips == [f"Agent status: {status}"]


def test_a_hit_max_steps_cell_opens_the_flows_runs_that_stopped_at_max_steps(
    agents_view, shared_db
):
    """The cell counts agent steps; the Runs page counts the runs holding them."""
    shown = table_by_key(agents_view, "agent_status_by_flow").value
    row = int((shown["Hit maxSteps"] > 0).to_numpy().argmax())
    flow, status = shown["Flow"].iloc[row], shown["Agent status"].iloc[row]
    at = select_cell(agents_view, "agent_status_by_flow", row, "Hit maxSteps")
    params = dict(at.query_params)
    assert (params["flow"], params["agent_status"], params["max_steps"]) == (flow, status, "true")
    expected = agent_steps_runs(shared_db, QUERY, flow, status, max_steps=True)
    assert 0 < runs_page_total(at) == expected <= int(shown["Hit maxSteps"].iloc[row])
    found = service(shared_db, agents.status_by_flow)
    assert expected == int(found["max_steps_runs"].iloc[row])
    assert "Stopped at maxSteps" in [button.label for button in at.button]


def on_the_page_a_drill_down_opened(at):
    """AppTest reruns the page its own switch_page last named (the fixture's Insights), not the
    one the script's st.switch_page opened: a click after a drill-down would rerun Insights with
    the Runs page's URL. A browser stays on the Runs page, so the test says it does."""
    assert [title.value for title in at.title] == ["Runs"]
    return at.switch_page("pages/runs.py")


def test_the_max_steps_chip_clears_right_after_its_drill_down(agents_view, shared_db):
    """The drill-down's chip, removed on the page it opened, leaves the URL and the count."""
    shown = table_by_key(agents_view, "agent_status_by_flow").value
    row = int((shown["Hit maxSteps"] > 0).to_numpy().argmax())
    flow, status = shown["Flow"].iloc[row], shown["Agent status"].iloc[row]
    at = on_the_page_a_drill_down_opened(
        select_cell(agents_view, "agent_status_by_flow", row, "Hit maxSteps")
    )
    next(button for button in at.button if button.label == "Stopped at maxSteps").click().run()
    assert not at.exception, at.exception
    assert [title.value for title in at.title] == ["Runs"]
    assert "max_steps" not in at.query_params
    assert (at.query_params["flow"], at.query_params["agent_status"]) == (flow, status)
    assert "Stopped at maxSteps" not in [button.label for button in at.button]
    assert runs_page_total(at) == int(shown["Runs"].iloc[row])


def runs_by_calls(db, query: dict) -> dict[int, int]:
    """Runs in the view by their agent steps' tool calls in all, read straight from the facts."""
    run_filter = view_filter(query)
    with duckdb.connect(str(db), read_only=True) as con:
        found = con.execute(
            "SELECT n, count(*) FROM (SELECT r.id, sum(a.tool_calls) AS n FROM runs r "
            "JOIN agent_steps a ON a.run_id = r.id AND a.run_updated_at = r.updated_at "
            "WHERE r.archived_at IS NULL AND r.started_at >= ? AND r.started_at < ? "
            "GROUP BY r.id) GROUP BY n",
            [run_filter.since, run_filter.until],
        ).fetchall()
    return {int(n): runs for n, runs in found}


def test_a_calls_per_run_bar_opens_the_runs_whose_agents_made_that_many_calls(
    agents_view, shared_db
):
    bars = service(shared_db, agents.calls_per_run)
    counted = runs_by_calls(shared_db, QUERY)
    assert dict(zip(bars["tool_calls"], bars["runs"], strict=True)) == counted
    calls = int(bars["tool_calls"].iloc[len(bars) // 2])
    agents_view.session_state["calls_per_run"] = {
        "selection": {"points": [{"customdata": [calls]}]}
    }
    at = agents_view.run()
    assert not at.exception, at.exception
    assert at.query_params["tool_calls"] == str(calls)
    assert runs_page_total(at) == counted[calls]
    assert any(button.label == f"Tool calls in the run: {calls:,}" for button in at.button)


def test_a_max_steps_row_opens_the_run_with_its_agent_step(agents_view, shared_db):
    stopped = service(shared_db, agents.max_steps_runs)
    at = select_row(agents_view, "max_steps_runs", 0)
    assert at.query_params["id"] == stopped["run_id"].iloc[0]
    assert at.query_params["step"] == stopped["step_name"].iloc[0]
    assert any(summary.label == "Tool calls" for summary in at.metric)


def test_a_tool_chart_point_opens_that_days_runs_where_the_tool_failed(agents_view, shared_db):
    found = service(shared_db, agents.failure_over_time, "day", "UTC", "tool")
    point = found[found["failed"] > 0].iloc[0]
    day = pd.Timestamp(point["bucket"]).isoformat()
    agents_view.session_state["tool_rates"] = {
        "selection": {"points": [{"customdata": [point["key"], day, 1, 1]}]}
    }
    at = agents_view.run()
    assert not at.exception, at.exception
    params = dict(at.query_params)
    first = pd.Timestamp(point["bucket"]).date().isoformat()
    assert (params["tool"], params["tool_outcome"], params["from"], params["to"]) == (
        point["key"],
        "failed",
        first,
        first,
    )
    query = {"range": "Custom range", "from": first, "to": first}
    assert runs_page_total(at) == runs_with_calls(shared_db, query, point["key"], failed=True)


def test_a_model_row_opens_the_runs_with_an_agent_on_it(agents_view, shared_db):
    shown = table_by_key(agents_view, "agent_models").value
    model, expected = shown["Model"].iloc[1], int(shown["Runs"].iloc[1])
    at = select_row(agents_view, "agent_models", 1)
    assert [title.value for title in at.title] == ["Runs"]
    assert at.query_params["model"] == model
    assert runs_page_total(at) == expected == runs_on_model(shared_db, QUERY, model)


def test_a_model_chart_point_opens_that_days_runs_on_it_where_a_call_failed(agents_view, shared_db):
    found = service(shared_db, agents.failure_over_time, "day", "UTC", "model")
    point = found[found["failed"] > 0].iloc[-1]
    day = pd.Timestamp(point["bucket"])
    agents_view.session_state["model_rates"] = {
        "selection": {"points": [{"customdata": [point["key"], day.isoformat(), 1, 1]}]}
    }
    at = agents_view.run()
    assert not at.exception, at.exception
    params = dict(at.query_params)
    first = day.date().isoformat()
    assert (params["model"], params["tool_outcome"], params["from"]) == (
        point["key"],
        "failed",
        first,
    )
    query = {"range": "Custom range", "from": first, "to": first}
    assert runs_page_total(at) == runs_with_calls(shared_db, query, failed=True, model=point["key"])


def runs_on_model(db, query: dict, model: str, flow: str | None = None) -> int:
    """Runs in the view (of `flow`) with an agent step on `model`, read straight from the
    store's facts."""
    run_filter = view_filter(query)
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(DISTINCT r.id) FROM runs r JOIN agent_steps a "
            "ON a.run_id = r.id AND a.run_updated_at = r.updated_at "
            "WHERE r.archived_at IS NULL AND r.started_at >= ? AND r.started_at < ? "
            "AND concat(a.provider, '/', a.model) = ? AND r.flow_name = coalesce(?, r.flow_name)",
            [run_filter.since, run_filter.until, model, flow],
        ).fetchone()[0]


def test_a_tokens_row_opens_the_flows_runs_with_an_agent_on_that_model(agents_view, shared_db):
    shown = table_by_key(agents_view, "agent_tokens").value
    flow, model = shown["Flow"].iloc[0], shown["Model"].iloc[0]
    at = select_row(agents_view, "agent_tokens", 0)
    assert (at.query_params["flow"], at.query_params["model"]) == (flow, model)
    assert runs_page_total(at) == runs_on_model(shared_db, QUERY, model, flow)
    assert runs_page_total(at) == int(shown["Agent steps"].iloc[0])  # one agent step a run


# ---------------------------------------------------------------- the Runs page's agent filters


def tools_of(shared_db) -> pd.DataFrame:
    return service(shared_db, agents.tools)


@pytest.mark.parametrize("outcome", ["", "failed", "unfinished"])
def test_the_runs_page_filters_by_a_tool_and_a_calls_outcome(app_env, shared_db, outcome):
    app_env(shared_db)
    tools = tools_of(shared_db)
    tool = tools[tools[outcome or "calls"] > 0]["tool"].iloc[-1]
    query = {**QUERY, "tool": tool, **({"tool_outcome": outcome} if outcome else {})}
    at = app_test(None, query, timeout=60)
    assert not at.exception, at.exception
    assert at.selectbox(key="tool").value == tool
    assert at.selectbox(key="tool_outcome").value == outcome
    assert runs_page_total(at) == runs_with_calls(shared_db, QUERY, tool, outcome=outcome) > 0


def test_an_older_tool_failed_link_still_opens_the_runs_where_a_call_failed(app_env, shared_db):
    """Links made before tool_outcome (alerts, digests, bookmarks) keep working; the page
    rewrites them in the newer spelling."""
    app_env(shared_db)
    at = app_test(None, {**QUERY, "tool_failed": "true"}, timeout=60)
    assert runs_page_total(at) == runs_with_calls(shared_db, QUERY, failed=True) > 0
    assert at.selectbox(key="tool_outcome").value == "failed"
    assert at.query_params["tool_outcome"] == "failed" and "tool_failed" not in at.query_params


def test_the_tool_filter_is_chosen_and_cleared_on_the_page(app_env, shared_db):
    app_env(shared_db)
    tool = tools_of(shared_db)["tool"].iloc[0]
    at = app_test(None, QUERY, timeout=60)
    everything = runs_page_total(at)
    at.selectbox(key="tool").set_value(tool).run()
    assert runs_page_total(at) == runs_with_calls(shared_db, QUERY, tool)
    at.selectbox(key="tool_outcome").set_value("failed").run()
    assert runs_page_total(at) == runs_with_calls(shared_db, QUERY, tool, failed=True)
    assert at.query_params["tool_outcome"] == "failed"
    at.selectbox(key="tool").set_value("").run()
    at.selectbox(key="tool_outcome").set_value("").run()
    assert runs_page_total(at) == everything
    assert "tool_outcome" not in at.query_params


def test_the_runs_page_filters_by_a_model(app_env, shared_db):
    app_env(shared_db)
    model = service(shared_db, agents.models)["model"].iloc[2]
    at = app_test(None, {**QUERY, "model": model}, timeout=60)
    assert at.selectbox(key="model").value == model
    assert runs_page_total(at) == runs_on_model(shared_db, QUERY, model) > 0
    at.selectbox(key="model").set_value("").run()
    at.selectbox(key="tool_outcome").set_value("failed").run()
    assert runs_page_total(at) == runs_with_calls(shared_db, QUERY, failed=True)


def test_the_agents_chips_show_and_clear_on_the_runs_page(app_env, shared_db):
    app_env(shared_db)
    found = service(shared_db, agents.status_by_flow)
    row = found[found["max_steps_runs"] > 0].iloc[0]
    query = {
        **QUERY,
        "flow": row["flow_name"],
        "agent_status": row["agent_status"],
        "max_steps": "1",
    }
    at = app_test(None, query, timeout=60)
    assert not at.exception, at.exception
    labels = [button.label for button in at.button]
    assert f"Agent status: {row['agent_status']}" in labels and "Stopped at maxSteps" in labels
    assert runs_page_total(at) == int(row["max_steps_runs"])
    next(b for b in at.button if b.label == "Stopped at maxSteps").click().run()
    assert "max_steps" not in at.query_params and [b.label for b in at.button] == [
        f"Agent status: {row['agent_status']}"
    ]
    flow, status = row["flow_name"], row["agent_status"]
    assert runs_page_total(at) == agent_steps_runs(shared_db, QUERY, flow, status)


def test_insights_counts_the_runs_of_its_agent_filters_and_keeps_them_from_the_runs_page(
    app_env, shared_db
):
    """A Runs page filtered by a tool and an outcome goes to Insights by the navigation (no
    parameters): Insights keeps the filters and every count is of those runs."""
    app_env(shared_db)
    tool = tools_of(shared_db)["tool"].iloc[0]
    at = app_test(None, {**QUERY, "tool": tool, "tool_outcome": "failed"}, timeout=60)
    expected = runs_with_calls(shared_db, QUERY, tool, failed=True)
    assert runs_page_total(at) == expected > 0
    at.switch_page("pages/insights.py")
    at.query_params.clear()
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tool").value == tool
    assert at.selectbox(key="tool_outcome").value == "failed"
    assert (at.query_params["tool"], at.query_params["tool_outcome"]) == (tool, "failed")
    runs = next(metric for metric in at.metric if metric.label == "Runs")
    assert runs.value == f"{expected:,}"


def test_a_tool_no_agent_called_falls_back_with_a_notice(app_env, shared_db):
    app_env(shared_db)
    query = {**QUERY, "tool": "no_such_tool", "tool_failed": "maybe", "model": "acme/gpt-9"}
    at = app_test(None, query, timeout=60)
    said = [as_read(info.value) for info in at.info]
    assert any('Ignored tool "no_such_tool"' in text for text in said)
    assert any('Ignored model "acme/gpt-9"' in text for text in said)
    assert any('Ignored tool failed "maybe"' in text for text in said)
    assert at.selectbox(key="tool").value == "" and at.selectbox(key="model").value == ""
    assert "tool" not in at.query_params and "model" not in at.query_params


# ---------------------------------------------------------------- the run page's agent summary


def test_the_run_page_sums_up_an_agent_step_above_its_timeline(app_env, shared_db):
    app_env(shared_db)
    stopped = service(shared_db, agents.max_steps_runs)
    run_id, step = stopped["run_id"].iloc[0], stopped["step_name"].iloc[0]
    with open_db(shared_db, read_only=True) as con:
        agent = agents.run_agents(con, run_id)
    agent = agent[agent["step_name"] == step].iloc[0]
    at = app_test("pages/run.py", {"id": run_id, "step": step}, timeout=60)
    assert not at.exception, at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Tool calls"] == f"{agent['tool_calls']:,}"
    assert metrics["Failed"] == f"{agent['failed_calls']:,}"
    assert metrics["Unfinished"] == f"{agent['unfinished_calls']:,}"
    assert metrics["Time in tools"] == short_duration(agent["tools_ms"])
    if not pd.isna(agent["total_tokens"]):
        assert metrics["Tokens"] == f"{int(agent['total_tokens']):,}"
    line = next(as_read(m.value) for m in at.markdown if m.value.startswith("**Model**"))
    assert agent["model"] in line and f"**Agent status** {agent['agent_status']}" in line
    assert any("step limit" in warning.value for warning in at.warning)


def test_a_run_without_agents_has_no_summary(app_env, shared_db):
    app_env(shared_db)
    with duckdb.connect(str(shared_db), read_only=True) as con:
        run_id = con.execute(
            "SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM agent_steps) LIMIT 1"
        ).fetchone()[0]
    at = app_test("pages/run.py", {"id": run_id}, timeout=60)
    assert not at.exception and not at.metric
