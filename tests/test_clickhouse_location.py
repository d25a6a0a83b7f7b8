"""RUNS_DB / --db name a DuckDB file, ClickHouse's engine in this process (chdb:PATH) or a
ClickHouse server (clickhouse://USER@HOST:PORT/DATABASE); anything else is one line naming the
variable and what is allowed, and a password in the URL is refused without being repeated."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs_store.domain.errors import SettingError, StoreError
from runs_store.store.location import (
    ChdbLocation,
    ClickHouseLocation,
    DuckDBLocation,
    current_location,
    parse_location,
)

GOOD = {
    "data/runs.duckdb": DuckDBLocation(Path("data/runs.duckdb")),
    "~/runs/explorer.duckdb": DuckDBLocation(Path.home() / "runs" / "explorer.duckdb"),
    "C:runs.duckdb": DuckDBLocation(Path("C:runs.duckdb")),
    "chdb:/var/lib/runs": ChdbLocation(Path("/var/lib/runs")),
    "chdb:~/runs-store": ChdbLocation(Path.home() / "runs-store"),
    "CHDB:store": ChdbLocation(Path("store")),
    "clickhouse://default@127.0.0.1:8124/runs": ClickHouseLocation(
        "default", "127.0.0.1", 8124, "runs"
    ),
    "clickhouse://reader@ch.example.com/runs_prod": ClickHouseLocation(
        "reader", "ch.example.com", 8123, "runs_prod"
    ),
    "clickhouses://reader@ch.example.com/runs": ClickHouseLocation(
        "reader", "ch.example.com", 8443, "runs", tls=True
    ),
    "ClickHouses://reader@ch.example.com:443/runs": ClickHouseLocation(
        "reader", "ch.example.com", 443, "runs", tls=True
    ),
    "clickhouse://ch.internal/runs": ClickHouseLocation("default", "ch.internal", 8123, "runs"),
    "clickhouse://svc%2Druns@[::1]:8123/runs": ClickHouseLocation(
        "svc-runs", "[::1]", 8123, "runs"
    ),
}

BAD = [
    "",
    "   ",
    "a\0b",
    "chdb:",
    "chdb:  ",
    "postgres://user@db/runs",
    "clickhouse://",
    "clickhouse://host",
    "clickhouse://host/",
    "clickhouse://host:port/runs",
    "clickhouse://host:0/runs",
    "clickhouse://host:65536/runs",
    "clickhouse://host/runs-prod",
    "clickhouse://host/runs/extra",
    "clickhouse://host/runs?secure=1",
    "clickhouse://us er@host/runs",
    "clickhouse://@host/runs",
    "http://host:8123/runs",
]

ALLOWED = (
    "is not allowed: use a DuckDB file path, chdb:PATH (ClickHouse's engine in this process, a "
    "store in the directory PATH) or clickhouse://USER@HOST:PORT/DATABASE"
)


@pytest.mark.parametrize("text", GOOD)
def test_a_good_value_names_its_store(text):
    assert parse_location(text) == GOOD[text]


@pytest.mark.parametrize("text", BAD)
def test_a_bad_value_is_one_line_naming_the_variable_and_what_is_allowed(text):
    with pytest.raises(SettingError) as raised:
        parse_location(text)
    message = str(raised.value)
    assert message.startswith(f"RUNS_DB={text!r} {ALLOWED}")
    assert "\n" not in message and "RUNS_CLICKHOUSE_PASSWORD" in message
    assert isinstance(raised.value, StoreError)  # the CLI's one line and exit 2, the app's st.error


@pytest.mark.parametrize(
    "text, password",
    [
        ("clickhouse://default:hunter2@127.0.0.1:8123/runs", "hunter2"),
        ("clickhouses://reader:p@ss/w:rd@ch.example.com/runs", "p@ss/w:rd"),
        ("clickhouse://reader:@host/runs", ""),
    ],
)
def test_a_password_in_the_url_is_refused_without_repeating_it(text, password):
    with pytest.raises(SettingError) as raised:
        parse_location(text)
    message = str(raised.value)
    assert "holds a password" in message and "RUNS_CLICKHOUSE_PASSWORD" in message
    assert "\n" not in message
    if password:
        assert password not in message
    user = text.split("://")[1].split(":")[0]
    assert f"e.g. RUNS_DB='{text.split('://')[0]}://{user}@" in message


def test_the_location_shown_never_holds_a_password_and_says_its_defaults():
    location = parse_location("clickhouses://reader@ch.example.com/runs")
    assert str(location) == "clickhouses://reader@ch.example.com:8443/runs"
    assert str(parse_location("chdb:/srv/runs")) == "chdb:/srv/runs"


def test_runs_db_is_read_from_the_environment_and_db_overrides_it(monkeypatch):
    monkeypatch.setenv("RUNS_DB", "clickhouse://default@db.internal/runs")
    assert current_location() == ClickHouseLocation("default", "db.internal", 8123, "runs")
    assert current_location("chdb:/tmp/store") == ChdbLocation(Path("/tmp/store"))
    monkeypatch.delenv("RUNS_DB")
    assert current_location() == DuckDBLocation(Path("data/runs.duckdb"))


def test_a_bad_db_option_is_named_as_the_option():
    with pytest.raises(SettingError, match=r"^--db='postgres://x@y/z' is not allowed: use "):
        current_location("postgres://x@y/z")
