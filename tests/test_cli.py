"""The command line: `python -m runs_store ...` in its own process where the process matters
(exit status, no traceback), otherwise through `main()` in this one.

Exit codes 0 / 1 / 2, messages that name the path and never a traceback, the rejects listing,
where the database is, and the progress bar.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from factories import engine_run, older_run, rows, run_cli, simple_run, write_jsonl, write_text
from runs_store.cli import main
from runs_store.ingest.pipeline import ingest_paths

SUMMARY = re.compile(
    r"^Ingested (\d+) files?: (\d+) new, (\d+) updated, (\d+) unchanged, "
    r"(\d+) rejected, (\d+) test runs skipped\.$",
    re.M,
)


def summary_numbers(stdout: str) -> tuple[int, ...]:
    found = SUMMARY.search(stdout)
    assert found, f"no summary line in {stdout!r}"
    return tuple(int(group) for group in found.groups())


def assert_clean_failure(done, *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    for needle in needles:
        assert needle in done.stderr, done.stderr


# ------------------------------------------------------------------ exit codes


def test_ingest_exits_0_and_prints_the_summary_when_everything_loads(tmp_path):
    path = write_jsonl(
        tmp_path / "runs.jsonl",
        [engine_run("a"), older_run("b"), simple_run("t", environment="TESTING")],
    )
    db = tmp_path / "runs.duckdb"
    done = run_cli("ingest", str(path), "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert summary_numbers(done.stdout) == (1, 2, 0, 0, 0, 1)
    assert {r[0] for r in rows(db, "SELECT id FROM runs")} == {"a", "b"}


def test_ingest_exits_1_and_says_how_to_see_the_rejects(tmp_path):
    text = json.dumps(simple_run("ok")) + "\n{oops\n" + json.dumps(simple_run("x", status="?"))
    path = write_text(tmp_path / "runs.jsonl", text + "\n")
    db = tmp_path / "runs.duckdb"
    done = run_cli("ingest", str(path), "--db", str(db))
    assert done.returncode == 1
    assert summary_numbers(done.stdout) == (1, 1, 0, 0, 2, 0)
    assert f"python -m runs_store rejects --db {db}" in done.stdout


def test_ingesting_again_reports_everything_unchanged(tmp_path):
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("a"), simple_run("b")])
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [path])
    done = run_cli("ingest", str(path), "--db", str(db))
    assert done.returncode == 0 and summary_numbers(done.stdout) == (1, 0, 0, 2, 0, 0)


def make_bad_path(tmp_path, kind: str):
    if kind == "unknown extension":
        return write_text(tmp_path / "runs.xlsx", "id,flow\n")
    if kind == "unreadable gzip":
        path = tmp_path / "runs.jsonl.gz"
        path.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00garbage" * 50)
        return path
    if kind == "damaged parquet":
        return write_text(tmp_path / "runs.parquet", "PAR1 not really")
    folder = tmp_path / "empty-folder"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    "kind", ["unknown extension", "unreadable gzip", "damaged parquet", "directory without runs"]
)
def test_a_path_that_cannot_be_loaded_exits_2_naming_it(tmp_path, capsys, kind):
    bad = make_bad_path(tmp_path, kind)
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "good.jsonl", [simple_run("g")])])
    assert main(["ingest", str(bad), "--db", str(db)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and bad.name in error
    assert rows(db, "SELECT id FROM runs") == [("g",)]


def test_a_missing_path_exits_2_naming_it_without_a_traceback(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "good.jsonl", [simple_run("g")])])
    missing = tmp_path / "no-such-file.jsonl"
    done = run_cli("ingest", str(missing), "--db", str(db))
    assert_clean_failure(done, f"error: {missing}: no such file or directory")
    assert rows(db, "SELECT id FROM runs") == [("g",)]


def test_a_file_that_is_not_a_database_exits_2_without_a_traceback(tmp_path):
    db = write_text(tmp_path / "runs.duckdb", "this is a text file, not a database")
    done = run_cli(
        "ingest", str(write_jsonl(tmp_path / "r.jsonl", [simple_run("a")])), "--db", str(db)
    )
    assert_clean_failure(done, str(db))


def test_running_out_of_memory_exits_2_naming_the_setting_and_loads_nothing(tmp_path):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "good.jsonl", [simple_run("g")])])
    big = write_jsonl(tmp_path / "big.jsonl", [engine_run(f"run-{n}") for n in range(3_000)])
    done = run_cli("ingest", str(big), "--db", str(db), env={"RUNS_INGEST_MEMORY_LIMIT": "2MB"})
    assert_clean_failure(done, "RUNS_INGEST_MEMORY_LIMIT (2MB)", "nothing of it was loaded")
    assert rows(db, "SELECT id FROM runs") == [("g",)]


def test_a_command_line_mistake_shows_usage_not_a_traceback():
    done = run_cli("ingest")
    assert done.returncode == 2 and "usage:" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ rejects


def test_rejects_prints_one_line_per_rejected_record_with_file_line_and_reason(tmp_path):
    lines = [
        json.dumps(simple_run("ok")),
        "not json",
        json.dumps(simple_run("s", status="Nope")),
        json.dumps({"created": "2026-11-03T09:00:00Z"}),
        json.dumps(simple_run("ok2")),
    ]
    path = write_text(tmp_path / "runs.jsonl", "\n".join(lines) + "\n")
    listed = write_text(tmp_path / "list.json", json.dumps([simple_run("l1"), "oops"]))
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [path, listed])
    done = run_cli("rejects", "--db", str(db))
    assert done.returncode == 0
    printed = done.stdout.splitlines()
    expected = [
        (f"{listed}:item 2: ", "not a JSON object"),
        (f"{path}:line 2: ", "not valid JSON"),
        (f"{path}:line 3: ", "unknown status 'Nope'"),
        (f"{path}:line 4: ", "missing id"),
    ]
    assert len(printed) == len(expected)
    for line, (prefix, reason) in zip(printed, expected, strict=True):
        assert line.startswith(prefix) and reason in line, line
    assert "4 rejected records" in done.stderr


def test_rejects_of_an_empty_store_prints_nothing(empty_db, capsys):
    assert main(["rejects", "--db", str(empty_db)]) == 0
    printed = capsys.readouterr()
    assert printed.out == "" and "0 rejected records" in printed.err


# ------------------------------------------------------------------ where the database is


def test_db_option_beats_runs_db_which_beats_the_default(tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("a")])
    by_option, by_env = tmp_path / "option.duckdb", tmp_path / "env.duckdb"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNS_DB", str(by_env))
    assert main(["ingest", str(path), "--db", str(by_option)]) == 0
    assert by_option.exists() and not by_env.exists()
    assert main(["ingest", str(path)]) == 0
    assert by_env.exists() and not (tmp_path / "data").exists()
    monkeypatch.delenv("RUNS_DB")
    assert main(["ingest", str(path)]) == 0
    assert rows(tmp_path / "data" / "runs.duckdb", "SELECT id FROM runs") == [("a",)]


# ------------------------------------------------------------------ progress


def test_progress_bar_is_drawn_when_asked_and_not_into_a_pipe(tmp_path, capsys):
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run(f"p{n}") for n in range(50)])
    main(["ingest", str(path), "--db", str(tmp_path / "a.duckdb"), "--progress", "always"])
    shown = capsys.readouterr().err
    main(["ingest", str(path), "--db", str(tmp_path / "b.duckdb")])  # stderr is not a terminal
    piped = capsys.readouterr().err
    assert "runs.jsonl" in shown and "100%" in shown
    assert "%" not in piped


# ------------------------------------------------------------------ export mistakes


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--status", "Exploded"], "unknown status 'Exploded'"),
        (["--since", "last tuesday"], "--since"),
        (["--format", "parquet"], "parquet export needs --output"),
        (["--output", "/nonexistent-folder/out.csv"], "/nonexistent-folder/out.csv"),
    ],
)
def test_export_mistakes_exit_2_with_a_message(tmp_path, capsys, args, needle):
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "r.jsonl", [simple_run("a")])])
    assert main(["export", "--db", str(db), *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and needle in error


def test_sample_generates_runs_and_counts_test_runs(tmp_path, capsys):
    db = tmp_path / "runs.duckdb"
    assert main(["sample", "--runs", "300", "--days", "3", "--seed", "5", "--db", str(db)]) == 0
    found = re.search(r"(\d+) new, .* (\d+) test runs skipped", capsys.readouterr().out)
    new, skipped = int(found.group(1)), int(found.group(2))
    assert new + skipped == 300
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == new


def test_sample_bundled_loads_the_apps_sample_with_its_newest_run_now(tmp_path, capsys):
    db = tmp_path / "runs.duckdb"
    before = datetime.now(UTC).replace(tzinfo=None)
    assert main(["sample", "--bundled", "--db", str(db)]) == 0
    new = int(re.search(r"([\d,]+) new", capsys.readouterr().out).group(1).replace(",", ""))
    (count, newest), *_ = rows(db, "SELECT count(*), max(started_at) FROM runs")
    assert new == count > 1000
    assert abs((newest - before).total_seconds()) < 60
