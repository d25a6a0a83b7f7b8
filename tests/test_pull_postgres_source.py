"""The Postgres source against a real PostgreSQL server holding an engine's database.

The databases are written the way the engine writes them (`engine_postgres`): the runs of the
sample generator with their logs in all three generations, sliced outputs, logs in S3 and test
runs, in the engine's current schema and an older one. The source reads them as a role that may
only read; what it gives must be the generator's runs (their steps, to the byte), and loading its
pages into a real store must give the same store as loading the engine's API view of the runs.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from conftest import ROOT
from engine_postgres import (
    ADMIN_PASSWORD,
    LOG_GENERATIONS,
    ONE_SHOT,
    READER_PASSWORD,
    READER_ROLE,
    STREAM,
    LoadedEngine,
    encode_log,
    iso_ms,
    json_copy,
    load_engine,
    rewrite_run,
    shared_server,
)
from runs_store.domain.statuses import UNFINISHED
from runs_store.ingest.engine.logs import (
    LogTooLarge,
    LogUnreadable,
    decode_log,
    slice_file_ids,
    with_slices,
)
from runs_store.ingest.engine.postgres import PostgresSource
from runs_store.ingest.engine.source import PullError, PullRefused, RunPage
from runs_store.ingest.pipeline import ingest_items, ingest_records, records_as_items
from runs_store.store.database import open_db
from sample_data.generator import generate_runs

pytestmark = pytest.mark.store

SEED = 5
END = datetime(2025, 11, 30, tzinfo=UTC)  # in the past: every run is older than the marker's margin


@pytest.fixture(scope="session")
def engine_server(tmp_path_factory):
    yield from shared_server(tmp_path_factory)


@pytest.fixture(scope="session")
def engine(engine_server) -> LoadedEngine:
    """0.85's schema: 600 runs, small outputs sliced (loops too), every 13th log in S3."""
    runs = generate_runs(600, seed=SEED, end=END, test_share=0.03)
    return load_engine(engine_server, "engine", runs, slice_bytes=120, s3_every=13)


@pytest.fixture(scope="session")
def old_engine(engine_server) -> LoadedEngine:
    """An older schema (flowDisplayName, failedStepName, duration, tasks; no timeline), whose
    logs are one-shot zstd or raw JSON and never sliced."""
    runs = generate_runs(200, seed=SEED + 1, end=END, legacy_share=1.0, test_share=0.03)
    return load_engine(engine_server, "engine_old", runs, generation="old", slice_bytes=None)


@pytest.fixture(scope="session")
def engine_pages(engine) -> list[RunPage]:
    return pull_all(PostgresSource(engine.dsn, page_size=100))


def pull_all(source: PostgresSource, marker: dict | None = None, since=None) -> list[RunPage]:
    return [
        page for project in source.projects([]) for page in source.pages(project, marker, since)
    ]


def runs_of(pages: list[RunPage]) -> dict[str, dict]:
    """The pages' runs as the store reads them: steps given as JSON text put in `steps`."""
    return {run["id"]: with_steps(run, page) for page in pages for run in page.runs}


def with_steps(run: dict, page: RunPage) -> dict:
    text = page.steps_json.get(run["id"])
    if text is None:
        return run
    assert run["steps"] is None, "steps given twice"
    return {**run, "steps": json.loads(text)}


def ids_of(pages: list[RunPage]) -> list[str]:
    return [run["id"] for page in pages for run in page.runs]


def steps_of(loaded: LoadedEngine, run_id: str) -> dict | None:
    """The run's steps as the generator made them (checked to be the API view's as well)."""
    steps = loaded.generator_steps[run_id]
    if run_id not in loaded.internal_errors:
        assert loaded.api_runs[run_id]["steps"] == steps
    return steps if run_id not in loaded.internal_errors else {}


def only_one(loaded: LoadedEngine) -> str:
    return sorted(loaded.projects())[0]


def only_project(loaded: LoadedEngine) -> str:
    (project,) = loaded.projects()
    return project


def some_runs(count: int, seed: int = SEED + 2, **options) -> list[dict]:
    return [json_copy(run) for run in generate_runs(count, seed=seed, end=END, **options)]


def one_project(runs: list[dict]) -> list[dict]:
    return [{**run, "projectId": "proj-of-the-test-1234"} for run in runs]


# ---------------------------------------------------------------- what is read


def test_every_generation_of_log_reads_as_the_runs_steps(engine, engine_pages):
    pulled = runs_of(engine_pages)
    for generation in LOG_GENERATIONS:
        written = [i for i, g in engine.log_generation.items() if g == generation]
        production = [i for i in written if i not in engine.test_runs]
        assert len(production) > 100, generation
        assert all(pulled[i]["steps"] == steps_of(engine, i) for i in production)
    none_over_zstd = [
        i
        for i, generation in engine.log_generation.items()
        if generation == STREAM and engine.compression[i] == "NONE" and i in pulled
    ]
    assert len(none_over_zstd) > 20
    assert all(pulled[i]["steps"] == steps_of(engine, i) for i in none_over_zstd)


def test_the_runs_are_the_engines_production_runs_in_its_api_shape(engine, engine_pages):
    pulled = runs_of(engine_pages)
    assert sorted(ids_of(engine_pages)) == sorted(engine.production())
    assert not engine.test_runs & set(pulled) and engine.test_runs
    for run_id, expected in engine.production().items():
        run = pulled[run_id]
        assert {key: run.get(key) for key in expected if key != "flowVersion"} == {
            key: value for key, value in expected.items() if key != "flowVersion"
        }
        assert run["flowVersion"] == engine.records[run_id]["flowVersion"]
        assert run["flowVersion"]["displayName"] == expected["flowVersion"]["displayName"]
        assert run["flowVersion"]["trigger"]["name"] == "trigger"


def test_a_flow_versions_step_graph_is_read_once_per_page_and_shared(engine, engine_pages):
    read = 0
    for page in engine_pages:
        graphs: dict[str, dict] = {}
        for run in page.runs:
            graph = graphs.setdefault(run["flowVersionId"], run["flowVersion"]["trigger"])
            assert run["flowVersion"]["trigger"] is graph  # one object: one read per version
        read += len(graphs)
    assert read < len(ids_of(engine_pages)) / 3


def test_times_are_utc_with_milliseconds_like_the_api(engine_pages):
    run = next(run for run in runs_of(engine_pages).values() if run["finishTime"])
    for key in ("created", "updated", "startTime", "finishTime"):
        assert len(run[key]) == 24 and run[key].endswith("Z"), run[key]
        assert iso_ms(datetime.fromisoformat(run[key])) == run[key]


def test_sliced_outputs_come_back_whole_in_loops_too(engine, engine_pages):
    pulled = runs_of(engine_pages)
    sliced = (engine.sliced_runs | engine.loop_sliced_runs) - engine.s3_runs - engine.test_runs
    assert len(engine.loop_sliced_runs & sliced) > 10 and len(sliced) > 100
    for run_id in sliced:
        assert pulled[run_id]["steps"] == steps_of(engine, run_id)
        assert list(slice_file_ids(pulled[run_id]["steps"])) == []
        assert '"outputType"' not in json.dumps(pulled[run_id]["steps"])


def test_one_query_reads_the_slices_of_a_whole_page(engine_pages):
    # the runs, their versions' step graphs, their logs, their slices
    assert {page.requests for page in engine_pages} == {4}


def test_logs_in_s3_load_without_steps_and_are_counted(engine, engine_pages):
    pulled = runs_of(engine_pages)
    in_s3 = engine.s3_runs - engine.test_runs
    assert len(in_s3) > 20
    assert sum(page.without_steps for page in engine_pages) == len(in_s3)
    assert all(pulled[run_id]["steps"] is None for run_id in in_s3)
    notes = [note for page in engine_pages for note in page.notes]
    assert notes and all("their log is in S3" in note for note in notes)


def test_the_servers_internal_error_in_a_log_is_the_runs(engine, engine_pages):
    pulled = runs_of(engine_pages)
    errors = {i: e for i, e in engine.internal_errors.items() if i not in engine.test_runs}
    assert errors
    assert all(pulled[run_id]["internalError"] == error for run_id, error in errors.items())


def test_the_store_loads_the_pulled_runs_as_it_loads_the_same_runs_from_a_file(
    engine, engine_pages, tmp_path
):
    pulled_store = store_of_pages(tmp_path / "pulled.duckdb", engine_pages, "postgres")
    file_store = store_of_runs(tmp_path / "file.duckdb", engine.file_records())
    assert store_tables(pulled_store) == store_tables(file_store)
    assert len(store_tables(pulled_store)[0]) == len(engine.production())
    named = rows_of(
        pulled_store,
        "SELECT count(*) FILTER (WHERE display_name IS NOT NULL), "
        "count(*) FILTER (WHERE piece_name IS NOT NULL), "
        "count(*) FILTER (WHERE action_name IS NOT NULL), count(*) FROM run_steps",
    )[0]
    assert min(named[:3]) > named[3] / 2, "the steps are named from their flow version's graph"
    assert rows_of(pulled_store, "SELECT count(failed_step_display) FROM runs")[0][0] > 20


def rows_of(path, query: str) -> list[tuple]:
    with open_db(path, read_only=True) as con:
        return con.execute(query).fetchall()


def store_of_pages(path, pages: list[RunPage], source: str):
    with open_db(path) as con:
        for page in pages:  # as a pull loads them
            ingest_records(con, page.runs, source, page.steps_json)
    return path


def store_of_runs(path, runs: list[dict]):
    with open_db(path) as con:
        summary = ingest_items(con, records_as_items(runs), "engine api view")
        assert summary.rejected == 0
    return path


def store_tables(path) -> tuple[list, list, list]:
    with open_db(path, read_only=True) as con:
        return (
            con.execute("SELECT * EXCLUDE (source) FROM runs ORDER BY id").fetchall(),
            con.execute("SELECT * FROM run_steps ORDER BY run_id, position").fetchall(),
            con.execute("SELECT reason FROM rejects").fetchall(),
        )


def test_an_older_engines_schema_reads_too(old_engine, tmp_path):
    pages = pull_all(PostgresSource(old_engine.dsn, page_size=64))
    pulled = runs_of(pages)
    assert sorted(ids_of(pages)) == sorted(old_engine.production())
    for run_id, expected in old_engine.production().items():
        assert {key: pulled[run_id].get(key) for key in expected} == expected
        assert "timeline" not in pulled[run_id] and "failedStep" not in pulled[run_id]
    assert set(old_engine.log_generation.values()) == {ONE_SHOT, "raw JSON"}
    failed = [run for run in pulled.values() if run["failedStepName"]]
    assert failed and all(run["duration"] is not None for run in failed)
    assert store_tables(store_of_pages(tmp_path / "a.duckdb", pages, "postgres")) == store_tables(
        store_of_runs(tmp_path / "b.duckdb", old_engine.file_records())
    )


def test_a_missing_slice_keeps_its_reference_and_says_so(engine_server):
    runs = one_project(some_runs(40, test_share=0))
    loaded = load_engine(engine_server, "engine_expired", runs, slice_bytes=600)
    gone, run_id = next(iter(loaded.slice_files.items()))
    with engine_server.admin("engine_expired") as con:
        con.execute("DELETE FROM file WHERE id = %s", [gone])
    pages = pull_all(PostgresSource(loaded.dsn))
    run = runs_of(pages)[run_id]
    assert gone in list(slice_file_ids(run["steps"]))
    assert run["steps"] != loaded.generator_steps[run_id]
    assert with_slices(run["steps"], {}) == run["steps"]
    (kept,) = [step["output"] for step in all_steps(run["steps"]) if slice_of(step) == gone]
    assert kept == {
        "fileId": gone,
        "size": kept["size"],
        "notRead": "sliced output not read (expired)",
    }
    assert "token=" not in json.dumps(run["steps"]), "the url and its read token are not kept"
    assert sum(page.without_steps for page in pages) == 1
    (note,) = [note for page in pages for note in page.notes]
    assert "file is gone" in note and run_id in note


def test_a_log_or_slices_past_the_record_bound_load_without_them(engine_server, monkeypatch):
    small, many_steps, big_output = one_project(some_runs(3, test_share=0))
    small["steps"] = {"trigger": code_step({"ok": True})}
    many_steps["steps"] = {f"step_{n}": code_step({"text": "x" * 400}) for n in range(40)}
    big_output["steps"] = {"trigger": code_step({"blob": "y" * 20_000})}
    loaded = load_engine(
        engine_server, "engine_big", [small, many_steps, big_output], slice_bytes=1000
    )
    monkeypatch.setenv("RUNS_MAX_RECORD_MB", "0.01")  # 10,485 bytes
    (page,) = pull_all(PostgresSource(loaded.dsn))
    pulled = runs_of([page])
    assert pulled[small["id"]]["steps"] == loaded.generator_steps[small["id"]]
    assert pulled[many_steps["id"]]["steps"] is None
    kept = pulled[big_output["id"]]["steps"]["trigger"]["output"]
    assert kept["notRead"] == "sliced output not read (too large)" and "url" not in kept
    assert page.without_steps == 2
    assert any("log unpacks to more than RUNS_MAX_RECORD_MB (0.01 MB)" in n for n in page.notes)
    assert any("would take them past RUNS_MAX_RECORD_MB" in n for n in page.notes)


def slice_of(step) -> str | None:
    return step["output"].get("fileId") if step.get("outputType") == "slice" else None


def all_steps(steps: dict):
    """Every step, loop iterations' too."""
    for step in steps.values():
        yield step
        iterations = (
            step.get("output", {}).get("iterations")
            if isinstance(step.get("output"), dict)
            else None
        )
        for iteration in iterations or ():
            yield from all_steps(iteration)


def code_step(output) -> dict:
    return {"type": "CODE", "status": "SUCCEEDED", "input": {}, "output": output, "duration": 3}


# ---------------------------------------------------------------- pages, markers, since


@pytest.fixture(scope="module")
def tied(engine_server) -> LoadedEngine:
    """90 runs of one project, 40 of them sharing one `updated` to the microsecond."""
    loaded = load_engine(engine_server, "engine_ties", one_project(some_runs(90, test_share=0)))
    with engine_server.admin("engine_ties") as con:
        ids = sorted(loaded.api_runs)[::2][:40]
        con.execute(
            "UPDATE flow_run SET updated = %s WHERE id = ANY(%s)",
            [END - timedelta(days=3, microseconds=123), ids],
        )
    return loaded


def keyset_order(loaded: LoadedEngine, dbname: str, server) -> list[str]:
    with server.admin(dbname) as con:
        rows = con.execute("SELECT id, updated FROM flow_run").fetchall()
    return [run_id for run_id, _ in sorted(rows, key=lambda row: (row[1], row[0]))]


def test_pages_cover_every_run_exactly_once_in_keyset_order_ties_too(tied, engine_server):
    pages = pull_all(PostgresSource(tied.dsn, page_size=7))
    assert {len(page.runs) for page in pages[:-1]} == {7}
    assert ids_of(pages) == keyset_order(tied, "engine_ties", engine_server)
    assert len(set(ids_of(pages))) == 90


def test_a_pull_resumes_after_the_marker_of_a_page(tied):
    source = PostgresSource(tied.dsn, page_size=7)
    project = only_project(tied)
    everything = ids_of(pull_all(source))
    for cut in (1, 3, 6):  # some of these cut through the runs that share one `updated`
        walk = source.pages(project, None, None)
        first = [next(walk) for _ in range(cut)]
        walk.close()
        rest = list(source.pages(project, first[-1].marker, None))
        assert ids_of(first) + ids_of(rest) == everything
    tie = (END - timedelta(days=3, microseconds=123)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert tie in [page.marker["updated"] for page in pull_all(source)]  # to the microsecond


def test_since_reads_the_runs_created_at_or_after_it(tied):
    created = sorted(run["created"] for run in tied.api_runs.values())
    since = datetime.fromisoformat(created[50])
    pages = pull_all(PostgresSource(tied.dsn), since=since)
    expected = {i for i, run in tied.api_runs.items() if run["created"] >= created[50]}
    assert set(ids_of(pages)) == expected and len(expected) >= 40


def test_a_run_updated_just_now_is_read_but_not_passed_by_the_marker(engine_server):
    loaded = load_engine(engine_server, "engine_recent", one_project(some_runs(10, test_share=0)))
    recent = sorted(loaded.api_runs)[0]
    with engine_server.admin("engine_recent") as con:
        con.execute("UPDATE flow_run SET updated = now() WHERE id = %s", [recent])
    source = PostgresSource(loaded.dsn)
    (page,) = pull_all(source)
    assert ids_of([page])[-1] == recent
    assert page.marker["id"] == ids_of([page])[-2]
    assert ids_of(pull_all(source, page.marker)) == [recent]


def test_an_unfinished_run_is_listed_then_read_again_finished(engine_server):
    runs = one_project(some_runs(12, test_share=0))
    loaded = load_engine(engine_server, "engine_live", runs, slice_bytes=None)
    run = next(r for r in runs if r["status"] == "SUCCEEDED" and len(r["steps"]) > 2)
    project = run["projectId"]
    first_step = dict(list(run["steps"].items())[:1])
    write_progress(engine_server, loaded, run["id"], "RUNNING", first_step)

    pages = pull_all(PostgresSource(loaded.dsn))
    already = {r["id"] for r in runs if r["status"] in UNFINISHED}
    assert {i for page in pages for i in page.unfinished} == already | {run["id"]}
    assert runs_of(pages)[run["id"]]["steps"] == first_step

    write_progress(engine_server, loaded, run["id"], "SUCCEEDED", run["steps"])
    (again,) = list(PostgresSource(loaded.dsn).refetch(project, [run["id"]]))
    assert again.unfinished == [] and again.marker is None
    (finished,) = runs_of([again]).values()
    assert finished["status"] == "SUCCEEDED" and finished["steps"] == run["steps"]
    assert finished["finishTime"] is not None


def write_progress(server, loaded, run_id: str, status: str, steps: dict) -> None:
    """What the engine writes while a run runs (its backup every 15 s) and when it ends."""
    now = datetime.now(UTC)
    finish = None if status == "RUNNING" else now
    rewrite_run(
        server, "engine_live", loaded, run_id, steps, status=status, finishTime=finish, updated=now
    )


def test_a_step_graph_past_the_bounds_loads_its_runs_without_step_names(engine_server, monkeypatch):
    runs = one_project(some_runs(40, seed=SEED + 9, test_share=0))
    loaded = load_engine(engine_server, "engine_graphs", runs, slice_bytes=None)
    deep, large = sorted({run["flowVersionId"] for run in runs})[:2]
    nested: dict = {"name": "step_300", "type": "CODE"}
    for number in range(299, -1, -1):  # 300 steps, each the next one's parent
        nested = {"name": f"step_{number}", "type": "CODE", "nextAction": nested}
    with engine_server.admin("engine_graphs") as con:
        con.execute('UPDATE flow_version SET "trigger" = %s WHERE id = %s', [Jsonb(nested), deep])
        graph = {"name": "trigger", "displayName": "x" * 60_000}
        con.execute('UPDATE flow_version SET "trigger" = %s WHERE id = %s', [Jsonb(graph), large])
    monkeypatch.setenv("RUNS_MAX_RECORD_MB", "0.05")  # 52,428 bytes
    pulled = runs_of(pages := pull_all(PostgresSource(loaded.dsn)))
    for run in pulled.values():
        graphless = run["flowVersionId"] in (deep, large)
        assert ("trigger" in run["flowVersion"]) is not graphless
    notes = [note for page in pages for note in page.notes]
    assert any("step graph is nested deeper than 256 levels" in note for note in notes)
    assert any("step graph is larger than RUNS_MAX_RECORD_MB (0.05 MB)" in note for note in notes)


# ---------------------------------------------------------------- projects and connections


def test_projects_lists_every_project_with_production_runs(engine):
    source = PostgresSource(engine.dsn)
    assert source.projects([]) == sorted(engine.projects())
    project = sorted(engine.projects())[0]
    assert source.projects([project, project]) == [project]


def test_an_unknown_project_is_refused_by_name(engine):
    with pytest.raises(PullRefused, match="has no project no-such-project"):
        PostgresSource(engine.dsn).projects(["no-such-project"])


def test_the_key_names_the_database_without_user_or_password(engine, engine_server):
    source = PostgresSource(engine.dsn)
    assert source.key == f"postgres 127.0.0.1:{engine_server.port}/engine"


def assert_one_line_without(error: Exception, *secrets: str) -> str:
    message = str(error)
    assert "\n" not in message and message
    text = " ".join([message, repr(error), *map(str, error.args)])
    assert not any(secret in text for secret in secrets)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


def test_a_refused_password_is_one_line_without_the_password(engine_server):
    wrong = "wrong-secret-pw"
    dsn = engine_server.dsn("engine", READER_ROLE, wrong)
    with pytest.raises(PullRefused) as refused:
        PostgresSource(dsn).check()
    message = assert_one_line_without(refused.value, wrong, READER_PASSWORD)
    assert f"the database refused the password for user {READER_ROLE}" in message
    without_password = engine_server.dsn("engine", READER_ROLE, None)
    with pytest.raises(PullRefused) as refused:
        PostgresSource(without_password, password=wrong).projects([])
    assert_one_line_without(refused.value, wrong)


def test_the_password_may_come_apart_from_the_dsn(engine, engine_server):
    without_password = engine_server.dsn("engine", READER_ROLE, None)
    assert PostgresSource(without_password, password=READER_PASSWORD).projects([])


@pytest.fixture
def no_dns(monkeypatch):
    """Names under .invalid do not resolve, and no resolver is asked (nothing leaves the host)."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_an_unknown_host_is_named_with_its_port(no_dns):
    dsn = f"postgresql://{READER_ROLE}:{READER_PASSWORD}@engine-db.invalid:6543/engine"
    with pytest.raises(PullError) as failed:
        PostgresSource(dsn).check()
    message = assert_one_line_without(failed.value, READER_PASSWORD)
    assert "unknown host engine-db.invalid (port 6543)" in message
    assert not isinstance(failed.value, PullRefused)


def test_a_refused_connection_names_host_and_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        dsn = f"host=127.0.0.1 port={port} dbname=engine user=u password={READER_PASSWORD}"
        with pytest.raises(PullError) as failed:
            PostgresSource(dsn).check()
    message = assert_one_line_without(failed.value, READER_PASSWORD)
    assert f"nothing accepts connections at 127.0.0.1:{port}" in message


def test_an_unknown_database_is_named(engine_server):
    with pytest.raises(PullError) as failed:
        PostgresSource(engine_server.dsn("no_such_db", READER_ROLE, READER_PASSWORD)).check()
    message = assert_one_line_without(failed.value, READER_PASSWORD)
    assert message == f"the server at 127.0.0.1:{engine_server.port} has no database no_such_db"


def test_a_postgres_that_is_not_an_engine_is_said_to_be_so(engine_server):
    engine_server.create_database("not_an_engine", generation=None)
    with pytest.raises(PullError) as failed:
        PostgresSource(engine_server.dsn("not_an_engine", READER_ROLE, READER_PASSWORD)).check()
    message = assert_one_line_without(failed.value, READER_PASSWORD)
    assert "not an engine's database: it has no flow_run table" in message


def test_the_connection_is_read_only_even_for_a_role_that_may_write(engine, engine_server):
    source = PostgresSource(engine_server.dsn("engine"))  # the superuser's DSN
    assert source.projects([])
    conn = source.connection()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("UPDATE flow_run SET status = 'FAILED'")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
        conn.execute("DELETE FROM file")
    with engine_server.admin("engine") as admin:
        assert admin.execute("SELECT count(*) FROM file").fetchone() != (0,)


def test_the_grants_the_docs_give_are_enough_to_pull(engine, engine_server):
    """docs/engine-postgres.md's statements, run as written (names and password swapped)."""
    text = (ROOT / "docs" / "engine-postgres.md").read_text()
    (block,) = re.findall(r"```sql\n(.*?)```", text, re.S)
    password = "doc-reader-secret-pw"
    statements = (
        block.replace("runs_reader", "runs_doc_reader")
        .replace("activepieces", "engine")
        .replace("choose-a-long-one", password)
    )
    with engine_server.admin("engine") as con:
        for statement in filter(str.strip, statements.split(";")):
            con.execute(statement)
    dsn = engine_server.dsn("engine", "runs_doc_reader", password)
    source = PostgresSource(dsn, page_size=250)
    assert sorted(ids_of(pull_all(source))) == sorted(engine.production())
    with psycopg.connect(dsn) as conn:  # any session of the role, not only the source's
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)


def test_the_role_the_tests_pull_with_may_not_write(engine):
    conn = PostgresSource(engine.dsn).connection()
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO project (id) VALUES ('x')")


def test_the_admin_password_never_appears_in_errors_of_its_source(engine_server):
    source = PostgresSource(engine_server.dsn("not_an_engine_either"))
    with pytest.raises(PullError) as failed:
        source.check()
    assert_one_line_without(failed.value, ADMIN_PASSWORD)


@pytest.mark.parametrize(
    "marker", [{"updated": "yesterday", "id": "x"}, {"id": "x"}, {"updated": 5, "id": "x"}]
)
def test_a_marker_the_source_did_not_write_is_refused(engine, marker):
    with pytest.raises(PullError, match="not one the Postgres source writes"):
        next(PostgresSource(engine.dsn).pages(only_one(engine), marker, None))


# ---------------------------------------------------------------- the log decoder alone


def test_a_stream_frame_without_content_size_decodes():
    document = {"version": 2, "executionState": {"steps": {"a": {"status": "SUCCEEDED"}}}}
    log = decode_log(encode_log(document, STREAM), limit=10_000)
    assert log.steps == {"a": {"status": "SUCCEEDED"}} and log.tags is None


def test_a_log_past_its_bound_or_not_json_is_refused_with_a_reason():
    document = {"executionState": {"steps": {"a": {"output": "z" * 5000}}}}
    for generation in LOG_GENERATIONS:
        with pytest.raises(LogTooLarge):
            decode_log(encode_log(document, generation), limit=1000)
    with pytest.raises(LogUnreadable, match="not JSON"):
        decode_log(b"{not json", limit=1000)
    with pytest.raises(LogUnreadable, match="executionState"):
        decode_log(b'{"steps": {}}', limit=1000)
    with pytest.raises(LogUnreadable, match="zstd"):
        decode_log(b"\x28\xb5\x2f\xfd" + b"garbage" * 10, limit=1000)


def _read_as_text(document) -> tuple:
    """What a pull takes of a log, with the steps as text (parsed back) and as Python read it."""
    for generation in LOG_GENERATIONS:
        data = encode_log(document, generation)
        as_text, parsed = decode_log(data, 100_000, steps_as_text=True), decode_log(data, 100_000)
        steps = json.loads(as_text.steps_json) if as_text.steps_json is not None else as_text.steps
        assert (steps, as_text.tags, as_text.internal_error) == (
            parsed.steps,
            parsed.tags,
            parsed.internal_error,
        ), generation
    return as_text.steps_json, parsed


def test_a_usual_logs_steps_come_as_text_equal_to_what_python_reads():
    document = {
        "version": 2,
        "executionState": {
            "steps": {
                "trigger": {"status": "SUCCEEDED", "output": {"n": [1, 2.5, -0.0, 1e21]}},
                "step_1": {"status": "FAILED", "errorMessage": 'say "hi"\n\u00e9\U0001f600'},
            },
            "tags": ["a", "b"],
        },
        "internalError": {"source": "ENGINE", "message": "boom", "code": "X"},
    }
    steps_json, _ = _read_as_text(document)
    assert steps_json is not None


@pytest.mark.parametrize(
    "output",
    [
        {"big": 2**70},  # past 64 bits: simdjson refuses it, Python keeps it exact
        {"lone": "\ud800"},  # a lone surrogate: Python reads it as U+FFFD
        {
            "type": "slice",
            "nested": {"outputType": "slice"},
        },  # a slice reference: put back by Python
    ],
)
def test_a_log_simdjson_does_not_take_whole_is_read_by_python(output):
    document = {"executionState": {"steps": {"a": {"status": "SUCCEEDED", "output": output}}}}
    steps_json, parsed = _read_as_text(document)
    assert steps_json is None and parsed.steps["a"]["output"]
