"""Drill-downs from Insights: a clicked number opens the Runs page on exactly the runs it counted.

The target is the current filter changed as the number says: toolbar widget values (flow,
status: lists of names; range; from / to: dates; the agents' tool, tool_outcome, model),
drill-down URL keys (failed_step, signature, version) and the agents' chips (agent_status,
max_steps, tool_calls); a change to an empty value (or False) removes that filter, the view's
other chips stay. The toolbar's keys are bound to the
URL, and Streamlit refuses to set a bound key through switch_page once its widget has been
drawn, so the target is remembered and followed at the top of the next run, before the toolbar
is drawn: widget values go through session state, URL keys through the URL. Tables and charts
whose selection drills down are drawn here too, alike on every Insights view.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.common.toolbar import DRILL_KEYS
from runs_store.queries.view_state import AGENT_DRILL_KEYS, AGENT_KEYS, AGENT_WIDGETS
from runs_store.services import insights

RUNS_PAGE = "pages/runs.py"
RUN_PAGE = "pages/run.py"
PENDING_DRILL = "insights_pending_drill"
TOOLBAR_WIDGETS = ("flow", "status", "range", "from", "to", *AGENT_WIDGETS)
URL_KEYS = (*DRILL_KEYS, *AGENT_KEYS)  # what a drill-down hands over in the URL


def drill(**changes) -> None:
    """Opens the Runs page with the current filter, changed as given, on the next rerun."""
    st.session_state[PENDING_DRILL] = changes
    st.rerun()


def url_value(value):
    """A drill-down value as the URL writes it (a flag as true, a number as its digits)."""
    if value is True:
        return "true"
    return str(value) if isinstance(value, int) else value


def cleared(value) -> bool:
    """A drill-down change that removes its filter (0 is a value: no tool calls)."""
    return value is None or value is False or (isinstance(value, str | list) and not value)


def follow_pending_drill() -> None:
    changes = st.session_state.pop(PENDING_DRILL, None)
    if changes is None:
        return
    dates_unbound = st.session_state.get("range") != "custom"  # no date inputs were drawn
    for key, value in changes.items():
        if key in TOOLBAR_WIDGETS:
            st.session_state[key] = value
    kept = (*DRILL_KEYS, *AGENT_DRILL_KEYS)  # the view's chips, unless the number changes them
    params = {key: st.query_params.get_all(key) for key in kept if key in st.query_params}
    for key, value in changes.items():
        if key in URL_KEYS:
            params[key] = url_value(value)
    if dates_unbound:  # the Runs page's date inputs show session state but do not write the URL
        params.update({key: changes[key].isoformat() for key in ("from", "to") if key in changes})
    st.switch_page(
        RUNS_PAGE,
        query_params={key: value for key, value in params.items() if not cleared(value)},
    )


def drill_to_bucket(bucket: str, unit: str, **changes) -> None:
    first, last = insights.bucket_days(bucket, unit)
    drill(range="custom", **{"from": first, "to": last}, **changes)


def selected_row(event, rows: pd.DataFrame):
    """The row a single-row table selection points at, or None."""
    picked = (event or {}).get("selection", {}).get("rows", []) if event else []
    if not picked or picked[0] >= len(rows):
        return None
    return rows.iloc[picked[0]]


def selected_cell(event, rows: pd.DataFrame):
    """(row, column name) a single-cell selection points at, or None."""
    picked = (event or {}).get("selection", {}).get("cells", []) if event else []
    if not picked or picked[0][0] >= len(rows):
        return None
    return rows.iloc[picked[0][0]], picked[0][1]


def table(frame: pd.DataFrame, key: str, column_config: dict, height="auto", cells=False):
    """A read-only table whose single-row selection (and `cells`: single-cell) drills down."""
    return st.dataframe(
        frame,
        key=key,
        on_select="rerun",
        selection_mode=["single-row", "single-cell"] if cells else "single-row",
        hide_index=True,
        width="stretch",
        column_config=column_config,
        height=height,
    )


def chart(figure, key: str):
    return st.plotly_chart(
        figure,
        key=key,
        on_select="rerun",
        selection_mode="points",
        theme="streamlit",
        width="stretch",
        config={"displayModeBar": False},
    )
