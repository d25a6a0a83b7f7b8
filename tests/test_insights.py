"""The Insights aggregates, each checked against the same number computed here in plain pandas,
on both backends.

A small database is generated once with a fixed end date; every expected value is computed from
rows fetched from it with a plain SELECT, never typed in. Each test that reads the store runs on
DuckDB and on ClickHouse, in this process (chdb) and through a server's HTTP interface (the
chdb-backed server of clickhouse_http.py), each a copy of the same runs (`con`), judged by that
one oracle. Each ClickHouse copy also holds an older version of every seventh run (another
status, not archived, another error, steps at other positions): a read that does not see each
run once in its newest version, and only the steps of that version, gets numbers the oracle does
not.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import clickhouse_http
from backends import COPIED
from conftest import ROOT, build_db
from runs_store.domain.statuses import FAILED_STATES, UNFINISHED
from runs_store.queries.filters import RunFilter
from runs_store.services import insights
from runs_store.store import clickhouse
from runs_store.store.backend import CLICKHOUSE, dialect, open_location
from runs_store.store.database import open_db
from runs_store.store.location import ChdbLocation, parse_location

END = datetime(2026, 11, 5, 12, 0)
WEEK = RunFilter(since=END - timedelta(days=7), until=END)
MONTH = RunFilter(since=END - timedelta(days=30), until=END)
ALL_TIME = RunFilter()
TZ = "America/New_York"
RUN_COLUMNS = (
    "id, flow_name, status, started_at, failed_step, failed_step_display, "
    "error_signature, duration_ms, archived_at, flow_version_id"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_db(
        tmp_path_factory.mktemp("insights") / "runs.duckdb", runs=2500, days=60, seed=5, end=END
    )


# An older version of every seventh run, and of its steps, which the newest must hide.
STALE_RUNS = """
    SELECT * REPLACE (updated_at - INTERVAL 1 DAY AS updated_at, 'RUNNING' AS status,
                      NULL::TIMESTAMP AS archived_at, 'a stale version' AS error_signature,
                      'stale-' || coalesce(flow_version_id, '') AS flow_version_id,
                      10 * duration_ms AS duration_ms)
    FROM runs WHERE hash(id) % 7 = 0"""
STALE_STEPS = """
    SELECT s.* REPLACE (s.position + 1000 AS position, 10 * s.duration_ms AS duration_ms),
           r.updated_at - INTERVAL 1 DAY AS run_updated_at
    FROM run_steps s JOIN runs r ON r.id = s.run_id WHERE hash(r.id) % 7 = 0"""


@pytest.fixture(scope="module")
def duck(db):
    """The DuckDB store: the oracle's rows come from it."""
    with open_db(db, read_only=True) as connection:
        yield connection


PASSWORD = "insights:/@ secret"


def copy_with_stale_versions(duck, connection) -> None:
    """The DuckDB store's runs, steps and rejects into a ClickHouse store (as tests/backends.py
    copies a store), and the stale older versions of some runs and of their steps."""
    for table, select in COPIED.items():
        connection.insert_arrow(table, duck.sql(select).to_arrow_table())
    connection.insert_arrow("runs", duck.sql(STALE_RUNS).to_arrow_table())
    connection.insert_arrow("run_steps", duck.sql(STALE_STEPS).to_arrow_table())


@pytest.fixture(scope="module")
def chdb_con(duck, shared_chdb):
    """The runs in chdb, as a database beside the shared chdb store (chdb holds one directory
    per process)."""
    with open_location(ChdbLocation(shared_chdb.path, database="insights_test")) as connection:
        copy_with_stale_versions(duck, connection)
        yield connection


@pytest.fixture(scope="module")
def http_con(duck, tmp_path_factory):
    """The runs on a ClickHouse server, reached over HTTP."""
    with clickhouse_http.running(
        tmp_path_factory.mktemp("insights_ch") / "server", PASSWORD
    ) as port:
        location = parse_location(f"clickhouse://default@127.0.0.1:{port}/insights")
        with clickhouse.open_store(location, password=PASSWORD) as connection:
            copy_with_stale_versions(duck, connection)
            yield connection


@pytest.fixture(scope="module", params=["duckdb", "chdb", "http"])
def con(request, duck):
    """The store on each backend."""
    return duck if request.param == "duckdb" else request.getfixturevalue(f"{request.param}_con")


@pytest.fixture(scope="module", params=["chdb", "http"])
def clickhouse_con(request):
    """The store on ClickHouse, either way."""
    return request.getfixturevalue(f"{request.param}_con")


@pytest.fixture(scope="module")
def all_runs(duck) -> pd.DataFrame:
    return duck.execute(f"SELECT {RUN_COLUMNS} FROM runs").df()


def in_view(runs: pd.DataFrame, run_filter: RunFilter) -> pd.DataFrame:
    """The filter applied in pandas (the subset of RunFilter these tests use)."""
    keep = pd.Series(True, index=runs.index)
    if not run_filter.include_archived:
        keep &= runs["archived_at"].isna()
    if run_filter.since is not None:
        keep &= runs["started_at"] >= run_filter.since
    if run_filter.until is not None:
        keep &= runs["started_at"] < run_filter.until
    if run_filter.flows:
        keep &= runs["flow_name"].isin(run_filter.flows)
    if run_filter.statuses:
        keep &= runs["status"].isin(run_filter.statuses)
    return runs[keep]


def local(moments: pd.Series, tz: str) -> pd.Series:
    return moments.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)


def local_bucket(moments: pd.Series, unit: str, tz: str) -> pd.Series:
    stamps = local(moments, tz)
    if unit == "week":
        days = stamps.dt.floor("D")
        return days - pd.to_timedelta(days.dt.weekday, unit="D")
    return stamps.dt.floor("h" if unit == "hour" else "D")


def failed(frame: pd.DataFrame) -> pd.Series:
    return frame["status"].isin(FAILED_STATES)


def finished(frame: pd.DataFrame) -> pd.Series:
    return ~frame["status"].isin(UNFINISHED)


# ---------------------------------------------------------------- ranges and units


@pytest.mark.parametrize(
    "length, unit",
    [
        (timedelta(hours=24), "hour"),
        (timedelta(days=2), "hour"),
        (timedelta(days=2, minutes=1), "day"),
        (timedelta(days=90), "day"),
        (timedelta(days=91), "week"),
        (timedelta(days=800), "week"),
    ],
)
def test_choose_unit_uses_hours_up_to_two_days_days_up_to_ninety_then_weeks(length, unit):
    assert insights.choose_unit(length) == unit


def test_time_unit_for_all_time_follows_the_span_of_the_matching_runs(con, all_runs):
    span = all_runs["started_at"].max() - all_runs["started_at"].min()
    assert insights.time_unit(con, RunFilter(include_archived=True)) == insights.choose_unit(span)
    newest = all_runs["started_at"].max()
    last_day = RunFilter(since=newest - timedelta(hours=20))
    assert insights.time_unit(con, last_day.with_(until=newest)) == "hour"


def test_previous_range_has_the_same_length_and_ends_where_the_range_starts():
    previous = insights.previous_filter(WEEK, now=END)
    assert previous.until == WEEK.since
    assert previous.until - previous.since == WEEK.until - WEEK.since
    open_ended = RunFilter(since=END - timedelta(days=1))
    previous = insights.previous_filter(open_ended, now=END + timedelta(seconds=42))
    assert previous.since == END - timedelta(days=2) and previous.until == END - timedelta(days=1)


def test_all_time_has_no_previous_range():
    assert insights.previous_filter(RunFilter(), now=END) is None


# ---------------------------------------------------------------- headline and trends


def test_headline_counts_match_the_runs_in_range(con, all_runs):
    rows = in_view(all_runs, WEEK)
    got = insights.headline(con, WEEK)
    counts = rows["status"].value_counts()
    assert got.total == len(rows)
    assert got.finished == int(finished(rows).sum())
    assert got.succeeded == counts.get("SUCCEEDED", 0)
    assert (got.failed, got.quota_exceeded, got.timeout, got.internal_error) == (
        counts.get("FAILED", 0),
        counts.get("QUOTA_EXCEEDED", 0),
        counts.get("TIMEOUT", 0),
        counts.get("INTERNAL_ERROR", 0),
    )
    assert got.success_rate == pytest.approx(counts.get("SUCCEEDED", 0) / finished(rows).sum())


@pytest.mark.parametrize(
    "run_filter, unit, tz",
    [
        (MONTH, "day", TZ),
        (MONTH, "hour", "Asia/Kolkata"),
        (MONTH, "week", "Europe/Paris"),
        (ALL_TIME, "hour", "Asia/Kathmandu"),
        (ALL_TIME, "day", "Australia/Lord_Howe"),
    ],
)
def test_runs_over_time_counts_each_status_per_local_bucket(con, all_runs, run_filter, unit, tz):
    rows = in_view(all_runs, run_filter)
    expected = (
        rows.assign(bucket=local_bucket(rows["started_at"], unit, tz))
        .groupby(["bucket", "status"])
        .size()
        .rename("runs")
        .reset_index()
    )
    got = insights.runs_over_time(con, run_filter, unit, tz)
    merged = expected.merge(got, on=["bucket", "status"], how="outer", suffixes=("", "_got"))
    assert len(got) == len(expected)
    assert (merged["runs"] == merged["runs_got"]).all()
    assert got["runs"].sum() == len(rows)


def test_week_buckets_start_on_monday_local_time(con):
    got = insights.runs_over_time(con, MONTH, "week", TZ)
    assert set(pd.to_datetime(got["bucket"]).dt.weekday) == {0}
    assert (pd.to_datetime(got["bucket"]).dt.hour == 0).all()


def test_failure_rate_per_flow_covers_the_five_flows_with_most_failed_state_runs(con, all_runs):
    rows = in_view(all_runs, MONTH)
    failures = rows[failed(rows)]["flow_name"].value_counts()
    worst = failures.sort_values(ascending=False)
    cutoff = worst.iloc[4]
    got = insights.flow_failure_rates(con, MONTH, "day", TZ)
    flows = set(got["flow_name"])
    assert len(flows) == 5
    assert set(worst[worst > cutoff].index) <= flows <= set(worst[worst >= cutoff].index)
    for flow in flows:
        mine = rows[rows["flow_name"] == flow].assign(
            bucket=lambda f: local_bucket(f["started_at"], "day", TZ)
        )
        expected = mine.groupby("bucket").apply(
            lambda f: pd.Series({"finished": finished(f).sum(), "failed": failed(f).sum()})
        )
        shown = got[got["flow_name"] == flow].set_index("bucket")
        assert (shown["finished"] == expected["finished"].reindex(shown.index)).all()
        assert (shown["failed"] == expected["failed"].reindex(shown.index)).all()
        rate = (expected["failed"] / expected["finished"]).reindex(shown.index)
        assert np.allclose(shown["rate"].astype(float), rate.astype(float), equal_nan=True)


# ---------------------------------------------------------------- flow versions


def expected_versions(all_runs: pd.DataFrame, run_filter: RunFilter) -> pd.DataFrame:
    lifetime = in_view(all_runs, run_filter.with_(since=None, until=None))
    lifetime = lifetime[lifetime["flow_version_id"].notna()]
    stats = (
        lifetime.groupby(["flow_name", "flow_version_id"])
        .apply(
            lambda f: pd.Series(
                {
                    "first_seen": f["started_at"].min(),
                    "rate": failed(f).sum() / finished(f).sum() if finished(f).sum() else np.nan,
                    "finished_all": finished(f).sum(),
                }
            )
        )
        .reset_index()
    )
    stats = stats.sort_values(["flow_name", "first_seen", "flow_version_id"])
    stats["previous_rate"] = stats.groupby("flow_name")["rate"].shift()
    stats["previous_finished"] = stats.groupby("flow_name")["finished_all"].shift()
    rows = in_view(all_runs, run_filter)
    in_range = (
        rows[rows["flow_version_id"].notna()]
        .groupby("flow_version_id")
        .apply(
            lambda f: pd.Series(
                {"runs": len(f), "finished": finished(f).sum(), "failed": failed(f).sum()}
            )
        )
    )
    return stats.merge(in_range, left_on="flow_version_id", right_index=True)


@pytest.mark.parametrize("run_filter", [WEEK, ALL_TIME], ids=["week", "all time"])
def test_version_rates_count_runs_in_range_and_compare_with_the_previous_version(
    con, all_runs, run_filter
):
    expected = expected_versions(all_runs, run_filter).set_index("flow_version_id")
    got = insights.version_failure_rates(con, run_filter, "UTC").set_index("flow_version_id")
    assert set(got.index) == set(expected.index)
    expected = expected.loc[got.index]
    assert (got["runs"] == expected["runs"]).all()
    assert (got["failed"] == expected["failed"]).all()
    assert (pd.to_datetime(got["first_seen"]) == expected["first_seen"]).all()
    assert np.allclose(
        got["previous_rate"].astype(float), expected["previous_rate"].astype(float), equal_nan=True
    )


def test_version_first_seen_is_shown_in_the_users_timezone(con, all_runs):
    utc = insights.version_failure_rates(con, WEEK, "UTC").set_index("flow_version_id")
    tokyo = insights.version_failure_rates(con, WEEK, "Asia/Tokyo").set_index("flow_version_id")
    shift = pd.to_datetime(tokyo["first_seen"]) - pd.to_datetime(utc["first_seen"].loc[tokyo.index])
    assert (shift == timedelta(hours=9)).all()


def test_biggest_version_jump_is_the_largest_rise_over_the_previous_version(con, all_runs):
    versions = insights.version_failure_rates(con, MONTH, "UTC")
    expected = expected_versions(all_runs, MONTH)
    expected["rate_in_range"] = expected["failed"] / expected["finished"]
    eligible = expected[(expected["finished"] >= 20) & (expected["previous_finished"] >= 20)]
    rises = (eligible["rate_in_range"] - eligible["previous_rate"]).dropna()
    jump = insights.biggest_version_jump(versions)
    assert rises.max() >= 0.05, "the sample's broken flow version should stand out"
    best = eligible.loc[rises.idxmax()]
    assert jump.flow_version_id == best["flow_version_id"]
    assert jump.after == pytest.approx(best["rate_in_range"])
    assert jump.before == pytest.approx(best["previous_rate"])


def test_no_version_jump_without_enough_runs(con):
    versions = insights.version_failure_rates(con, WEEK, "UTC")
    assert insights.biggest_version_jump(versions, min_finished=10**9) is None
    assert insights.biggest_version_jump(versions.iloc[0:0]) is None


# ---------------------------------------------------------------- the Trends tab in one pass


@pytest.mark.parametrize(
    "run_filter",
    [MONTH, ALL_TIME, MONTH.with_(statuses=("FAILED",))],
    ids=["month", "all time", "failed only"],
)
def test_trends_are_the_three_trend_views_from_one_pass(con, run_filter):
    unit = insights.time_unit(con, run_filter)
    got = insights.trends(con, run_filter, unit, TZ)
    pd.testing.assert_frame_equal(
        got.runs_over_time, insights.runs_over_time(con, run_filter, unit, TZ)
    )
    pd.testing.assert_frame_equal(
        got.flow_failure_rates, insights.flow_failure_rates(con, run_filter, unit, TZ)
    )
    pd.testing.assert_frame_equal(got.versions, insights.version_failure_rates(con, run_filter, TZ))


def test_utc_offsets_give_one_stretch_per_offset_between_the_clock_changes(con):
    year = (datetime(2026, 1, 1, 0, 7), datetime(2026, 12, 31, 23, 59))
    assert insights.utc_offsets(con, *year, "America/New_York") == [
        (datetime(2026, 1, 1), datetime(2026, 3, 8, 7), timedelta(hours=-5)),
        (datetime(2026, 3, 8, 7), datetime(2026, 11, 1, 6), timedelta(hours=-4)),
        (datetime(2026, 11, 1, 6), datetime(2027, 1, 1), timedelta(hours=-5)),
    ]
    assert insights.utc_offsets(con, *year, "Asia/Kathmandu") == [
        (datetime(2026, 1, 1), datetime(2027, 1, 1), timedelta(hours=5, minutes=45))
    ]


def test_runs_beyond_the_offsets_looked_up_ahead_are_bucketed_one_by_one(
    con, all_runs, monkeypatch
):
    monkeypatch.setattr(insights, "OFFSETS_AHEAD", timedelta(days=3))
    rows = in_view(all_runs, ALL_TIME)
    expected = (
        rows.assign(bucket=local_bucket(rows["started_at"], "day", TZ))
        .groupby(["bucket", "status"])
        .size()
        .rename("runs")
        .reset_index()
    )
    got = insights.runs_over_time(con, ALL_TIME, "day", TZ)
    assert got.merge(expected, on=["bucket", "status", "runs"]).shape[0] == len(expected)
    assert len(got) == len(expected)


# ---------------------------------------------------------------- failure breakdowns


def test_failed_steps_count_failed_runs_per_flow_and_step_with_share(con, all_runs):
    rows = in_view(all_runs, MONTH)
    rows = rows[rows["status"] == "FAILED"]
    expected = rows.groupby(["flow_name", "failed_step"], dropna=False).size()
    per_flow = rows.groupby("flow_name").size()
    got = insights.failed_steps(con, MONTH)
    assert got["runs"].sum() == len(rows)
    for _, row in got.iterrows():
        step = row["failed_step"] if isinstance(row["failed_step"], str) else np.nan
        assert row["runs"] == expected.loc[(row["flow_name"], step)]
        assert row["share"] == pytest.approx(row["runs"] / per_flow[row["flow_name"]])
    assert list(got["runs"]) == sorted(got["runs"], reverse=True)


def test_failed_steps_show_the_display_name(con, all_runs):
    got = insights.failed_steps(con, MONTH).dropna(subset=["failed_step"])
    names = (
        all_runs.dropna(subset=["failed_step_display"])
        .groupby(["flow_name", "failed_step"])["failed_step_display"]
        .max()
    )
    for _, row in got.iterrows():
        assert row["step_label"] == names.loc[(row["flow_name"], row["failed_step"])]


def test_other_failed_states_count_per_flow_with_share_of_the_flows_failures(con, all_runs):
    rows = in_view(all_runs, MONTH)
    failures = rows[failed(rows)]
    others = failures[failures["status"] != "FAILED"]
    expected = others.groupby(["flow_name", "status"]).size()
    got = insights.other_failed_states(con, MONTH).set_index(["flow_name", "status"])
    assert got["runs"].sort_index().equals(expected.sort_index().rename("runs"))
    per_flow = failures.groupby("flow_name").size()
    for (flow, _), row in got.iterrows():
        assert row["share"] == pytest.approx(row["runs"] / per_flow[flow])


# ---------------------------------------------------------------- error signatures


def test_error_signatures_count_runs_flows_and_steps_per_signature(con, all_runs):
    rows = in_view(all_runs, MONTH).dropna(subset=["error_signature"])
    got = insights.error_signatures(con, MONTH, "day", TZ, limit=500)
    assert got["total"].iloc[0] == rows["error_signature"].nunique()
    assert len(got) == rows["error_signature"].nunique()
    for _, row in got.iterrows():
        mine = rows[rows["error_signature"] == row["signature"]]
        assert row["runs"] == len(mine)
        assert list(row["flows"]) == sorted(mine["flow_name"].unique())
        steps = mine["failed_step_display"].fillna(mine["failed_step"]).dropna()
        assert list(row["steps"]) == sorted(steps.unique())


def test_error_signatures_first_and_last_seen_span_the_whole_store(con, all_runs):
    got = insights.error_signatures(con, WEEK, "day", "UTC", limit=500)
    for _, row in got.iterrows():
        everywhere = all_runs[all_runs["error_signature"] == row["signature"]]["started_at"]
        assert pd.Timestamp(row["first_seen"]) == everywhere.min()
        assert pd.Timestamp(row["last_seen"]) == everywhere.max()
        assert bool(row["new"]) == (everywhere.min() >= WEEK.since)


def test_error_signature_trend_has_one_count_per_day_of_the_range(con, all_runs):
    rows = in_view(all_runs, WEEK).dropna(subset=["error_signature"])
    got = insights.error_signatures(con, WEEK, "day", TZ)
    first = local(pd.Series([WEEK.since]), TZ).dt.floor("D")[0]
    last = local(pd.Series([WEEK.until - timedelta(microseconds=1)]), TZ).dt.floor("D")[0]
    days = pd.date_range(first, last, freq="D")
    for _, row in got.iterrows():
        mine = rows[rows["error_signature"] == row["signature"]]
        per_day = local_bucket(mine["started_at"], "day", TZ).value_counts()
        assert list(row["trend"]) == [per_day.get(day, 0) for day in days]


def test_error_signatures_keep_the_most_frequent_within_the_limit(con, all_runs):
    rows = in_view(all_runs, MONTH).dropna(subset=["error_signature"])
    counts = rows["error_signature"].value_counts()
    got = insights.error_signatures(con, MONTH, "week", TZ, limit=5)
    assert len(got) == 5
    assert list(got["runs"]) == list(counts.sort_values(ascending=False).iloc[:5])


# ---------------------------------------------------------------- quota


def test_quota_per_day_and_per_flow_count_quota_exceeded_runs(con, all_runs):
    rows = in_view(all_runs, MONTH)
    quota = rows[rows["status"] == "QUOTA_EXCEEDED"]
    assert len(quota) > 0, "the sample has a month-end quota burst in this range"
    per_day = local_bucket(quota["started_at"], "day", TZ).value_counts().sort_index()
    got = insights.quota_per_day(con, MONTH, TZ).set_index("day")["runs"]
    assert list(got.index) == list(per_day.index) and list(got) == list(per_day)
    per_flow = insights.quota_per_flow(con, MONTH).set_index("flow_name")
    assert per_flow["runs"].to_dict() == quota["flow_name"].value_counts().to_dict()
    assert per_flow["share"].sum() == pytest.approx(1.0)


def test_quota_month_to_date_compares_with_the_same_part_of_last_month(con, all_runs):
    now = datetime(2026, 10, 31, 20, 0)  # inside the October month-end burst
    got = insights.quota_month_to_date(con, RunFilter(), now, "UTC")
    quota = in_view(all_runs, RunFilter())
    quota = quota[quota["status"] == "QUOTA_EXCEEDED"]["started_at"]
    this_month = ((quota >= datetime(2026, 10, 1)) & (quota < now)).sum()
    # September has 30 days: 30 days 20 hours after Sep 1 is past its end, so all of it.
    last_month = ((quota >= datetime(2026, 9, 1)) & (quota < datetime(2026, 10, 1))).sum()
    assert this_month > 0
    assert (got.this_month, got.last_month) == (this_month, last_month)


def test_month_periods_are_local_and_clamped_to_the_month():
    start, now, last_start, last_end = insights.month_periods(
        datetime(2026, 3, 31, 22, 30), "Europe/Paris"
    )
    assert now == datetime(2026, 4, 1, 0, 30)  # already April in Paris
    assert (start, last_start) == (datetime(2026, 4, 1), datetime(2026, 3, 1))
    assert last_end == datetime(2026, 3, 1, 0, 30)
    _, _, last_start, last_end = insights.month_periods(datetime(2026, 3, 31, 10), "UTC")
    assert (last_start, last_end) == (datetime(2026, 2, 1), datetime(2026, 3, 1))


# ---------------------------------------------------------------- durations


def test_duration_percentiles_match_linear_interpolation_over_finished_runs(con, all_runs):
    rows = in_view(all_runs, MONTH)
    rows = rows[finished(rows) & rows["duration_ms"].notna()]
    got = insights.duration_percentiles(con, MONTH).set_index("flow_name")
    assert set(got.index) == set(rows["flow_name"])
    for flow, row in got.iterrows():
        durations = rows[rows["flow_name"] == flow]["duration_ms"].astype(float)
        assert row["runs"] == len(durations)
        assert [row["p50"], row["p95"], row["p99"]] == pytest.approx(
            list(np.quantile(durations, [0.5, 0.95, 0.99]))
        )
    assert list(got["p95"]) == sorted(got["p95"], reverse=True)


def test_slowest_steps_aggregate_the_steps_of_the_runs_in_view(con, duck, all_runs):
    steps = duck.execute(
        "SELECT run_id, name, display_name, duration_ms FROM run_steps "
        "WHERE duration_ms IS NOT NULL"
    ).df()
    rows = in_view(all_runs, WEEK)
    joined = steps.merge(rows[["id", "flow_name"]], left_on="run_id", right_on="id")
    stats = joined.groupby(["flow_name", "name"])["duration_ms"].agg(
        runs="size", avg="mean", p95=lambda d: np.quantile(d.astype(float), 0.95)
    )
    got = insights.slowest_steps(con, WEEK, limit=10)
    assert len(got) == 10
    slowest = stats["p95"].sort_values(ascending=False)[:10]
    assert list(got["p95_ms"]) == pytest.approx(list(slowest))
    for _, row in got.iterrows():
        expected = stats.loc[(row["flow_name"], row["step"])]
        assert row["runs"] == expected["runs"]
        assert row["avg_ms"] == pytest.approx(expected["avg"])


# ---------------------------------------------------------------- edge views


def test_an_empty_range_gives_empty_results_not_errors(con):
    past = RunFilter(since=datetime(2001, 1, 1), until=datetime(2001, 1, 8))
    assert insights.headline(con, past).total == 0
    assert insights.headline(con, past).success_rate is None
    for func, args in [
        (insights.runs_over_time, ("day", TZ)),
        (insights.flow_failure_rates, ("day", TZ)),
        (insights.version_failure_rates, (TZ,)),
        (insights.failed_steps, ()),
        (insights.other_failed_states, ()),
        (insights.error_signatures, ("day", TZ)),
        (insights.quota_per_day, (TZ,)),
        (insights.quota_per_flow, ()),
        (insights.duration_percentiles, ()),
        (insights.slowest_steps, ()),
    ]:
        assert func(con, past, *args).empty, func.__name__
    assert insights.error_signatures(con, RunFilter(flows=("no such flow",)), "day", TZ).empty


def test_a_one_flow_view_only_counts_that_flow(con, all_runs):
    flow = all_runs["flow_name"].value_counts().index[0]
    one = MONTH.with_(flows=(flow,))
    assert insights.headline(con, one).total == len(in_view(all_runs, one))
    for frame in (
        insights.failed_steps(con, one),
        insights.other_failed_states(con, one),
        insights.duration_percentiles(con, one),
        insights.slowest_steps(con, one),
        insights.flow_failure_rates(con, one, "day", TZ),
    ):
        assert set(frame["flow_name"]) <= {flow}
    signatures = insights.error_signatures(con, one, "day", TZ)
    assert all(list(flows) == [flow] for flows in signatures["flows"])


def test_flow_names_with_quotes_travel_as_parameters(con, all_runs):
    tricky = RunFilter(flows=("x' OR '1'='1",), since=MONTH.since)
    assert insights.headline(con, tricky).total == 0
    assert insights.failed_steps(con, tricky).empty


def test_the_insights_store_does_not_import_streamlit():
    code = (
        "import sys; import runs_store.services.insights; "
        "assert 'streamlit' not in sys.modules, 'streamlit imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---------------------------------------------------------------- rules behind the drill-downs


@pytest.mark.parametrize(
    "statuses, wanted, expected",
    [
        (
            (),
            FAILED_STATES,
            [
                "FAILED",
                "QUOTA_EXCEEDED",
                "TIMEOUT",
                "INTERNAL_ERROR",
                "MEMORY_LIMIT_EXCEEDED",
                "LOG_SIZE_EXCEEDED",
            ],
        ),
        (("TIMEOUT", "SUCCEEDED"), FAILED_STATES, ["TIMEOUT"]),
        (("SUCCEEDED",), ["QUOTA_EXCEEDED"], []),
        ((), ["TIMEOUT", "SUCCEEDED"], ["SUCCEEDED", "TIMEOUT"]),
    ],
    ids=["any status", "the filter's only", "none allowed", "usual order"],
)
def test_a_drill_down_keeps_the_wanted_statuses_the_filter_allows(statuses, wanted, expected):
    assert insights.narrowed_statuses(RunFilter(statuses=statuses), wanted) == expected


@pytest.mark.parametrize(
    "bucket, unit, days",
    [
        ("2026-11-02T00:00:00", "week", ("2026-11-02", "2026-11-08")),
        ("2026-11-05T00:00:00", "day", ("2026-11-05", "2026-11-05")),
        ("2026-11-05T13:00:00", "hour", ("2026-11-05", "2026-11-05")),
    ],
)
def test_a_time_bucket_covers_its_calendar_days(bucket, unit, days):
    assert tuple(day.isoformat() for day in insights.bucket_days(bucket, unit)) == days


def test_the_other_failed_states_are_the_failed_states_a_step_did_not_cause():
    assert set(insights.OTHER_FAILED_STATES) == FAILED_STATES - {insights.FAILED_STEP_STATUS}


def test_a_headline_change_is_now_minus_before_and_unknown_without_both(con):
    now, before = (
        insights.headline(con, WEEK),
        insights.headline(con, insights.previous_filter(WEEK, END)),
    )
    assert now.change(before, "total") == now.total - before.total
    assert now.change(before, "QUOTA_EXCEEDED") == now.quota_exceeded - before.quota_exceeded
    assert now.change(before, "success_rate") == pytest.approx(
        now.success_rate - before.success_rate
    )
    assert now.change(None, "total") is None
    empty = insights.headline(
        con, RunFilter(since=datetime(2001, 1, 1), until=datetime(2001, 1, 2))
    )
    assert now.change(empty, "success_rate") is None
    assert [now.value(name) for name in insights.HEADLINE_STATUSES] == [
        now.failed,
        now.quota_exceeded,
        now.timeout,
        now.internal_error,
    ]


def test_quota_month_says_its_change_and_the_last_day_it_compares_with(con):
    month = insights.quota_month_to_date(con, ALL_TIME, END, "UTC")
    assert month.change == month.this_month - month.last_month
    assert month.last_month_last_day == datetime(2026, 10, 5).date()


# ---------------------------------------------------------------- the same frames on both backends

PAST = RunFilter(since=datetime(2001, 1, 1), until=datetime(2001, 1, 8))
SAME_ON_BOTH = {
    "headline": lambda con: insights.headline(con, MONTH),
    "range_limits": lambda con: insights.range_limits(con, ALL_TIME),
    "time_unit": lambda con: insights.time_unit(con, ALL_TIME),
    "utc_offsets": lambda con: insights.utc_offsets(
        con, datetime(2026, 1, 1), datetime(2026, 12, 31), "Australia/Lord_Howe"
    ),
    "trends by hour": lambda con: insights.trends(con, WEEK, "hour", "Asia/Kathmandu"),
    "trends by week": lambda con: insights.trends(con, ALL_TIME, "week", TZ),
    "failed_steps": lambda con: insights.failed_steps(con, MONTH),
    "other_failed_states": lambda con: insights.other_failed_states(con, MONTH),
    "error_signatures": lambda con: insights.error_signatures(con, MONTH, "day", TZ),
    "error_signatures by hour": lambda con: insights.error_signatures(con, WEEK, "hour", TZ),
    "error_signatures all time": lambda con: insights.error_signatures(con, ALL_TIME, "week", TZ),
    "quota_per_day": lambda con: insights.quota_per_day(con, MONTH, TZ),
    "quota_per_flow": lambda con: insights.quota_per_flow(con, MONTH),
    "quota_month_to_date": lambda con: insights.quota_month_to_date(con, ALL_TIME, END, TZ),
    "duration_percentiles": lambda con: insights.duration_percentiles(con, MONTH),
    "slowest_steps": lambda con: insights.slowest_steps(con, MONTH),
    "searched": lambda con: insights.failed_steps(
        con, MONTH.with_(search="step_2", include_archived=True, statuses=("FAILED",))
    ),
    "search with LIKE's characters": lambda con: insights.headline(
        con, ALL_TIME.with_(search="50%_\\!")
    ),
    "empty": lambda con: insights.error_signatures(con, RunFilter(flows=("none",)), "day", TZ),
    "empty trends": lambda con: insights.trends(con, PAST, "day", TZ),
    "empty failed_steps": lambda con: insights.failed_steps(con, PAST),
    "empty quota_per_day": lambda con: insights.quota_per_day(con, PAST, TZ),
    "empty duration_percentiles": lambda con: insights.duration_percentiles(con, PAST),
    "empty slowest_steps": lambda con: insights.slowest_steps(con, PAST),
    "no range": lambda con: insights.range_limits(con, RunFilter(flows=("none",))),
}


@pytest.mark.parametrize("call", SAME_ON_BOTH.values(), ids=SAME_ON_BOTH.keys())
def test_both_backends_give_the_same_columns_dtypes_and_values(duck, clickhouse_con, call):
    expected, got = call(duck), call(clickhouse_con)
    if isinstance(expected, insights.Trends):
        for name in ("runs_over_time", "flow_failure_rates", "versions"):
            pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name))
    elif isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    else:
        assert got == expected


def test_a_timezone_name_is_a_parameter_not_sql(con):
    with pytest.raises(Exception, match=r"(?i)time ?zone"):
        insights.quota_per_day(con, MONTH, "UTC') --")


def test_the_clickhouse_copy_holds_stale_versions_the_insights_do_not_count(clickhouse_con, duck):
    """The oracle holds for ClickHouse only if the stale rows are there to be hidden."""
    from runs_store.store.backend import rows

    assert dialect(clickhouse_con) == CLICKHOUSE
    stored = rows(clickhouse_con, "SELECT count(*) FROM runs")[0][0]
    newest = duck.execute("SELECT count(*) FROM runs").fetchall()[0][0]
    assert stored > newest
    everything = ALL_TIME.with_(include_archived=True)
    assert insights.headline(clickhouse_con, everything).total == newest
