"""Insights' Agents view: which tools AI agents call and how often those calls fail or hang, how
slow tools are, how many calls a run makes, which agents stopped at their step limit, agent
status per flow, the models used, and tokens and cost.

Every number comes from one cached call into runs_store.services.agents, for the toolbar's
filter; a selected row, cell, point or bar opens the Runs page on the runs it counted (the agent
filters `tool`, `tool_outcome`, `model`, `agent_status`, `max_steps`, `tool_calls`, a flow, a
time bucket) or, for an agent that stopped at its limit, the run itself. A number of calls or
agent steps opens the runs holding them, which the captions say. Tool names, flow names and
models are record text: tables and charts show them as text.
"""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import streamlit as st

from pages.common import charts
from pages.common.drill import (
    RUN_PAGE,
    chart,
    drill,
    drill_to_bucket,
    selected_cell,
    selected_row,
    table,
)
from pages.common.text import plain
from runs_store import settings
from runs_store.domain.agents import FAILED, UNFINISHED
from runs_store.domain.errors import StoreError
from runs_store.domain.formatting import short_duration
from runs_store.queries.filters import RunFilter
from runs_store.services import agents
from runs_store.services.agent_prices import load_prices

PERCENT = st.column_config.NumberColumn(format="%.1f%%")
TOKENS = st.column_config.NumberColumn(format="localized")
WHEN = "MMM D, YYYY, h:mm a"
NO_AGENTS = "No AI agent steps in this view's runs."
CELL_OUTCOMES = {"Failed": FAILED, "Unfinished": UNFINISHED}  # a Tools cell: its calls' outcome


def durations(values: pd.Series) -> list[str]:
    return [short_duration(value) or "–" for value in values]


def show_tools(store, run_filter: RunFilter) -> None:
    st.subheader("Tools")
    found = store.cached(agents.tools, run_filter)
    if found.empty:
        st.caption("No tool calls in this view's runs.")
        return
    st.caption(
        "Every tool the agents called, most called first. A call failed when the tool said so; "
        "unfinished calls never returned. P50 and P95 are the calls' durations. Select a row to "
        "open the runs that called the tool (its Runs), or a Failed or Unfinished cell for the "
        "runs holding such a call: those count calls, and a run may hold several, so the Runs "
        "page may list fewer runs than the cell's number."
    )
    shown = pd.DataFrame(
        {
            "Tool": found["tool"],
            "Type": found["type"],
            "Calls": found["calls"],
            "Failed": found["failed"],
            "Unfinished": found["unfinished"],
            "Failure rate": found["failure_rate"] * 100,
            "P50": durations(found["p50_ms"]),
            "P95": durations(found["p95_ms"]),
            "Runs": found["runs"],
        }
    )
    event = table(
        shown,
        "agent_tools",
        {
            "Failure rate": PERCENT,
            "Failed": st.column_config.NumberColumn(
                help="Failed calls; select to open the runs holding them"
            ),
            "Unfinished": st.column_config.NumberColumn(
                help="Calls that never returned; select to open the runs holding them"
            ),
            "Runs": st.column_config.NumberColumn(help="Runs whose agents called the tool"),
        },
        cells=True,
    )
    cell = selected_cell(event, found)
    row = selected_row(event, found)
    if cell is not None:
        row, column = cell
        drill(tool=row["tool"], tool_outcome=CELL_OUTCOMES.get(column, ""))
    elif row is not None:
        drill(tool=row["tool"], tool_outcome="")


def show_failure_over_time(store, run_filter: RunFilter, unit: str, tz_name: str) -> None:
    st.subheader("Tool-call failure rate over time")
    period = "day" if unit == "hour" else unit
    left, right = st.columns(2, gap="medium")
    with left:
        rates = store.cached(agents.failure_over_time, run_filter, unit, tz_name, "tool")
        st.markdown("**Per tool**")
        if rates.empty:
            st.caption("No tool calls in this view's runs.")
        else:
            st.caption(
                f"Failed calls among each tool's calls per {unit}, for the "
                f"{agents.TOP_KEYS} most called tools. Click a point to open the runs of that "
                f"{period} where a call to that tool failed."
            )
            point = charts.clicked_point(chart(charts.call_rate_lines(rates, unit), "tool_rates"))
            if point:
                drill_to_bucket(point[1], unit, tool=point[0], tool_outcome=FAILED)
    with right:
        rates = store.cached(agents.failure_over_time, run_filter, unit, tz_name, "model")
        st.markdown("**Per model**")
        if rates.empty:
            st.caption("No tool calls in this view's runs.")
        else:
            st.caption(
                f"Failed calls among the calls each model made per {unit}. Click a point to "
                f"open the runs of that {period} on that model where a tool call failed."
            )
            point = charts.clicked_point(chart(charts.call_rate_lines(rates, unit), "model_rates"))
            if point:
                drill_to_bucket(point[1], unit, model=point[0], tool_outcome=FAILED)


def show_slowest_tools(store, run_filter: RunFilter) -> None:
    st.subheader("Slowest tools")
    found = store.cached(agents.slowest_tools, run_filter)
    if found.empty:
        st.caption("No tool call recorded both its start and end in this view's runs.")
        return
    st.caption(
        "The tools whose calls take longest at the 95th percentile. Select a row to open the "
        "runs that called the tool."
    )
    shown = pd.DataFrame(
        {
            "Tool": found["tool"],
            "Calls": found["calls"],
            "P50": durations(found["p50_ms"]),
            "P95": durations(found["p95_ms"]),
        }
    )
    row = selected_row(table(shown, "slowest_tools_agents", {}), found)
    if row is not None:
        drill(tool=row["tool"], tool_outcome="")


def show_calls_per_run(store, run_filter: RunFilter) -> None:
    st.subheader("Tool calls per run")
    found = store.cached(agents.calls_per_run, run_filter)
    if found.empty:
        st.caption(NO_AGENTS)
        return
    st.caption(
        "How many tool calls the agents of a run made in all, over the runs with an agent "
        "step. Click a bar to open those runs."
    )
    point = charts.clicked_point(chart(charts.calls_per_run_bars(found), "calls_per_run"))
    if point:
        drill(tool_calls=int(point[0]))


def show_max_steps(store, run_filter: RunFilter, tz_name: str) -> None:
    st.subheader("Agents that stopped at maxSteps")
    found = store.cached(agents.max_steps_runs, run_filter)
    if found.empty:
        st.caption("No agent in this view's runs stopped at its step limit.")
        return
    st.caption(
        "Agent steps that failed on reaching their step limit, newest first. Select a row (or "
        "use its link) to open the run."
    )
    shown = pd.DataFrame(
        {
            "Started": pd.to_datetime(found["started_at"])
            .dt.tz_localize("UTC")
            .dt.tz_convert(tz_name),
            "Flow": found["flow_name"],
            "Step": found["step_display"].fillna(found["step_name"]),
            "Model": found["model"],
            "maxSteps": found["max_steps"],
            "Tool calls": found["tool_calls"],
            "Run": ["run?id=" + quote(str(run_id), safe="") for run_id in found["run_id"]],
        }
    )
    event = table(
        shown,
        "max_steps_runs",
        {
            "Started": st.column_config.DatetimeColumn(
                format=WHEN, help=f"In your timezone ({tz_name})", width=140
            ),
            "Flow": st.column_config.TextColumn(width=145),
            "Step": st.column_config.TextColumn(width=160),
            "Model": st.column_config.TextColumn(width=165),
            "maxSteps": st.column_config.NumberColumn(width=70),
            "Tool calls": st.column_config.NumberColumn(width=70),
            "Run": st.column_config.LinkColumn(
                "Run",
                display_text=r"run\?id=(.*)$",
                help="The run's page (opens a new tab)",
                width=190,
            ),
        },
        height=min(400, 35 * (len(shown) + 1) + 3),
    )
    row = selected_row(event, found)
    if row is not None:
        st.switch_page(RUN_PAGE, query_params={"id": row["run_id"], "step": row["step_name"]})


def show_status_by_flow(store, run_filter: RunFilter) -> None:
    st.subheader("Agent status by flow")
    found = store.cached(agents.status_by_flow, run_filter)
    if found.empty:
        st.caption(NO_AGENTS)
        return
    st.caption(
        "Agent steps per flow by the status the agent ended in. Select a row to open the "
        "flow's runs with an agent that ended so (its Runs), or a Hit maxSteps cell for those "
        "with an agent that stopped at its step limit (the cell counts agent steps: a run may "
        "hold several)."
    )
    shown = pd.DataFrame(
        {
            "Flow": found["flow_name"],
            "Agent status": found["agent_status"],
            "Agent steps": found["steps"],
            "Runs": found["runs"],
            "Hit maxSteps": found["hit_max_steps"],
        }
    )
    event = table(
        shown,
        "agent_status_by_flow",
        {
            "Runs": st.column_config.NumberColumn(help="Runs with an agent that ended so"),
            "Hit maxSteps": st.column_config.NumberColumn(
                help="Agent steps that stopped at maxSteps; select to open their runs"
            ),
        },
        cells=True,
    )
    cell = selected_cell(event, found)
    row = cell[0] if cell is not None else selected_row(event, found)
    if row is not None:
        drill(
            flow=[row["flow_name"]],
            agent_status=row["agent_status"],
            max_steps=cell is not None and cell[1] == "Hit maxSteps",
        )


def show_models(store, run_filter: RunFilter) -> None:
    st.subheader("Models")
    found = store.cached(agents.models, run_filter)
    if found.empty:
        st.caption(NO_AGENTS)
        return
    st.caption(
        "Each model (provider/model) the agents ran on: agent steps, those that failed or "
        "stopped at maxSteps, their tool calls and the agent steps' durations. Select a row to "
        "open the runs with an agent on that model."
    )
    shown = pd.DataFrame(
        {
            "Model": found["model"],
            "Agent steps": found["agent_steps"],
            "Runs": found["runs"],
            "Agents failed": found["agents_failed"],
            "Hit maxSteps": found["hit_max_steps"],
            "Tool calls": found["tool_calls"],
            "Failed calls": found["failed_calls"],
            "Failure rate": found["failure_rate"] * 100,
            "P50": durations(found["p50_ms"]),
            "P95": durations(found["p95_ms"]),
        }
    )
    row = selected_row(table(shown, "agent_models", {"Failure rate": PERCENT}), found)
    if row is not None:
        drill(model=row["model"])


def prices_or_error() -> tuple[dict | None, str | None]:
    """The model prices (None when RUNS_AGENT_PRICES is unset), or the file's mistakes."""
    if settings.current().agent_prices is None:
        return None, None
    try:
        return load_prices(), None
    except StoreError as error:
        return None, str(error)


def show_tokens(store, run_filter: RunFilter) -> None:
    st.subheader("Tokens and cost")
    prices, mistakes = prices_or_error()
    found = store.cached(agents.tokens_and_cost, run_filter, prices or {})
    if found.empty or not found["steps_with_tokens"].any():
        st.caption(
            "No agent step in this view's runs recorded token counts (the engine's own "
            "outputs record none; see `docs/agents.md`)."
        )
        return
    if mistakes:
        st.error(plain(mistakes), icon=":material/error:")
    elif prices is None:
        st.caption(
            ":material/payments: Costs need your model prices: name a TOML file in "
            '`RUNS_AGENT_PRICES` with a `[models."provider/model"]` table per model '
            "(`input_per_million`, `output_per_million`), as `docs/agents.md` (Model prices) "
            "shows."
        )
    st.caption(
        "Tokens per flow and model, over the agent steps whose output recorded them"
        + (
            ", and their cost from your price file (none for a model it has no price for)"
            * bool(prices)
        )
        + ". Select a row to open the flow's runs with an agent on that model."
    )
    columns = {
        "Flow": found["flow_name"],
        "Model": found["model"],
        "Agent steps": found["agent_steps"],
        "With tokens": found["steps_with_tokens"],
        "Input tokens": found["input_tokens"],
        "Output tokens": found["output_tokens"],
        "Total tokens": found["total_tokens"],
    }
    if prices:
        columns["Cost"] = found["cost"]
    event = table(
        pd.DataFrame(columns),
        "agent_tokens",
        {
            "With tokens": st.column_config.NumberColumn(
                help="Agent steps whose output recorded token counts"
            ),
            **dict.fromkeys(("Input tokens", "Output tokens", "Total tokens"), TOKENS),
            "Cost": st.column_config.NumberColumn(
                format="%.2f", help="In your price file's currency"
            ),
        },
    )
    row = selected_row(event, found)
    if row is not None:
        drill(flow=[row["flow_name"]], model=row["model"])


def show_agents(store, run_filter: RunFilter, unit: str, tz_name: str) -> None:
    """The Agents view, section by section."""
    show_tools(store, run_filter)
    show_failure_over_time(store, run_filter, unit, tz_name)
    left, right = st.columns(2, gap="medium")
    with left:
        show_slowest_tools(store, run_filter)
    with right:
        show_calls_per_run(store, run_filter)
    show_max_steps(store, run_filter, tz_name)
    show_models(store, run_filter)
    show_status_by_flow(store, run_filter)
    show_tokens(store, run_filter)
