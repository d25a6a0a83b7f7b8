"""`pull --api`: runs pulled from an engine's REST API (the contract-faithful fake served over real
HTTP, tests/fake_engine_api.py) land in a real store as the same rows as the files they came from,
incrementally, through faults, and with nothing lost or doubled when a pull is killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from conftest import ROOT, refused_port
from factories import StderrWatch, rows
from fake_engine_api import FakeEngine, NotAnEngine
from runs_store.domain.statuses import UNFINISHED
from runs_store.ingest.engine.api import ApiSource
from runs_store.ingest.engine.pull import load_state, pull, stored_versions
from runs_store.ingest.engine.source import PullError
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.store.database import open_db
from sample_data.generator import generate_runs

TOKEN = "sk-pull-test-9f8e7d6c5b4a"
END = datetime(2026, 12, 1, 12, 0, 0)
NOW = END.replace(tzinfo=UTC) + timedelta(minutes=5)

# Columns a pull must fill exactly as loading the same records from a file does.
RUN_QUERY = """
SELECT id, project_id, flow_id, flow_version_id, flow_name, status, started_at, start_time,
       finish_time, duration_ms, failed_step, failed_step_display, error_message,
       error_signature, archived_at,
       updated_at, tags, parent_run_id, steps_count, has_steps, triggered_by, logs_file_id,
       steps_data_truncated, timeline, internal_error
FROM runs ORDER BY id
"""
STEP_QUERY = """
SELECT run_id, position, name, display_name, type, status, duration_ms, piece_name, action_name,
       input, output, error
FROM run_steps ORDER BY run_id, position
"""


def engine_runs(count: int = 600, seed: int = 41, days: float = 2) -> list[dict]:
    """Generated runs of one project, some with the newer engine's fields."""
    runs = []
    for number, run in enumerate(generate_runs(count, days=days, seed=seed, end=END)):
        run = dict(run, projectId="PROJ1aaaaaaaaaaaaaaaa")
        if number % 7 == 0:
            run["timeline"] = {"legs": [[{"name": "QUEUE", "durationMs": 40 + number}]]}
            run["triggeredBy"] = "USER1bbbbbbbbbbbbbbbb"
            run["logsFileId"] = f"LOG{number:018d}"
        if number % 11 == 0:
            run["internalError"] = {"source": "ENGINE", "message": "worker died", "code": "X"}
            run["stepsDataTruncated"] = True
        runs.append(run)
    return runs


def source(engine: FakeEngine, db_con, now: datetime = NOW, **options) -> ApiSource:
    return ApiSource(
        engine.base_url,
        TOKEN,
        stored_check=stored_versions(db_con),
        backoff_seconds=options.pop("backoff_seconds", 0.01),
        now=lambda: now,
        **options,
    )


def pulled(tmp_path, engine: FakeEngine, name: str = "pulled.duckdb", **options):
    db = tmp_path / name
    with open_db(db) as con:
        summary = pull(con, source(engine, con, **options), ["PROJ1aaaaaaaaaaaaaaaa"])
    return db, summary


def loaded_from_file(tmp_path, records: list[dict]):
    """The same records as the engine holds them, loaded as a file would be."""
    db = tmp_path / "file.duckdb"
    with open_db(db) as con:
        ingest_items(con, records_as_items(records), "file")
    return db


def production(runs: list[dict]) -> list[dict]:
    return [run for run in runs if run.get("environment") != "TESTING"]


# ------------------------------------------------------------------ what a pull loads


@pytest.mark.parametrize("cursor_style", ["keyset", "legacy"])
def test_a_first_pull_loads_every_run_with_its_steps_as_a_file_would(tmp_path, cursor_style):
    runs = engine_runs()
    with FakeEngine(runs, token=TOKEN, cursor_style=cursor_style, slice_threshold=2048) as engine:
        db, summary = pulled(tmp_path, engine)
        sliced = sum(1 for run in runs if engine.slice_refs(run["id"]))
    expected = loaded_from_file(tmp_path, production(runs))
    assert rows(db, RUN_QUERY) == rows(expected, RUN_QUERY)
    assert rows(db, STEP_QUERY) == rows(expected, STEP_QUERY)
    assert sliced >= 5, "the test must read sliced outputs back"
    assert summary.ingest.new == len(production(runs)) and summary.ingest.rejected == 0
    assert summary.fetched == len(production(runs))


def test_runs_sharing_the_second_that_ends_a_page_are_not_skipped_on_an_old_engine(tmp_path):
    """Engine issue #9357: following `next` alone loses these; windows do not."""
    runs = engine_runs(400, seed=43)
    second = "2026-12-01T10:00:00"
    for number, run in enumerate(runs[:250]):  # 250 runs in one second: over two pages
        run["created"] = f"{second}.{number:03d}Z"
    with FakeEngine(runs, token=TOKEN, cursor_style="legacy") as engine:
        db, _ = pulled(tmp_path, engine)
    assert {row[0] for row in rows(db, "SELECT id FROM runs")} == {
        run["id"] for run in production(runs)
    }


def test_test_runs_fetched_by_id_still_obey_the_test_run_rule(tmp_path):
    runs = engine_runs(200, seed=44)
    runs[1]["environment"] = "TESTING"
    testing = runs[1]
    unfinished = dict(runs[0], status="RUNNING", finishTime=None)
    runs[0] = unfinished
    with FakeEngine(runs, token=TOKEN) as engine:
        db = tmp_path / "pulled.duckdb"
        with open_db(db) as con:
            pull(con, source(engine, con), ["PROJ1aaaaaaaaaaaaaaaa"])
            # an unfinished run the engine later moved to TESTING (as a re-run could be) is
            # read again by id: the store still never shows it
            con.execute(
                "INSERT INTO pull_unfinished VALUES ($s, 'PROJ1aaaaaaaaaaaaaaaa', $id)",
                {"s": f"api {engine.base_url}", "id": testing["id"]},
            )
            summary = pull(con, source(engine, con), ["PROJ1aaaaaaaaaaaaaaaa"])
    assert summary.ingest.test_runs == 1
    assert rows(db, "SELECT count(*) FROM runs WHERE id = ?", [testing["id"]]) == [(0,)]


def test_a_first_pull_since_a_date_takes_only_later_runs(tmp_path):
    runs = engine_runs(300, seed=45, days=4)
    since = datetime(2026, 11, 30, 12, 0)
    with FakeEngine(runs, token=TOKEN) as engine:
        db = tmp_path / "since.duckdb"
        with open_db(db) as con:
            pull(con, source(engine, con), ["PROJ1aaaaaaaaaaaaaaaa"], since=since)
    expected = {
        run["id"]
        for run in production(runs)
        if datetime.fromisoformat(run["created"][:-1]) >= since
    }
    assert {row[0] for row in rows(db, "SELECT id FROM runs")} == expected
    assert 50 < len(expected) < 250


# ------------------------------------------------------------------ incremental


def test_a_second_pull_fetches_only_new_runs_and_rechecks_unfinished_ones(tmp_path):
    runs = engine_runs(500, seed=46)
    with FakeEngine(runs, token=TOKEN) as engine:
        db = tmp_path / "pulled.duckdb"
        with open_db(db) as con:
            pull(con, source(engine, con), ["PROJ1aaaaaaaaaaaaaaaa"])
            unfinished = [run["id"] for run in production(runs) if run["status"] in UNFINISHED]
            assert sorted(
                load_state(con, f"api {engine.base_url}", "PROJ1aaaaaaaaaaaaaaaa").unfinished
            ) == sorted(unfinished)
            assert len(unfinished) >= 3
            finished = engine.update_run(
                unfinished[0], status="SUCCEEDED", finishTime="2026-12-01T12:03:00.000Z"
            )
            newer = [  # one stamped by the engine a little before the first pull's "now"
                dict(run, id=f"NEW{n:018d}", created=f"2026-12-01T12:0{3 + n}:00.000Z")
                for n, run in enumerate(production(runs)[:5])
            ]
            engine.add_runs(newer)
            before = engine.count("/v1/flow-runs/")
            later = NOW + timedelta(minutes=10)
            summary = pull(con, source(engine, con, now=later), ["PROJ1aaaaaaaaaaaaaaaa"])
            fetched_again = engine.count("/v1/flow-runs/") - before
    assert summary.ingest.new == 5 and summary.ingest.updated == 1
    assert fetched_again == len(unfinished) + 5, "unchanged runs are not fetched again"
    assert rows(db, "SELECT status FROM runs WHERE id = ?", [finished["id"]]) == [("SUCCEEDED",)]
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM runs") == [
        (len(production(runs)) + 5,) * 2
    ]


def test_a_pull_killed_half_way_resumes_with_nothing_lost_or_doubled(tmp_path):
    runs = engine_runs(3000, seed=47, days=6)
    db = tmp_path / "killed.duckdb"
    with FakeEngine(runs, token=TOKEN) as engine:
        command = api_pull_command(engine.base_url, db, progress="always")
        environment = {
            **os.environ,
            "RUNS_API_TOKEN": TOKEN,
            "RUNS_PULL_CONCURRENCY": "2",
            "RUNS_PULL_COMMIT_RUNS": "200",  # commits well before the end
        }
        child = subprocess.Popen(command, cwd=ROOT, env=environment, stderr=subprocess.PIPE)
        watch = StderrWatch(child)  # a progress line follows each commit
        try:
            committed = watch.wait_for_fetched(1, seconds=60)
        finally:
            child.send_signal(signal.SIGKILL)  # at once: the next batch is being read
            child.wait()
            watch.reader.join(timeout=10)
        assert committed > 0, watch.text[-2000:]
        with open_db(db) as con:
            kept = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
            assert 0 < kept < len(production(runs)), "killed in the middle of the pull"
        done = subprocess.run(
            api_pull_command(engine.base_url, db),
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM runs") == [
        (len(production(runs)),) * 2
    ]
    expected = loaded_from_file(tmp_path, production(runs))
    assert rows(db, RUN_QUERY) == rows(expected, RUN_QUERY)


# ------------------------------------------------------------------ faults


def test_429_5xx_resets_and_timeouts_are_retried(tmp_path):
    runs = engine_runs(150, seed=48)
    with FakeEngine(runs, token=TOKEN) as engine:
        engine.fail_next("/v1/flow-runs", 429, times=2, retry_after=0)
        engine.fail_next("/v1/flow-runs/", 503, times=3)
        engine.reset_next("/v1/flow-runs/", times=2)
        engine.slow_next("/v1/flow-runs/", 5, times=1)
        _, summary = pulled(tmp_path, engine, timeout_seconds=0.5)
        details = engine.count("/v1/flow-runs/")
        lists = engine.count("/v1/flow-runs") - details
        engine_requests = engine.count("")
    assert summary.ingest.new == len(production(runs)) == summary.fetched
    assert details == len(production(runs)) + 3 + 2 + 1, "each failed fetch was asked again"
    assert lists >= 3 and engine_requests == summary.requests, "every attempt is counted"


def test_retry_after_is_honoured(tmp_path):
    runs = engine_runs(30, seed=49)
    with FakeEngine(runs, token=TOKEN) as engine:
        engine.fail_next("/v1/flow-runs", 429, times=1, retry_after=1)
        started = time.monotonic()
        pulled(tmp_path, engine)
        waited = time.monotonic() - started
    assert waited >= 1.0, "the pull asked again before Retry-After"


def test_a_5xx_that_outlasts_the_retries_ends_the_pull_in_one_line(tmp_path):
    with FakeEngine(engine_runs(30, seed=50), token=TOKEN) as engine:
        engine.fail_next("/v1/flow-runs", 502, times=50)
        with pytest.raises(PullError) as raised:
            pulled(tmp_path, engine, retries=2)
    assert "answered 502" in str(raised.value) and "\n" not in str(raised.value)


def test_at_most_the_set_number_of_runs_is_fetched_at_once(tmp_path):
    with FakeEngine(engine_runs(300, seed=51), token=TOKEN) as engine:
        engine.slow_next("/v1/flow-runs/", 2, times=6)  # held answers: the fetches overlap
        pulled(tmp_path, engine, concurrency=3)
        assert engine.max_concurrent == 3


def test_an_expired_slice_loads_the_run_with_a_note_and_no_read_token(tmp_path):
    runs = engine_runs(100, seed=52)
    with FakeEngine(runs, token=TOKEN, slice_threshold=2048) as engine:
        run_id, refs = next(
            (run["id"], engine.slice_refs(run["id"]))
            for run in production(runs)
            if engine.slice_refs(run["id"])
        )
        step, ref = next(iter(refs.items()))
        engine.expire_file(ref["fileId"])
        db, summary = pulled(tmp_path, engine)
    output = rows(db, "SELECT output FROM run_steps WHERE run_id = ? AND name = ?", [run_id, step])
    kept = json.loads(output[0][0])
    assert kept["fileId"] == ref["fileId"] and "url" not in kept and "token" not in output[0][0]
    assert summary.without_steps == 1 and any(run_id in note for note in summary.notes)


# ------------------------------------------------------------------ refusals, from the CLI


def api_pull_command(url: str, db, *more: str, progress: str = "never") -> list[str]:
    """`pull --api URL --project PROJ1... --db DB ...` as a command line."""
    project = ("--project", "PROJ1aaaaaaaaaaaaaaaa")
    pulling = [sys.executable, "-m", "runs_store", "pull", "--api", url, *project]
    return [*pulling, "--db", str(db), *more, "--progress", progress]


def run_pull(*arguments: str, token: str | None = TOKEN, db=None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "RUNS_API_TOKEN"}
    if token is not None:
        environment["RUNS_API_TOKEN"] = token
    command = [sys.executable, "-m", "runs_store", "pull", *arguments, "--progress", "never"]
    if db is not None:
        command += ["--db", str(db)]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize("token", ["sk-wrong-key-123456", "eyJ.wrong.jwt"])
def test_a_refused_token_exits_2_in_one_line_that_never_shows_it(tmp_path, token):
    with FakeEngine(engine_runs(20, seed=53), token=TOKEN) as engine:
        done = run_pull(
            "--api",
            engine.base_url,
            "--project",
            "PROJ1aaaaaaaaaaaaaaaa",
            token=token,
            db=tmp_path / "r.duckdb",
        )
    line = one_error_line(done)
    assert done.returncode == 2 and "refused the token in RUNS_API_TOKEN" in line
    assert token not in done.stderr + done.stdout


def test_an_unknown_project_exits_2_naming_it(tmp_path):
    with FakeEngine(engine_runs(20, seed=54), token=TOKEN) as engine:
        done = run_pull(
            "--api", engine.base_url, "--project", "UNKNOWNzzzzzzzzzzzzzz", db=tmp_path / "p.duckdb"
        )
    assert done.returncode == 2 and "UNKNOWNzzzzzzzzzzzzzz" in one_error_line(done)


def test_a_url_that_is_not_an_engine_says_so(tmp_path):
    with NotAnEngine() as other:
        done = run_pull(
            "--api", other.base_url, "--project", "PROJ1aaaaaaaaaaaaaaaa", db=tmp_path / "n.duckdb"
        )
    line = one_error_line(done)
    assert done.returncode == 2 and "does not answer like an Activepieces engine's API" in line


def test_an_unreachable_host_says_so(tmp_path):
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/api"
        done = run_pull(
            "--api", url, "--project", "PROJ1aaaaaaaaaaaaaaaa", db=tmp_path / "u.duckdb"
        )
    assert done.returncode == 2 and "cannot reach" in one_error_line(done)


def test_no_token_set_is_named_and_a_token_on_the_command_line_is_not_taken(tmp_path):
    done = run_pull(
        "--api", "http://127.0.0.1:9/api", "--project", "P", token=None, db=tmp_path / "t.duckdb"
    )
    assert done.returncode == 2 and "RUNS_API_TOKEN is not set" in one_error_line(done)
    with_token = run_pull("--api", "http://127.0.0.1:9/api", "--token", "x", token=None)
    assert with_token.returncode == 2 and "unrecognized arguments: --token" in with_token.stderr


def test_the_summary_is_printed_and_the_token_is_nowhere_in_the_store(tmp_path):
    db = tmp_path / "s.duckdb"
    with FakeEngine(engine_runs(120, seed=55), token=TOKEN, slice_threshold=2048) as engine:
        done = run_pull("--api", engine.base_url, "--project", "PROJ1aaaaaaaaaaaaaaaa", db=db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Pulled api {engine.base_url}, project PROJ1aaaaaaaaaaaaaaaa: ")
    assert " runs listed, " in done.stdout and " runs/s)" in done.stdout
    assert TOKEN.encode() not in db.read_bytes() and TOKEN not in done.stdout + done.stderr


def test_the_progress_line_shows_listed_fetched_rate_and_an_eta_where_known(tmp_path):
    runs = engine_runs(4000, seed=56, days=3)  # over 2,000 runs since: more than one commit
    with FakeEngine(runs, token=TOKEN) as engine:
        environment = {**os.environ, "RUNS_API_TOKEN": TOKEN}
        command = api_pull_command(
            engine.base_url, tmp_path / "p.duckdb", "--since", "2026-11-28", progress="always"
        )
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    updates = [line for line in re.split(r"[\r\n]+", done.stderr) if "runs listed" in line]
    assert len(updates) >= 2
    assert all(" fetched " in line and " runs/s " in line for line in updates)
    assert any(" ETA " in line for line in updates), "the walk knows its share: an ETA"
