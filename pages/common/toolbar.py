"""The filter toolbar of the Runs and Insights pages, kept in the URL.

Flow, status, date range (presets or custom days), show archived and search are widgets whose
values are the view's (runs_store.queries.view_state.RunsView): pages/common/url_state.py seeds
them from
the URL and writes them back, so a copied link opens the same view, and they keep their values
across pages, so a view moves between the two pages intact. Drill-downs from Insights (failed
step, error signature, flow version) arrive as URL parameters and show as removable chips. Both
pages also filter by the tool an AI agent called, the model it ran on and how a tool call ended
(drawn only when the store holds agent steps, or a link asks for them), kept across pages as
the others; the Agents view's other drill-downs (an agent's status, maxSteps, a run's number of
tool calls) are chips too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import streamlit as st

from pages.common import url_state
from pages.common.text import plain
from runs_store.domain.agents import FAILED, UNFINISHED
from runs_store.domain.statuses import STATUS_NAMES, label
from runs_store.queries import view_state
from runs_store.queries.filters import PRESET_LABELS, RunFilter
from runs_store.queries.view_state import (
    AGENT_KEYS,
    AGENT_WIDGETS,
    ALIAS_KEYS,
    CUSTOM,
    FILTER_KEYS,
    RunsView,
    ViewContext,
)
from runs_store.services import agents as agent_facts

CHIP_LABELS = {"failed_step": "Failed step", "signature": "Error", "version": "Flow version"}
DRILL_KEYS = {key: CHIP_LABELS[key] for key in view_state.DRILL_KEYS}  # URL key: chip label
AGENT_CHIPS = {"agent_status": "Agent status", "max_steps": None, "tool_calls": "Tool calls"}
INSIGHTS = url_state.Scope(
    "insights",
    keys=FILTER_KEYS + view_state.DRILL_KEYS + AGENT_KEYS + ALIAS_KEYS,
    widgets=FILTER_KEYS + AGENT_WIDGETS,
)
NO_CHOICE = ""  # the agent filters' "Any tool", "Any model", "Any outcome"
OUTCOME_LABELS = {NO_CHOICE: "Any outcome", FAILED: "Failed", UNFINISHED: "Never finished"}
KEEP = "session"  # the toolbar's values stay across pages (a view moves between Runs and Insights)


@dataclass(frozen=True)
class AgentChoices:
    """What the agent filters offer: the tools agents called and the models they ran on."""

    tools: list[str]
    models: list[str]

    def __bool__(self) -> bool:
        return bool(self.tools or self.models)


def agent_choices(store) -> AgentChoices:
    """The tools the store's agents called and the models they ran on, for the agent filters."""
    return AgentChoices(store.cached(agent_facts.tool_names), store.cached(agent_facts.model_names))


def today_in(tz) -> date:
    return datetime.now(tz).date()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def view_context(flows: list[str], tz, agents: AgentChoices | None = None) -> ViewContext:
    """What a link is read against: the flows loaded, the days up to tomorrow in `tz` and, on a
    page that filters by them, the tools agents called and the models they ran on."""
    if agents is None:
        return ViewContext.on(today_in(tz), flows)
    return ViewContext.on(today_in(tz), flows, agents.tools, agents.models)


def _custom_days(context: ViewContext) -> dict:
    left, right = st.columns(2)
    bounds = {
        "min_value": context.earliest,
        "max_value": context.latest,
        "on_change": url_state.note_change,
        "persist_state": KEEP,
    }
    return {
        "from": left.date_input("From", key="from", **bounds),
        "to": right.date_input("To", key="to", **bounds),
    }


def _chips(view: RunsView) -> dict[str, str]:
    """The text of a chip for each drill-down in the view, by URL key (record text: plain)."""
    given = {
        "failed_step": view.failed_steps,
        "version": view.versions,
        "signature": (view.signature,) if view.signature else (),
    }
    chips = {
        key: f"{DRILL_KEYS[key]}: {plain(', '.join(given[key]))}"
        for key in DRILL_KEYS
        if given[key]
    }
    if view.agent_status:
        chips["agent_status"] = f"{AGENT_CHIPS['agent_status']}: {plain(view.agent_status)}"
    if view.max_steps:
        chips["max_steps"] = "Stopped at maxSteps"
    if view.tool_calls is not None:
        chips["tool_calls"] = f"{AGENT_CHIPS['tool_calls']} in the run: {view.tool_calls:,}"
    return chips


def _drill_down_chips(view: RunsView) -> None:
    """A removable chip for each drill-down in the view."""
    active = _chips(view)
    if not active:
        return
    with st.container(horizontal=True, gap="small", vertical_alignment="center"):
        for key, text in active.items():
            if st.button(
                text, icon=":material/close:", key=f"clear_{key}", help="Remove this filter"
            ):
                url_state.drop_params([key])
                st.rerun()


def _agent_filters(agents: AgentChoices) -> dict:
    """The agents' filters: a tool name and a model (record text: a selectbox shows it as text)
    and how a tool call ended."""
    changed = url_state.note_change
    left, middle, right, _ = st.columns([3, 3, 2, 4.7], vertical_alignment="bottom")
    return {
        "tool": left.selectbox(
            "Agent tool",
            [NO_CHOICE, *agents.tools],
            format_func=lambda name: name or "Any tool",
            key="tool",
            on_change=changed,
            help="Runs whose AI agents called this tool",
            persist_state=KEEP,
        ),
        "model": middle.selectbox(
            "Agent model",
            [NO_CHOICE, *agents.models],
            format_func=lambda name: name or "Any model",
            key="model",
            on_change=changed,
            help="Runs with an AI agent that ran on this model (provider/model)",
            persist_state=KEEP,
        ),
        "tool_outcome": right.selectbox(
            "Tool call",
            list(OUTCOME_LABELS),
            format_func=OUTCOME_LABELS.get,
            key="tool_outcome",
            on_change=changed,
            help="Runs where an agent's tool call failed or never finished (with a tool or a "
            "model chosen: a call to that tool, by an agent on that model)",
            persist_state=KEEP,
        ),
    }


def draw_toolbar(
    view: RunsView, flows: list[str], tz, agents: AgentChoices | None = None
) -> RunsView:
    """Draws the toolbar (its widgets already seeded with `view`) and returns the view with the
    widgets' values (the page puts it in the URL). `agents`: the agent filters' choices, on a
    page that draws them (None: not drawn)."""
    changed = url_state.note_change
    top = st.columns([3, 3, 2, 3, 1.7], vertical_alignment="bottom")
    chosen = {
        "flow": top[0].multiselect(
            "Flow",
            flows,
            key="flow",
            placeholder="All flows",
            on_change=changed,
            persist_state=KEEP,
        ),
        "status": top[1].multiselect(
            "Status",
            STATUS_NAMES,
            format_func=label,
            key="status",
            placeholder="All statuses",
            on_change=changed,
            persist_state=KEEP,
        ),
        "range": top[2].selectbox(
            "Date range",
            list(PRESET_LABELS),
            format_func=PRESET_LABELS.get,
            key="range",
            on_change=changed,
            persist_state=KEEP,
        ),
        "q": top[3].text_input(
            "Search",
            key="q",
            placeholder="Run id, failed step or error text",
            icon=":material/search:",
            on_change=changed,
            persist_state=KEEP,
        ),
        "archived": top[4].checkbox(
            "Show archived", key="archived", on_change=changed, persist_state=KEEP
        ),
    }
    if chosen["range"] == CUSTOM:
        chosen.update(_custom_days(view_context(flows, tz)))
    if agents is not None:
        chosen.update(_agent_filters(agents))
    view = view.with_widget_values(chosen)
    if view.days_swapped:
        st.info(
            "The start date was after the end date: swapped them.", icon=":material/swap_horiz:"
        )
    _drill_down_chips(view)
    return view


def agents_drawn(view: RunsView, choices: AgentChoices) -> AgentChoices | None:
    """The agent filters' choices when they are drawn: the store holds agent steps, or the view
    filters by them (None: not drawn)."""
    return choices if choices or view.to_query(AGENT_WIDGETS) else None


def render_toolbar(flows: list[str], tz, choices: AgentChoices) -> RunFilter:
    """The toolbar of a page that keeps only the filters (Insights): reads the view from the URL
    (notices for what it ignored), draws the toolbar and returns the filter it describes."""
    today = today_in(tz)
    settled = url_state.settle_view(INSIGHTS, view_context(flows, tz, choices), today)
    url_state.show_notices(settled.notices)
    view = draw_toolbar(settled.view, flows, tz, agents_drawn(settled.view, choices))
    url_state.write_view(INSIGHTS, view)
    return view.run_filter(utc_now(), today, tz)
