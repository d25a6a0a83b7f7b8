"""A pull's runs, already in memory, go through the JSONL fast path (`ingest_records`): usual runs
are normalised in SQL, odd ones by Python with their reason, and what is written to the scratch
file is exactly what was pulled (integers past 64 bits, lone surrogates, datetimes included)."""

from __future__ import annotations

import json
from datetime import datetime

from factories import engine_run, run_cli, simple_run, write_jsonl
from runs_store.ingest.pipeline import ingest_items, ingest_records, json_line, records_as_items
from runs_store.store.database import open_db


def _steps_of(con, run_id: str) -> dict[str, tuple]:
    return {
        name: (status, output)
        for name, status, output in con.execute(
            "SELECT name, status, output FROM run_steps WHERE run_id = $id", {"id": run_id}
        ).fetchall()
    }


def _run(con, run_id: str) -> dict:
    cursor = con.execute("SELECT * FROM runs WHERE id = $id", {"id": run_id})
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def test_pulled_runs_are_read_by_duckdb_and_match_the_python_path(tmp_path):
    records = [engine_run(f"run-{n}", created=f"2026-11-03T09:{n:02d}:02.118Z") for n in range(40)]
    with open_db(tmp_path / "fast.duckdb") as fast, open_db(tmp_path / "python.duckdb") as slow:
        summary = ingest_records(fast, records, "postgres db/engine project P")
        ingest_items(slow, records_as_items(records), "postgres db/engine project P")
        assert summary.read_by == "duckdb"
        assert (summary.new, summary.rejected) == (40, 0)
        for n in (0, 17, 39):
            run_id = f"run-{n}"
            assert _run(fast, run_id) == _run(slow, run_id)
            assert _steps_of(fast, run_id) == _steps_of(slow, run_id)
            assert len(_steps_of(fast, run_id)) == len(records[n]["steps"])


def test_odd_runs_are_loaded_or_rejected_by_python_and_rejects_add_up(tmp_path):
    odd_status = simple_run("odd-status", status="Succeeded")  # a label, not the engine's name
    no_id = simple_run("ignored")
    del no_id["id"]
    with open_db(tmp_path / "s.duckdb") as con:
        first = ingest_records(con, [simple_run("ok-1"), odd_status, no_id], "pull P")
        second = ingest_records(con, [{"id": "x", "created": "not a time"}], "pull P")
        assert (first.new, first.rejected) == (2, 1)
        assert _run(con, "odd-status")["status"] == "SUCCEEDED"
        assert second.rejected == 1
        reasons = [row[0] for row in con.execute("SELECT reason FROM rejects").fetchall()]
    assert len(reasons) == 2  # a later batch of the same pull keeps the earlier batch's rejects
    assert any("id" in reason for reason in reasons)


def test_values_json_cannot_take_from_orjson_are_written_as_json_writes_them(tmp_path):
    huge = 2**70 + 1  # past 64 bits: orjson refuses it, json keeps it exact
    output = {"total": huge, "lone": "\ud800", "at": datetime(2026, 11, 3, 9, 14, 2)}
    run = engine_run("exact-1", status="SUCCEEDED", failedStep=None)
    run["steps"]["step_1"]["output"] = output
    assert json_line(run) == (json.dumps(run, default=str) + "\n").encode()
    assert json_line({"at": datetime(2026, 1, 2, 3, 4, 5)}) == b'{"at":"2026-01-02 03:04:05"}\n'
    with open_db(tmp_path / "s.duckdb") as con:
        summary = ingest_records(con, [run], "pull P")
        stored = _steps_of(con, "exact-1")["step_1"][1]
    assert summary.new == 1
    assert json.loads(stored)["total"] == huge
    assert json.loads(stored)["at"] == "2026-11-03 09:14:02"
    assert json.loads(stored)["lone"] == "\ufffd"  # no character: the replacement character


def test_a_file_with_a_lone_surrogate_loads_every_run(tmp_path):
    """JSON.stringify writes a lone surrogate as `\\ud800`; DuckDB and Arrow refuse it, which
    once ended the whole file's ingest with a traceback."""
    lone = engine_run("lone-1", status="SUCCEEDED", failedStep=None)
    lone["steps"]["step_1"]["output"] = {"text": "a\ud800b", "emoji": "\U0001f600"}
    lone["failedStep"] = None
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("plain-1"), lone])
    done = run_cli("ingest", str(path), "--db", str(tmp_path / "s.duckdb"))
    assert done.returncode == 0, done.stderr
    assert "2 new" in done.stdout and "Traceback" not in done.stderr
    with open_db(tmp_path / "s.duckdb") as con:
        output = json.loads(_steps_of(con, "lone-1")["step_1"][1])
    assert output == {"text": "a\ufffdb", "emoji": "\U0001f600"}
