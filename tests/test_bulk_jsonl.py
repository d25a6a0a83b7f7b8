"""JSONL read by DuckDB's own JSON reader (the fast path) gives what the Python reader gives.

Each test writes a real file, loads it once through `ingest_file` (which takes the fast path for
`.jsonl`) and once through the Python reader alone, into two real DuckDB files, and compares every
column of every run, step and rejected record, and the summary counts.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest

from factories import (
    SLACK_ERROR,
    engine_run,
    example_steps,
    older_run,
    rows,
    simple_run,
    write_jsonl,
    write_text,
)
from run_records import (
    agent_failure_run,
    huge_run,
    loop_run,
    loop_steps,
    multiline_error_run,
    purged_run,
    secrets_run,
    xss_run,
)
from runs_store.ingest import bulk_jsonl
from runs_store.ingest.pipeline import ingest_file, ingest_items
from runs_store.ingest.readers import SourceFile
from runs_store.store.database import open_db
from sample_data.generator import generate_runs
from sample_data.generator import write_jsonl as write_sample_jsonl
from test_records import BAD_RECORDS

TABLES = {
    "runs": "SELECT * FROM runs ORDER BY id",
    "run_steps": "SELECT * FROM run_steps ORDER BY run_id, position",
    "rejects": "SELECT source, unit, position, reason, raw FROM rejects ORDER BY position, reason",
}
COUNTS = ("new", "updated", "unchanged", "rejected", "test_runs")


def load_both_ways(tmp_path, path, name: str | None = None):
    """(fast-path summary, Python-path summary), each loaded into its own database."""
    source_name = name or str(path.resolve())
    with open_db(tmp_path / "fast.duckdb") as con:
        fast = ingest_file(con, SourceFile(path, display_name=source_name))
    with open_db(tmp_path / "python.duckdb") as con:
        slow = ingest_items(con, SourceFile(path, display_name=source_name).items(), source_name)
    return fast, slow


def assert_same_store(tmp_path, fast, slow) -> None:
    assert fast.read_by == "duckdb", "the file did not take the fast path"
    assert {k: getattr(fast, k) for k in COUNTS} == {k: getattr(slow, k) for k in COUNTS}
    for table, sql in TABLES.items():
        got, expected = rows(tmp_path / "fast.duckdb", sql), rows(tmp_path / "python.duckdb", sql)
        assert len(got) == len(expected), table
        for fast_row, python_row in zip(got, expected, strict=True):
            assert fast_row == python_row, table


@pytest.fixture
def reads(monkeypatch) -> list[bool]:
    """Whether each read of a file by DuckDB's reader numbered its records (True) or not."""
    seen = []
    classify = bulk_jsonl._classify

    def noting(numbered: bool) -> str:
        seen.append(numbered)
        return classify(numbered)

    monkeypatch.setattr(bulk_jsonl, "_classify", noting)
    return seen


@pytest.mark.parametrize("legacy_share", [0.0, 0.4])
def test_generated_runs_load_the_same_both_ways(tmp_path, legacy_share, reads):
    path = tmp_path / "generated.jsonl"
    write_sample_jsonl(
        path,
        generate_runs(
            1500,
            days=10,
            seed=23,
            end=datetime(2026, 11, 1),
            legacy_share=legacy_share,
            test_share=0.05,
        ),
    )
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert reads == [False], "a clean file is read once, on every core, unnumbered"
    assert fast.test_runs > 0 and fast.new > 1000
    # the runs whose failed step Python works out (failures inside loops, agent tools) are there
    assert (
        rows(tmp_path / "fast.duckdb", "SELECT count(*) FROM runs WHERE failed_step IS NOT NULL")[
            0
        ][0]
        > 20
    )


def odd_but_valid_records() -> list[dict]:
    """Records the fast path hands to Python, or treats with care, that still load."""
    return [
        simple_run("label-status", status="Quota Exceeded"),
        simple_run("lower-status", status="succeeded"),
        simple_run("offset-time", created="2026-11-03T11:00:00+02:00"),
        simple_run("no-zone", created="2026-11-03T09:00:00"),
        simple_run(
            "micro", created="2026-11-03T09:00:00.123456Z", finishTime="2026-11-03T09:00:02.000001Z"
        ),
        simple_run(12345),
        simple_run("  padded-id  "),
        simple_run("number-tags", tags=[1, "a"]),
        simple_run("float-tasks", tasks=3.0, stepsCount=2),
        simple_run("empty-strings", projectId="", parentRunId="", flowVersionId=""),
        simple_run(
            "paused",
            status="PAUSED",
            pauseMetadata={
                "type": "DELAY",
                "resumeDateTime": "2026-11-04T00:00:00.000Z",
                "n": 1.5e3,
            },
        ),
        simple_run(
            "object-message",
            status="FAILED",
            failedStep={"name": "step_1", "message": {"status": 403, "error": "nope"}},
        ),
        simple_run("empty-step", steps={"trigger": {}}),
        simple_run("unicode", flow="Café ☕ sync", tags=["ünï"]),
        simple_run("testing-bad-status", environment="TESTING", status="EXPLODED"),
        engine_run("engine-1"),
        engine_run(
            "engine-slack",
            status="FAILED",
            failedStep={"name": "step_3", "displayName": "Send message", "message": SLACK_ERROR},
        ),
        older_run("legacy-1"),
        loop_run(),
        agent_failure_run(),
        secrets_run(),
        xss_run(),
        multiline_error_run(),
        purged_run(),
        huge_run(),
    ]


def versions_of_one_run() -> list[dict]:
    """RUNNING, then SUCCEEDED, then an older copy: the newest version must win either way."""
    return [
        simple_run("versioned", status="RUNNING", updated="2026-11-03T09:00:01Z"),
        simple_run("versioned", status="SUCCEEDED", updated="2026-11-03T09:00:09Z"),
        simple_run("versioned", status="FAILED", updated="2026-11-03T09:00:05Z"),
        simple_run("tie", status="RUNNING", updated="2026-11-03T09:00:01Z"),
        simple_run("tie", status="SUCCEEDED", updated="2026-11-03T09:00:01Z"),
    ]


def mixed_file_text() -> str:
    """A BOM, blank lines, broken lines, a list page on one line, and every kind of record."""
    records = (
        odd_but_valid_records() + [bad for bad, _ in BAD_RECORDS.values()] + versions_of_one_run()
    )
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    lines[3:3] = [
        "",
        "   ",
        '{"id": "broken", "status": ',
        "[1, 2, 3]",
        '"just text"',
        json.dumps({"data": [simple_run("page-1"), simple_run("page-2")], "next": None}),
    ]
    return "\ufeff" + "\n".join(lines) + "\n\n"


def test_odd_and_bad_records_load_and_are_rejected_the_same_both_ways(tmp_path):
    path = write_text(tmp_path / "mixed.jsonl", mixed_file_text())
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert fast.rejected >= len(BAD_RECORDS) + 3
    reasons = {r.reason.split(":")[0] for r in fast.rejections}
    assert "not valid JSON" in reasons
    # line numbers are the file's own, blank lines counted
    broken = [r for r in fast.rejections if r.raw.startswith('{"id": "broken"')]
    assert [(r.unit, r.position) for r in broken] == [("line", 6)]
    assert rows(tmp_path / "fast.duckdb", "SELECT status FROM runs WHERE id = 'versioned'") == [
        ("SUCCEEDED",)
    ]


def test_a_gzipped_file_takes_the_fast_path_and_loads_the_same(tmp_path):
    text = mixed_file_text()
    plain = write_text(tmp_path / "plain.jsonl", text)
    packed = write_text(tmp_path / "packed.jsonl.gz", text, gz=True)
    assert gzip.decompress(packed.read_bytes()).decode("utf-8") == text
    fast, slow = load_both_ways(tmp_path, packed, name="same-name.jsonl")
    assert_same_store(tmp_path, fast, slow)
    with open_db(tmp_path / "plain.duckdb") as con:
        ingest_file(con, SourceFile(plain, display_name="same-name.jsonl"))
    for sql in TABLES.values():
        assert rows(tmp_path / "plain.duckdb", sql) == rows(tmp_path / "fast.duckdb", sql)


def test_loading_a_file_again_by_the_fast_path_changes_nothing(tmp_path):
    path = write_jsonl(tmp_path / "runs.jsonl", odd_but_valid_records() + versions_of_one_run())
    with open_db(tmp_path / "fast.duckdb") as con:
        first = ingest_file(con, SourceFile(path))
        before = {t: con.execute(sql).fetchall() for t, sql in TABLES.items()}
        again = ingest_file(con, SourceFile(path))
        after = {t: con.execute(sql).fetchall() for t, sql in TABLES.items()}
    assert first.new > 0 and again.new == 0 and again.updated == 0
    assert again.unchanged == first.new
    assert before == after


def test_durations_are_whole_milliseconds_without_float_rounding(tmp_path):
    # 0.29 s is 289.99999999999997 ms in floating point: the duration must still be 290
    record = simple_run(
        "exact",
        created="2026-11-03T09:00:00.000Z",
        startTime="2026-11-03T09:00:00.000Z",
        finishTime="2026-11-03T09:00:00.290Z",
    )
    fast, slow = load_both_ways(tmp_path, write_jsonl(tmp_path / "one.jsonl", [record]))
    assert_same_store(tmp_path, fast, slow)
    assert rows(tmp_path / "fast.duckdb", "SELECT duration_ms FROM runs") == [(290,)]


def steps_with(**changes) -> dict:
    """The example steps with some steps replaced (None removes one)."""
    steps = example_steps()
    for name, step in changes.items():
        if step is None:
            del steps[name]
        else:
            steps[name] = step
    return steps


def failed_step_puzzles() -> list[dict]:
    """Clean records whose failed step and error the first read works out without Python (the
    first FAILED step, the record's own name and message where they say otherwise), or hands to
    Python (a failure inside a loop, an error that is not text)."""
    failed = {"type": "CODE", "status": "FAILED", "duration": 5, "input": {}}
    return [
        engine_run(
            "two-failed",
            failedStep=None,
            steps=steps_with(
                step_1={**failed, "errorMessage": "first"},
                step_3={**failed, "errorMessage": "last"},
            ),
        ),
        engine_run("named-other", failedStep={"name": "step_1", "message": "own words"}),
        engine_run("named-other-silent", failedStep={"name": "step_1"}),
        engine_run("empty-message", failedStep={"name": "step_3", "message": ""}),
        engine_run("empty-failed-name", failedStep=None, failedStepName=""),
        engine_run("old-name-only", failedStep=None, failedStepName="step_3"),
        engine_run("no-failed-field", failedStep=None),
        engine_run(
            "object-error",
            failedStep={"name": "step_3"},
            steps=steps_with(
                step_3={**failed, "errorMessage": {"status": 429, "error": "rate limited ☂"}}
            ),
        ),
        engine_run(
            "failed-but-no-step",
            failedStep={"name": "step_9", "message": "gone"},
            steps=steps_with(step_3=None),
        ),
        loop_run(),
        loop_run("loop-ok", steps=loop_steps(failed_iteration=None), failedStep=None),
        loop_run("loop-unnamed", failedStep=None),
        agent_failure_run(),
        secrets_run(),
        xss_run(),
        multiline_error_run(),
        purged_run(),
        huge_run(),
        older_run(),
        engine_run("tested", environment="TESTING"),
        engine_run("loop-ok", environment="TESTING"),  # a test run's id is not the run's
    ]


def test_a_clean_file_is_judged_without_its_step_payloads_and_loads_the_same(tmp_path, reads):
    path = write_jsonl(tmp_path / "clean.jsonl", failed_step_puzzles())
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert reads == [False], "every record is usual: read once, steps loaded from the file"
    assert fast.test_runs == 2
    assert rows(
        tmp_path / "fast.duckdb",
        "SELECT id, failed_step, error_message FROM runs "
        "WHERE id IN ('two-failed', 'named-other', 'loop-run') ORDER BY id",
    ) == [
        ("loop-run", "step_2", "item 2 is not a number"),
        ("named-other", "step_1", "own words"),
        ("two-failed", "step_1", "first"),
    ]


def test_steps_that_are_not_an_object_send_a_clean_looking_file_to_the_careful_read(
    tmp_path, reads
):
    # the first read takes steps it cannot type as "no steps"; loading them finds out, undoes
    # everything, and the careful read rejects the record as the Python reader does
    records = [engine_run(f"clean-{n}") for n in range(20)] + [
        engine_run("list-steps", steps=[{"type": "CODE", "status": "SUCCEEDED"}])
    ]
    fast, slow = load_both_ways(tmp_path, write_jsonl(tmp_path / "odd.jsonl", records))
    assert_same_store(tmp_path, fast, slow)
    assert reads == [False, True]
    assert fast.new == 20 and [r.reason for r in fast.rejections] == [
        "steps is not an object of step outputs"
    ]


def test_a_clean_file_loaded_again_or_in_a_newer_version_keeps_each_step_once(tmp_path, reads):
    first = write_jsonl(tmp_path / "first.jsonl", [engine_run(f"run-{n}") for n in range(10)])
    newer = write_jsonl(
        tmp_path / "newer.jsonl",
        [loop_run(f"run-{n}", updated="2026-11-03T10:00:00.000Z") for n in range(0, 10, 2)],
    )
    summaries = {}
    for name in ("fast", "python"):
        with open_db(tmp_path / f"{name}.duckdb") as con:
            load = (
                ingest_file
                if name == "fast"
                else (lambda con, source: ingest_items(con, source.items(), source.name))
            )
            summaries[name] = [load(con, SourceFile(path)) for path in (first, first, newer)]
    counts = [(s.new, s.updated, s.unchanged) for s in summaries["fast"]]
    assert counts == [(10, 0, 0), (0, 0, 10), (0, 5, 0)]
    assert reads == [False, False, False]
    for table, sql in TABLES.items():
        assert rows(tmp_path / "fast.duckdb", sql) == rows(tmp_path / "python.duckdb", sql), table
    assert rows(
        tmp_path / "fast.duckdb",
        "SELECT count(*), count(DISTINCT (run_id, position)) FROM run_steps",
    ) == [(5 * 4 + 5 * 4, 40)]


def test_versions_of_one_run_in_an_otherwise_clean_file_keep_their_line_order(tmp_path, reads):
    # Every record is in the usual shape, so only the repeated ids make line order matter:
    # of two versions with the same `updated`, the later line wins, whichever it is.
    tie_the_other_way = [
        simple_run("tie-2", status="SUCCEEDED", updated="2026-11-03T09:00:01Z"),
        simple_run("tie-2", status="RUNNING", updated="2026-11-03T09:00:01Z"),
    ]
    records = (
        [engine_run(f"clean-{n}") for n in range(30)] + versions_of_one_run() + tie_the_other_way
    )
    fast, slow = load_both_ways(tmp_path, write_jsonl(tmp_path / "versions.jsonl", records))
    assert_same_store(tmp_path, fast, slow)
    assert reads == [False, True], "read unnumbered, then again numbered for the repeated ids"
    assert rows(
        tmp_path / "fast.duckdb",
        "SELECT id, status FROM runs WHERE id IN ('versioned', 'tie', 'tie-2') ORDER BY id",
    ) == [("tie", "SUCCEEDED"), ("tie-2", "RUNNING"), ("versioned", "SUCCEEDED")]


def test_under_a_small_memory_limit_the_file_is_read_on_one_thread_and_loads_the_same(
    tmp_path, reads, monkeypatch
):
    # 20,000 runs (80 MB): reading on every core needs more than 180 MB, on one thread less
    monkeypatch.setenv("RUNS_INGEST_MEMORY_LIMIT", "180MB")
    path = tmp_path / "big.jsonl"
    write_sample_jsonl(path, generate_runs(20_000, days=10, seed=29, end=datetime(2026, 11, 1)))
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert reads == [False, True], "the unnumbered read ran out of memory; the numbered one fit"
    assert fast.new > 19_000


def test_progress_never_goes_back_and_ends_full(tmp_path):
    path = tmp_path / "generated.jsonl"
    write_sample_jsonl(path, generate_runs(2000, days=5, seed=31, end=datetime(2026, 11, 1)))
    seen = []
    with open_db(tmp_path / "fast.duckdb") as con:
        ingest_file(con, SourceFile(path), progress=lambda done, total: seen.append((done, total)))
    total = path.stat().st_size
    assert seen == sorted(seen), "the bar never goes back"
    assert (total // 2, total) in seen, "judging the records is the first half"
    assert seen[-1] == (total, total)
