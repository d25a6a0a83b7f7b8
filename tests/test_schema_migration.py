"""A store made by an earlier release is brought up to the current schema, losing nothing, however
it is opened first (the app opens stores read-only)."""

from __future__ import annotations

import pytest

from conftest import build_db
from factories import rows
from runs_store.store.database import SCHEMA_VERSION, open_db, schema_version

NEW_IN_2 = ("triggered_by", "logs_file_id", "steps_data_truncated", "timeline", "internal_error")


def made_by_release_1(path) -> None:
    """Turns a current store back into what schema version 1 left."""
    with open_db(path) as con:
        con.execute("DROP INDEX runs_by_id")
        for column in NEW_IN_2:
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        con.execute("DROP TABLE pull_state")
        con.execute("DROP TABLE pull_unfinished")
        con.execute("DROP TABLE run_rollups")
        con.execute("DROP TABLE agent_steps")
        con.execute("DROP TABLE agent_tool_calls")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        con.execute("CREATE INDEX runs_by_id ON runs (id)")  # as release 1 had it


@pytest.mark.parametrize("read_only", [True, False])
def test_a_version_1_store_is_migrated_when_first_opened(tmp_path, read_only):
    db = build_db(tmp_path / "runs.duckdb", runs=300)
    everything = "SELECT id, status, updated_at, flow_name FROM runs ORDER BY id"
    before = rows(db, everything)
    made_by_release_1(db)
    with open_db(db, read_only=read_only) as con:
        assert schema_version(con) == SCHEMA_VERSION == "4"
        columns = {row[0] for row in con.execute("DESCRIBE runs").fetchall()}
        assert set(NEW_IN_2) <= columns
        assert con.execute("SELECT count(*) FROM pull_state").fetchall() == [(0,)]
        counted = "SELECT sum(runs) FROM run_rollups"  # built from every run (test_rollups.py)
        assert con.execute(counted).fetchall() == [(len(before),)]
        assert con.execute("SELECT count(*) FROM agent_steps").fetchall()[0][0] > 50
        indexes = con.execute("SELECT index_name FROM duckdb_indexes() ORDER BY 1").fetchall()
        assert indexes == [("run_steps_by_run",), ("runs_by_id",)]
    assert rows(db, everything) == before and len(before) > 250


FACTS = (
    "SELECT * FROM agent_steps ORDER BY run_id, position",
    "SELECT * FROM agent_tool_calls ORDER BY run_id, position, call_index",
)


def made_by_release_3(path) -> None:
    """Turns a current store back into what schema version 3 left: no agent facts."""
    with open_db(path) as con:
        con.execute("DROP TABLE agent_steps")
        con.execute("DROP TABLE agent_tool_calls")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def test_a_version_3_store_gets_its_agents_facts_from_the_steps_it_holds(tmp_path, monkeypatch):
    """Records loaded before agent facts were kept get them without reading their files again,
    a batch of agent steps at a time: the same facts the ingest writes."""
    from runs_store.store import agent_facts

    db = build_db(tmp_path / "runs.duckdb", runs=400)
    steps, calls = (rows(db, sql) for sql in FACTS)
    assert len(steps) > 80 and len(calls) > 150
    made_by_release_3(db)
    monkeypatch.setattr(agent_facts, "BATCH_STEPS", 7)  # many batches, one odd-sized
    with open_db(db, read_only=True) as con:
        assert schema_version(con) == "4"
    assert [rows(db, sql) for sql in FACTS] == [steps, calls]
