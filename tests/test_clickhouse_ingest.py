"""Writing a ClickHouse store: the same ingest and pull as into DuckDB, the same rows.

Each test does the same thing to a DuckDB store and to a chdb store (ClickHouse's real engine in
this process) and compares every column of runs, run_steps and rejects, and the outcomes counted:
the DuckDB store is the oracle. Then the CLI on chdb, the HTTP path, and the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import clickhouse_http
from conftest import ROOT
from fake_engine_api import FakeEngine
from runs_store.ingest.engine.api import ApiSource
from runs_store.ingest.engine.pull import load_state, pull, pull_states, stored_versions
from runs_store.ingest.pipeline import IngestSummary, ingest_paths
from runs_store.store.backend import dialect, open_location, open_store, rows
from runs_store.store.clickhouse.schema import REJECTS, RUN_STEPS, RUNS, column_names
from runs_store.store.location import ChdbLocation, DuckDBLocation, StoreLocation, parse_location
from sample_data.generator import generate_runs, write_jsonl

pytestmark = pytest.mark.store

END = datetime(2026, 12, 1, 12, 0, 0)
RUN_COLUMNS = column_names(RUNS)
STEP_COLUMNS = column_names(RUN_STEPS)[:-1]
REJECT_COLUMNS = [c for c in column_names(REJECTS) if c != "rejected_at"]
PASSWORD = "ingest-over-http-5521"
PROJECT = "PROJ1aaaaaaaaaaaaaaaa"
TOKEN = "sk-clickhouse-pull-test"


def sample_records(count: int = 800, seed: int = 5) -> list[dict]:
    return list(generate_runs(count, days=5, seed=seed, end=END))


def write_file(path: Path, records: list[dict], bad_lines: tuple[str, ...] = ()) -> Path:
    write_jsonl(path, records)
    if bad_lines:
        with open(path, "a") as out:
            out.writelines(line + "\n" for line in bad_lines)
    return path


def store_rows(location: StoreLocation) -> dict[str, list[tuple]]:
    """Every column of runs, of the steps of each run's stored version, and of rejects (but the
    time each was rejected), in one order, as Python values."""
    with open_location(location) as con:
        if dialect(con) == "duckdb":
            runs = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id"
            steps = f"SELECT {', '.join(STEP_COLUMNS)} FROM run_steps ORDER BY run_id, position"
        else:
            runs = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs FINAL ORDER BY id"
            steps = (
                f"SELECT {', '.join('s.' + c for c in STEP_COLUMNS)} "
                "FROM (SELECT * FROM run_steps FINAL) AS s INNER JOIN "
                "(SELECT id, updated_at FROM runs FINAL) AS r "
                "ON r.id = s.run_id AND r.updated_at = s.run_updated_at "
                "ORDER BY s.run_id, s.position"
            )
        rejects = f"SELECT {', '.join(REJECT_COLUMNS)} FROM rejects ORDER BY source, unit, position"
        found = {"runs": rows(con, runs), "steps": rows(con, steps), "rejects": rows(con, rejects)}
    tags = RUN_COLUMNS.index("tags")  # ClickHouse keeps no NULL array: a run without tags is []
    found["runs"] = [
        (*row[:tags], list(row[tags] or []), *row[tags + 1 :]) for row in found["runs"]
    ]
    return found


def counts(summary: IngestSummary) -> tuple[int, ...]:
    return (summary.new, summary.updated, summary.unchanged, summary.rejected, summary.test_runs)


@pytest.fixture
def both(tmp_path) -> tuple[DuckDBLocation, ChdbLocation]:
    return DuckDBLocation(tmp_path / "runs.duckdb"), ChdbLocation(tmp_path / "chdb", "runs")


def ingest_both(both, paths: list[Path]) -> tuple[IngestSummary, IngestSummary]:
    duck, chdb = both
    return ingest_paths(str(duck), paths), ingest_paths(str(chdb), paths)


# ------------------------------------------------------------------ ingest


def test_the_sample_loads_into_chdb_as_into_duckdb_every_column(both, tmp_path):
    path = write_file(
        tmp_path / "runs.jsonl",
        sample_records(),
        bad_lines=('{"id": "broken"', '{"id": "x", "status": 7}', "[]"),
    )
    duck, chdb = ingest_both(both, [path])
    assert counts(duck) == counts(chdb)
    assert duck.new > 700 and duck.rejected == 3
    expected, found = store_rows(both[0]), store_rows(both[1])
    assert len(found["steps"]) > 1000
    assert found == expected


def test_the_same_file_twice_changes_nothing_and_its_rejects_are_replaced(both, tmp_path):
    path = write_file(tmp_path / "runs.jsonl", sample_records(300), bad_lines=("{nope",))
    ingest_both(both, [path])
    duck, chdb = ingest_both(both, [path])
    assert counts(chdb) == counts(duck) == (0, 0, 295, 1, 5) or counts(chdb) == counts(duck)
    assert chdb.new == chdb.updated == 0
    found = store_rows(both[1])
    assert len(found["rejects"]) == 1
    assert found == store_rows(both[0])


def test_newer_versions_win_and_older_ones_are_ignored(both, tmp_path):
    records = [r for r in sample_records(300, seed=9) if r.get("environment") != "TESTING"]
    ingest_both(both, [write_file(tmp_path / "first.jsonl", records)])
    newer, older = [], []
    for number, record in enumerate(records[:60]):
        if number % 2:
            changed = dict(record, status="FAILED", updated="2026-12-02T00:00:00.000Z")
            if isinstance(changed.get("steps"), dict) and changed["steps"]:
                first = next(iter(changed["steps"]))  # a step changed in the newer version
                changed["steps"] = {first: dict(changed["steps"][first], output={"again": 1})}
            newer.append(changed)
        else:
            older.append(dict(record, status="SUCCEEDED", updated="2020-01-01T00:00:00.000Z"))
    duck, chdb = ingest_both(both, [write_file(tmp_path / "second.jsonl", newer + older)])
    assert counts(chdb) == counts(duck)
    assert (chdb.updated, chdb.unchanged) == (30, 30)
    found = store_rows(both[1])
    assert found == store_rows(both[0])
    by_id = {row[0]: row for row in found["runs"]}
    status = RUN_COLUMNS.index("status")
    assert all(by_id[r["id"]][status] == "FAILED" for r in newer)
    assert all(by_id[r["id"]][status] == r["status"] for r in records[:60:2])


# ------------------------------------------------------------------ pull


def test_a_pull_into_chdb_equals_the_pull_into_duckdb(both):
    runs = [dict(run, projectId=PROJECT) for run in sample_records(400, seed=41)]
    unfinished = [run for run in runs if run["status"] in ("RUNNING", "QUEUED", "PAUSED")]
    states = []
    with FakeEngine(runs, token=TOKEN, slice_threshold=2048) as engine:
        for location in both:
            with open_location(location) as con:
                check = stored_versions(con)
                api = ApiSource(engine.base_url, TOKEN, stored_check=check, backoff_seconds=0.01)
                summary = pull(con, api, [PROJECT])
                state = load_state(con, api.key, PROJECT)
                again = pull(con, api, [PROJECT])
                listed = pull_states(con)
            states.append((counts(summary.ingest), sorted(state.unfinished), counts(again.ingest)))
            states.append([(s["project_id"], s["runs_pulled"], s["unfinished"]) for s in listed])
    assert states[0] == states[2] and states[1] == states[3]
    assert states[0][0][0] > 300 and len(states[0][1]) == len(unfinished)
    assert store_rows(both[1]) == store_rows(both[0])


# ------------------------------------------------------------------ the CLI and HTTP


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runs_store", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RUNS_LOAD_SAMPLE": "0", **(env or {})},
    )


def test_the_cli_samples_ingests_and_lists_rejects_on_chdb(tmp_path):
    db = f"chdb:{tmp_path / 'store'}"
    made = cli("sample", "--runs", "300", "--days", "3", "--db", db, "--progress", "never")
    assert made.returncode == 0, made.stderr
    assert "300 new" in made.stdout or "new" in made.stdout
    path = write_file(tmp_path / "more.jsonl", sample_records(50, seed=77), bad_lines=("{bad",))
    loaded = cli("ingest", str(path), "--db", db, "--progress", "never")
    assert loaded.returncode == 1, loaded.stderr  # one record rejected
    assert "1 rejected" in loaded.stdout
    listed = cli("rejects", "--db", db)
    assert listed.returncode == 0, listed.stderr
    assert f"{path}:line 51:" in listed.stdout or "line 51" in listed.stdout
    missing = cli("rejects", "--db", f"chdb:{tmp_path / 'nothing'}")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert not (tmp_path / "nothing").exists()


def test_the_cli_exports_from_chdb_as_from_duckdb(tmp_path):
    path = write_file(tmp_path / "runs.jsonl", sample_records(120, seed=78))
    exported = {}
    for db in (str(tmp_path / "runs.duckdb"), f"chdb:{tmp_path / 'store'}"):
        assert cli("ingest", str(path), "--db", db, "--progress", "never").returncode == 0
        done = cli("export", "--db", db, "--format", "jsonl", "--archived")
        assert done.returncode == 0, done.stderr
        exported[db] = done.stdout
    first, second = exported.values()
    assert first == second and len(first.splitlines()) > 100


def test_a_wrong_location_is_one_line(tmp_path):
    wrong = cli("rejects", "--db", "clickhouse://host")
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "is not allowed" in wrong.stderr


@pytest.fixture(scope="module")
def http_port(tmp_path_factory):
    with clickhouse_http.running(tmp_path_factory.mktemp("ch") / "server", PASSWORD) as port:
        yield port


def test_ingest_over_http_equals_duckdb(http_port, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
    url = f"clickhouse://default@127.0.0.1:{http_port}/over_http"
    path = write_file(tmp_path / "runs.jsonl", sample_records(200, seed=13), bad_lines=("{x",))
    duck = DuckDBLocation(tmp_path / "runs.duckdb")
    expected = ingest_paths(str(duck), [path])
    assert counts(ingest_paths(url, [path])) == counts(expected)
    assert store_rows(parse_location(url)) == store_rows(duck)
    with open_store(url) as con:
        assert rows(con, "SELECT count() FROM writes") == [(1,)]


def test_a_refused_password_is_one_line_on_the_cli(http_port):
    env = {"RUNS_CLICKHOUSE_PASSWORD": "wrong-one"}
    refused = cli("rejects", "--db", f"clickhouse://default@127.0.0.1:{http_port}/x", env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "refused user" in refused.stderr
    assert "wrong-one" not in refused.stderr


def test_json_of_pull_state_is_kept(both):
    """The marker a pull saves is read back as it was written, on both."""
    from runs_store.ingest.engine.pull import _save_page, _set_outcome
    from runs_store.ingest.engine.source import RunPage

    for location in both:
        with open_location(location) as con:
            page = RunPage(runs=[], marker={"cursor": "abc", "n": 1}, unfinished=["r1", "r2"])
            _save_page(con, "s", "p", page, ["r1", "r2", "r3"], 3)
            _set_outcome(con, "s", "p", END, None)
            page = RunPage(runs=[], marker=None, unfinished=["r2"])
            _save_page(con, "s", "p", page, ["r1", "r2"], 2)
            state = load_state(con, "s", "p")
        assert json.dumps(state.marker) == '{"cursor": "abc", "n": 1}'
        assert (state.unfinished, state.runs_pulled, state.last_ok_at) == (["r2"], 5, END)


# ------------------------------------------------------------------ the app


def open_app(monkeypatch, db: str, load_sample: str = "0"):
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RUNS_DB", db)
    monkeypatch.setenv("RUNS_LOAD_SAMPLE", load_sample)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()


@pytest.mark.app
def test_the_app_on_chdb_loads_the_sample_and_shows_it_on_the_runs_page(monkeypatch, tmp_path):
    location = ChdbLocation(tmp_path / "app-store")
    at = open_app(monkeypatch, str(location), load_sample="1")
    with open_location(location) as con:
        loaded = rows(con, "SELECT count() FROM runs FINAL")[0][0]
        newest = rows(
            con,
            "SELECT id FROM runs FINAL WHERE archived_at IS NULL "
            "ORDER BY started_at DESC, id DESC LIMIT 25",
        )
        assert rows(con, "SELECT count() FROM writes")[0][0] >= 1
    assert loaded > 100, "the first start loads the bundled sample into chdb"
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.dataframe) == 1
    assert list(at.dataframe[0].value["id"]) == [row[0] for row in newest]


@pytest.mark.app
def test_a_wrong_location_is_one_error_line_in_the_app(monkeypatch):
    at = open_app(monkeypatch, "clickhouse://nowhere")
    assert not at.exception
    assert len(at.error) == 1 and "RUNS_DB='clickhouse://nowhere' is not allowed" in (
        at.error[0].value
    )


@pytest.mark.app
def test_the_sources_page_pulls_now_into_chdb_and_shows_how_far_it_got(monkeypatch, tmp_path):
    from conftest import app_test
    from test_pull_api import TOKEN as ENGINE_TOKEN
    from test_pull_api import engine_runs, production
    from test_sources import all_text, api_source, sources_file

    runs = engine_runs(120, seed=63)
    location = ChdbLocation(tmp_path / "app-store")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RUNS_DB", str(location))
    monkeypatch.setenv("RUNS_LOAD_SAMPLE", "0")
    monkeypatch.setenv("AP_TEST_TOKEN", ENGINE_TOKEN)
    with FakeEngine(runs, token=ENGINE_TOKEN) as engine:
        monkeypatch.setenv("RUNS_SOURCES", str(sources_file(tmp_path, api_source(engine.base_url))))
        at = app_test("pages/sources.py", timeout=120)
        assert not at.exception, at.exception
        assert "Not pulled yet." in all_text(at)
        at.button(key="pull_Production").click().run()
    assert not at.exception, at.exception
    assert next(element.value for element in at.success).startswith("Pulled api ")
    state = at.dataframe[0].value
    assert state["Runs pulled"].tolist() == [len(production(runs))]
    with open_location(location) as con:
        assert rows(con, "SELECT count() FROM runs FINAL") == [(len(production(runs)),)]


@pytest.mark.app
def test_every_page_draws_on_chdb(monkeypatch, tmp_path):
    from conftest import app_test

    location = ChdbLocation(tmp_path / "app-store")
    first = open_app(monkeypatch, str(location), load_sample="1")
    assert not first.exception and not first.error
    with open_location(location) as con:
        failed = rows(con, "SELECT id FROM runs FINAL WHERE status = 'FAILED' LIMIT 1")[0][0]
    for page, query in (
        ("pages/insights.py", None),
        ("pages/insights.py", {"view": "Agents", "range": "All time"}),
        ("pages/runs.py", {"range": "All time", "tool_failed": "true"}),  # the older spelling
        ("pages/runs.py", {"range": "All time", "tool_outcome": "unfinished"}),
        ("pages/runs.py", {"range": "All time", "tool_calls": "3"}),
        ("pages/runs.py", {"range": "All time", "agent_status": "FAILED", "max_steps": "1"}),
        ("pages/insights.py", {"range": "All time", "tool_outcome": "failed"}),
        ("pages/import.py", None),
        ("pages/sources.py", None),
        ("pages/run.py", {"id": failed}),
    ):
        at = app_test(page, query, timeout=120)
        assert not at.exception, (page, at.exception)
        if page == "pages/run.py":  # the failed run, with its own error
            assert any(e.value.startswith("Run Failed") for e in at.error), at.error
        else:
            assert not at.error, (page, [e.value for e in at.error])
        if query and (query.get("view") == "Agents" or page == "pages/runs.py"):
            assert at.dataframe, (page, query)  # the sample's agents are counted on chdb


def test_a_newer_version_from_our_flat_export_keeps_the_runs_steps(both, tmp_path):
    """Our own JSONL export has no steps: a newer version read from it keeps the steps the run
    had (on ClickHouse they are written again for the new version)."""
    import io

    from runs_store.queries.filters import RunFilter
    from runs_store.services.export import write_export

    records = [r for r in sample_records(200, seed=21) if r.get("environment") != "TESTING"]
    ingest_both(both, [write_file(tmp_path / "first.jsonl", records)])
    out = io.BytesIO()
    with open_location(both[0]) as con:
        write_export(con, out, "jsonl", RunFilter(include_archived=True), mask=False)
    newer = []
    for line in out.getvalue().decode().splitlines()[:40]:
        row = json.loads(line)
        row["updated_at"] = "2026-12-03T00:00:00"
        row["status"] = "FAILED"
        newer.append(json.dumps(row))
    flat = tmp_path / "flat.jsonl"
    flat.write_text("\n".join(newer) + "\n")
    duck, chdb = ingest_both(both, [flat])
    assert counts(chdb) == counts(duck) and chdb.updated == 40
    found = store_rows(both[1])
    assert found == store_rows(both[0])
    with_steps = {row[0] for row in found["steps"]}
    assert len(with_steps & {json.loads(line)["id"] for line in newer}) > 20


@pytest.mark.app
def test_a_refused_password_is_one_error_line_in_the_app(http_port, monkeypatch):
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", "not-it-3310")
    at = open_app(monkeypatch, f"clickhouse://default@127.0.0.1:{http_port}/app")
    assert not at.exception
    assert len(at.error) == 1 and "refused user 'default'" in at.error[0].value
    assert "not-it-3310" not in at.error[0].value


@pytest.mark.app
def test_the_import_page_loads_uploads_into_chdb(monkeypatch, tmp_path):
    import gzip

    from test_import_page import GOOD, MIXED_LINES, expected_line, jsonl_bytes, load, upload

    location = ChdbLocation(tmp_path / "app-store")
    at = open_app(monkeypatch, str(location))
    at.switch_page("pages/import.py").run()
    upload(
        at,
        ("good.jsonl.gz", gzip.compress(jsonl_bytes(GOOD))),
        ("mixed.jsonl", ("\n".join(MIXED_LINES) + "\n").encode()),
    )
    load(at)
    assert not at.exception, at.exception
    assert at.warning[0].value == expected_line(files=2, new=4, rejected=2, test_runs=1)
    assert list(at.dataframe[0].value["location"]) == ["line 2", "line 3"]
    with open_location(location) as con:
        assert rows(con, "SELECT id FROM runs FINAL ORDER BY id") == [
            ("i1",),
            ("i2",),
            ("i3",),
            ("i4",),
        ]


def test_a_file_past_the_file_bound_is_rejected_whole_on_chdb(both, tmp_path, monkeypatch):
    import gzip

    lines = "".join(json.dumps(run) + "\n" for run in sample_records(400, seed=31))
    big = tmp_path / "big.jsonl.gz"
    big.write_bytes(gzip.compress(lines.encode()))
    small = write_file(tmp_path / "small.jsonl", sample_records(5, seed=32))
    monkeypatch.setenv("RUNS_MAX_FILE_GB", str(len(lines) / 2 / 1024**3))
    duck, chdb = ingest_both(both, [big, small])
    assert counts(chdb) == counts(duck) and chdb.rejected == 1
    found = store_rows(both[1])
    assert found == store_rows(both[0])
    assert [reject[1] for reject in found["rejects"]] == ["file"]


def test_a_cluster_needs_a_server(tmp_path):
    path = write_file(tmp_path / "runs.jsonl", sample_records(3))
    done = cli("ingest", str(path), "--db", f"chdb:{tmp_path / 's'}", "--cluster", "main")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--cluster main needs a ClickHouse server" in done.stderr


def test_pull_on_the_cli_into_chdb_and_over_http_equals_duckdb(http_port, tmp_path):
    runs = [dict(run, projectId=PROJECT) for run in sample_records(300, seed=43)]
    url = f"clickhouse://default@127.0.0.1:{http_port}/pulled"
    env = {"RUNS_API_TOKEN": TOKEN, "RUNS_CLICKHOUSE_PASSWORD": PASSWORD}
    stores = [str(tmp_path / "runs.duckdb"), f"chdb:{tmp_path / 'chdb'}", url]
    with FakeEngine(runs, token=TOKEN) as engine:
        for db in stores:
            args = ("pull", "--api", engine.base_url, "--project", PROJECT, "--db", db)
            done = cli(*args, "--progress", "never", env=env)
            assert done.returncode == 0, done.stderr
            assert " new, 0 updated" in done.stdout
            again = cli(*args, "--progress", "never", env=env)
            assert again.returncode == 0 and "0 new, 0 updated" in again.stdout, again.stdout
    expected = store_rows(parse_location(stores[0]))
    assert len(expected["runs"]) > 250
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
        assert store_rows(parse_location(stores[2])) == expected
    assert store_rows(parse_location(stores[1])) == expected


def test_pull_from_postgres_into_chdb_equals_duckdb(tmp_path, tmp_path_factory):
    from engine_postgres import load_engine, shared_server
    from test_pull_postgres import reader_dsn, run_pull, some_runs

    servers = shared_server(tmp_path_factory)
    server = next(servers)
    try:
        engine = load_engine(server, "ch_engine", some_runs(200, seed=67), slice_bytes=600)
        project = max(engine.projects(), key=lambda p: len(engine.production(p)))
        stores = [tmp_path / "runs.duckdb", f"chdb:{tmp_path / 'chdb'}"]
        for db in stores:
            done = run_pull(reader_dsn(server, "ch_engine"), db, "--project", project)
            assert done.returncode == 0, done.stderr
    finally:
        servers.close()
    expected = store_rows(parse_location(str(stores[0])))
    assert len(expected["runs"]) == len(engine.production(project)) > 20
    assert store_rows(parse_location(str(stores[1]))) == expected
