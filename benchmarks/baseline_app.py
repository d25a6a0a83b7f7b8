"""The baseline: the Runs and Insights pages written the way a typical quick dashboard is.

Every run is loaded into one pandas DataFrame (`SELECT * FROM runs`, cached with st.cache_data,
the usual recipe), then filtered, sorted and sliced in pandas on every rerun; the Insights view
is pandas groupbys over the filtered frame. It exists only so the benchmark can put a number
beside each of Runs Explorer's figures; it is not part of the app. Run it with
`RUNS_DB=... streamlit run benchmarks/baseline_app.py`.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import duckdb
import pandas as pd
import streamlit as st

from runs_store.domain.statuses import FAILED_STATES, STATUS_NAMES, UNFINISHED, label
from runs_store.queries.filters import DATE_PRESETS, PRESET_LABELS

PAGE_SIZE = 50
RANGES = [key for key in PRESET_LABELS if key != "custom"]
LIST_COLUMNS = [
    "id",
    "flow_name",
    "status",
    "started_at",
    "duration_ms",
    "failed_step",
    "error_message",
]


@st.cache_data(show_spinner="Loading runs…")
def load_runs(path: str) -> pd.DataFrame:
    con = duckdb.connect(path, read_only=True)
    try:
        return con.sql("SELECT * FROM runs").df()
    finally:
        con.close()


def filter_runs(runs: pd.DataFrame, flows, statuses, preset: str, archived: bool) -> pd.DataFrame:
    mask = pd.Series(True, index=runs.index)
    if flows:
        mask &= runs["flow_name"].isin(flows)
    if statuses:
        mask &= runs["status"].isin(statuses)
    if DATE_PRESETS[preset] is not None:
        now = datetime.now(UTC).replace(tzinfo=None)
        mask &= runs["started_at"] >= now - DATE_PRESETS[preset]
    if not archived:
        mask &= runs["archived_at"].isna()
    return runs[mask]


def show_runs(matching: pd.DataFrame) -> None:
    ordered = matching.sort_values(["started_at", "id"], ascending=False)
    pages = max(1, math.ceil(len(ordered) / PAGE_SIZE))
    page = st.pagination(pages, key="page", bind="query-params")
    start = (page - 1) * PAGE_SIZE
    st.dataframe(
        ordered.iloc[start : start + PAGE_SIZE][LIST_COLUMNS], width="stretch", hide_index=True
    )
    st.caption(f"{start + 1:,}-{min(start + PAGE_SIZE, len(ordered)):,} of {len(ordered):,} runs")


def show_insights(matching: pd.DataFrame) -> None:
    finished = ~matching["status"].isin(UNFINISHED)
    failed = matching["status"].isin(FAILED_STATES)
    columns = st.columns(3)
    columns[0].metric("Runs", f"{len(matching):,}")
    columns[1].metric("Succeeded", f"{(matching['status'] == 'SUCCEEDED').sum():,}")
    columns[2].metric("Failed", f"{failed.sum():,}")
    per_day = (
        matching.assign(day=matching["started_at"].dt.floor("D"))
        .groupby(["day", "status"])
        .size()
        .unstack(fill_value=0)
    )
    st.bar_chart(per_day)
    rates = (
        matching.assign(finished=finished, failed=failed)
        .groupby("flow_name")[["finished", "failed"]]
        .sum()
    )
    rates["rate"] = rates["failed"] / rates["finished"].where(rates["finished"] > 0)
    st.dataframe(rates.sort_values("failed", ascending=False).head(5))
    failures = matching[matching["status"] == "FAILED"]
    st.dataframe(
        failures.groupby(["flow_name", "failed_step"])
        .size()
        .sort_values(ascending=False)
        .head(100)
        .rename("runs")
    )
    signatures = (
        matching.dropna(subset=["error_signature"])
        .groupby("error_signature")
        .agg(
            runs=("id", "size"),
            flows=("flow_name", "nunique"),
            first_seen=("started_at", "min"),
            last_seen=("started_at", "max"),
        )
    )
    st.dataframe(signatures.sort_values("runs", ascending=False).head(50))
    durations = (
        matching[finished]
        .dropna(subset=["duration_ms"])
        .groupby("flow_name")["duration_ms"]
        .quantile([0.5, 0.95, 0.99])
        .unstack()
    )
    st.dataframe(durations)


def main() -> None:
    st.set_page_config(page_title="Baseline", layout="wide")
    runs = load_runs(os.environ.get("RUNS_DB", "data/runs.duckdb"))
    view = st.sidebar.radio("View", ["Runs", "Insights"], key="view", bind="query-params")
    top = st.columns(4)
    flows = top[0].multiselect(
        "Flow", sorted(runs["flow_name"].unique()), key="flow", bind="query-params"
    )
    statuses = top[1].multiselect(
        "Status", STATUS_NAMES, format_func=label, key="status", bind="query-params"
    )
    preset = top[2].selectbox(
        "Date range",
        RANGES,
        index=RANGES.index("7d"),
        format_func=PRESET_LABELS.get,
        key="range",
        bind="query-params",
    )
    archived = top[3].checkbox("Show archived", key="archived", bind="query-params")
    matching = filter_runs(runs, flows, statuses, preset, archived)
    if view == "Runs":
        show_runs(matching)
    else:
        show_insights(matching)


main()
