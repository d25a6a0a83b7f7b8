"""Typed settings: every variable in SETTINGS read as its type, and every value not allowed named
in one line (variable, value, what is allowed) by the store, the CLI (exit 2) and the app's pages
(st.error, never a traceback)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from conftest import app_test
from factories import run_cli, simple_run, write_jsonl
from runs_store import settings
from runs_store.domain.errors import SettingError, StoreError
from runs_store.ingest import limits
from runs_store.ingest.pipeline import ingest_paths
from runs_store.settings import SETTINGS, MemorySize, Secret, Settings, load_settings

# Variable -> (a value allowed, the typed value it reads as).
GOOD = {
    "RUNS_DB": ("~/runs/explorer.duckdb", Path.home() / "runs" / "explorer.duckdb"),
    "RUNS_LOAD_SAMPLE": ("no", False),
    "RUNS_EDIT_FLOW_URL": (
        " https://cloud.example.com/flows/{flow_id}?v={flow_version_id} ",
        "https://cloud.example.com/flows/{flow_id}?v={flow_version_id}",
    ),
    "RUNS_MASK_SECRETS": ("OFF", False),
    "RUNS_LIVE_SECONDS": ("2.5", 2.5),
    "RUNS_PAYLOAD_PREVIEW_KB": ("0.5", 0.5),
    "RUNS_MEMORY_LIMIT": ("2 gib", MemorySize("2GiB", 2 * 1024**3)),
    "RUNS_INGEST_MEMORY_LIMIT": ("1.5GB", MemorySize("1.5GB", 1_500_000_000)),
    "RUNS_LOCK_WAIT_SECONDS": ("0", 0.0),
    "RUNS_MAX_RECORD_MB": ("16", 16.0),
    "RUNS_MAX_FILE_GB": ("0.25", 0.25),
    "RUNS_API_TOKEN": ("sk-abc123", Secret("sk-abc123")),
    "RUNS_PG_PASSWORD": ("p@ss word", Secret("p@ss word")),
    "RUNS_CLICKHOUSE_PASSWORD": ("s3cret:/@", Secret("s3cret:/@")),
    "RUNS_S3_BUCKET": (" activepieces-logs ", "activepieces-logs"),
    "RUNS_S3_ENDPOINT": ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    "RUNS_S3_REGION": ("eu-west-1", "eu-west-1"),
    "RUNS_S3_ACCESS_KEY_ID": ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    "RUNS_S3_SECRET_ACCESS_KEY": ("wJalrXUtnFEMI/K7MDENG", Secret("wJalrXUtnFEMI/K7MDENG")),
    "RUNS_PULL_CONCURRENCY": ("16", 16),
    "RUNS_PULL_COMMIT_RUNS": ("500", 500),
    "RUNS_ROLLUP_DAYS": ("730", 730),
    "RUNS_RETENTION_DAYS": (" 90 ", 90),
    "RUNS_SOURCES": ("~/sources.toml", Path.home() / "sources.toml"),
    "RUNS_ALERTS": ("alerts.toml", Path("alerts.toml")),
    "RUNS_APP_URL": ("https://runs.example.com/", "https://runs.example.com/"),
    "RUNS_AGENT_PRICES": ("", None),
}

# Variable -> (values not allowed, what the message says is allowed).
BAD = {
    "RUNS_DB": (["", "   ", "a\0b"], "a file path"),
    "RUNS_LOAD_SAMPLE": (["", "maybe", "2", "y"], "1/true/yes/on or 0/false/no/off"),
    "RUNS_EDIT_FLOW_URL": (
        [
            "ftp://editor.example/{flow_id}",
            "/flows/{flow_id}",
            "https://x.example/{flow}",
            "https://x.example/{flow_id",
            "https://x.example/{}",
            "https://x.example/{flow_id!r}",
            "javascript:alert({flow_id})",
            "https://",
        ],
        (
            "an http:// or https:// URL whose only placeholders are {flow_id}, "
            "{flow_version_id} and {project_id}"
        ),
    ),
    "RUNS_MASK_SECRETS": (["maybe", "", "enabled"], "1/true/yes/on or 0/false/no/off"),
    "RUNS_LIVE_SECONDS": (["abc", "1", "0", "-5", "inf"], "a number of seconds >= 2"),
    "RUNS_PAYLOAD_PREVIEW_KB": (["lots", "0", "-1", "nan"], "a positive number of kilobytes"),
    "RUNS_MEMORY_LIMIT": (
        ["lots", "1024", "-1GB", "100KB", "1 gigabyte", "80%"],
        "a memory size of at least 1MB",
    ),
    "RUNS_INGEST_MEMORY_LIMIT": (["lots", "0MB", "512 M"], "a memory size of at least 1MB"),
    "RUNS_LOCK_WAIT_SECONDS": (["abc", "-1", "", "inf"], "a number of seconds >= 0"),
    "RUNS_MAX_RECORD_MB": (["lots", "0", "-3"], "a positive number of megabytes"),
    "RUNS_MAX_FILE_GB": (["lots", "0", "1e999"], "a positive number of gigabytes"),
    "RUNS_API_TOKEN": ([], "any text"),  # a token is whatever the engine gave
    "RUNS_PG_PASSWORD": ([], "any text"),
    "RUNS_CLICKHOUSE_PASSWORD": ([], "any text"),
    "RUNS_S3_BUCKET": (["my logs", "s3://logs", "ab", "logs/2026"], "a bucket name"),
    "RUNS_S3_ENDPOINT": (["minio:9000", "ftp://minio", "https://"], "an http:// or https:// URL"),
    "RUNS_S3_REGION": (["eu west 1", "eu_west_1"], "a region name such as eu-west-1"),
    "RUNS_S3_ACCESS_KEY_ID": ([], "any text"),
    "RUNS_S3_SECRET_ACCESS_KEY": ([], "any text"),
    "RUNS_PULL_CONCURRENCY": (["0", "65", "2.5", "many", ""], "a whole number from 1 to 64"),
    "RUNS_PULL_COMMIT_RUNS": (
        ["0", "1000001", "2.5", "all", ""],
        "a whole number from 1 to 1000000",
    ),
    "RUNS_ROLLUP_DAYS": (["0", "", "1.5", "a year", "-3"], "a whole number of days from 1"),
    "RUNS_RETENTION_DAYS": (
        ["0", "90d", "2.5", "100001"],
        "a whole number of days from 1 to 100000, or an empty value to keep every run",
    ),
    "RUNS_SOURCES": (["a\0b"], "a file path, or an empty value for none"),
    "RUNS_ALERTS": (["a\0b"], "a file path, or an empty value for none"),
    "RUNS_APP_URL": (
        ["", "localhost:8501", "ftp://runs.example.com"],
        "an http:// or https:// URL",
    ),
    "RUNS_AGENT_PRICES": (["a\0b"], "a file path, or an empty value for none"),
}

BAD_CASES = [(env, value, allowed) for env, (values, allowed) in BAD.items() for value in values]


def one_line(env: str, value: str) -> str:
    """The start of the message about `value`: it names the variable and the value."""
    return f"{env}={value!r} is not allowed: use "


# ------------------------------------------------------------------ the declarations


def test_the_tables_here_cover_every_setting():
    declared = [s.env for s in SETTINGS]
    assert sorted(GOOD) == sorted(declared) and sorted(BAD) == sorted(declared)


def test_the_settings_object_has_one_field_per_declared_setting_in_order():
    assert [f.name for f in fields(Settings)] == [s.attribute for s in SETTINGS]


def test_every_default_is_allowed_and_read_typed():
    loaded = load_settings({})
    assert loaded == Settings(
        db=Path("data/runs.duckdb"),
        load_sample=True,
        edit_flow_url="",
        mask_secrets=True,
        live_seconds=15.0,
        payload_preview_kb=256.0,
        memory_limit=MemorySize("1GB", 10**9),
        ingest_memory_limit=MemorySize("512MB", 512 * 10**6),
        lock_wait_seconds=30.0,
        max_record_mb=64.0,
        max_file_gb=10.0,
        api_token=Secret(""),
        pg_password=Secret(""),
        clickhouse_password=Secret(""),
        s3_bucket="",
        s3_endpoint="",
        s3_region="",
        s3_access_key_id="",
        s3_secret_access_key=Secret(""),
        pull_concurrency=8,
        pull_commit_runs=20_000,
        rollup_days=400,
        retention_days=None,
        sources=None,
        alerts=None,
        app_url="http://localhost:8501",
        agent_prices=None,
    )


def test_a_token_or_password_is_never_shown_by_the_settings():
    loaded = load_settings(
        {
            "RUNS_API_TOKEN": "sk-live-123",
            "RUNS_PG_PASSWORD": "hunter2",
            "RUNS_CLICKHOUSE_PASSWORD": "ch-pw-9",
        }
    )
    for shown in (repr(loaded), str(loaded), f"{loaded.api_token}", repr(loaded.pg_password)):
        assert "sk-live-123" not in shown and "hunter2" not in shown and "ch-pw-9" not in shown
    assert loaded.api_token.reveal() == "sk-live-123" and loaded.pg_password.reveal() == "hunter2"
    assert loaded.clickhouse_password.reveal() == "ch-pw-9"


def test_the_s3_secret_is_never_shown_by_the_settings():
    loaded = load_settings({"RUNS_S3_SECRET_ACCESS_KEY": "wJalr-s3-secret"})
    for shown in (repr(loaded), str(loaded), f"{loaded.s3_secret_access_key}"):
        assert "wJalr-s3-secret" not in shown
    assert loaded.s3_secret_access_key.reveal() == "wJalr-s3-secret"


# ------------------------------------------------------------------ typed values


@pytest.mark.parametrize("env", GOOD)
def test_a_good_value_is_read_typed(env):
    text, expected = GOOD[env]
    found = getattr(load_settings({env: text}), settings.declared(env).attribute)
    assert found == expected and type(found) is type(expected)


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", " On "])
def test_booleans_accept_the_usual_words_for_on(text):
    assert load_settings({"RUNS_MASK_SECRETS": text}).mask_secrets is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off"])
def test_booleans_accept_the_usual_words_for_off(text):
    assert load_settings({"RUNS_MASK_SECRETS": text}).mask_secrets is False


@pytest.mark.parametrize(
    "text, expected",
    [
        ("512mb", MemorySize("512MB", 512 * 10**6)),
        ("1.5 GiB", MemorySize("1.5GiB", 1536 * 1024**2)),
        ("1MB", MemorySize("1MB", 10**6)),
        ("2tb", MemorySize("2TB", 2 * 10**12)),
    ],
)
def test_memory_sizes_are_read_in_the_units_duckdb_takes(text, expected):
    assert load_settings({"RUNS_MEMORY_LIMIT": text}).memory_limit == expected
    assert str(expected) == expected.text


def test_an_empty_edit_flow_url_means_no_link():
    assert load_settings({"RUNS_EDIT_FLOW_URL": "  "}).edit_flow_url == ""


def test_the_edit_flow_url_may_name_the_project():
    template = "https://cloud.example.com/projects/{project_id}/flows/{flow_id}"
    assert load_settings({"RUNS_EDIT_FLOW_URL": template}).edit_flow_url == template


# ------------------------------------------------------------------ values not allowed


@pytest.mark.parametrize(
    "env, value, allowed", BAD_CASES, ids=[f"{env}={value!r}" for env, value, _ in BAD_CASES]
)
def test_a_bad_value_is_named_in_one_line_with_what_is_allowed(env, value, allowed):
    with pytest.raises(SettingError) as raised:
        load_settings({env: value})
    message = str(raised.value)
    assert message.startswith(one_line(env, value) + allowed), message
    assert f", e.g. {env}=" in message and "\n" not in message
    assert isinstance(raised.value, StoreError)


def test_the_message_gives_an_example_that_is_allowed():
    for setting in SETTINGS:
        example = str(setting.problem("x")).rsplit(f"e.g. {setting.env}=", 1)[1]
        load_settings({setting.env: example})


def test_the_line_from_the_issue_reads_as_promised():
    with pytest.raises(SettingError) as raised:
        load_settings({"RUNS_LOCK_WAIT_SECONDS": "abc"})
    assert str(raised.value) == (
        "RUNS_LOCK_WAIT_SECONDS='abc' is not allowed: use a number of "
        "seconds >= 0, e.g. RUNS_LOCK_WAIT_SECONDS=30"
    )


def test_a_value_with_a_line_break_still_gives_one_line():
    with pytest.raises(SettingError) as raised:
        load_settings({"RUNS_MAX_FILE_GB": "1\n2"})
    assert str(raised.value).startswith(r"RUNS_MAX_FILE_GB='1\n2' is not allowed")


def test_every_bad_setting_gets_its_own_line():
    with pytest.raises(SettingError) as raised:
        load_settings({"RUNS_MASK_SECRETS": "maybe", "RUNS_LIVE_SECONDS": "abc"})
    assert str(raised.value).splitlines() == [
        settings.declared("RUNS_MASK_SECRETS").problem("maybe"),
        settings.declared("RUNS_LIVE_SECONDS").problem("abc"),
    ]


# ------------------------------------------------------------------ reading the environment


def test_the_current_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("RUNS_LOCK_WAIT_SECONDS", "5")
    first = settings.current()
    assert first.lock_wait_seconds == 5.0 and settings.current() is first  # parsed once
    monkeypatch.setenv("RUNS_LOCK_WAIT_SECONDS", "7")
    assert settings.current().lock_wait_seconds == 7.0
    monkeypatch.setenv("RUNS_LOCK_WAIT_SECONDS", "abc")
    with pytest.raises(SettingError, match="RUNS_LOCK_WAIT_SECONDS='abc'"):
        settings.current()


def test_the_older_readers_return_checked_typed_values(monkeypatch):
    monkeypatch.setenv("RUNS_LIVE_SECONDS", "4")
    monkeypatch.setenv("RUNS_MASK_SECRETS", "no")
    monkeypatch.setenv("RUNS_EDIT_FLOW_URL", "https://x.example/{flow_id}")
    assert settings.get_number("RUNS_LIVE_SECONDS") == 4.0
    assert settings.get_bool("RUNS_MASK_SECRETS") is False
    assert settings.get("RUNS_EDIT_FLOW_URL") == "https://x.example/{flow_id}"
    monkeypatch.setenv("RUNS_LOCK_WAIT_SECONDS", "abc")  # no longer silently 30
    with pytest.raises(SettingError, match="RUNS_LOCK_WAIT_SECONDS='abc'"):
        settings.get_number("RUNS_LOCK_WAIT_SECONDS")


def test_the_record_bounds_are_read_from_the_typed_settings(monkeypatch):
    monkeypatch.setenv("RUNS_MAX_RECORD_MB", "0.5")
    monkeypatch.setenv("RUNS_MAX_FILE_GB", "2")
    assert limits.max_record_chars() == 512 * 1024
    assert limits.max_file_bytes() == 2 * 1024**3
    assert "RUNS_MAX_RECORD_MB (0.5 MB)" in limits.record_too_large_reason()
    assert "RUNS_MAX_FILE_GB (2 GB)" in limits.file_too_large_message("f.jsonl")


def test_a_bad_ingest_memory_limit_is_a_setting_error_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNS_INGEST_MEMORY_LIMIT", "lots")
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("one")])
    with pytest.raises(SettingError, match=r"^RUNS_INGEST_MEMORY_LIMIT='lots' is not allowed"):
        ingest_paths(tmp_path / "runs.duckdb", [path])


# ------------------------------------------------------------------ the command line

CLI_CASES = [
    (env, values[0]) for env, (values, _) in BAD.items() if values and "\0" not in values[0]
]


@pytest.mark.parametrize("env, value", CLI_CASES, ids=[env for env, _ in CLI_CASES])
def test_the_cli_exits_2_with_the_line_before_any_work(tmp_path, env, value):
    path = write_jsonl(tmp_path / "runs.jsonl", [simple_run("one")])
    db = tmp_path / "runs.duckdb"
    done = run_cli("ingest", str(path), "--db", str(db), "--progress", "never", env={env: value})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {settings.declared(env).problem(value)}\n"
    assert not db.exists(), "a bad setting must stop the CLI before it opens the database"


def test_the_cli_checks_settings_a_command_would_not_read(tmp_path):
    done = run_cli(
        "export",
        "--db",
        str(tmp_path / "none.duckdb"),
        env={"RUNS_EDIT_FLOW_URL": "ftp://x/{flow_id}", "RUNS_MASK_SECRETS": "maybe"},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "error: RUNS_EDIT_FLOW_URL",
        "error: RUNS_MASK_SECRETS",
    ]


def test_the_cli_help_works_whatever_the_settings():
    done = run_cli("ingest", "--help", env={"RUNS_DB": "", "RUNS_LIVE_SECONDS": "abc"})
    assert done.returncode == 0 and "default: $RUNS_DB or data/runs.duckdb" in done.stdout


# ------------------------------------------------------------------ the app

APP_CASES = [
    (None, "RUNS_LIVE_SECONDS", "abc"),  # read by the header, before the store
    ("pages/run.py", "RUNS_MASK_SECRETS", "maybe"),
    ("pages/run.py", "RUNS_EDIT_FLOW_URL", "ftp://editor.example/{flow_id}"),
    ("pages/insights.py", "RUNS_MEMORY_LIMIT", "lots"),  # was blamed on the database
    ("pages/insights.py", "RUNS_RETENTION_DAYS", "0"),
    ("pages/import.py", "RUNS_DB", ""),
    ("pages/import.py", "RUNS_MAX_FILE_GB", "lots"),
]


@pytest.mark.parametrize("page, env, value", APP_CASES, ids=[env for _, env, _ in APP_CASES])
def test_a_page_shows_the_line_as_an_error_and_no_traceback(
    empty_db, app_env, monkeypatch, page, env, value
):
    app_env(empty_db)
    monkeypatch.setenv(env, value)
    at = app_test(page, {"id": "any"} if page == "pages/run.py" else None)
    assert not at.exception, at.exception
    assert [error.value for error in at.error] == [settings.declared(env).problem(value)]
