"""Hourly rollups and retention (#16), on DuckDB and on ClickHouse (chdb): the rollups equal the
raw runs' aggregates, newer versions re-count exactly the hours they touch, and pruning raw runs
leaves Insights' counts, rates and quota figures as they were (durations within the sketch's
error), with the notices the pages show."""

from __future__ import annotations

import copy
import math
import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import clickhouse_http
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.queries.filters import RunFilter
from runs_store.services import insights, runs_list
from runs_store.store import clickhouse, rollups
from runs_store.store.backend import frame, latest, open_location
from runs_store.store.database import SCHEMA_VERSION, open_db, schema_version
from runs_store.store.location import ChdbLocation, ClickHouseLocation, parse_location
from sample_data.generator import generate_runs

END = datetime(2026, 11, 30, 12, 0)
DAYS = 20
RETENTION_DAYS = 8
SEED = 23
TZ = "Europe/Berlin"
RUNS = 2_500
KEY = [
    "hour",
    "flow_id",
    "flow_name",
    "flow_version_id",
    "status",
    "failed_step",
    "archived",
    "duration_bucket",
]


def sample() -> list[dict]:
    return list(generate_runs(RUNS, days=DAYS, seed=SEED, end=END))


def newer_versions(records: list[dict], every: int = 9) -> list[dict]:
    """Every `every`-th run again, a minute later, now FAILED with another duration."""
    changed = []
    for record in records[::every]:
        again = copy.deepcopy(record)
        updated = datetime.fromisoformat(record["updated"].replace("Z", "")) + timedelta(minutes=1)
        again["updated"] = updated.isoformat(timespec="milliseconds") + "Z"
        again["status"] = "FAILED" if record["status"] != "FAILED" else "SUCCEEDED"
        again["finishTime"] = again["updated"]
        again.pop("duration", None)
        changed.append(again)
    return changed


PASSWORD = "rollups secret"


@pytest.fixture(scope="module")
def http_port(tmp_path_factory):
    """A ClickHouse server over HTTP (chdb in a process of its own, tests/clickhouse_http.py)."""
    with clickhouse_http.running(
        tmp_path_factory.mktemp("rollups_ch") / "server", PASSWORD
    ) as port:
        yield port


@pytest.fixture(params=["duckdb", "chdb", "http"])
def location(request, tmp_path):
    """Where a test's own store lives: a DuckDB file, a database of its own in the shared chdb
    store's directory (chdb holds one directory per process), or one on a server over HTTP."""
    database = f"r_{uuid.uuid4().hex[:12]}"
    if request.param == "duckdb":
        return tmp_path / "runs.duckdb"
    if request.param == "http":
        port = request.getfixturevalue("http_port")
        return parse_location(f"clickhouse://default@127.0.0.1:{port}/{database}")
    return ChdbLocation(request.getfixturevalue("shared_chdb").path, database=database)


def opened(location):
    if isinstance(location, ChdbLocation):
        return open_location(location)
    if isinstance(location, ClickHouseLocation):
        return clickhouse.open_store(location, password=PASSWORD)
    return open_db(location)


def load(location, records: list[dict], source: str = "sample") -> None:
    with opened(location) as con:
        ingest_items(con, records_as_items(records), source)


def stored_rollups(con) -> pd.DataFrame:
    found = frame(con, f"SELECT * FROM {rollups.TABLE}")
    return normalised(found)


def normalised(found: pd.DataFrame) -> pd.DataFrame:
    found = found.copy()
    for column in ("hour", "first_started_at", "last_started_at"):
        found[column] = pd.to_datetime(found[column]).astype("datetime64[us]")
    found["duration_bucket"] = found["duration_bucket"].astype("Int64")
    found["runs"] = found["runs"].astype("int64")
    found["archived"] = found["archived"].astype(bool)
    columns = [*KEY, "failed_step_display", "runs", "first_started_at", "last_started_at"]
    found = found[columns].astype({c: object for c in columns if found[c].dtype == "string"})
    found = found.where(found.notna(), None)
    return found.sort_values(KEY, na_position="first", ignore_index=True, key=_sortable)


def _sortable(column: pd.Series) -> pd.Series:
    return column.map(lambda value: "" if value is None else str(value))


def oracle(con) -> pd.DataFrame:
    """The rollups computed in pandas from the raw runs."""
    runs = frame(
        con,
        "SELECT started_at, flow_id, flow_name, flow_version_id, status, failed_step, "
        f"failed_step_display, archived_at, duration_ms FROM {latest(con, 'runs')}",
    )
    runs["started_at"] = pd.to_datetime(runs["started_at"]).astype("datetime64[us]")
    runs["hour"] = runs["started_at"].dt.floor("h")
    runs["archived"] = runs["archived_at"].notna()
    duration = runs["duration_ms"].astype("float64")
    bucket = np.where(duration < 1, 0, np.floor(np.log2(duration.clip(lower=1)) * 4) + 1)
    runs["duration_bucket"] = pd.array(
        [None if math.isnan(d) else int(b) for d, b in zip(duration, bucket, strict=True)],
        dtype="Int64",
    )
    for column in KEY:
        if column not in ("hour", "archived", "duration_bucket"):
            runs[column] = runs[column].astype(object).where(runs[column].notna(), "\0none")
    runs["duration_bucket"] = runs["duration_bucket"].fillna(-999)
    grouped = (
        runs.groupby(KEY, dropna=False)
        .agg(
            failed_step_display=("failed_step_display", lambda v: v.dropna().max()),
            runs=("started_at", "size"),
            first_started_at=("started_at", "min"),
            last_started_at=("started_at", "max"),
        )
        .reset_index()
    )
    grouped = grouped.replace({"\0none": None})
    grouped["duration_bucket"] = grouped["duration_bucket"].astype("Int64").replace(-999, pd.NA)
    grouped["failed_step_display"] = grouped["failed_step_display"].astype(object)
    return normalised(grouped)


def assert_rollups_are_the_raw_aggregates(con) -> None:
    found, expected = stored_rollups(con), oracle(con)
    assert len(found) > 100
    pd.testing.assert_frame_equal(found, expected, check_dtype=False)


# ---------------------------------------------------------------- maintenance


def test_rollups_equal_the_raw_aggregates_of_the_sample(location):
    load(location, sample())
    with opened(location) as con:
        assert_rollups_are_the_raw_aggregates(con)


def test_newer_versions_recount_exactly_the_hours_they_touch(location):
    records = sample()
    load(location, records)
    with opened(location) as con:
        before = stored_rollups(con)
    changed = newer_versions(records)
    load(location, changed, "newer")
    with opened(location) as con:
        assert_rollups_are_the_raw_aggregates(con)
        after = stored_rollups(con)
    touched = {
        datetime.fromisoformat(r["created"].replace("Z", "")).replace(
            minute=0, second=0, microsecond=0
        )
        for r in changed
    }
    untouched_before = before[~before["hour"].isin(touched)].reset_index(drop=True)
    untouched_after = after[~after["hour"].isin(touched)].reset_index(drop=True)
    pd.testing.assert_frame_equal(untouched_before, untouched_after)
    assert not before[before["hour"].isin(touched)].equals(after[after["hour"].isin(touched)])


def test_archiving_recounts_the_runs_hours(location):
    load(location, sample())
    with opened(location) as con:
        ids = list(frame(con, f"SELECT id FROM {latest(con, 'runs')} LIMIT 25")["id"])
        assert runs_list.set_archived(con, ids, True) == 25
        assert_rollups_are_the_raw_aggregates(con)


def test_a_store_made_before_rollups_gets_them_at_its_migration(tmp_path):
    path = tmp_path / "runs.duckdb"
    load(path, sample())
    with open_db(path) as con:
        con.execute(f"DROP TABLE {rollups.TABLE}")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with open_db(path, read_only=True) as con:
        assert schema_version(con) == SCHEMA_VERSION
        assert_rollups_are_the_raw_aggregates(con)


def test_a_clickhouse_store_made_before_rollups_gets_them_at_its_migration(shared_chdb):
    location = ChdbLocation(shared_chdb.path, database=f"m_{uuid.uuid4().hex[:12]}")
    load(location, sample())
    with open_location(location) as con:
        con.command(f"DROP TABLE {rollups.TABLE}")
        con.command("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    with open_location(location) as con:
        assert_rollups_are_the_raw_aggregates(con)


# ---------------------------------------------------------------- retention


FILTERS = {
    "all time": RunFilter(include_archived=True),
    "unarchived": RunFilter(),
    "from before the boundary": RunFilter(
        since=END - timedelta(days=RETENTION_DAYS + 3), until=END + timedelta(hours=1)
    ),
    "before the boundary only": RunFilter(
        since=END - timedelta(days=DAYS), until=END - timedelta(days=RETENTION_DAYS + 2)
    ),
}


def figures(con, run_filter: RunFilter) -> dict:
    trends = insights.trends(con, run_filter, "day", TZ)
    return {
        "headline": insights.headline(con, run_filter),
        "range": insights.range_limits(con, run_filter),
        "runs_over_time": trends.runs_over_time,
        "flow_failure_rates": trends.flow_failure_rates,
        "versions": trends.versions,
        "failed_steps": insights.failed_steps(con, run_filter),
        "other_failed_states": insights.other_failed_states(con, run_filter),
        "quota_per_day": insights.quota_per_day(con, run_filter, TZ),
        "quota_per_flow": insights.quota_per_flow(con, run_filter),
        "quota_month": insights.quota_month_to_date(con, run_filter, END, TZ),
    }


def assert_same(before, after, name: str) -> None:
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(
            before.reset_index(drop=True), after.reset_index(drop=True), obj=name
        )
    else:
        assert before == after, name


def test_pruning_keeps_insights_figures_from_the_rollups(location, monkeypatch):
    load(location, sample())
    with opened(location) as con:
        before = {name: figures(con, f) for name, f in FILTERS.items()}
        durations = {name: insights.duration_percentiles(con, f) for name, f in FILTERS.items()}
        total = con_count(con)
    monkeypatch.setenv("RUNS_RETENTION_DAYS", str(RETENTION_DAYS))
    with opened(location) as con:
        pruned = rollups.prune(con, now=END)
        assert pruned.boundary == END - timedelta(days=RETENTION_DAYS)
        assert 0 < pruned.runs < total and con_count(con) == total - pruned.runs
        assert rollups.boundary(con) == pruned.boundary
        for name, run_filter in FILTERS.items():
            after = figures(con, run_filter)
            for part, value in before[name].items():
                assert_same(value, after[part], f"{name}: {part}")
            assert_durations_close(durations[name], insights.duration_percentiles(con, run_filter))
        assert rollups.prune(con, now=END).runs == 0  # nothing left to prune


def con_count(con) -> int:
    return int(frame(con, f"SELECT count(*) AS n FROM {latest(con, 'runs')}")["n"][0])


def assert_durations_close(exact: pd.DataFrame, sketched: pd.DataFrame) -> None:
    """Each percentile within the sketch's bound, a factor 2^(1/8)."""
    exact = exact.set_index("flow_name").sort_index()
    sketched = sketched.set_index("flow_name").sort_index()
    assert list(exact.index) == list(sketched.index)
    assert (exact["runs"] == sketched["runs"]).all()
    bound = 2 ** (1 / 8) + 1e-9
    for column in ("p50", "p95", "p99"):
        for want, got in zip(exact[column], sketched[column], strict=True):
            assert want / bound <= got <= want * bound or want == got == 0, (column, want, got)


def test_the_percentiles_of_a_sketch_are_within_its_bound():
    values = np.random.default_rng(5).lognormal(7, 2, 5_000).round()
    buckets = np.where(values < 1, 0, np.floor(np.log2(np.maximum(values, 1)) * 4) + 1)
    counted = pd.Series(buckets.astype(int)).value_counts()
    got = rollups.percentiles(counted.items(), (0.5, 0.95, 0.99))
    for level, value in zip((0.5, 0.95, 0.99), got, strict=True):
        exact = float(np.quantile(values, level))
        assert exact / 2 ** (1 / 8) <= value <= exact * 2 ** (1 / 8)
    assert rollups.percentiles([], (0.5,)) == [None]


def test_the_notices_say_where_raw_runs_are_gone(location, monkeypatch):
    load(location, sample())
    monkeypatch.setenv("RUNS_RETENTION_DAYS", str(RETENTION_DAYS))
    with opened(location) as con:
        assert insights.retention_note(con, RunFilter()) is None
        assert runs_list.retention_notice(con, RunFilter()) is None
        rollups.prune(con, now=END)
        kept_from = END - timedelta(days=RETENTION_DAYS)
        note = insights.retention_note(con, RunFilter())
        assert note is not None and note.rolled
        assert note.figures == (
            f"Before {kept_from:%Y-%m-%d %H:%M} UTC the figures come from hourly rollups: "
            f"raw runs are kept {RETENTION_DAYS} days (RUNS_RETENTION_DAYS)."
        )
        assert "needs raw runs" in note.raw_only
        searching = insights.retention_note(con, RunFilter(search="timeout"))
        assert searching is not None and not searching.rolled
        assert insights.retention_note(con, RunFilter(since=kept_from)) is None
        old = RunFilter(since=kept_from - timedelta(days=3), until=kept_from - timedelta(days=1))
        assert runs_list.retention_notice(con, old) == (
            f"This range is past retention (raw runs are kept {RETENTION_DAYS} days); "
            "Insights still shows its counts from rollups."
        )
        assert runs_list.count_runs(con, old) == 0
        reaching = runs_list.retention_notice(con, RunFilter(since=kept_from - timedelta(days=1)))
        assert reaching is not None and reaching.startswith("Runs before")
        assert runs_list.retention_notice(con, RunFilter(since=kept_from)) is None


def test_rollups_older_than_rollup_days_are_pruned(location, monkeypatch):
    load(location, sample())
    monkeypatch.setenv("RUNS_ROLLUP_DAYS", "5")
    with opened(location) as con:
        pruned = rollups.prune(con, now=END)
        assert pruned.rollup_rows > 0 and pruned.runs == 0 and pruned.boundary is None
        oldest = frame(con, f"SELECT min(hour) AS h FROM {rollups.TABLE}")["h"][0]
        assert pd.Timestamp(oldest) >= pd.Timestamp(END - timedelta(days=5))


# ---------------------------------------------------------------- the pages and the CLI


@pytest.fixture
def pruned_db(tmp_path, monkeypatch) -> str:
    path = tmp_path / "runs.duckdb"
    load(path, sample())
    monkeypatch.setenv("RUNS_RETENTION_DAYS", str(RETENTION_DAYS))
    with open_db(path) as con:
        rollups.prune(con, now=END)
    return str(path)


OLD_DAYS = {"range": "Custom range", "from": "2026-11-12", "to": "2026-11-15"}


def captions(at) -> list[str]:
    return [str(element.value) for element in at.caption]


def test_the_runs_page_says_a_range_is_past_retention(pruned_db, app_env):
    from conftest import app_test

    app_env(pruned_db)
    at = app_test("pages/runs.py", OLD_DAYS)
    assert not at.exception, at.exception
    notice = (
        f"This range is past retention (raw runs are kept {RETENTION_DAYS} days); Insights "
        "still shows its counts from rollups."
    )
    assert [element.value for element in at.info] == [notice]


def test_the_insights_page_says_its_figures_come_from_rollups(pruned_db, app_env):
    from conftest import app_test

    app_env(pruned_db)
    at = app_test("pages/insights.py", OLD_DAYS)
    assert not at.exception, at.exception
    kept_from = END - timedelta(days=RETENTION_DAYS)
    line = (
        f":material/history: Before {kept_from:%Y-%m-%d %H:%M} UTC the figures come from hourly "
        f"rollups: raw runs are kept {RETENTION_DAYS} days (RUNS_RETENTION_DAYS)."
    )
    assert line in captions(at)
    assert not any("needs raw runs" in text for text in captions(at))  # on the Trends tab
    for tab in ("Errors", "Durations", "Agents"):
        at = app_test("pages/insights.py", {**OLD_DAYS, "view": tab})
        assert not at.exception, at.exception
        assert (
            f":material/history: This part needs raw runs, and the range before "
            f"{kept_from:%Y-%m-%d %H:%M} UTC has none: raw runs are kept {RETENTION_DAYS} days "
            "(RUNS_RETENTION_DAYS)."
        ) in captions(at)


def test_prune_on_the_command_line(tmp_path):
    from factories import run_cli

    path = tmp_path / "runs.duckdb"
    load(path, sample())
    done = run_cli("prune", "--db", str(path), env={"RUNS_RETENTION_DAYS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Retention: pruned ") and "raw runs kept from" in done.stdout
    with open_db(path, read_only=True) as con:
        assert con_count(con) == 0  # the sample ended a week ago
        assert_rollups_are_the_raw_aggregates_before_pruning_kept(con)
    refused = run_cli("prune", "--db", str(path), env={"RUNS_RETENTION_DAYS": "0"})
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: RUNS_RETENTION_DAYS='0' is not allowed: use a whole")


def assert_rollups_are_the_raw_aggregates_before_pruning_kept(con) -> None:
    total = frame(con, f"SELECT sum(runs) AS n FROM {rollups.TABLE}")["n"][0]
    assert int(total) > RUNS * 0.9


def test_a_pull_prunes_after_it_loads(tmp_path, monkeypatch):
    from fake_engine_api import FakeEngine
    from test_pull_api import TOKEN, engine_runs, production, pulled

    monkeypatch.setenv("RUNS_RETENTION_DAYS", "1")  # the engine's runs ended days ago
    runs = engine_runs(200)
    with FakeEngine(runs, token=TOKEN) as engine:
        db, summary = pulled(tmp_path, engine)
    assert summary.notes[0].startswith(f"retention: pruned {len(production(runs)):,} runs")
    with open_db(db, read_only=True) as con:
        assert con_count(con) == 0
        counted = frame(con, f"SELECT sum(runs) AS n FROM {rollups.TABLE}")["n"][0]
        assert int(counted) == len(production(runs))
