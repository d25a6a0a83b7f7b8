"""The Import page in Streamlit's AppTest: upload, load with the CLI's code, summary, rejects."""

from __future__ import annotations

import gzip
import json
import re
import tomllib

import pytest
from playwright.sync_api import expect

from conftest import app_test, running_server, wait_for_app
from factories import ROOT, engine_run, older_run, rows, simple_run, write_text
from runs_store.ingest.pipeline import IngestSummary, ingest_paths
from runs_store.store.database import open_db

PAGE = "pages/import.py"

GOOD = [engine_run("i1"), older_run("i2"), simple_run("i3", status="Quota Exceeded")]
MIXED_LINES = [
    json.dumps(simple_run("i4")),
    "{not json",
    json.dumps(simple_run("i5", status="??")),
    json.dumps(simple_run("i6", environment="TESTING")),
    json.dumps(simple_run("i4")),
]


def jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def open_page(db, app_env):
    app_env(db)
    return app_test(PAGE)


def upload(at, *files):
    at.file_uploader[0].set_value(
        [(name, data, "application/octet-stream") for name, data in files]
    ).run()
    return at


def load(at):
    at.button(key="load_uploads").click().run()
    return at


def upload_rejects(at):
    """The table of this upload's rejects: the first of the two tables (the store's is below)."""
    assert len(at.dataframe) == 2, "expected the upload's and the store's rejects tables"
    return at.dataframe[0].value


def store_rejects(at):
    return at.dataframe[-1].value


def rendered(markdown: str) -> str:
    """Markdown text as it reads on screen: backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def generation(db) -> int:
    return int(rows(db, "SELECT value FROM meta WHERE key = 'generation'")[0][0])


def expected_line(files, new, updated=0, unchanged=0, rejected=0, test_runs=0) -> str:
    return (
        "Ingested "
        + IngestSummary(
            files=files,
            new=new,
            updated=updated,
            unchanged=unchanged,
            rejected=rejected,
            test_runs=test_runs,
        ).line()
        + "."
    )


def test_the_page_names_the_accepted_files_and_the_upload_limit(empty_db, app_env):
    at = open_page(empty_db, app_env)
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    limit = config["server"]["maxUploadSize"]
    assert not at.exception
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    assert {".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".gz"} <= set(uploader.allowed_type)
    assert any(f"{limit:,} MB per file" in caption.value for caption in at.caption)


def test_uploaded_files_load_with_the_cli_summary_and_their_rejects_are_listed(empty_db, app_env):
    at = open_page(empty_db, app_env)
    upload(
        at,
        ("good.jsonl.gz", gzip.compress(jsonl_bytes(GOOD))),
        ("mixed.jsonl", ("\n".join(MIXED_LINES) + "\n").encode()),
    )
    assert at.button(key="load_uploads").label == "Load 2 files"
    load(at)
    assert not at.exception
    assert at.warning[0].value == expected_line(files=2, new=4, rejected=2, test_runs=1)
    assert {r[0] for r in rows(empty_db, "SELECT id FROM runs")} == {"i1", "i2", "i3", "i4"}
    shown = upload_rejects(at)
    assert list(shown["file"]) == ["upload:mixed.jsonl"] * 2
    assert list(shown["location"]) == ["line 2", "line 3"]
    assert list(shown["raw"]) == [MIXED_LINES[1], MIXED_LINES[2]]
    assert shown["reason"][0].startswith("not valid JSON")
    assert "unknown status" in shown["reason"][1]


def test_a_clean_upload_says_so_in_a_success_message(empty_db, app_env):
    at = load(upload(open_page(empty_db, app_env), ("runs.json", json.dumps(GOOD).encode())))
    assert at.success[0].value == expected_line(files=1, new=3)
    assert not at.warning and not at.error


def test_a_rerun_does_not_load_the_uploads_again(empty_db, app_env):
    at = load(upload(open_page(empty_db, app_env), ("runs.jsonl", jsonl_bytes(GOOD))))
    after_load = generation(empty_db)
    at.run()
    at.run()
    assert generation(empty_db) == after_load
    assert not [b for b in at.button if b.key == "load_uploads"]
    assert at.success[0].value == expected_line(files=1, new=3)  # the result stays on screen


def test_loading_the_same_file_again_changes_nothing(empty_db, app_env):
    at = load(upload(open_page(empty_db, app_env), ("runs.jsonl", jsonl_bytes(GOOD))))
    before = rows(empty_db, "SELECT * FROM runs ORDER BY id")
    load(upload(at, ("runs.jsonl", jsonl_bytes(GOOD))))
    assert at.success[0].value == expected_line(files=1, new=0, unchanged=3)
    assert rows(empty_db, "SELECT * FROM runs ORDER BY id") == before


def test_a_file_that_cannot_be_read_is_named_and_the_others_still_load(empty_db, app_env):
    at = open_page(empty_db, app_env)
    load(
        upload(
            at,
            ("notes.txt.gz", gzip.compress(b"hello")),
            ("broken.jsonl.gz", b"\x1f\x8b\x08\x00" + b"\x00junk" * 40),
            ("good.jsonl", jsonl_bytes(GOOD)),
        )
    )
    errors = [rendered(e.value) for e in at.error]
    assert len(errors) == 2
    assert "notes.txt.gz" in errors[0] and "not a recognised format" in errors[0]
    assert "broken.jsonl.gz" in errors[1]
    assert at.success[0].value == expected_line(files=1, new=3)
    assert {r[0] for r in rows(empty_db, "SELECT id FROM runs")} == {"i1", "i2", "i3"}


def test_names_and_record_text_are_shown_as_text_not_markup(empty_db, app_env):
    name = "**bold** [x](javascript:alert(1)) <img src=x onerror=alert(1)>.txt.gz"
    hostile = json.dumps(simple_run("<script>alert(1)</script>", status="<b>bad</b>"))
    at = load(
        upload(
            open_page(empty_db, app_env),
            (name, gzip.compress(b"x")),
            ("evil.jsonl", (hostile + "\n").encode()),
        )
    )
    message = at.error[0].value
    assert r"\*\*bold\*\*" in message and r"\[x\]\(javascript\:alert\(1\)\)" in message
    assert r"\<img" in message
    assert list(upload_rejects(at)["raw"]) == [hostile]
    assert not any(getattr(m.proto, "allow_html", False) for m in at.markdown)


def test_rejects_already_in_the_store_are_listed_below(empty_db, app_env, tmp_path):
    path = write_text(tmp_path / "cli.jsonl", "oops\n" + json.dumps(simple_run("c1")) + "\n[]\n")
    ingest_paths(empty_db, [path])
    at = open_page(empty_db, app_env)
    table = store_rejects(at)
    assert list(table["file"]) == [str(path)] * 2
    assert list(table["location"]) == ["line 1", "line 3"]
    assert list(table["raw"]) == ["oops", "[]"]
    assert at.expander[0].label == "All rejected records in the store (2)"


def test_an_empty_store_says_there_are_no_rejects(empty_db, app_env):
    at = open_page(empty_db, app_env)
    assert len(at.dataframe) == 0
    assert any("every record loaded so far was accepted" in c.value for c in at.caption)
    assert not at.expander


def test_the_page_shows_the_same_ingest_for_a_terminal(empty_db, app_env):
    at = open_page(empty_db, app_env)
    commands = at.code[0].value
    assert f"python -m runs_store ingest exports/ more-runs.jsonl.gz --db {empty_db}" in commands
    assert f"python -m runs_store rejects --db {empty_db}" in commands


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("runs", [12_000])
def test_a_large_upload_loads_completely(empty_db, app_env, runs):
    records = [
        simple_run(f"bulk-{n}", created=f"2026-10-{1 + n % 28:02d}T08:00:00Z") for n in range(runs)
    ]
    at = load(
        upload(open_page(empty_db, app_env), ("bulk.jsonl.gz", gzip.compress(jsonl_bytes(records))))
    )
    assert at.success[0].value == expected_line(files=1, new=runs)
    assert rows(empty_db, "SELECT count(*) FROM runs")[0][0] == runs


# ------------------------------------------------------------------ in a real browser


@pytest.fixture(scope="module")
def import_server(tmp_path_factory):
    """The real app (`streamlit run app.py`) on an empty database of its own."""
    db = tmp_path_factory.mktemp("import-browser") / "runs.duckdb"
    with open_db(db):
        pass
    with running_server(db) as url:
        yield url, db


def test_a_user_uploads_files_in_the_browser_and_sees_the_summary_and_rejects(
    import_server, page, tmp_path
):
    url, db = import_server
    hostile = "<img src=x onerror=alert(1)>"
    mixed = write_text(tmp_path / "mixed.jsonl", "\n".join(MIXED_LINES) + "\n")
    good = tmp_path / "good.json.gz"
    list_page = {"data": [*GOOD, simple_run("i7", flow=hostile)], "next": None, "previous": None}
    good.write_bytes(gzip.compress(json.dumps(list_page).encode()))
    named = tmp_path / f"{hostile}.txt.gz"
    named.write_bytes(gzip.compress(b"not runs"))
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{url}/import")
    wait_for_app(page)
    page.set_input_files("[data-testid='stFileUploaderDropzoneInput']", [mixed, good, named])
    button = page.get_by_role("button", name="Load 3 files")
    expect(button).to_be_visible(timeout=30_000)
    wait_for_app(page)
    button.click()

    line = expected_line(files=2, new=5, rejected=2, test_runs=1)
    expect(page.get_by_text(line)).to_be_visible(timeout=60_000)
    wait_for_app(page)
    expect(page.get_by_text(f"Not loaded: upload:{hostile}.txt.gz", exact=False)).to_be_visible()
    table = page.locator("[data-testid='stDataFrame']").first
    cells = [
        table.locator(f"td[data-testid='glide-cell-{col}-{row}']").first.text_content()
        for row in (0, 1)
        for col in (0, 1, 3)
    ]
    assert cells == [
        "upload:mixed.jsonl",
        "line 2",
        MIXED_LINES[1],
        "upload:mixed.jsonl",
        "line 3",
        MIXED_LINES[2],
    ]
    expect(button).to_have_count(0)  # loaded once; the uploader is empty again
    assert dialogs == []
    stored = {r[0] for r in rows(db, "SELECT id FROM runs")}
    assert stored == {"i1", "i2", "i3", "i4", "i7"}


def test_a_deep_record_and_a_bomb_are_rejected_with_reasons_on_the_page(
    empty_db, app_env, monkeypatch
):
    monkeypatch.setenv("RUNS_MAX_RECORD_MB", "1")
    deep_run = simple_run(
        "deep", steps={"trigger": {"type": "EMPTY", "status": "SUCCEEDED", "output": "@DEEP@"}}
    )
    deep_text = json.dumps(deep_run).replace('"@DEEP@"', '{"a":' * 10_000 + "1" + "}" * 10_000)
    bomb = gzip.compress(b'{"id": "bomb", "pad": "' + b"a" * (8 << 20) + b'"}\n')
    deep_list = "[" + deep_text + "," + json.dumps(simple_run("ok")) + "]"
    at = load(
        upload(
            open_page(empty_db, app_env),
            ("deep.json", deep_list.encode()),
            ("deep.jsonl", (deep_text + "\n").encode()),
            ("bomb.jsonl.gz", bomb),
        )
    )
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    reasons = sorted(upload_rejects(at)["reason"])
    assert len(reasons) == 3
    assert sum("nested deeper than 256 levels" in reason for reason in reasons) == 2
    assert any("RUNS_MAX_RECORD_MB (1 MB)" in reason for reason in reasons)
    assert {r[0] for r in rows(empty_db, "SELECT id FROM runs")} == {"ok"}


def test_a_bad_bound_setting_is_named_on_the_page(empty_db, app_env, monkeypatch):
    monkeypatch.setenv("RUNS_MAX_FILE_GB", "lots")
    at = open_page(empty_db, app_env)  # every setting is checked before the page offers uploads
    assert not at.exception, at.exception
    assert "RUNS_MAX_FILE_GB='lots' is not allowed" in rendered(at.error[0].value)
