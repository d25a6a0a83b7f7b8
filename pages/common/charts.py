"""Plotly figures for the Insights page, in the status colours every other page uses.

Builders take the small DataFrames runs_store.services.insights returns and give back figures; each
point
carries `customdata` naming what it stands for (status, flow, bucket), so a click can drill down.
Plotly reads a few HTML tags in names and hover text, so text from records is HTML-escaped
(plotly shows the entities as the original characters).
"""

from __future__ import annotations

from html import escape

import pandas as pd
import plotly.graph_objects as go

from runs_store.domain.statuses import COLORS, STATUSES

QUOTA_COLOR = COLORS["QUOTA_EXCEEDED"]
_HOVER_TIME = {"hour": "%b %d, %H:00", "day": "%b %d, %Y", "week": "week of %b %d, %Y"}


def _layout(fig: go.Figure, height: int, y_title: str, percent: bool = False) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        legend={"orientation": "h", "y": -0.18, "x": 0, "traceorder": "normal"},
        clickmode="event+select",
        dragmode=False,
        hovermode="closest",
    )
    fig.update_yaxes(title_text=y_title, tickformat=".0%" if percent else ",d", rangemode="tozero")
    fig.update_xaxes(title_text=None)
    return fig


def status_bars(buckets: pd.DataFrame, unit: str) -> go.Figure:
    """Runs per time bucket stacked by status, in the statuses' order and colours."""
    fig = go.Figure()
    for run_status in STATUSES:
        rows = buckets[buckets["status"] == run_status.name]
        if rows.empty:
            continue
        fig.add_bar(
            x=rows["bucket"],
            y=rows["runs"],
            name=run_status.label,
            marker_color=run_status.color,
            customdata=[[run_status.name, bucket.isoformat()] for bucket in rows["bucket"]],
            hovertemplate=f"%{{x|{_HOVER_TIME[unit]}}}<br>{run_status.label}: "
            f"%{{y:,}}<extra></extra>",
        )
    fig.update_layout(barmode="stack", bargap=0.15)
    return _layout(fig, 320, "Runs")


def flow_rate_lines(rates: pd.DataFrame, unit: str) -> go.Figure:
    """Failure rate per bucket, one line per flow."""
    fig = go.Figure()
    for flow, rows in rates.groupby("flow_name", sort=True):
        name = escape(str(flow))
        fig.add_scatter(
            x=rows["bucket"],
            y=rows["rate"],
            name=name,
            mode="lines+markers",
            customdata=[
                [flow, bucket.isoformat(), failed, finished]
                for bucket, failed, finished in zip(
                    rows["bucket"], rows["failed"], rows["finished"], strict=True
                )
            ],
            hovertemplate=f"%{{x|{_HOVER_TIME[unit]}}}<br>%{{fullData.name}}: "
            f"%{{y:.0%}} (%{{customdata[2]:,}} of "
            f"%{{customdata[3]:,}})<extra></extra>",
        )
    return _layout(fig, 320, "Failure rate", percent=True)


def call_rate_lines(rates: pd.DataFrame, unit: str) -> go.Figure:
    """Tool-call failure rate per bucket, one line per tool or model (agents.failure_over_time);
    each point carries [key, bucket, failed, calls]."""
    fig = go.Figure()
    for key, rows in rates.groupby("key", sort=True):
        fig.add_scatter(
            x=rows["bucket"],
            y=rows["rate"],
            name=escape(str(key)),
            mode="lines+markers",
            customdata=[
                [key, bucket.isoformat(), failed, calls]
                for bucket, failed, calls in zip(
                    rows["bucket"], rows["failed"], rows["calls"], strict=True
                )
            ],
            hovertemplate=f"%{{x|{_HOVER_TIME[unit]}}}<br>%{{fullData.name}}: "
            f"%{{y:.0%}} (%{{customdata[2]:,}} of %{{customdata[3]:,}} calls failed)"
            "<extra></extra>",
        )
    return _layout(fig, 340, "Failed calls", percent=True)


def calls_per_run_bars(counts: pd.DataFrame) -> go.Figure:
    """How many runs made each number of tool calls (agents.calls_per_run)."""
    fig = go.Figure()
    fig.add_bar(
        x=counts["tool_calls"],
        y=counts["runs"],
        name="Runs",
        customdata=[[int(calls)] for calls in counts["tool_calls"]],
        hovertemplate="%{x:,} tool calls: %{y:,} runs<extra></extra>",
    )
    _layout(fig, 300, "Runs")
    fig.update_xaxes(title_text="Tool calls in the run", dtick=1)
    return fig


def quota_day_bars(days: pd.DataFrame) -> go.Figure:
    """Quota Exceeded runs per calendar day."""
    fig = go.Figure()
    fig.add_bar(
        x=days["day"],
        y=days["runs"],
        name="Quota Exceeded",
        marker_color=QUOTA_COLOR,
        customdata=[["QUOTA_EXCEEDED", day.isoformat()] for day in days["day"]],
        hovertemplate="%{x|%b %d, %Y}: %{y:,} runs<extra></extra>",
    )
    return _layout(fig, 260, "Runs")


def clicked_point(event) -> list | None:
    """The customdata of the point a chart's selection event holds, if any."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        if point.get("customdata"):
            return list(point["customdata"])
    return None
