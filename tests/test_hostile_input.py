"""Hostile input: JSON nested past any sane depth, decompression bombs, leftovers of killed ingests.

Each test builds real files and a real store, loads them through the CLI or the ingest the CLI
calls, and checks that the bad record is rejected with its reason while everything else loads,
that memory stays bounded, and that a page shows whatever the store holds without an exception.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import zlib

import pytest

from conftest import ROOT, app_test
from factories import rows, run_cli, simple_run, write_jsonl
from runs_store.domain.bounded_json import MAX_JSON_DEPTH, TooDeep, exceeds_depth, loads_bounded
from runs_store.ingest.pipeline import SCRATCH_PREFIX, ingest_paths, remove_dead_scratch
from runs_store.ingest.readers import array_items
from runs_store.services.run_detail import load_run
from runs_store.store.database import open_db

DEEP = 10_000


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


def run_with_output(run_id: str, output_text: str, **fields) -> str:
    """One engine run as a JSON line whose trigger output is the given JSON text."""
    record = simple_run(
        run_id,
        steps={
            "trigger": {
                "type": "PIECE_TRIGGER",
                "status": "SUCCEEDED",
                "input": {},
                "output": "@OUT@",
                "duration": 1,
            }
        },
        **fields,
    )
    return json.dumps(record).replace('"@OUT@"', output_text)


def rejects(db) -> list[tuple]:
    return rows(db, "SELECT unit, position, reason FROM rejects ORDER BY position")


def run_ids(db) -> list[str]:
    return [row[0] for row in rows(db, "SELECT id FROM runs ORDER BY id")]


# ------------------------------------------------------------------ depth


@pytest.mark.parametrize(
    "depth, deeper", [(1, False), (MAX_JSON_DEPTH, False), (MAX_JSON_DEPTH + 1, True), (DEEP, True)]
)
def test_depth_is_read_from_the_text_without_parsing_it(depth, deeper):
    assert exceeds_depth(nested(depth)) is deeper
    assert exceeds_depth("[" * depth + "]" * depth) is deeper


def test_brackets_inside_strings_do_not_count_as_depth():
    text = json.dumps({"text": "[" * (MAX_JSON_DEPTH * 2) + '\\"{' * MAX_JSON_DEPTH})
    assert not exceeds_depth(text)
    assert loads_bounded(text)["text"].startswith("[[[")


def test_loads_bounded_says_too_deep_instead_of_recursing():
    with pytest.raises(TooDeep, match="deeper than 256 levels"):
        loads_bounded(nested(DEEP))


def test_array_items_splits_a_list_without_parsing_its_items():
    text = '[1, {"a": [1, 2]}, "x,]", [3], ' + nested(DEEP) + "]"
    items = list(array_items(text))
    assert items[:4] == ["1", '{"a": [1, 2]}', '"x,]"', "[3]"]
    assert items[4] == nested(DEEP)


@pytest.mark.parametrize("lines_before", [0, 3])
def test_a_jsonl_record_nested_10000_deep_is_rejected_and_the_rest_loads(tmp_path, lines_before):
    good = [json.dumps(simple_run(f"good-{n}")) for n in range(lines_before)]
    lines = [
        *good,
        run_with_output("deep", nested(DEEP)),
        run_with_output("fine", json.dumps({"ok": True})),
    ]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    db = tmp_path / "runs.duckdb"
    result = run_cli("ingest", str(path), "--db", str(db))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert run_ids(db) == sorted(["fine", *(f"good-{n}" for n in range(lines_before))])
    reason = f"nested deeper than {MAX_JSON_DEPTH} levels of JSON objects and lists"
    assert rejects(db) == [("line", lines_before + 1, reason)]


def test_a_deep_record_in_a_json_list_is_rejected_and_its_neighbours_load(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(
        "["
        + ",".join(
            [
                json.dumps(simple_run("first")),
                run_with_output("deep", nested(DEEP)),
                json.dumps(simple_run("third")),
            ]
        )
        + "]"
    )
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert (summary.new, summary.rejected) == (2, 1)
    assert run_ids(db) == ["first", "third"]
    assert rejects(db)[0][:2] == ("item", 2)


def test_a_payload_just_inside_the_limit_loads_by_both_readers(tmp_path):
    payload = nested(MAX_JSON_DEPTH - 3)  # the run, its steps and the step hold it
    path = tmp_path / "runs.jsonl"
    path.write_text(run_with_output("edge", payload) + "\n")
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert (summary.new, summary.rejected) == (1, 0)
    stored = rows(db, "SELECT output FROM run_steps WHERE run_id = 'edge'")[0][0]
    assert json.loads(stored) == json.loads(payload)


def test_a_deep_payload_already_in_the_store_opens_as_text(tmp_path, app_env):
    """Stores loaded before the limit may hold one: the run page shows it, never raises."""
    db = tmp_path / "runs.duckdb"
    ingest_paths(
        db,
        [write_jsonl(tmp_path / "ok.jsonl", [json.loads(run_with_output("legacy", '{"x": 1}'))])],
    )
    with open_db(db) as con:
        con.execute(
            "UPDATE run_steps SET output = ?, error = ? WHERE run_id = 'legacy'",
            [nested(DEEP, '"secret"'), json.dumps(nested(DEEP))],
        )
        run = load_run(con, "legacy")
    output = run.steps[0].output
    assert output.value == nested(DEEP, '"secret"') or output.preview
    app_env(db)
    at = app_test("pages/run.py", {"id": "legacy"})
    assert not at.exception, at.exception


# ------------------------------------------------------------------ bombs and large records


def gzip_bomb(path, size: int, line: bytes = b"a") -> None:
    """A gzip holding one line of `size` bytes (a few hundred KB on disk)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = line * (1 << 20)
    with open(path, "wb") as out:
        out.write(compressor.compress(b'{"id": "bomb", "pad": "'))
        for _ in range(size // len(chunk)):
            out.write(compressor.compress(chunk))
        out.write(compressor.compress(b'"}\n'))
        out.write(compressor.flush())


def peak_memory_mb(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Runs the CLI in a child process and reads the child's peak resident memory (VmHWM: its
    own since exec, unlike ru_maxrss, which keeps the forking test process's size)."""
    code = (
        "import re, runpy, sys; sys.argv = ['runs_store', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('runs_store', run_name='__main__')\n"
        "finally:\n    status = open('/proc/self/status').read()\n"
        "    print('PEAK', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)"
    )
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    peak_kb = int(result.stderr.rsplit("PEAK", 1)[1].split()[0])
    return result, peak_kb / 1024


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".json.gz"])
def test_a_gzip_bomb_is_rejected_in_bounded_memory(tmp_path, suffix):
    bomb = tmp_path / f"bomb{suffix}"
    gzip_bomb(bomb, 1536 << 20)  # 1.5 GB in one record
    assert bomb.stat().st_size < 3 << 20
    good = write_jsonl(tmp_path / "good.jsonl", [simple_run("after-the-bomb")])
    db = tmp_path / "runs.duckdb"
    result, peak = peak_memory_mb(
        ["ingest", str(bomb), str(good), "--db", str(db)], {"RUNS_MAX_RECORD_MB": "16"}
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert peak < 400, f"peak {peak:.0f} MB"  # 166 MB measured, whatever the bomb's size
    assert run_ids(db) == ["after-the-bomb"]
    ((_, position, reason),) = rejects(db)
    assert position == 1 and "RUNS_MAX_RECORD_MB (16 MB)" in reason
    kept = rows(db, "SELECT length(raw) FROM rejects")[0][0]
    assert 0 < kept <= 64 * 1024


def test_a_file_that_unpacks_past_the_file_bound_is_rejected_whole(tmp_path):
    lines = "".join(json.dumps(simple_run(f"r-{n}")) + "\n" for n in range(20_000))
    big = tmp_path / "big.jsonl.gz"
    big.write_bytes(gzip.compress(lines.encode()))
    small = write_jsonl(tmp_path / "small.jsonl", [simple_run("small-1")])
    db = tmp_path / "runs.duckdb"
    result = run_cli(
        "ingest",
        str(big),
        str(small),
        "--db",
        str(db),
        env={"RUNS_MAX_FILE_GB": str(len(lines) / 2 / 1024**3)},
    )
    assert result.returncode == 1, result.stderr
    assert run_ids(db) == ["small-1"]
    ((unit, _, reason),) = rejects(db)
    assert unit == "file" and "RUNS_MAX_FILE_GB" in reason and "nothing of it was loaded" in reason
    listed = run_cli("rejects", "--db", str(db))
    assert "big.jsonl.gz:file 0: " in listed.stdout
    assert not list(tmp_path.glob(f"{SCRATCH_PREFIX}*")), "the unpacked copy was left behind"


@pytest.mark.parametrize("value", ["lots", "0", "-3"])
def test_a_bad_bound_setting_is_named_with_what_is_allowed(tmp_path, value):
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("one")])
    result = run_cli(
        "ingest",
        str(path),
        "--db",
        str(tmp_path / "runs.duckdb"),
        env={"RUNS_MAX_RECORD_MB": value},
    )
    assert result.returncode == 2
    assert f"RUNS_MAX_RECORD_MB='{value}' is not allowed: use a positive number" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_csv_field_past_the_record_bound_is_named(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("id,flow,status,started_at\nx," + "a" * (2 << 20) + ",SUCCEEDED,2026-11-01\n")
    result = run_cli(
        "ingest", str(path), "--db", str(tmp_path / "runs.duckdb"), env={"RUNS_MAX_RECORD_MB": "1"}
    )
    assert result.returncode == 2
    assert "RUNS_MAX_RECORD_MB" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ leftovers


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_ingest_removes_the_scratch_files_of_killed_ingests_only(tmp_path):
    db = tmp_path / "runs.duckdb"
    dead = [
        tmp_path / f"{SCRATCH_PREFIX}{dead_pid()}-0badc0de.duckdb",
        tmp_path / f"{SCRATCH_PREFIX}{dead_pid()}-0badc0de.duckdb.wal",
        tmp_path / f"{SCRATCH_PREFIX}{dead_pid()}-feedbeef.jsonl",
    ]
    alive = [
        tmp_path / f"{SCRATCH_PREFIX}{os.getppid()}-12345678.duckdb",
        tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-12345678.jsonl",
    ]
    for path in dead + alive:
        path.write_bytes(b"x" * 1024)
    ingest_paths(db, [write_jsonl(tmp_path / "runs.jsonl", [simple_run("one")])])
    assert [path.exists() for path in dead] == [False] * len(dead)
    assert [path.exists() for path in alive] == [True] * len(alive)
    assert remove_dead_scratch(tmp_path) == []


def test_a_killed_ingest_leaves_nothing_the_next_one_keeps(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(simple_run(f"r-{n}")) + "\n" for n in range(200_000)))
    db = tmp_path / "runs.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "runs_store", "ingest", str(big), "--db", str(db)], env=env, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(f"{SCRATCH_PREFIX}{child.pid}-*")):  # mid-ingest
            assert child.poll() is None, "the ingest finished before it could be killed"
            assert time.monotonic() < deadline, "the ingest never started staging"
            time.sleep(0.02)
        child.kill()
    finally:
        child.wait()
    assert list(tmp_path.glob(f"{SCRATCH_PREFIX}{child.pid}-*"))
    ingest_paths(db, [write_jsonl(tmp_path / "one.jsonl", [simple_run("one")])])
    assert not list(tmp_path.glob(f"{SCRATCH_PREFIX}*"))
