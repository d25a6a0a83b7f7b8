"""Values bound by name: renaming a positional piece (runs_store.queries.named_params), and every
query
behind the Insights page binding its values by name only, with no positional `?` left."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from conftest import build_db
from runs_store.queries.filters import RunFilter, build_where
from runs_store.queries.named_params import merged, named, named_where, placeholders
from runs_store.services import insights
from runs_store.store.database import open_db

END = datetime(2026, 11, 5, 12, 0)
EVERYTHING = RunFilter(
    flows=("a", "b"),
    statuses=("FAILED", "TIMEOUT"),
    since=END - timedelta(days=9),
    until=END,
    search="it's 50% ?",
    failed_steps=("step_1",),
    signature="sig",
    flow_version_ids=("v1",),
)


# ---------------------------------------------------------------- renaming, pure


@pytest.mark.parametrize(
    "sql, params, expected_sql, expected_params",
    [
        ("", [], "", {}),
        ("WHERE a = ?", [1], "WHERE a = $p_1", {"p_1": 1}),
        (
            "WHERE a IN (SELECT unnest(?::VARCHAR[])) AND b < ?",
            [["x"], 2],
            "WHERE a IN (SELECT unnest($p_1::VARCHAR[])) AND b < $p_2",
            {"p_1": ["x"], "p_2": 2},
        ),
        (
            "WHERE a=?AND b = '?' -- why?\nAND c LIKE ? ESCAPE '\\'",
            [1, 2],
            "WHERE a=$p_1AND b = '?' -- why?\nAND c LIKE $p_2 ESCAPE '\\'",
            {"p_1": 1, "p_2": 2},
        ),
        ("WHERE a = $already", {"already": 1}, "WHERE a = $already", {"already": 1}),
    ],
    ids=["nothing", "one", "a list and a value", "not in strings or comments", "already named"],
)
def test_named_gives_this_sql_and_these_parameters(sql, params, expected_sql, expected_params):
    assert named(sql, params, "p") == (expected_sql, expected_params)


def test_named_refuses_a_piece_whose_values_do_not_match_its_placeholders():
    with pytest.raises(ValueError, match="2 placeholders for 1 values"):
        named("WHERE a = ? AND b = ?", [1], "p")


def test_named_where_renames_every_placeholder_of_the_filter_in_order():
    _, params = build_where(EVERYTHING)
    renamed, by_name = named_where(EVERYTHING)
    assert placeholders(renamed) == []
    assert list(by_name.values()) == params
    assert renamed.replace("$filter_", "").count("$") == 0
    assert all(f"${name}" in renamed for name in by_name)


def test_merged_refuses_a_name_bound_to_two_values():
    assert merged({"a": 1}, {"b": 2}, {"a": 1}) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match=r"\$a"):
        merged({"a": 1}, {"a": 2})


# ---------------------------------------------------------------- every Insights query


class RecordingConnection:
    """A DuckDB connection that remembers each statement and the parameters it was given (the
    store's seam reads it as DuckDB's: see `duckdb_seam`)."""

    def __init__(self, con):
        self.con = con
        self.statements: list[tuple[str, object]] = []

    def execute(self, sql, params=None):
        self.statements.append((sql, params))
        return self.con.execute(sql) if params is None else self.con.execute(sql, params)

    def sql(self, sql, params=None):
        self.statements.append((sql, params))
        return self.con.sql(sql, params=params)


@pytest.fixture
def duckdb_seam(monkeypatch):
    """backend.dialect (and insights' own name for it) taking a RecordingConnection for the
    DuckDB connection it wraps."""
    from runs_store.store import backend

    real = backend.dialect

    def dialect(con):
        return backend.DUCKDB if isinstance(con, RecordingConnection) else real(con)

    monkeypatch.setattr(backend, "dialect", dialect)
    monkeypatch.setattr(insights, "dialect", dialect)


@pytest.mark.parametrize(
    "run_filter",
    [
        RunFilter(),
        RunFilter(include_archived=True),
        EVERYTHING,
        RunFilter(search="e_1"),
        RunFilter(statuses=("FAILED",), since=END - timedelta(days=3)),
        RunFilter(flows=("x' OR '1'='1",)),
    ],
    ids=["default", "archived", "everything", "search", "failed lately", "quotes"],
)
def test_a_renamed_filter_finds_the_same_runs_as_the_positional_one(recording, run_filter):
    con = recording.con
    where, params = build_where(run_filter)
    renamed, by_name = named_where(run_filter)
    assert (
        con.execute(f"SELECT count(*), max(id) FROM runs {renamed}", by_name).fetchall()
        == con.execute(f"SELECT count(*), max(id) FROM runs {where}", params).fetchall()
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    db = build_db(
        tmp_path_factory.mktemp("named") / "runs.duckdb", runs=400, days=30, seed=3, end=END
    )
    with open_db(db, read_only=True) as con:
        yield RecordingConnection(con)


@pytest.mark.parametrize(
    "run_filter",
    [RunFilter(), RunFilter(since=END - timedelta(days=7)), EVERYTHING],
    ids=["all time", "open range", "everything"],
)
@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kathmandu"])
def test_every_insights_query_binds_its_values_by_name_only(recording, duckdb_seam, run_filter, tz):
    recording.statements.clear()
    unit = insights.time_unit(recording, run_filter)
    for call, args in [
        (insights.headline, ()),
        (insights.trends, (unit, tz)),
        (insights.failed_steps, ()),
        (insights.other_failed_states, ()),
        (insights.error_signatures, (unit, tz)),
        (insights.quota_month_to_date, (END, tz)),
        (insights.quota_per_day, (tz,)),
        (insights.quota_per_flow, ()),
        (insights.duration_percentiles, ()),
        (insights.slowest_steps, ()),
        (insights.version_failure_rates, (tz,)),
        (insights.range_limits, ()),
    ]:
        call(recording, run_filter, *args)
    assert recording.statements
    for sql, params in recording.statements:
        assert placeholders(sql) == [], sql
        assert params is None or isinstance(params, dict), (sql, params)
