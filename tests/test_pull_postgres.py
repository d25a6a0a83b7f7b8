"""`pull --postgres` end to end: the CLI in a subprocess reads a real PostgreSQL holding an
engine's database (tests/engine_postgres.py: the engine's tables, its runs and logs written as the
engine writes them) into a real store. The rows must be those of the same runs loaded from a file,
step names included; a second pull loads only what changed; a pull killed with SIGKILL resumes with
nothing lost or doubled; a connection that cannot be used is one line, exit 2; the password is
never shown and never stored.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT
from engine_postgres import (
    ADMIN_PASSWORD,
    READER_PASSWORD,
    READER_ROLE,
    LoadedEngine,
    add_runs,
    json_copy,
    load_engine,
    rewrite_run,
    shared_server,
)
from factories import StderrWatch, rows
from runs_store.ingest.engine.postgres import PostgresSource
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.store.database import open_db
from sample_data.generator import generate_runs

pytestmark = pytest.mark.store

# A month before today, whatever the clock says: every run has long settled, none is in the future.
END = (datetime.now(UTC) - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
PAGE = inspect.signature(PostgresSource).parameters["page_size"].default  # the CLI's page
KILL_DEADLINE_SECONDS = PULL_DEADLINE_SECONDS = 60


# Columns a pull must fill exactly as loading the same records from a file does: those of
# tests/test_pull_api.py, and the step names the flow version's graph gives.
RUN_QUERY = """
SELECT id, project_id, flow_id, flow_version_id, flow_name, status, started_at, start_time,
       finish_time, duration_ms, failed_step, failed_step_display, error_message, error_signature,
       archived_at, updated_at, tags, parent_run_id, steps_count, has_steps, triggered_by,
       logs_file_id, steps_data_truncated, timeline, internal_error
FROM runs ORDER BY id
"""
STEP_QUERY = """
SELECT run_id, position, name, display_name, type, status, duration_ms, piece_name, action_name,
       input, output, error
FROM run_steps ORDER BY run_id, position
"""


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory):
    yield from shared_server(tmp_path_factory)


def some_runs(count: int, seed: int, end: datetime = END, days: float = 30, **options) -> list:
    return [
        json_copy(run) for run in generate_runs(count, days=days, seed=seed, end=end, **options)
    ]


def one_project(runs: list[dict], project: str = "PROJcli0000000000000a") -> list[dict]:
    return [{**run, "projectId": project} for run in runs]


@pytest.fixture(scope="module")
def engine(engine_server) -> LoadedEngine:
    """Two projects, logs of every generation, sliced outputs, every 11th log in S3, test runs."""
    runs = some_runs(500, seed=61, test_share=0.03)
    return load_engine(engine_server, "cli_engine", runs, slice_bytes=600, s3_every=11)


def reader_dsn(server, dbname: str, password: str | None = None, host="127.0.0.1") -> str:
    secret = f":{password}" if password is not None else ""
    return f"postgresql://{READER_ROLE}{secret}@{host}:{server.port}/{dbname}"


def pull_command(dsn: str, db: Path, *arguments: str, progress: str = "never") -> list[str]:
    return [
        *(sys.executable, "-m", "runs_store", "pull", "--postgres", dsn),
        *arguments,
        *("--db", str(db), "--progress", progress),
    ]


def environment(password: str | None = READER_PASSWORD) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RUNS_", "PG"))}
    if password is not None:
        env["RUNS_PG_PASSWORD"] = password
    return env


def run_pull(dsn: str, db: Path, *arguments: str, password=READER_PASSWORD):
    return subprocess.run(
        pull_command(dsn, db, *arguments),
        cwd=ROOT,
        env=environment(password),
        capture_output=True,
        text=True,
        timeout=PULL_DEADLINE_SECONDS,
    )


def from_file(path: Path, runs: list[dict]) -> Path:
    """The same records loaded as a file would be: the store the pull must equal."""
    with open_db(path) as con:
        summary = ingest_items(con, records_as_items(json_copy(runs)), "file")
    assert summary.rejected == 0 and summary.test_runs == 0
    return path


def assert_same_rows(pulled: Path, expected: Path, runs: int) -> None:
    assert rows(pulled, RUN_QUERY) == rows(expected, RUN_QUERY)
    assert rows(pulled, STEP_QUERY) == rows(expected, STEP_QUERY)
    assert rows(pulled, "SELECT count(*), count(DISTINCT id) FROM runs") == [(runs, runs)]
    named, steps = rows(pulled, "SELECT count(display_name), count(*) FROM run_steps")[0]
    assert named > steps / 2, "the steps are named from the flow version's graph"


def secrets_in_store(db: Path, *secrets: str) -> list[str]:
    """Which secrets appear in the bytes of the store or any file beside it (its WAL)."""
    files = [path for path in db.parent.iterdir() if path.name.startswith(db.name)]
    assert db in files
    data = b"".join(path.read_bytes() for path in files)
    return [secret for secret in secrets if secret.encode() in data]


def summary_counts(line: str) -> dict[str, int]:
    return {
        name: int(number.replace(",", ""))
        for number, name in re.findall(
            r"([\d,]+) (runs listed|fetched|without steps|new|updated|"
            r"unchanged|rejected|test runs skipped)",
            line,
        )
    }


# ------------------------------------------------------------------ a first pull


@pytest.mark.parametrize("password_in", ["RUNS_PG_PASSWORD", "the DSN"])
def test_a_pull_loads_a_projects_runs_as_a_file_would(engine, engine_server, tmp_path, password_in):
    project = max(engine.projects(), key=lambda p: len(engine.production(p)))
    db = tmp_path / "pulled.duckdb"
    if password_in == "the DSN":
        done = run_pull(
            reader_dsn(engine_server, "cli_engine", READER_PASSWORD),
            db,
            "--project",
            project,
            password=None,
        )
    else:
        done = run_pull(reader_dsn(engine_server, "cli_engine"), db, "--project", project)
    assert done.returncode == 0, done.stderr
    expected_runs = engine.production(project)
    in_s3 = len(engine.s3_runs & set(expected_runs))
    first, *notes = done.stdout.splitlines()
    assert first.startswith(
        f"Pulled postgres 127.0.0.1:{engine_server.port}/cli_engine, project {project}: "
        f"{len(expected_runs):,} runs listed, {len(expected_runs):,} fetched, "
        f"{in_s3} without steps: {len(expected_runs):,} new, 0 updated, 0 unchanged, 0 rejected, "
        "0 test runs skipped; "
    ), first
    assert in_s3 > 5 and len(notes) == 1
    assert notes[0].startswith(
        f"note: {in_s3} run(s) loaded without steps: their log is in S3, which this source "
        "reads once RUNS_S3_BUCKET names its bucket ("
    )
    assert done.stderr == ""
    expected = from_file(tmp_path / "file.duckdb", engine.file_records(project))
    assert_same_rows(db, expected, len(expected_runs))
    assert READER_PASSWORD not in done.stdout + done.stderr
    assert secrets_in_store(db, READER_PASSWORD, ADMIN_PASSWORD) == []


def test_a_pull_without_project_pulls_every_project(engine, engine_server, tmp_path):
    db = tmp_path / "every.duckdb"
    done = run_pull(reader_dsn(engine_server, "cli_engine"), db)
    assert done.returncode == 0, done.stderr
    projects = ", ".join(sorted(engine.projects()))
    assert len(engine.projects()) == 2
    assert done.stdout.startswith(
        f"Pulled postgres 127.0.0.1:{engine_server.port}/cli_engine, projects {projects}: "
    )
    counts = summary_counts(done.stdout.splitlines()[0])
    assert counts["new"] == counts["runs listed"] == len(engine.production())
    assert counts["without steps"] == len(engine.s3_runs - engine.test_runs)
    expected = from_file(tmp_path / "file.duckdb", engine.file_records())
    assert_same_rows(db, expected, len(engine.production()))


# ------------------------------------------------------------------ the next pull


def test_a_second_pull_loads_only_the_new_runs_and_the_one_that_finished(engine_server, tmp_path):
    loaded = load_engine(engine_server, "cli_live", one_project(some_runs(300, seed=62)))
    running = next(
        run_id
        for run_id, run in loaded.production().items()
        if run["status"] == "SUCCEEDED" and len(run["steps"] or {}) > 2
    )
    record = json_copy(loaded.records[running])
    started = datetime.fromisoformat(record["startTime"])
    rewrite_run(  # as the engine left it while the run ran: its first step done
        engine_server,
        "cli_live",
        loaded,
        running,
        dict(list(record["steps"].items())[:1]),
        status="RUNNING",
        finishTime=None,
        updated=started,
    )
    db, dsn = tmp_path / "live.duckdb", reader_dsn(engine_server, "cli_live")
    first = run_pull(dsn, db)
    assert first.returncode == 0, first.stderr
    assert summary_counts(first.stdout)["new"] == len(loaded.production())
    unfinished = {row[0] for row in rows(db, "SELECT run_id FROM pull_unfinished")}
    assert running in unfinished

    now = datetime.now(UTC)
    newer = one_project(some_runs(30, seed=63, end=now - timedelta(minutes=5), days=0.02))
    add_runs(engine_server, "cli_live", loaded, newer)
    added = [run["id"] for run in newer if run["environment"] != "TESTING"]
    finished_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the engine's ms
    rewrite_run(  # it ended: its row updated and its log rewritten whole, as the engine does
        engine_server,
        "cli_live",
        loaded,
        running,
        record["steps"],
        status="SUCCEEDED",
        finishTime=datetime.fromisoformat(record["finishTime"]),
        updated=finished_at,
    )
    second = run_pull(dsn, db)
    assert second.returncode == 0, second.stderr
    counts = summary_counts(second.stdout)
    assert (counts["new"], counts["updated"], counts["rejected"]) == (len(added), 1, 0)
    # read again: the runs seen unfinished, then only what changed after the marker (the
    # finished run, read once more there, unchanged)
    assert counts["runs listed"] == len(unfinished) + len(added) + 1
    assert counts["unchanged"] == len(unfinished)
    assert rows(db, "SELECT status, updated_at FROM runs WHERE id = ?", [running]) == [
        ("SUCCEEDED", finished_at.replace(tzinfo=None))
    ]
    expected = from_file(tmp_path / "file.duckdb", loaded.file_records())
    assert_same_rows(db, expected, len(loaded.production()))


# ------------------------------------------------------------------ killed half way


def test_a_pull_killed_half_way_resumes_with_nothing_lost_or_doubled(engine_server, tmp_path):
    loaded = load_engine(
        engine_server, "cli_killed", one_project(some_runs(4 * PAGE + 100, seed=64)), s3_every=0
    )
    total = len(loaded.production())
    db, dsn = tmp_path / "killed.duckdb", reader_dsn(engine_server, "cli_killed")
    child = subprocess.Popen(
        pull_command(dsn, db, progress="always"),  # a progress line after each committed page
        cwd=ROOT,
        env={**environment(), "RUNS_PULL_COMMIT_RUNS": str(PAGE)},  # a commit per page
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watch = StderrWatch(child)
    try:
        committed = watch.wait_for_fetched(PAGE, KILL_DEADLINE_SECONDS)
    finally:
        child.send_signal(signal.SIGKILL)  # at once: the next page is being read or committed
        child.wait()
        watch.reader.join(timeout=10)
        assert child.stderr is not None
        child.stderr.close()
    assert committed >= PAGE, watch.text[-2000:]
    assert child.returncode == -signal.SIGKILL
    kept = rows(db, "SELECT count(*) FROM runs")[0][0]
    assert 0 < kept < total, "killed in the middle of the pull"
    assert kept % PAGE == 0, "a page is committed whole or not at all"

    done = run_pull(dsn, db)
    assert done.returncode == 0, done.stderr
    counts = summary_counts(done.stdout)
    assert (counts["new"], counts["updated"], counts["rejected"]) == (total - kept, 0, 0)
    expected = from_file(tmp_path / "file.duckdb", loaded.file_records())
    assert_same_rows(db, expected, total)


# ------------------------------------------------------------------ refusals


def test_a_connection_that_cannot_be_used_is_one_line_exit_2_without_the_password(
    engine, engine_server, tmp_path
):
    engine_server.create_database("cli_not_an_engine", generation=None)
    wrong = "wrong-pw-7c1e0b9a"
    cases = {
        "refused password": (reader_dsn(engine_server, "cli_engine"), wrong),
        "refused password in the DSN": (reader_dsn(engine_server, "cli_engine", wrong), None),
        "unknown host": (
            reader_dsn(engine_server, "cli_engine", READER_PASSWORD, host="engine-db.invalid"),
            None,
        ),
        "not an engine": (reader_dsn(engine_server, "cli_not_an_engine"), READER_PASSWORD),
    }
    expected = {
        "refused password": f"the database refused the password for user {READER_ROLE}",
        "refused password in the DSN": f"the database refused the password for user {READER_ROLE}",
        "unknown host": "unknown host engine-db.invalid",
        "not an engine": "is not an engine's database: it has no flow_run table",
    }
    children = {  # all at once: each is a process start and one connection attempt
        name: subprocess.Popen(
            pull_command(dsn, tmp_path / f"{number}.duckdb", "--project", "P"),
            cwd=ROOT,
            env=environment(password),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number, (name, (dsn, password)) in enumerate(cases.items())
    }
    for number, (name, child) in enumerate(children.items()):
        stdout, stderr = child.communicate(timeout=PULL_DEADLINE_SECONDS)
        lines = stderr.splitlines()
        assert child.returncode == 2, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, stderr)
        assert expected[name] in lines[0], (name, lines[0])
        assert stdout == "", name
        for secret in (wrong, READER_PASSWORD, ADMIN_PASSWORD):
            assert secret not in stdout + stderr, name
        db = tmp_path / f"{number}.duckdb"
        if db.exists():
            assert secrets_in_store(db, wrong, READER_PASSWORD) == [], name


def test_the_progress_line_gives_an_eta_from_the_runs_to_read(engine_server, tmp_path):
    loaded = load_engine(
        engine_server, "cli_eta", one_project(some_runs(5 * PAGE, seed=65)), s3_every=0
    )
    db, dsn = tmp_path / "eta.duckdb", reader_dsn(engine_server, "cli_eta")
    done = subprocess.run(
        pull_command(dsn, db, progress="always"),
        cwd=ROOT,
        env={**environment(), "RUNS_PULL_COMMIT_RUNS": str(PAGE)},  # an update per page at least
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    updates = [line for line in re.split(r"[\r\n]+", done.stderr) if "runs listed" in line]
    assert len(updates) >= 2 and any(" ETA " in line for line in updates), done.stderr
    assert f"{len(loaded.production()):,} fetched" in updates[-1]
