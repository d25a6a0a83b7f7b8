"""The app and the CLI on one database file at the same time.

DuckDB lets one process hold a file. The app opens it only for one script run, so a CLI ingest
waits for it (RUNS_LOCK_WAIT_SECONDS); when another process holds the file longer, the CLI stops
with a message saying what to do, and the app shows the same kind of message with a Try again
button. Nothing is corrupted either way. The other process here is a real one holding a real
read-write connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import types
from contextlib import contextmanager

import pytest

from conftest import app_test
from factories import ROOT, rows, run_cli, simple_run, write_jsonl, write_text
from runs_store.domain.errors import DatabaseBusy
from runs_store.ingest.pipeline import ingest_paths
from runs_store.store import database as store_db

HOLD = (
    "import duckdb, sys\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
    "con.close()\n"
)


@contextmanager
def held(db):
    """Another process holding the database read-write until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        if process.poll() is None:
            process.stdin.write("\n")
            process.stdin.flush()
        process.wait(timeout=30)


@pytest.fixture
def loaded_db(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "first.jsonl", [simple_run("a"), simple_run("b")])])
    return db


def test_cli_ingest_gives_up_with_what_to_do_when_another_process_keeps_the_database(
    loaded_db, tmp_path
):
    before = rows(loaded_db, "SELECT * FROM runs ORDER BY id")
    path = write_jsonl(tmp_path / "more.jsonl", [simple_run("c")])
    with held(loaded_db):
        started = time.monotonic()
        done = run_cli(
            "ingest", str(path), "--db", str(loaded_db), env={"RUNS_LOCK_WAIT_SECONDS": "1"}
        )
        waited = time.monotonic() - started
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "in use by another process" in done.stderr and "try again" in done.stderr
    assert str(loaded_db) in done.stderr
    assert waited >= 1.0  # it did wait for the lock before giving up
    assert rows(loaded_db, "SELECT * FROM runs ORDER BY id") == before


def test_opening_the_store_waits_for_the_other_process_and_then_works(loaded_db, monkeypatch):
    waiting = threading.Event()

    def sleep_and_signal(seconds):
        waiting.set()  # a lock attempt failed: the store is now waiting
        time.sleep(seconds)

    monkeypatch.setattr(
        store_db, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep_and_signal)
    )
    result = {}

    def open_and_count():
        with store_db.open_db(loaded_db, wait_seconds=30) as con:
            result["count"] = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]

    with held(loaded_db):
        worker = threading.Thread(target=open_and_count)
        worker.start()
        assert waiting.wait(timeout=30), "the store never had to wait"
        assert "count" not in result
    worker.join(timeout=30)
    assert result == {"count": 2}


def test_opening_a_held_database_without_waiting_raises_database_busy(loaded_db):
    with held(loaded_db) as holder, pytest.raises(DatabaseBusy) as caught:
        store_db.connect(loaded_db, wait_seconds=0)
    assert f"process {holder.pid}" in str(caught.value) or "another process" in str(caught.value)


def test_cli_ingest_works_between_two_page_renders(loaded_db, app_env, tmp_path):
    app_env(loaded_db)
    at = app_test("pages/import.py")
    assert not at.exception
    path = write_text(tmp_path / "cli.jsonl", json.dumps(simple_run("c")) + "\nbroken line\n")
    done = run_cli(
        "ingest", str(path), "--db", str(loaded_db), env={"RUNS_LOCK_WAIT_SECONDS": "10"}
    )
    assert done.returncode == 1, done.stderr
    at.run()
    assert not at.exception and not at.error
    assert list(at.dataframe[-1].value["raw"]) == ["broken line"]  # the page sees the new data
    assert rows(loaded_db, "SELECT count(*) FROM runs")[0][0] == 3


@pytest.mark.parametrize("page", [None, "pages/import.py"])
def test_the_app_says_the_database_is_busy_and_offers_to_try_again(
    loaded_db, app_env, monkeypatch, page
):
    app_env(loaded_db)
    monkeypatch.setenv("RUNS_LOCK_WAIT_SECONDS", "0.5")
    with held(loaded_db):
        at = app_test(page)
        assert not at.exception
        assert "in use by another process" in at.error[0].value
        assert [b.label for b in at.button] == ["Try again"]
    at.button[0].click().run()
    assert not at.exception and not at.error
    if page:
        assert at.title[0].value == "Import runs"
