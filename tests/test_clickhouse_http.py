"""A ClickHouse server over HTTP: a refused password or a server that is not there is one line
that says what to check and never holds the password; and the chdb-backed server the store tests
use answers as ClickHouse's HTTP interface does (so what passes against it means something)."""

from __future__ import annotations

import base64
import gzip
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

import clickhouse_http
from conftest import refused_port
from runs_store.domain.errors import StoreError
from runs_store.store.clickhouse import open_store
from runs_store.store.clickhouse.connection import ClickHouseRefused, ClickHouseUnreachable
from runs_store.store.location import parse_location

pytestmark = pytest.mark.store

PASSWORD = "right-horse-battery"


@pytest.fixture(scope="module")
def server_port(tmp_path_factory):
    with clickhouse_http.running(
        tmp_path_factory.mktemp("clickhouse") / "server", PASSWORD
    ) as port:
        yield port


def call(port: int, query: str = "", body: bytes = b"", headers: dict | None = None, **params):
    """(status, headers, body) of one request, as urllib sees it."""
    url = f"http://127.0.0.1:{port}/?{urlencode({'query': query, **params} if query else params)}"
    headers = {"Authorization": basic("default", PASSWORD), **(headers or {})}
    request = urllib.request.Request(url, data=body or None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ------------------------------------------------------------------ the store's messages


def test_a_wrong_password_is_one_line_that_never_holds_it(server_port, monkeypatch):
    wrong = "not-the-password-7741"
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", wrong)
    location = parse_location(f"clickhouse://default@127.0.0.1:{server_port}/runs")
    with pytest.raises(ClickHouseRefused) as raised:
        open_store(location)
    message = str(raised.value)
    assert message == (
        f"ClickHouse at {location} refused user 'default': check the user in RUNS_DB (or --db) "
        "and the password in RUNS_CLICKHOUSE_PASSWORD"
    )
    assert wrong not in message and isinstance(raised.value, StoreError)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_unknown_user_is_refused_the_same_way(server_port, monkeypatch):
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
    with pytest.raises(ClickHouseRefused, match="refused user 'nobody'"):
        open_store(parse_location(f"clickhouse://nobody@127.0.0.1:{server_port}/runs"))


def test_no_server_at_the_address_is_one_line(monkeypatch, capfd):
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
    with refused_port() as port:
        location = parse_location(f"clickhouse://default@127.0.0.1:{port}/runs")
        with pytest.raises(ClickHouseUnreachable) as raised:
            open_store(location)
    assert str(raised.value) == (
        f"Cannot reach ClickHouse at {location}: connection refused. Check the host and port in "
        "RUNS_DB (or --db) and that the server is running."
    )
    assert "Traceback" not in capfd.readouterr().err  # the driver's own log stays quiet


# ------------------------------------------------------------- the test server speaks ClickHouse


def test_ping(server_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{server_port}/ping", timeout=30) as response:
        assert (response.status, response.read()) == (200, b"Ok.\n")


def test_a_query_answers_tab_separated_by_default_with_bound_parameters(server_port):
    status, headers, body = call(
        server_port, "SELECT {a:String}, {n:UInt8} + 1", param_a="x y", param_n="4"
    )
    assert (status, body) == (200, b"x y\t5\n")
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Query-Id"]


def test_the_statement_is_the_query_parameter_then_the_body(server_port):
    status, _, body = call(server_port, "SELECT 1 +", b"2 FORMAT CSV")
    assert (status, body) == (200, b"3\n")


def test_credentials_in_clickhouse_s_headers_and_in_the_url(server_port):
    by_headers = {"Authorization": "", "X-ClickHouse-User": "default", "X-ClickHouse-Key": PASSWORD}
    assert call(server_port, "SELECT 1", headers=by_headers)[0] == 200
    in_url = call(
        server_port, "SELECT 1", headers={"Authorization": ""}, user="default", password=PASSWORD
    )
    assert in_url[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": basic("default", "wrong")},
        {"Authorization": "", "X-ClickHouse-User": "default", "X-ClickHouse-Key": "wrong"},
        {"Authorization": ""},  # no credentials: user default without a password
    ],
)
def test_a_wrong_password_is_refused_as_clickhouse_refuses_it(server_port, headers):
    status, answer_headers, body = call(server_port, "SELECT 1", headers=headers)
    assert status == 403 and answer_headers["X-ClickHouse-Exception-Code"] == "516"
    assert body.startswith(b"Code: 516. DB::Exception: default: Authentication failed")
    assert b"(AUTHENTICATION_FAILED)" in body


@pytest.mark.parametrize(
    "query, status, code, name",
    [
        ("SELECT * FROM no_such_table", 404, "60", "UNKNOWN_TABLE"),
        ("SELEC 1", 400, "62", "SYNTAX_ERROR"),
        ("SELECT throwIf(1)", 500, "395", "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
    ],
)
def test_an_error_is_answered_as_clickhouse_answers_it(server_port, query, status, code, name):
    got_status, headers, body = call(server_port, query)
    assert got_status == status and headers["X-ClickHouse-Exception-Code"] == code
    assert body.startswith(f"Code: {code}. DB::Exception: ".encode())
    assert f"({name}) (version ".encode() in body


def test_an_insert_reads_its_data_after_its_format_and_a_gzip_body(server_port):
    assert (
        call(server_port, "CREATE TABLE IF NOT EXISTS gz (a UInt8, b String) ENGINE = Memory")[0]
        == 200
    )
    data = gzip.compress(b"INSERT INTO gz FORMAT CSV\n1,one\n2,two\n")
    assert call(server_port, body=data, headers={"Content-Encoding": "gzip"})[0] == 200
    assert call(server_port, "INSERT INTO gz FORMAT CSV", b"3,three\n")[0] == 200
    assert call(server_port, "SELECT sum(a), count() FROM gz FORMAT CSV")[2] == b"6,3\n"


def test_settings_travel_as_url_parameters(server_port):
    status, _, body = call(
        server_port, "SELECT getSetting('max_threads') FORMAT CSV", max_threads="3"
    )
    assert (status, body) == (200, b"3\n")
    status, headers, _ = call(server_port, "SELECT 1", no_such_setting="1")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "115"
