"""ClickHouse's engine in this process (`chdb:PATH`): like the DuckDB file, a store is held by one
process at a time, so opening one that another process holds waits RUNS_LOCK_WAIT_SECONDS and then
says so in one line; one process holds one store; a store left by a process that died opens."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from runs_store.domain.errors import DatabaseBusy, DatabaseUnreadable, StoreError
from runs_store.store.clickhouse import open_store
from runs_store.store.clickhouse.connection import connect_chdb
from runs_store.store.location import ChdbLocation

pytestmark = pytest.mark.store

# Holds the store at argv[1] until its stdin closes (or it is killed).
HOLDER = """
import sys, chdb
con = chdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
con.close()
"""


def holding(path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def test_a_store_another_process_holds_is_busy_in_one_line(tmp_path):
    location = ChdbLocation(tmp_path / "store")
    child = holding(location.path)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as raised:
            connect_chdb(location, wait_seconds=0.3)
        assert 0.3 <= time.monotonic() - started < 5
        message = str(raised.value)
        assert message.startswith(f"The ClickHouse store {location} is in use by another process")
        assert f"(process {child.pid})" in message and "\n" not in message
    finally:
        child.kill()
        child.wait()


def test_opening_waits_for_the_other_process_to_let_go(tmp_path):
    location = ChdbLocation(tmp_path / "store")
    child = holding(location.path)
    assert child.stdin is not None
    release = threading.Timer(0.5, child.stdin.close)  # the child lets go half a second from now
    try:
        started = time.monotonic()
        release.start()
        with connect_chdb(location, wait_seconds=20) as con:
            assert time.monotonic() - started >= 0.5
            assert con.execute("SELECT 1") == [(1,)]
    finally:
        release.cancel()
        child.kill()
        child.wait()


def test_a_store_left_by_a_process_that_died_opens(tmp_path):
    location = ChdbLocation(tmp_path / "store")
    child = holding(location.path)
    child.kill()
    child.wait()
    assert (location.path / "status").exists()  # what it left behind
    with open_store(location) as con:
        assert con.execute("SELECT count() FROM runs") == [(0,)]


def test_one_process_holds_one_store(tmp_path):
    first = ChdbLocation(tmp_path / "first")
    with open_store(first) as con:
        with open_store(first) as again:  # the same store twice is fine
            assert again.execute("SELECT 1") == con.execute("SELECT 1")
        with pytest.raises(DatabaseUnreadable, match=r"^Cannot open the ClickHouse store chdb:"):
            connect_chdb(ChdbLocation(tmp_path / "second"), wait_seconds=0)
    with open_store(ChdbLocation(tmp_path / "second")) as con:  # once the first is closed
        assert con.execute("SELECT 1") == [(1,)]


def test_a_cluster_needs_a_server(tmp_path):
    with pytest.raises(StoreError, match=r"^--cluster main needs a ClickHouse server"):
        open_store(ChdbLocation(tmp_path / "store"), cluster="main")
