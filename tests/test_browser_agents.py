"""Insights' Agents view in a real browser (issue #18): its tables and charts draw the sample's
figures, a tool's row opens the Runs page filtered by that tool with exactly the runs it counted,
and a run opened from there shows its agent summary."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from conftest import wait_for_app
from runs_store.queries.filters import RunFilter
from runs_store.services import agents
from runs_store.store.database import open_db
from test_browser_insights import ROW_HEIGHT, RUN_COUNT, cell_text, runs_page_total
from test_browser_runs import click_open

TABLES = ("agent_tools", "slowest_tools_agents", "max_steps_runs", "agent_status_by_flow")
CHARTS = ("tool_rates", "model_rates", "calls_per_run")
TOOL, CALLS, RUNS = 1, 3, 9  # the tools table's columns, counted from 1 (0 is the selection)


def all_time(db, func, *args):
    """The service's figure for the view "All time" (archived runs left out, as the page does)."""
    with open_db(db, read_only=True) as con:
        return func(con, RunFilter(), *args)


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def open_agents(page, server_url: str) -> None:
    # A fresh server's first request comes before app.py declares its pages: open the root first.
    page.goto(f"{server_url}/")
    wait_for_app(page)
    page.goto(f"{server_url}/insights?view=Agents&range=All+time")
    wait_for_app(page)


def chart_names(page, key: str) -> list[str]:
    selector = f".st-key-{key} .js-plotly-plot"
    page.wait_for_selector(f"{selector} .trace")
    return page.evaluate(
        "selector => document.querySelector(selector).data.map(trace => trace.name)", selector
    )


def test_the_agents_view_draws_the_samples_figures(page, server_url, browser_db):
    open_agents(page, server_url)
    for key in TABLES:
        page.locator(f".st-key-{key} [data-testid='stDataFrame']").wait_for()
    tools = all_time(browser_db, agents.tools)
    for row in range(3):
        assert cell_text(page, "agent_tools", TOOL, row) == tools["tool"].iloc[row]
        assert int(cell_text(page, "agent_tools", CALLS, row)) == tools["calls"].iloc[row]
    for key, by in (("tool_rates", "tool"), ("model_rates", "model")):
        found = all_time(browser_db, agents.failure_over_time, "day", "Europe/Paris", by)
        assert sorted(chart_names(page, key)) == sorted(set(found["key"]))
    assert chart_names(page, "calls_per_run") == ["Runs"]
    stopped = all_time(browser_db, agents.max_steps_runs)
    assert cell_text(page, "max_steps_runs", 2, 0) == stopped["flow_name"].iloc[0]
    expect(page.get_by_text("Tokens and cost")).to_be_visible()
    expect(page.get_by_text("RUNS_AGENT_PRICES").first).to_be_visible()


def test_a_tools_row_opens_its_runs_and_a_run_shows_its_agent_summary(page, server_url, browser_db):
    open_agents(page, server_url)
    row = 1
    tool = cell_text(page, "agent_tools", TOOL, row)
    counted = int(cell_text(page, "agent_tools", RUNS, row))
    table = page.locator(".st-key-agent_tools [data-testid='stDataFrame']")
    table.evaluate("element => element.scrollIntoView({block: 'center'})")
    box = table.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)
    page.wait_for_url(lambda url: "tool=" in url and "/insights" not in url)
    wait_for_app(page)
    assert query(page)["tool"] == [tool] and query(page)["range"] == ["All time"]
    assert runs_page_total(page) == counted
    expect(page.get_by_role("combobox", name="Agent tool")).to_have_value(tool)

    page.get_by_text(RUN_COUNT).first.wait_for()
    click_open(page, 0)
    page.wait_for_url(re.compile(r"/run\?"))
    wait_for_app(page)
    run_id = query(page)["id"][0]
    with open_db(browser_db, read_only=True) as con:
        facts = agents.run_agents(con, run_id)
        calls = agents.run_tool_calls(con, run_id)
    assert tool in set(calls["tool"])
    agent = facts[facts["position"] == calls[calls["tool"] == tool]["position"].iloc[0]].iloc[0]
    page.locator(".st-key-step_details h4").first.wait_for()  # the opened step's details
    steps = page.locator(".st-key-step_list")  # the agent's step, picked as a user picks it
    steps.locator(f".st-key-pick_{int(agent['position'])} button").first.click()
    details = page.locator(".st-key-step_details h4").filter(has_text=agent["step_display"])
    details.first.wait_for()
    summary = page.locator(".st-key-agent_summary")
    summary.wait_for()
    expect(summary).to_contain_text(agent["model"])
    metric = summary.locator("[data-testid='stMetric']").filter(has_text="Tool calls")
    expect(metric.locator("[data-testid='stMetricValue']")).to_have_text(f"{agent['tool_calls']:,}")


def test_the_max_steps_chip_clears_right_after_its_drill_down(page, server_url):
    """A Hit maxSteps cell opens the Runs page with a maxSteps chip; removing the chip there
    takes max_steps out of the URL and shows the runs of the flow's agents that ended so."""
    open_agents(page, server_url)
    key, flow_column, status_column, runs_column, hit_column = "agent_status_by_flow", 1, 2, 4, 5
    row = next(r for r in range(10) if int(cell_text(page, key, hit_column, r)) > 0)
    flow, status = cell_text(page, key, flow_column, row), cell_text(page, key, status_column, row)
    runs = int(cell_text(page, key, runs_column, row))
    table = page.locator(f".st-key-{key} [data-testid='stDataFrame']")
    table.evaluate("element => element.scrollIntoView({block: 'center'})")
    box = table.bounding_box()  # Hit maxSteps is the last column; the table fills its width
    page.mouse.click(box["x"] + box["width"] - 40, box["y"] + ROW_HEIGHT * (row + 1.5))
    page.wait_for_url(lambda url: "max_steps=true" in url and "/insights" not in url)
    wait_for_app(page)
    assert (query(page)["flow"], query(page)["agent_status"]) == ([flow], [status])
    chip = page.get_by_role("button", name="Stopped at maxSteps")
    assert 0 < runs_page_total(page) <= runs

    chip.click()
    page.wait_for_url(lambda url: "max_steps" not in url)
    wait_for_app(page)
    expect(chip).to_have_count(0)
    assert (query(page)["flow"], query(page)["agent_status"]) == ([flow], [status])
    total = page.get_by_text(RUN_COUNT).first
    expect(total).to_have_text(re.compile(rf"of {runs:,} runs?\b"))
