"""The store seam (runs_store/store/backend.py): one SQL text with `$name` parameters runs on DuckDB
and on ClickHouse (chdb) with the same answers; values travel as typed parameters, never in the
SQL; a text that differs per engine is picked by dialect."""

from __future__ import annotations

from datetime import datetime

import pytest

from runs_store.store.backend import (
    CLICKHOUSE,
    DUCKDB,
    by_dialect,
    clickhouse_params,
    clickhouse_type,
    dialect,
    frame,
    rows,
)
from runs_store.store.database import open_db

pytestmark = pytest.mark.store


def test_one_query_gives_the_same_rows_on_both_backends(store_con):
    sql = (
        "SELECT status, count(*) AS n FROM runs WHERE started_at >= $since "
        "AND status IN $statuses AND flow_name <> $not_flow GROUP BY status ORDER BY status"
    )
    params = {
        "since": datetime(2000, 1, 1),
        "statuses": ["FAILED", "SUCCEEDED"],
        "not_flow": "no such flow",
    }
    if dialect(store_con) == DUCKDB:  # DuckDB's IN takes a list parameter as one value
        sql = sql.replace("IN $statuses", "IN (SELECT unnest($statuses))")
    found = rows(store_con, sql, params)
    assert [status for status, _ in found] == ["FAILED", "SUCCEEDED"]
    assert all(count > 0 for _, count in found)
    assert frame(store_con, sql, params)["n"].tolist() == [count for _, count in found]


def test_both_backends_hold_the_same_runs(store_con, shared_db):
    with open_db(shared_db, read_only=True) as reference:
        expected = reference.execute(
            "SELECT count(*), count(DISTINCT id), sum(duration_ms) FROM runs"
        ).fetchall()
    sql = by_dialect(
        store_con,
        "SELECT count(*), count(DISTINCT id), sum(duration_ms) FROM runs",
        "SELECT count(), uniqExact(id), sum(duration_ms) FROM runs FINAL",
    )
    assert [tuple(row) for row in rows(store_con, sql)] == expected


def test_a_hostile_value_is_a_parameter_not_sql(store_con):
    hostile = "x' OR 1=1 --"
    assert rows(store_con, "SELECT count(*) FROM runs WHERE id = $id", {"id": hostile}) == [(0,)]


def test_placeholders_become_typed_and_strings_and_comments_stay():
    sql, params = clickhouse_params(
        "SELECT '$no' AS a, $n + 1, $when, $ids -- $c\nFROM t WHERE x = $name",
        {"n": 3, "when": datetime(2026, 1, 2), "ids": ["a"], "name": "b"},
    )
    assert sql == (
        "SELECT '$no' AS a, {n:Int64} + 1, {when:DateTime64(6, 'UTC')}, {ids:Array(String)} -- $c\n"
        "FROM t WHERE x = {name:String}"
    )
    assert params["name"] == "b"
    with pytest.raises(ValueError, match=r"no value for \$missing"):
        clickhouse_params("SELECT $missing", {})
    assert clickhouse_type(None) == "Nullable(String)"
    assert clickhouse_type(True) == "Bool"
    with pytest.raises(TypeError):
        clickhouse_type(object())


def test_the_dialect_is_the_connections(store_con, request):
    expected = CLICKHOUSE if "chdb" in request.node.name else DUCKDB
    assert dialect(store_con) == expected
