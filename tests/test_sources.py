"""The engines named in RUNS_SOURCES: the file's rules (one line per mistake, no secret in it),
`pull --source NAME`, the Sources page (state, Pull now, no secret shown) and the Runs page's Live
mode pulling before it refreshes. The engine is the contract-faithful fake over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest

from conftest import ROOT, app_test, refused_port
from factories import rows
from fake_engine_api import FakeEngine
from runs_store.domain.statuses import UNFINISHED
from runs_store.ingest.engine.sources_file import (
    SourcesFileError,
    pull_configured,
    read_sources,
)
from runs_store.store.database import open_db
from test_pull_api import TOKEN, engine_runs, production

PROJECT = "PROJ1aaaaaaaaaaaaaaaa"


def sources_file(tmp_path, text: str):
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return path


def api_source(url: str, name: str = "Production", token_env: str = "AP_TEST_TOKEN") -> str:
    return (
        f'[[sources]]\nname = "{name}"\napi = "{url}"\nprojects = ["{PROJECT}"]\n'
        f'token = "env:{token_env}"\n'
    )


# ------------------------------------------------------------------ the file


def test_a_good_file_names_each_engine_and_where_its_secret_is(tmp_path):
    path = sources_file(
        tmp_path,
        api_source("https://ap.example.com/api")
        + '[[sources]]\nname = "DB"\npostgres = "postgresql://reader@db.example.com/ap"\n'
        'since = "2026-11-01"\n',
    )
    api, database = read_sources(path)
    assert (api.kind, api.address, api.projects, api.secret_env) == (
        "api",
        "https://ap.example.com/api",
        (PROJECT,),
        "AP_TEST_TOKEN",
    )
    assert (database.kind, database.projects, database.secret_env, database.since) == (
        "postgres",
        (),
        "RUNS_PG_PASSWORD",
        datetime(2026, 11, 1),
    )


def test_each_mistake_is_one_line_naming_the_file_the_source_and_the_key(tmp_path):
    path = sources_file(
        tmp_path,
        '[[sources]]\nname = "A"\napi = "https://x.example/api"\nprojects = ["p"]\n'
        'token = "sk-literal-secret"\n'
        '[[sources]]\nname = "B"\npostgres = "postgresql://u:hunter2@db/ap"\n'
        '[[sources]]\nname = "C"\napi = "https://x.example/api"\n'
        '[[sources]]\nname = "D"\napi = "https://x.example/api"\npostgres = "postgresql://d/x"\n'
        '[[sources]]\nname = "E"\npostgres = "postgresql://e/x"\ncolour = "red"\n'
        'since = "soon"\n'
        '[[sources]]\nname = "E"\npostgres = "postgresql://e/y"\n',
    )
    with pytest.raises(SourcesFileError) as raised:
        read_sources(path)
    lines = str(raised.value).splitlines()
    expected = [
        "sources[1] (A): `token` must name an environment variable",
        "sources[2] (B): `postgres` holds a password",
        "sources[3] (C): an `api` source needs `projects`",
        "sources[4] (D): give exactly one of `api` (a URL) or `postgres` (a DSN)",
        "sources[5] (E): unknown key 'colour'",
        "sources[5] (E): `since` must be a date",
    ]
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: {start}"), line
    assert "sk-literal-secret" not in str(raised.value) and "hunter2" not in str(raised.value)


def test_a_missing_or_broken_file_is_one_line(tmp_path):
    with pytest.raises(SourcesFileError, match="no such file"):
        read_sources(tmp_path / "absent.toml")
    with pytest.raises(SourcesFileError, match="not a readable TOML file"):
        read_sources(sources_file(tmp_path, "[[sources]\nname ="))


# ------------------------------------------------------------------ pulling the named engines


def test_pull_by_name_from_the_command_line(tmp_path):
    runs = engine_runs(150, seed=61)
    db = tmp_path / "named.duckdb"
    with FakeEngine(runs, token=TOKEN) as engine:
        path = sources_file(tmp_path, api_source(engine.base_url))
        environment = {**os.environ, "RUNS_SOURCES": str(path), "AP_TEST_TOKEN": TOKEN}
        environment.pop("RUNS_API_TOKEN", None)
        command = [
            sys.executable,
            "-m",
            "runs_store",
            "pull",
            "--db",
            str(db),
            "--progress",
            "never",
            "--source",
        ]
        done = subprocess.run(
            [*command, "Production"], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        unknown = subprocess.run(
            [*command, "Staging"], cwd=ROOT, env=environment, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT count(*) FROM runs") == [(len(production(runs)),)]
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "error: no source named 'Staging' in RUNS_SOURCES; known: 'Production'"
    )


def test_one_failing_engine_does_not_stop_the_others(tmp_path, monkeypatch):
    runs = engine_runs(80, seed=62)
    with FakeEngine(runs, token=TOKEN) as engine, refused_port() as port:
        dead_url = f"http://127.0.0.1:{port}/api"
        path = sources_file(
            tmp_path, api_source(dead_url, name="Old") + api_source(engine.base_url)
        )
        monkeypatch.setenv("RUNS_SOURCES", str(path))
        monkeypatch.setenv("AP_TEST_TOKEN", TOKEN)
        with open_db(tmp_path / "two.duckdb") as con:
            old, production_outcome = pull_configured(con)
    assert old.error.startswith("cannot reach 127.0.0.1:") and old.line is None
    assert production_outcome.error is None
    assert production_outcome.changed == len(production(runs))


# ------------------------------------------------------------------ the pages


@pytest.fixture
def engine_and_store(tmp_path, app_env, monkeypatch):
    runs = engine_runs(120, seed=63)
    with FakeEngine(runs, token=TOKEN) as engine:
        path = sources_file(tmp_path, api_source(engine.base_url))
        monkeypatch.setenv("RUNS_SOURCES", str(path))
        monkeypatch.setenv("AP_TEST_TOKEN", TOKEN)
        db = app_env(tmp_path / "app.duckdb")
        with open_db(db):
            pass
        yield engine, db, runs


def all_text(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "success", "warning", "info", "code"):
        parts.extend(str(element.value) for element in getattr(at, kind))
    parts.extend(str(frame.value.to_dict()) for frame in at.dataframe)
    return "\n".join(parts)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_sources_page_pulls_now_and_shows_how_far_it_got(engine_and_store):
    _engine, db, runs = engine_and_store
    at = app_test("pages/sources.py")
    assert not at.exception, at.exception
    text = all_text(at)
    assert "Production" in text and "token: set in `AP_TEST_TOKEN`" in text
    assert "Not pulled yet." in text
    at.button(key="pull_Production").click().run()
    assert not at.exception, at.exception
    text = all_text(at)
    assert next(element.value for element in at.success).startswith("Pulled api ")
    state = at.dataframe[0].value
    assert state["Runs pulled"].tolist() == [len(production(runs))]
    assert state["Last error"].tolist() == [""]
    assert TOKEN not in text
    assert rows(db, "SELECT count(*) FROM runs") == [(len(production(runs)),)]


def test_a_refused_token_is_shown_as_the_pulls_error_and_kept(engine_and_store, monkeypatch):
    _, _, _ = engine_and_store
    monkeypatch.setenv("AP_TEST_TOKEN", "sk-not-the-right-one")
    at = app_test("pages/sources.py")
    at.button(key="pull_Production").click().run()
    assert not at.exception, at.exception
    error = next(element.value for element in at.error)
    assert "refused the token in AP\\_TEST\\_TOKEN" in error
    assert "sk-not-the-right-one" not in all_text(at)
    assert "refused the token" in at.dataframe[0].value["Last error"].tolist()[0]


def test_live_mode_pulls_before_the_runs_list_refreshes(engine_and_store):
    engine, db, runs = engine_and_store
    at = app_test(query={"live": "true", "range": "all"})
    assert not at.exception, at.exception
    assert rows(db, "SELECT count(*) FROM runs") == [(len(production(runs)),)]
    captions = [element.value for element in at.caption]
    assert any(f"{len(production(runs)):,} new or changed runs" in text for text in captions)
    before = engine.count("/v1/flow-runs/")
    at.run()
    unfinished = sum(1 for run in production(runs) if run["status"] in UNFINISHED)
    assert engine.count("/v1/flow-runs/") - before == unfinished, "only unfinished runs again"
