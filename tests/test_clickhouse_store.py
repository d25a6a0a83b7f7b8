"""The ClickHouse store on ClickHouse's real engine, reached both ways a store is: in this process
(`chdb:PATH`) and through a server's HTTP interface (`clickhouse://`, the chdb-backed server of
clickhouse_http.py in its own process, with the password from RUNS_CLICKHOUSE_PASSWORD). Every
test runs both ways.

Its tables take the DuckDB store's rows as they are (the rows here are made in DuckDB with its
SCHEMA and loaded as Arrow), reads see each run once and its newest version before any merge, the
schema version is recorded and kept, and values only ever travel as parameters.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

import clickhouse_http
from runs_store.domain.errors import DatabaseUnreadable, StoreError
from runs_store.store import database
from runs_store.store.clickhouse import open_store
from runs_store.store.clickhouse.connection import ClickHouseError
from runs_store.store.clickhouse.schema import (
    SCHEMA_VERSION,
    STEPS_OF_RUN,
    TABLES,
    bump_generation,
    generation,
    latest,
    schema_version,
)
from runs_store.store.location import parse_location

pytestmark = pytest.mark.store

PASSWORD = "s3cret:/@ pässword"
STARTED = datetime(2026, 11, 3, 9, 14, 2, 118000)
UPDATED = datetime(2026, 11, 3, 9, 14, 9, 904000)
_databases = itertools.count()


@pytest.fixture(scope="module")
def server_port(tmp_path_factory):
    with clickhouse_http.running(
        tmp_path_factory.mktemp("clickhouse") / "server", PASSWORD
    ) as port:
        yield port


@pytest.fixture(params=["chdb", "http"])
def location(request, tmp_path, monkeypatch):
    """A new store: a chdb directory, or a database of its own on the HTTP server."""
    if request.param == "chdb":
        return parse_location(f"chdb:{tmp_path / 'store'}")
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
    port = request.getfixturevalue("server_port")
    return parse_location(f"clickhouse://default@127.0.0.1:{port}/runs_{next(_databases)}")


@pytest.fixture
def store(location):
    with open_store(location) as con:
        yield con


# ------------------------------------------------------------------ rows made by DuckDB


def duckdb_rows(table: str, *rows: dict) -> pa.Table:
    """`rows` of a DuckDB store's `table` (its SCHEMA, its types) as Arrow, as a copy or a
    migration from a DuckDB store would read them."""
    con = duckdb.connect()
    try:
        con.execute(database.SCHEMA)
        for row in rows:
            names = ", ".join(f"${name} AS {name}" for name in row)
            con.execute(f"INSERT INTO {table} BY NAME SELECT {names}", row)
        return con.sql(f"SELECT * FROM {table}").to_arrow_table()
    finally:
        con.close()


def run(run_id: str = "r1", updated: datetime = UPDATED, **fields) -> dict:
    return {
        "id": run_id,
        "flow_name": "Triage support email",
        "status": "FAILED",
        "started_at": STARTED,
        "updated_at": updated,
        "has_steps": True,
        "tags": ["support"],
        "duration_ms": 7362,
        "failed_step": "step_3",
        "error_message": '{"error":"not_in_channel"}',
        **fields,
    }


def steps(run_id: str, updated: datetime, names: list[str]) -> pa.Table:
    rows = duckdb_rows(
        "run_steps",
        *(
            {"run_id": run_id, "position": position, "name": name, "output": f'{{"n": {position}}}'}
            for position, name in enumerate(names)
        ),
    )
    return rows.append_column(
        "run_updated_at", pa.array([updated] * len(names), pa.timestamp("us"))
    )


def insert_runs(store, *runs: dict) -> None:
    store.insert_arrow("runs", duckdb_rows("runs", *runs))


# ------------------------------------------------------------------ the schema


def test_the_schema_is_made_and_its_version_recorded(store, location):
    tables = {row[0] for row in store.execute("SHOW TABLES")}
    assert tables == {table.name for table in TABLES}
    assert schema_version(store, location.database) == SCHEMA_VERSION


def test_every_column_of_the_duckdb_store_has_its_column_here(store):
    con = duckdb.connect()
    con.execute(database.SCHEMA)
    for table in ("runs", "run_steps", "rejects", "meta", "pull_state", "pull_unfinished"):
        in_duckdb = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        here = [row[0] for row in store.execute(f"DESCRIBE TABLE {table}")]
        assert here[: len(in_duckdb)] == in_duckdb, table


def test_a_duckdb_row_loads_unchanged(store):
    row = run(
        project_id="pR0j3ct",
        start_time=STARTED + timedelta(milliseconds=412),
        finish_time=STARTED + timedelta(milliseconds=7774),
        archived_at=None,
        tasks=3,
        steps_count=4,
        steps_data_truncated=False,
        timeline='{"legs": []}',
    )
    arrow = duckdb_rows("runs", row)
    store.insert_arrow("runs", arrow)
    back = store.query_arrow(f"SELECT * FROM {latest('runs')}")
    assert back.to_pylist() == arrow.to_pylist()
    assert back.schema.field("started_at").type == pa.timestamp("us")  # naive UTC, as DuckDB's


def test_a_run_with_no_tags_reads_as_an_empty_list(store):
    insert_runs(store, run(tags=None))
    assert store.execute("SELECT tags FROM runs") == [([],)]


# ------------------------------------------------------------------ one row per run


def test_each_run_is_read_once_in_its_newest_version_before_any_merge(store):
    store.command("SYSTEM STOP MERGES runs")
    insert_runs(store, run(status="RUNNING", updated=UPDATED), run("r2", status="SUCCEEDED"))
    insert_runs(store, run(status="SUCCEEDED", updated=UPDATED + timedelta(seconds=5)))
    insert_runs(store, run(status="QUEUED", updated=UPDATED - timedelta(seconds=5)))  # late, older

    on_disk = store.execute("SELECT id, status FROM runs ORDER BY id, updated_at")
    assert len(on_disk) == 4  # no merge happened: every version is still there
    read = f"SELECT id, status, updated_at FROM {latest('runs')} ORDER BY id"
    assert store.execute(read) == [
        ("r1", "SUCCEEDED", UPDATED + timedelta(seconds=5)),
        ("r2", "SUCCEEDED", UPDATED),
    ]
    # every version of a run is in one partition, so FINAL need not merge across them
    alone = store.execute(f"{read} SETTINGS do_not_merge_across_partitions_select_final = 1")
    assert alone == store.execute(read)


def test_of_two_rows_with_the_same_version_the_one_written_last_wins(store):
    """How an archive is written: the run again, same version, with its archive time."""
    store.command("SYSTEM STOP MERGES runs")
    insert_runs(store, run())
    archived = datetime(2026, 11, 4, 8, 0, 0)
    insert_runs(store, run(archived_at=archived))
    assert store.execute(f"SELECT id, archived_at FROM {latest('runs')}") == [("r1", archived)]


def test_a_run_s_steps_are_those_of_its_newest_version(store):
    store.command("SYSTEM STOP MERGES run_steps")
    newer = UPDATED + timedelta(seconds=30)
    insert_runs(store, run())
    store.insert_arrow("run_steps", steps("r1", UPDATED, ["trigger", "step_1", "step_2", "step_3"]))
    insert_runs(store, run(status="SUCCEEDED", updated=newer))
    store.insert_arrow("run_steps", steps("r1", newer, ["trigger", "step_1b"]))

    found = store.execute(STEPS_OF_RUN, {"run_id": "r1"})
    assert [(row[0], row[1], row[2]) for row in found] == [
        ("r1", 0, "trigger"),
        ("r1", 1, "step_1b"),
    ]


# ------------------------------------------------------------------ values and times


def test_values_travel_as_parameters(store):
    hostile = "'); DROP TABLE runs; -- {id:String} \\ \" ` é"
    insert_runs(store, run(hostile, flow_name=hostile))
    found = store.execute(
        f"SELECT id, flow_name FROM {latest('runs')} WHERE id = {{id:String}} "
        "AND flow_name IN {flows:Array(String)} AND started_at >= {since:DateTime64(6, 'UTC')} "
        "AND archived_at IS NULL",
        {"id": hostile, "flows": [hostile, "other"], "since": STARTED},
    )
    assert found == [(hostile, hostile)]
    assert store.execute("SELECT count() FROM runs") == [(1,)]


@pytest.mark.parametrize(
    "sql, params",
    [
        ("SELECT {a:String}", {}),
        ("SELECT {a:String}", {"a": "x", "b": "y"}),
        ("SELECT 1 WHERE 'x' = %(a)s", {"a": "x"}),  # would be formatted into the SQL text
    ],
)
def test_parameters_must_match_the_placeholders(store, sql, params):
    with pytest.raises(ValueError, match="do not match the placeholders"):
        store.execute(sql, params)


def test_many_values_in_one_parameter(store):
    """Long parameters leave the URL for a form body on the way to a server."""
    ids = [f"run-{n:05d}-{'x' * 40}" for n in range(400)]
    insert_runs(store, *(run(run_id) for run_id in ids[::50]))
    found = store.execute(
        f"SELECT count() FROM {latest('runs')} WHERE id IN {{ids:Array(String)}}", {"ids": ids}
    )
    assert found == [(8,)]


def test_times_come_back_naive_utc_to_the_microsecond(store):
    moment = datetime(2026, 3, 29, 1, 30, 0, 123456)  # a daylight-saving change in Europe
    insert_runs(store, run(started_at=moment, updated=moment))
    assert store.execute("SELECT started_at, updated_at FROM runs") == [(moment, moment)]
    table = store.query_arrow("SELECT started_at FROM runs")
    assert table.schema.field("started_at").type == pa.timestamp("us")
    assert table.column("started_at").to_pylist() == [moment]


# ------------------------------------------------------------------ the store over time


def test_the_generation_grows_with_every_write(store):
    before = generation(store)
    bump_generation(store)
    bump_generation(store)
    assert generation(store) == before + 2


def test_reopening_keeps_the_data_and_the_schema(location):
    with open_store(location) as con:
        insert_runs(con, run(), run("r2"))
        bump_generation(con)
    with open_store(location) as con:
        assert con.execute(f"SELECT id FROM {latest('runs')} ORDER BY id") == [("r1",), ("r2",)]
        assert schema_version(con, location.database) == SCHEMA_VERSION
        assert generation(con) == 1
        assert con.execute("SELECT count() FROM meta FINAL") == [(1,)]


def test_a_store_of_a_later_release_is_refused(location):
    with open_store(location) as con:
        con.command("INSERT INTO meta (key, value) SELECT 'schema_version', '99'")
    with pytest.raises(DatabaseUnreadable, match="version 99, which this release does not know"):
        open_store(location)


def test_a_statement_clickhouse_refuses_is_one_line(store, location):
    with pytest.raises(ClickHouseError) as raised:
        store.execute("SELECT id FROM no_such_table")
    message = str(raised.value)
    assert message.startswith(f"ClickHouse at {location}: Code: 60. DB::Exception: ")
    assert "UNKNOWN_TABLE" in message and "\n" not in message
    assert isinstance(raised.value, StoreError) and raised.value.__suppress_context__
