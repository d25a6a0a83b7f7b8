"""Loading files into the store: updates, idempotence, rejects, one transaction per file, streaming.

All against real DuckDB files; the crash test kills a real CLI process mid-file, the memory test
measures real CLI processes.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from factories import (
    ROOT,
    engine_run,
    older_run,
    rows,
    run_row,
    simple_run,
    write_big_jsonl,
    write_jsonl,
    write_text,
)
from runs_store.domain.errors import InputPathError
from runs_store.ingest.pipeline import (
    UNMERGED_FILE_RUNS,
    IngestSummary,
    ingest_items,
    ingest_paths,
    records_as_items,
)
from runs_store.ingest.readers import Item
from runs_store.store.database import generation, open_db

RUNNING = engine_run(
    "r1",
    status="RUNNING",
    updated="2026-11-03T09:14:05.000Z",
    finishTime=None,
    failedStep=None,
    steps={
        "trigger": {"type": "PIECE_TRIGGER", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {"type": "CODE", "status": "RUNNING", "input": {}},
    },
)
SUCCEEDED = engine_run(
    "r1",
    status="SUCCEEDED",
    updated="2026-11-03T09:14:09.904Z",
    failedStep=None,
    steps={
        "trigger": {"type": "PIECE_TRIGGER", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {"type": "CODE", "status": "SUCCEEDED", "input": {}, "output": {"ok": True}},
        "step_2": {"type": "CODE", "status": "SUCCEEDED", "input": {}, "output": 2},
    },
)


def snapshot(db) -> dict:
    """Everything the store holds, in a comparable form (reject times left out)."""
    return {
        "runs": rows(db, "SELECT * FROM runs ORDER BY id"),
        "steps": rows(db, "SELECT * FROM run_steps ORDER BY run_id, position"),
        "rejects": rows(
            db, "SELECT source, unit, position, reason, raw FROM rejects ORDER BY source, position"
        ),
    }


def step_names(db, run_id):
    return [
        r[0]
        for r in rows(db, "SELECT name FROM run_steps WHERE run_id = ? ORDER BY position", [run_id])
    ]


# ------------------------------------------------------------------ updates


def test_a_later_version_in_the_same_file_replaces_the_earlier_one(tmp_path):
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [write_jsonl(tmp_path / "a.jsonl", [RUNNING, SUCCEEDED])])
    run = run_row(db, "r1")
    assert summary.new == 1 and summary.updated == 0
    assert run["status"] == "SUCCEEDED" and run["duration_ms"] is not None
    assert step_names(db, "r1") == list(SUCCEEDED["steps"])


def test_an_older_version_later_in_the_same_file_does_not_overwrite_a_newer_one(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "a.jsonl", [SUCCEEDED, RUNNING])])
    assert run_row(db, "r1")["status"] == "SUCCEEDED"
    assert step_names(db, "r1") == list(SUCCEEDED["steps"])


def test_a_later_version_in_another_file_updates_the_run_and_replaces_its_steps(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "1.jsonl", [RUNNING])])
    assert run_row(db, "r1")["status"] == "RUNNING"
    summary = ingest_paths(db, [write_jsonl(tmp_path / "2.jsonl", [SUCCEEDED])])
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 0)
    assert run_row(db, "r1")["status"] == "SUCCEEDED"
    assert step_names(db, "r1") == list(SUCCEEDED["steps"])  # no leftovers of the old version


def test_an_older_version_in_another_file_never_overwrites_a_newer_one(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "1.jsonl", [SUCCEEDED])])
    before = snapshot(db)
    summary = ingest_paths(db, [write_jsonl(tmp_path / "2.jsonl", [RUNNING])])
    assert (summary.new, summary.updated, summary.unchanged) == (0, 0, 1)
    assert snapshot(db)["runs"] == before["runs"] and snapshot(db)["steps"] == before["steps"]


def test_without_updated_the_finish_time_orders_versions(tmp_path):
    first = simple_run("v", status="RUNNING", updated=None, finishTime=None)
    later = simple_run("v", status="SUCCEEDED", updated=None, finishTime="2026-11-03T09:05:00Z")
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "1.jsonl", [first])])
    ingest_paths(db, [write_jsonl(tmp_path / "2.jsonl", [later])])
    assert run_row(db, "v")["status"] == "SUCCEEDED"


def test_a_newer_flat_row_updates_a_run_but_keeps_its_steps(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "1.jsonl", [SUCCEEDED])])
    csv_text = (
        "id,flow,status,started_at,finished_at,duration_ms,archived,updated_at\n"
        "r1,Triage support email,SUCCEEDED,2026-11-03T09:14:02.118Z,"
        "2026-11-03T09:14:09.880Z,7350,true,2026-11-05T00:00:00Z\n"
    )
    summary = ingest_paths(db, [write_text(tmp_path / "2.csv", csv_text)])
    run = run_row(db, "r1")
    assert summary.updated == 1 and run["archived_at"] is not None
    assert run["has_steps"] is True and step_names(db, "r1") == list(SUCCEEDED["steps"])


# ------------------------------------------------------------------ idempotence


def mixed_file(tmp_path):
    records = [
        engine_run("m1"),
        older_run("m2"),
        simple_run("m3"),
        simple_run("t1", environment="TESTING"),
    ]
    text = (
        "".join(json.dumps(r) + "\n" for r in records)
        + "not json\n"
        + json.dumps(simple_run("bad", status="NOPE"))
        + "\n"
    )
    return write_text(tmp_path / "mixed.jsonl", text)


def test_ingesting_the_same_file_twice_changes_nothing(tmp_path):
    db = tmp_path / "runs.duckdb"
    path = mixed_file(tmp_path)
    first = ingest_paths(db, [path])
    before = snapshot(db)
    second = ingest_paths(db, [path])
    assert (first.new, first.rejected, first.test_runs) == (3, 2, 1)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 3)
    assert (second.rejected, second.test_runs) == (first.rejected, first.test_runs)
    assert snapshot(db) == before
    assert len(before["runs"]) == 3 and len(before["rejects"]) == 2


def test_the_same_file_named_another_way_does_not_duplicate_rejects(tmp_path, monkeypatch):
    db = tmp_path / "runs.duckdb"
    path = mixed_file(tmp_path)
    ingest_paths(db, [path])
    before = snapshot(db)
    monkeypatch.chdir(tmp_path)
    ingest_paths(db, ["mixed.jsonl"])
    ingest_paths(db, [tmp_path / "." / "mixed.jsonl"])
    ingest_paths(db, [tmp_path])  # the directory that holds it
    assert snapshot(db) == before


def test_fixing_a_file_and_ingesting_it_again_replaces_its_rejects(tmp_path):
    db = tmp_path / "runs.duckdb"
    path = mixed_file(tmp_path)
    ingest_paths(db, [path])
    write_jsonl(path, [engine_run("m1"), simple_run("bad")])
    summary = ingest_paths(db, [path])
    assert summary.rejected == 0 and summary.new == 1
    assert rows(db, "SELECT count(*) FROM rejects")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == 4  # runs are never deleted by ingest


def test_every_ingest_bumps_the_change_counter(tmp_path):
    db = tmp_path / "runs.duckdb"
    with open_db(db) as con:
        start = generation(con)
    ingest_paths(db, [write_jsonl(tmp_path / "a.jsonl", [simple_run("g")])])
    with open_db(db) as con:
        assert generation(con) > start


# ------------------------------------------------------------------ summary


def test_the_summary_line_counts_new_updated_unchanged_rejected_and_test_runs(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "1.jsonl", [RUNNING, simple_run("same")])])
    second = write_text(
        tmp_path / "2.jsonl",
        "".join(
            json.dumps(r) + "\n"
            for r in [
                SUCCEEDED,
                simple_run("same"),
                simple_run("fresh"),
                simple_run("t", environment="TESTING"),
            ]
        )
        + "{broken\n",
    )
    summary = ingest_paths(db, [second])
    assert summary.line() == (
        "1 file: 1 new, 1 updated, 1 unchanged, 1 rejected, 1 test runs skipped"
    )
    assert summary.exit_code == 1


def test_summaries_add_up_over_files():
    total = IngestSummary()
    total.add(IngestSummary(files=1, new=2, rejected=1))
    total.add(IngestSummary(files=1, updated=3, test_runs=4))
    assert total.line() == "2 files: 2 new, 3 updated, 0 unchanged, 1 rejected, 4 test runs skipped"


def test_an_empty_file_loads_nothing_and_succeeds(tmp_path):
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [write_text(tmp_path / "empty.jsonl", "")])
    assert summary.line().startswith("1 file: 0 new") and summary.exit_code == 0


def test_a_directory_without_run_files_is_an_input_error(tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    write_text(folder / "readme.txt", "no runs here")
    with pytest.raises(InputPathError, match="nothing"):
        ingest_paths(tmp_path / "runs.duckdb", [folder])


def test_every_path_is_checked_before_anything_is_loaded(tmp_path):
    db = tmp_path / "runs.duckdb"
    good = write_jsonl(tmp_path / "good.jsonl", [simple_run("x")])
    with pytest.raises(InputPathError, match=r"missing\.jsonl"):
        ingest_paths(db, [good, tmp_path / "missing.jsonl"])
    assert not db.exists() or rows(db, "SELECT count(*) FROM runs")[0][0] == 0


# ------------------------------------------------------------------ one transaction per file


def failing_items(count: int):
    for number in range(1, count + 1):
        yield Item("line", number, None, simple_run(f"doomed-{number}"))
    raise RuntimeError("the disk went away")


def test_a_failure_mid_file_leaves_the_database_as_it_was(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [mixed_file(tmp_path)])
    before = snapshot(db)
    with open_db(db) as con:
        with pytest.raises(RuntimeError, match="disk went away"):
            ingest_items(con, failing_items(12_000), "doomed.jsonl")
        # the connection is still usable afterwards
        ingest_items(con, records_as_items([simple_run("after")]), "after.jsonl")
    after = snapshot(db)
    assert [r for r in after["runs"] if r[0] != "after"] == before["runs"]
    assert after["rejects"] == before["rejects"] and after["steps"] == before["steps"]


def test_a_damaged_file_mid_way_loads_nothing_of_it(tmp_path):
    db = tmp_path / "runs.duckdb"
    data = gzip.compress(
        "".join(json.dumps(simple_run(f"z{n}")) + "\n" for n in range(20_000)).encode()
    )
    path = tmp_path / "damaged.jsonl.gz"
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(InputPathError, match=r"damaged\.jsonl\.gz"):
        ingest_paths(db, [path])
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    return {
        count: write_big_jsonl(folder / f"runs-{count}.jsonl", count)
        for count in (160_000, 480_000)
    }


class StderrWatcher:
    """Collects a process's stderr as it comes (progress bars end lines with \\r, not \\n)."""

    def __init__(self, process: subprocess.Popen):
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read1(4096) if hasattr(stream, "read1") else stream.read(1):
            self.text += chunk.decode(errors="replace")

    def wait_for(self, needle: str, process: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert process.poll() is None, f"ingest ended before showing progress: {self.text}"
            assert time.monotonic() < deadline, "no progress shown in time"
            time.sleep(0.01)  # polling a condition with a deadline


def test_killing_the_cli_mid_file_leaves_the_database_as_it_was(tmp_path, big_files):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [mixed_file(tmp_path)])
    before = snapshot(db)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runs_store",
            "ingest",
            str(big_files[160_000]),
            "--db",
            str(db),
            "--progress",
            "always",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watcher = StderrWatcher(process)
    try:
        watcher.wait_for("%", process)
        assert process.poll() is None, "the ingest finished before it could be killed"
    finally:
        process.kill()
        process.wait()
    assert snapshot(db) == before
    # and the file is still a healthy database that takes the next ingest
    summary = ingest_paths(db, [write_jsonl(tmp_path / "next.jsonl", [simple_run("next")])])
    assert summary.new == 1


# ------------------------------------------------------------------ streaming


def peak_rss_of_ingest(path, db) -> int:
    """Peak resident memory (bytes) of a CLI ingest, measured in its own parent process."""
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'runs_store', 'ingest', sys.argv[1], '--db', "
        "sys.argv[2], '--progress', 'never'], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    # Under a limit that both files reach, what remains to compare is growth with the file.
    env = {**os.environ, "RUNS_INGEST_MEMORY_LIMIT": "160MB"}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path), str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return int(done.stdout.strip()) * 1024  # Linux reports kilobytes


def test_memory_does_not_grow_with_file_size(tmp_path, big_files):
    # Both files are well past the size at which DuckDB's memory limit is reached.
    small, large = big_files[160_000], big_files[480_000]
    small_peak = peak_rss_of_ingest(small, tmp_path / "small.duckdb")
    large_peak = peak_rss_of_ingest(large, tmp_path / "large.duckdb")
    file_growth = large.stat().st_size - small.stat().st_size
    memory_growth = large_peak - small_peak
    assert rows(tmp_path / "large.duckdb", "SELECT count(*) FROM runs")[0][0] == 480_000
    assert memory_growth < 0.25 * file_growth, (
        f"peak memory grew by {memory_growth / 1e6:.0f} MB ({small_peak / 1e6:.0f} -> "
        f"{large_peak / 1e6:.0f} MB) for {file_growth / 1e6:.0f} MB more input"
    )


def row_groups(db) -> list[int]:
    """Rows in each of the runs table's row groups, as stored in the database file."""
    return [
        count
        for (count,) in rows(
            db,
            """
        SELECT max(count) FROM pragma_storage_info('runs') WHERE segment_type <> 'VALIDITY'
        GROUP BY row_group_id ORDER BY row_group_id""",
        )
    ]


def test_a_large_file_keeps_row_groups_of_its_own_and_a_small_one_is_merged(tmp_path):
    # A large file's checkpoint does not rewrite the store's row groups (it costs ~1 s a file at
    # 1M runs); small files, and files that replace runs, are merged and compacted as before.
    n = UNMERGED_FILE_RUNS
    db = tmp_path / "runs.duckdb"

    def load(name: str, records: list[dict]) -> IngestSummary:
        return ingest_paths(db, [write_jsonl(tmp_path / name, records)])

    load("a.jsonl", [simple_run(f"a-{i}") for i in range(n)])
    load("b.jsonl", [simple_run(f"b-{i}") for i in range(n)])
    assert row_groups(db) == [n, n]
    load("c.jsonl", [simple_run(f"c-{i}") for i in range(100)])
    assert row_groups(db) == [2 * n + 100]
    # replacing most runs: the old versions' rows are not kept beside the new ones
    replaced = [
        f"{prefix}-{i}"
        for prefix in "abc"
        for i in range(min(n, 100) if prefix == "c" else n * 3 // 4)
    ]
    replacing = load(
        "d.jsonl",
        [
            simple_run(run_id, status="FAILED", updated="2026-11-03T10:00:00Z")
            for run_id in replaced
        ],
    )
    assert (replacing.new, replacing.updated) == (0, len(replaced))
    assert row_groups(db) == [2 * n + 100], "the replaced versions' rows are still stored"
    assert rows(db, "SELECT count(*), count(*) FILTER (WHERE status = 'FAILED') FROM runs") == [
        (2 * n + 100, len(replaced))
    ]
