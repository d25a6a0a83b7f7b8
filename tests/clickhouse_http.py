"""A ClickHouse server for the tests: ClickHouse's own engine (chdb) behind the part of ClickHouse's
HTTP interface that clickhouse-connect uses.

The store's `clickhouse://` path is clickhouse-connect's HTTP client; testing it against a mock
would test the mock. Here every statement runs in the real engine, and only the HTTP envelope is
ours, written after ClickHouse's HTTP interface and what clickhouse-connect sends (its 1.13
sources, `driver/_backend/http_sync.py` and `httpcommon.py`):

- POST (or GET) to `/`: the statement is the `query` URL parameter followed by the body, or the
  body alone; the body may be compressed (Content-Encoding gzip, deflate, zstd, lz4) or be
  multipart/form-data holding `query` and `param_*` fields (what the client sends when the
  parameters are too long for a URL).
- `INSERT ... FORMAT F` followed by data in the body (or in the body after the `query`
  parameter) loads that data in format F (clickhouse-connect sends Arrow and Native).
- The output format is the statement's trailing `FORMAT F` (Native for queries, JSON for column
  probes, Arrow for `query_arrow`), else `default_format`, else TabSeparated.
- `param_NAME` binds `{NAME:Type}`; `database` is the current database; every other URL parameter
  is a setting, applied with SET (the HTTP-only ones are accepted and dropped).
- Credentials from Basic auth, X-ClickHouse-User / X-ClickHouse-Key, or `user` / `password`
  parameters (none: user `default`, no password). A wrong one is refused as ClickHouse refuses
  it: HTTP 403, X-ClickHouse-Exception-Code 516, `Code: 516. DB::Exception: ...`.
- Any other error: the HTTP status ClickHouse gives its code (400, 404, 500, ...), the code in
  X-ClickHouse-Exception-Code and `Code: N. DB::Exception: ... (NAME) (version V)` as the body.
- `/ping` answers `Ok.`

Not served: sessions (`session_id` is accepted and ignored: each request is its own session),
progress headers, compressed responses (Accept-Encoding is answered with an identity body, which
HTTP allows), external data.

chdb holds one store directory per process, so the tests run this server in a process of its
own (`running(...)`), as a real server would be: `python tests/clickhouse_http.py --path DIR`
prints the port it listens on, with the password of user `default` from the environment variable
CLICKHOUSE_HTTP_PASSWORD.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import re
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

PASSWORD_VARIABLE = "CLICKHOUSE_HTTP_PASSWORD"

# URL parameters that are not settings, or settings only the HTTP layer reads.
_NOT_SETTINGS = {
    "query",
    "database",
    "default_format",
    "user",
    "password",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "buffer_size",
    "wait_end_of_query",
    "client_protocol_version",
    "quota_key",
    "role",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "enable_http_compression",
}

# The HTTP status ClickHouse answers each kind of error with (its exceptionCodeToHTTPStatus).
_STATUS_OF_ERROR = {
    401: {"REQUIRED_PASSWORD"},
    403: {
        "UNKNOWN_USER",
        "WRONG_PASSWORD",
        "AUTHENTICATION_FAILED",
        "SET_NON_GRANTED_ROLE",
        "ACCESS_DENIED",
    },
    400: {
        "BAD_ARGUMENTS",
        "CANNOT_PARSE_TEXT",
        "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_DATE",
        "CANNOT_PARSE_DATETIME",
        "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        "DUPLICATE_COLUMN",
        "ILLEGAL_COLUMN",
        "THERE_IS_NO_COLUMN",
        "SYNTAX_ERROR",
        "INCORRECT_DATA",
        "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    },
    404: {
        "UNKNOWN_TABLE",
        "UNKNOWN_FUNCTION",
        "UNKNOWN_IDENTIFIER",
        "UNKNOWN_TYPE",
        "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE",
        "UNKNOWN_SETTING",
        "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT",
        "UNKNOWN_DATABASE_ENGINE",
        "UNKNOWN_TYPE_OF_QUERY",
    },
}
_CODE = re.compile(r"Code: (?P<code>\d+)\. (?P<rest>DB::Exception: .*)", re.S)
_NAME = re.compile(r"\((?P<name>[A-Z_]+)\)\s*$")
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(?P<format>\w+)\s*;?\s*\Z", re.I)
# An INSERT with data: the statement, then FORMAT F, then (after a line break) the data.
_INSERT_HEAD = re.compile(
    rb"\A\s*(?P<insert>INSERT\b.*?)\s+FORMAT\s+(?P<format>\w+)[ \t]*(?:\r?\n|\Z)", re.I | re.S
)


@dataclass
class ClickHouseError(Exception):
    """An error as ClickHouse reports it: its code, name and `DB::Exception: ...` text."""

    code: int
    text: str
    name: str = ""

    @classmethod
    def from_engine(cls, error: Exception) -> ClickHouseError:
        message = str(error)
        found = _CODE.search(message)
        if not found:
            return cls(1001, f"DB::Exception: {message.strip()} (STD_EXCEPTION)", "STD_EXCEPTION")
        name = _NAME.search(found["rest"])
        return cls(int(found["code"]), found["rest"].strip(), name["name"] if name else "")

    @property
    def status(self) -> int:
        return next(
            (status for status, names in _STATUS_OF_ERROR.items() if self.name in names), 500
        )


@dataclass
class Request:
    """What one HTTP request asks of the engine."""

    sql: str
    data: bytes | None = None  # an INSERT's data, when the statement has some
    data_format: str = ""
    params: dict[str, str] = field(default_factory=dict)  # for {name:Type}
    database: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    default_format: str = "TabSeparated"


class Engine:
    """The chdb store all requests share; each request gets its own connection (its own USE and
    SET), as each HTTP request is its own session on a ClickHouse server."""

    def __init__(self, path: Path):
        import chdb

        self._chdb = chdb
        self.path = str(path)
        self._keep = chdb.connect(self.path)  # holds the engine open between requests
        self.version = str(self._keep.query("SELECT version()", "TabSeparated")).strip()
        self.timezone = str(self._keep.query("SELECT timezone()", "TabSeparated")).strip()

    def run(self, request: Request) -> tuple[bytes, str, dict]:
        """(body, output format, summary) of one request; ClickHouseError when it fails."""
        con = self._chdb.connect(self.path)
        try:
            if request.database:
                self._do(con, f"USE `{_name(request.database)}`")
            for name, value in request.settings.items():
                self._do(con, f"SET {_name(name)} = '{_quoted(value)}'")
            if request.data is not None:
                return b"", "", self._insert(con, request)
            return self._query(con, request)
        finally:
            con.close()

    def _insert(self, con, request: Request) -> dict:
        try:
            with con.send_insert(request.sql, request.data_format) as inserter:
                if request.data:
                    inserter.append(request.data)
                written = inserter.finish()
        except Exception as error:
            raise ClickHouseError.from_engine(error) from None
        return {
            "written_rows": str(written.rows_written),
            "written_bytes": str(written.bytes_written),
        }

    def _query(self, con, request: Request) -> tuple[bytes, str, dict]:
        sql, output = request.sql, request.default_format
        trailing = _TRAILING_FORMAT.search(sql)
        if trailing:
            sql, output = sql[: trailing.start()], trailing["format"]
        try:
            result = con.query(sql, output, params=request.params)
        except Exception as error:
            raise ClickHouseError.from_engine(error) from None
        body = result.bytes() if hasattr(result, "bytes") else bytes(result)
        summary = {
            "read_rows": str(_call(result, "rows_read")),
            "read_bytes": str(_call(result, "bytes_read")),
        }
        return body, output, summary

    def _do(self, con, sql: str) -> None:
        try:
            con.query(sql, "TabSeparated")
        except Exception as error:
            raise ClickHouseError.from_engine(error) from None

    def close(self) -> None:
        self._keep.close()


def _call(result, name: str) -> int:
    method = getattr(result, name, None)
    return int(method()) if callable(method) else 0


def _name(text: str) -> str:
    """A database or setting name from the URL, refused unless a plain identifier."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ClickHouseError(
            115,
            f"DB::Exception: Unknown setting or database {text!r}. (UNKNOWN_SETTING)",
            "UNKNOWN_SETTING",
        )
    return text


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


# ------------------------------------------------------------------ reading a request


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding (several lz4 or zstd frames may follow each other)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        from backports import zstd

        return zstd.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        out, rest = b"", body
        while rest:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out += decompressor.decompress(rest)
            rest = decompressor.unused_data
        return out
    raise ClickHouseError(
        1, f"DB::Exception: Unknown Content-Encoding {encoding!r}. (BAD_ARGUMENTS)", "BAD_ARGUMENTS"
    )


def _form_fields(body: bytes, content_type: str) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


def parse_request(url_query: str, body: bytes, content_type: str) -> Request:
    """The statement, its data, parameters, database and settings from the URL and the body."""
    fields = dict(parse_qsl(url_query, keep_blank_values=True))
    if content_type.startswith("multipart/form-data"):
        fields.update(_form_fields(body, content_type))
        body = b""
    request = _statement(fields.pop("query", ""), body)
    request.params = {
        name[len("param_") :]: value for name, value in fields.items() if name.startswith("param_")
    }
    request.settings = {
        name: value
        for name, value in fields.items()
        if not name.startswith("param_") and name not in _NOT_SETTINGS
    }
    request.database = fields.get("database", "")
    request.default_format = fields.get("default_format") or "TabSeparated"
    return request


def _statement(query: str, body: bytes) -> Request:
    """ClickHouse reads the `query` parameter and then the body as one statement; the data of an
    INSERT ... FORMAT F starts on the line after it."""
    text = query.encode() + (b"\n" if query and body else b"") + body
    insert = _INSERT_HEAD.match(text)
    if insert:
        return Request(insert["insert"].decode(), text[insert.end() :], insert["format"].decode())
    return Request(text.decode())


# ------------------------------------------------------------------ the HTTP side


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def credentials(headers, url_query: str) -> Credentials:
    """Who the request says it is: Basic auth, ClickHouse's headers, or URL parameters."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("Basic "):
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        return Credentials(user, password)
    if headers.get("X-ClickHouse-User"):
        return Credentials(headers["X-ClickHouse-User"], headers.get("X-ClickHouse-Key", ""))
    fields = dict(parse_qsl(url_query))
    return Credentials(fields.get("user", "default"), fields.get("password", ""))


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and "query" not in url.query):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        self._serve(url.query, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else self._chunked()
        self._serve(urlsplit(self.path).query, body)

    def _chunked(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return b""
        body = b""
        while (size := int(self.rfile.readline().split(b";")[0].strip(), 16)) > 0:
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def _serve(self, url_query: str, body: bytes) -> None:
        query_id = dict(parse_qsl(url_query)).get("query_id") or str(uuid.uuid4())
        try:
            self._authenticate(credentials(self.headers, url_query))
            body = _decoded(body, self.headers.get("Content-Encoding", ""))
            request = parse_request(url_query, body, self.headers.get("Content-Type", ""))
            output, fmt, summary = self.server.engine.run(request)
        except ClickHouseError as error:
            self._fail(error, query_id)
            return
        headers = {
            "Content-Type": "application/octet-stream"
            if fmt in ("Native", "Arrow", "RowBinary")
            else "text/plain; charset=UTF-8",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(summary),
        }
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        self._reply(200, output, headers)

    def _authenticate(self, given: Credentials) -> None:
        expected = self.server.users.get(given.user)
        if expected is None or expected != given.password:
            raise ClickHouseError(
                516,
                f"DB::Exception: {given.user}: Authentication failed: password is incorrect, or "
                "there is no user with such name. (AUTHENTICATION_FAILED)",
                "AUTHENTICATION_FAILED",
            )

    def _fail(self, error: ClickHouseError, query_id: str) -> None:
        body = f"Code: {error.code}. {error.text} (version {self.server.engine.version})\n"
        self._reply(
            error.status,
            body.encode(),
            {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(error.code),
                "X-ClickHouse-Query-Id": query_id,
            },
        )

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, engine: Engine, users: dict[str, str], port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.engine = engine
        self.users = users

    @property
    def port(self) -> int:
        return self.server_address[1]


# ------------------------------------------------------------------ its own process


@contextmanager
def running(path: Path, password: str, timeout: float = 60) -> Iterator[int]:
    """The server in a process of its own on a store at `path`, user `default` with `password`;
    yields its port and stops it afterwards."""
    env = {**os.environ, PASSWORD_VARIABLE: password}
    child = subprocess.Popen(
        [sys.executable, __file__, "--path", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = _port_from(child, timeout)
        yield port
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _port_from(child: subprocess.Popen, timeout: float) -> int:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    line = found[0] if found else ""
    if not line.startswith("listening on 127.0.0.1:"):
        child.kill()
        raise RuntimeError(f"the ClickHouse test server did not start (said {line!r})")
    return int(line.rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    engine = Engine(args.path)
    server = Server(engine, {"default": os.environ.get(PASSWORD_VARIABLE, "")}, args.port)
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        engine.close()


if __name__ == "__main__":
    main()
