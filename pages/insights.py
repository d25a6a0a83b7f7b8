"""Insights: where runs fail, since when, why, and how long they take, for the toolbar's view.

The toolbar (flows, statuses, date range, archived, search, and the agents' tool, outcome and
model filters with their chips) is the Runs page's, bound to the same URL keys, so a view moves
between the two pages intact; every tab counts the toolbar's runs (an agent filter needs raw
runs: past retention the rollups cannot say which runs an agent ran in). Every number comes
from one cached call into runs_store.services.insights; every chart and table drills down by
opening the Runs page with the current filter narrowed to exactly the runs the clicked number
counted (which statuses and days those are is the store's to say: insights.narrowed_statuses,
insights.bucket_days). The Agents view (pages/common/agents_view.py) reads
runs_store.services.agents the same way; the drill-down machinery both use is
pages/common/drill.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from pages.common import charts, url_state
from pages.common.agents_view import show_agents
from pages.common.data import page_store, show_sample_note, user_timezone
from pages.common.drill import (
    chart,
    drill,
    drill_to_bucket,
    follow_pending_drill,
    selected_row,
    table,
)
from pages.common.entry import draw_inside_app
from pages.common.status_ui import status_column
from pages.common.text import code, plain
from pages.common.toolbar import agent_choices, render_toolbar
from runs_store.domain.formatting import short_duration
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES, label
from runs_store.queries.filters import RunFilter
from runs_store.services import insights
from runs_store.services.masking import messages_as_shown
from runs_store.services.runs_list import flow_names

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

TABS = ("Trends", "Failed steps", "Errors", "Quota", "Durations", "Agents")


# ---------------------------------------------------------------- small helpers


def zone_name(tz) -> str:
    return getattr(tz, "key", None) or "UTC"


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def percent(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.0%}"


def short_id(value: str) -> str:
    return value if len(value) <= 9 else f"{value[:8]}…"


def day_text(moment) -> str:
    return f"{moment:%b} {moment.day}"


# ---------------------------------------------------------------- headline


def show_headline(store, run_filter: RunFilter) -> insights.Headline:
    current = store.cached(insights.headline, run_filter)
    previous_filter = insights.previous_filter(run_filter, now_utc())
    before = store.cached(insights.headline, previous_filter) if previous_filter else None
    help_text = (
        "Change against the previous range of the same length."
        if before
        else "No earlier range to compare with for All time."
    )
    columns = st.columns(6)
    columns[0].metric(
        "Runs",
        f"{current.total:,}",
        help=help_text,
        delta=current.change(before, "total"),
        delta_color="off",
    )
    rate_delta = current.change(before, "success_rate")
    columns[1].metric(
        "Success rate",
        percent(current.success_rate),
        delta=None if rate_delta is None else f"{rate_delta * 100:+.1f} pts",
        help="Succeeded runs among finished runs (not queued, running or paused).",
    )
    for column, name in zip(columns[2:], insights.HEADLINE_STATUSES, strict=True):
        column.metric(
            label(name),
            f"{current.value(name):,}",
            delta_color="inverse",
            delta=current.change(before, name),
            help=help_text,
        )
    return current


# ---------------------------------------------------------------- Trends tab


def show_runs_over_time(buckets, run_filter, unit, tz_name) -> None:
    st.subheader("Runs over time")
    if buckets.empty:
        st.caption("No runs in this range.")
        return
    st.caption(
        f"Runs per {unit}, by status, in your timezone ({tz_name}). Click a bar to open "
        f"those runs" + (" (an hour's bar opens its whole day)." if unit == "hour" else ".")
    )
    event = chart(charts.status_bars(buckets, unit), "runs_over_time")
    point = charts.clicked_point(event)
    if point:
        drill_to_bucket(point[1], unit, status=insights.narrowed_statuses(run_filter, [point[0]]))


def show_flow_failure_rates(rates, run_filter, unit) -> None:
    st.subheader("Failure rate of the worst flows")
    if rates.empty or not rates["failed"].any():
        st.caption("No failed runs in this range.")
        return
    st.caption(
        "Share of finished runs that ended in a failed state, for the "
        f"{insights.WORST_FLOWS} flows with the most failures. Click a point to open that "
        "flow's failed runs of that " + ("day." if unit == "hour" else f"{unit}.")
    )
    event = chart(charts.flow_rate_lines(rates, unit), "flow_failure_rates")
    point = charts.clicked_point(event)
    if point:
        drill_to_bucket(
            point[1],
            unit,
            flow=[point[0]],
            status=insights.narrowed_statuses(run_filter, FAILED_STATES),
        )


def jump_sentence(jump: insights.VersionJump) -> str:
    return (
        f"**{plain(jump.flow_name)}**: failure rate {percent(jump.before)} → "
        f"{percent(jump.after)} since version {code(short_id(jump.flow_version_id))} "
        f"(first run {day_text(jump.first_seen)})"
    )


def show_versions(versions) -> None:
    st.subheader("Failure rate by flow version")
    if versions.empty:
        st.caption("No runs with a known flow version in this range.")
        return
    jump = insights.biggest_version_jump(versions)
    if jump:
        st.warning(jump_sentence(jump), icon=":material/trending_up:")
    st.caption(
        "Failure rate in this range per version; “Before” is the flow's previous version "
        "over all its runs. Select a row to open that version's runs."
    )
    shown = pd.DataFrame(
        {
            "Flow": versions["flow_name"],
            "Version": versions["flow_version_id"].map(short_id),
            "First run": versions["first_seen"],
            "Runs": versions["runs"],
            "Failure rate": versions["rate"] * 100,
            "Before": versions["previous_rate"] * 100,
            "Change": insights.rate_changes(versions) * 100,
        }
    )
    event = table(
        shown,
        "versions",
        {
            "First run": st.column_config.DatetimeColumn(format="MMM D, YYYY, h:mm a"),
            "Failure rate": st.column_config.NumberColumn(format="%.0f%%"),
            "Before": st.column_config.NumberColumn(format="%.0f%%"),
            "Change": st.column_config.NumberColumn(
                format="%+.0f pts", help="Failure rate minus Before"
            ),
        },
        height=300,
    )
    row = selected_row(event, versions)
    if row is not None:
        drill(flow=[row["flow_name"]], version=row["flow_version_id"])


# ---------------------------------------------------------------- Failed steps tab


def show_failed_steps(store, run_filter) -> None:
    st.subheader("Failed steps")
    steps = store.cached(insights.failed_steps, run_filter)
    if steps.empty:
        st.caption("No Failed runs in this range.")
        return
    st.caption(
        "Failed runs by flow and the step that failed, with the step's share of that "
        "flow's Failed runs. Select a row to open those runs."
    )
    shown = pd.DataFrame(
        {
            "Flow": steps["flow_name"],
            "Failed step": steps["step_label"],
            "Runs": steps["runs"],
            "Share of flow's failures": steps["share"],
        }
    )
    event = table(
        shown,
        "failed_steps",
        {
            "Share of flow's failures": st.column_config.ProgressColumn(
                format="percent", min_value=0, max_value=1
            )
        },
    )
    row = selected_row(event, steps)
    if row is None:
        return
    if row["failed_step"] is None or pd.isna(row["failed_step"]):
        st.info(
            "These runs have no failed step recorded, so they cannot be opened as one list. "
            "Open the flow's Failed runs on the Runs page instead.",
            icon=":material/info:",
        )
        return
    drill(
        flow=[row["flow_name"]],
        status=[insights.FAILED_STEP_STATUS],
        failed_step=row["failed_step"],
    )


def show_other_failed_states(store, run_filter) -> None:
    st.subheader("Other failed states")
    states = store.cached(insights.other_failed_states, run_filter)
    if states.empty:
        names = [label(name) for name in insights.OTHER_FAILED_STATES]
        st.caption(f"No {', '.join(names[:-1])} or {names[-1]} runs in this range.")
        return
    st.caption(
        "Runs halted by the platform rather than by a step, per flow, with their share of "
        "that flow's failed-state runs. Select a row to open those runs."
    )
    shown = pd.DataFrame(
        {
            "Flow": states["flow_name"],
            "Status": [[label(name)] for name in states["status"]],
            "Runs": states["runs"],
            "Share of flow's failures": states["share"],
        }
    )
    event = table(
        shown,
        "other_failed_states",
        {
            "Status": status_column(),
            "Share of flow's failures": st.column_config.ProgressColumn(
                format="percent", min_value=0, max_value=1
            ),
        },
    )
    row = selected_row(event, states)
    if row is not None:
        drill(flow=[row["flow_name"]], status=[row["status"]])


# ---------------------------------------------------------------- Errors tab


def show_error_signatures(store, run_filter, unit, tz_name) -> None:
    st.subheader("Error signatures")
    found = store.cached(insights.error_signatures, run_filter, unit, tz_name)
    if found.empty:
        st.caption("No error messages in this range.")
        return
    total = int(found["total"].iloc[0])
    st.caption(
        f"{'The' if total <= len(found) else f'The top {len(found)} of'} {total:,} kinds "
        f"of error in this range: messages grouped once ids, numbers, URLs and quotes are "
        f"stripped. First and last seen are over all runs; New means first seen in this "
        f"range. Select a row to open those runs."
    )
    shown = pd.DataFrame(
        {
            "New": found["new"].map({True: "New", False: ""}),
            "Error": messages_as_shown(found["signature"]),
            "Runs": found["runs"],
            f"Per {unit}": found["trend"],
            "Flows": found["flows"],
            "Steps": found["steps"],
            "First seen": found["first_seen"],
            "Last seen": found["last_seen"],
        }
    )
    time_format = "MMM D, YYYY, h:mm a"
    event = table(
        shown,
        "error_signatures",
        {
            "New": st.column_config.TextColumn(
                width="small", help="First seen (over all runs) within this range"
            ),
            "Error": st.column_config.TextColumn(width="large"),
            f"Per {unit}": st.column_config.BarChartColumn(y_min=0),
            "Flows": st.column_config.ListColumn(),
            "Steps": st.column_config.ListColumn(),
            "First seen": st.column_config.DatetimeColumn(format=time_format),
            "Last seen": st.column_config.DatetimeColumn(format=time_format),
        },
        height=420,
    )
    row = selected_row(event, found)
    if row is not None:
        drill(signature=row["signature"])


# ---------------------------------------------------------------- Quota tab


def show_quota_month(store, run_filter, tz_name) -> None:
    minute = now_utc().replace(second=0, microsecond=0)
    month = store.cached(insights.quota_month_to_date, run_filter, minute, tz_name)
    left, right = st.columns(2)
    left.metric(
        f"{label(insights.QUOTA_STATUS)}, {month.month_start:%B} to date",
        f"{month.this_month:,}",
        delta=month.change,
        delta_color="inverse",
        help=f"Compared with {day_text(month.last_month_start)}–"
        f"{day_text(month.last_month_last_day)}, "
        f"the same part of last month. Uses the flow, status and archived filters, "
        f"not the date range.",
    )
    right.metric(f"Same period of {month.last_month_start:%B}", f"{month.last_month:,}")


def show_quota(store, run_filter, tz_name) -> None:
    st.subheader("Quota exceeded")
    st.caption(
        "Runs that could not proceed because no AI Workflow Runs were left in the period. "
        "You may contact Sales to increase your limit."
    )
    show_quota_month(store, run_filter, tz_name)
    days = store.cached(insights.quota_per_day, run_filter, tz_name)
    if days.empty:
        st.caption("No Quota Exceeded runs in this range.")
        return
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Per day** (click a bar to open those runs)")
        point = charts.clicked_point(chart(charts.quota_day_bars(days), "quota_per_day"))
    if point:
        drill_to_bucket(point[1], "day", status=insights.narrowed_statuses(run_filter, [point[0]]))
    with right:
        show_quota_flows(store, run_filter)


def show_quota_flows(store, run_filter) -> None:
    flows = store.cached(insights.quota_per_flow, run_filter)
    st.markdown("**Per flow** (select a row to open those runs)")
    shown = pd.DataFrame(
        {"Flow": flows["flow_name"], "Runs": flows["runs"], "Share": flows["share"]}
    )
    event = table(
        shown,
        "quota_per_flow",
        {"Share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
    )
    row = selected_row(event, flows)
    if row is not None:
        drill(flow=[row["flow_name"]], status=[insights.QUOTA_STATUS])


# ---------------------------------------------------------------- Durations tab


def show_duration_percentiles(store, run_filter) -> None:
    st.subheader("Durations per flow")
    flows = store.cached(insights.duration_percentiles, run_filter)
    if flows.empty:
        st.caption("No finished runs with a duration in this range.")
        return
    st.caption(
        "Median, 95th and 99th percentile of finished runs' durations, slowest first. "
        "Select a row to open the flow's finished runs."
    )
    shown = pd.DataFrame(
        {
            "Flow": flows["flow_name"],
            "Runs": flows["runs"],
            **{name: flows[name.lower()].map(short_duration) for name in ("P50", "P95", "P99")},
        }
    )
    event = table(shown, "duration_percentiles", {})
    row = selected_row(event, flows)
    if row is not None:
        drill(
            flow=[row["flow_name"]], status=insights.narrowed_statuses(run_filter, FINISHED_STATES)
        )


def show_slowest_steps(store, run_filter) -> None:
    st.subheader("Slowest steps")
    steps = store.cached(insights.slowest_steps, run_filter)
    if steps.empty:
        st.caption("No step timings in this range (runs without step logs have none).")
        return
    st.caption(
        "Steps with the highest 95th-percentile duration, over the runs in this view "
        "that kept their step logs. Select a row to open the flow's runs."
    )
    shown = pd.DataFrame(
        {
            "Flow": steps["flow_name"],
            "Step": steps["step_label"],
            "Runs": steps["runs"],
            "Average": steps["avg_ms"].map(short_duration),
            "P95": steps["p95_ms"].map(short_duration),
        }
    )
    event = table(shown, "slowest_steps", {})
    row = selected_row(event, steps)
    if row is not None:
        drill(flow=[row["flow_name"]])


# ---------------------------------------------------------------- the page


def show_tab_notice() -> None:
    """Streamlit drops an unknown tab from the URL by itself (the key is bound); say so."""
    asked = st.query_params.get("view")
    if asked is not None and asked not in TABS:
        url_state.show_notices(
            [(f'Ignored tab "{asked}" from the link: it is not one of {", ".join(TABS)}.')]
        )


def show_raw_only(note: insights.RetentionNote | None) -> None:
    """Under a part that needs raw runs: the range before the retention boundary has none."""
    if note is not None:
        st.caption(f":material/history: {note.raw_only}")


def show_tabs(store, run_filter: RunFilter, tz_name: str) -> None:
    show_tab_notice()
    note = store.cached(insights.retention_note, run_filter)
    unit = store.cached(insights.time_unit, run_filter)
    trends, steps, errors, quota, durations, agents = st.tabs(TABS, key="view", bind="query-params")
    if trends.open:
        with trends:
            found = store.cached(insights.trends, run_filter, unit, tz_name)
            show_runs_over_time(found.runs_over_time, run_filter, unit, tz_name)
            show_flow_failure_rates(found.flow_failure_rates, run_filter, unit)
            show_versions(found.versions)
    if steps.open:
        with steps:
            show_failed_steps(store, run_filter)
            show_other_failed_states(store, run_filter)
    if errors.open:
        with errors:
            show_raw_only(note)
            show_error_signatures(store, run_filter, unit, tz_name)
    if quota.open:
        with quota:
            show_quota(store, run_filter, tz_name)
    if durations.open:
        with durations:
            show_duration_percentiles(store, run_filter)
            show_raw_only(note)
            show_slowest_steps(store, run_filter)
    if agents.open:
        with agents:
            show_raw_only(note)
            show_agents(store, run_filter, unit, tz_name)


def show_empty_state() -> None:
    st.info(
        "No runs match this view. Try a longer date range, fewer flows or statuses, "
        "clearing the search, or Show archived.",
        icon=":material/search_off:",
    )


follow_pending_drill()
st.title("Insights")
with page_store() as store:
    show_sample_note(store)
    tz = user_timezone()
    run_filter = render_toolbar(store.cached(flow_names), tz, agent_choices(store))
    retention = store.cached(insights.retention_note, run_filter)
    if retention is not None:
        st.caption(f":material/history: {retention.figures}")
    headline = show_headline(store, run_filter)
    if headline.total == 0:
        show_empty_state()
    show_tabs(store, run_filter, zone_name(tz))
