"""Where the store lives: what a RUNS_DB (or --db) value names, read once into a typed location.

Beside a DuckDB file path (the default), a value may name ClickHouse: a server through its HTTP
interface (`clickhouse://USER@HOST:PORT/DATABASE`, `clickhouses://` for TLS) or ClickHouse's
engine in this process at a directory (`chdb:PATH`). Everything else about a store depends on
which of the three it is, so the text is parsed here, once, and the rest of the code matches on
the type.

A server's password never travels in the URL, where it would end up in shell history, process
lists and logs: a URL that holds one is refused, and the password is read from
RUNS_CLICKHOUSE_PASSWORD. No message here ever repeats a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from runs_store import settings
from runs_store.domain.errors import SettingError

HTTP_PORT = 8123
HTTPS_PORT = 8443

_ALLOWED = (
    "a DuckDB file path, chdb:PATH (ClickHouse's engine in this process, a store in the "
    "directory PATH) or clickhouse://USER@HOST:PORT/DATABASE (a ClickHouse server over HTTP; "
    f"clickhouses:// for TLS; PORT defaults to {HTTP_PORT}, or {HTTPS_PORT} with TLS; the "
    "password goes in RUNS_CLICKHOUSE_PASSWORD)"
)
_EXAMPLE = "clickhouse://default@localhost:8123/runs"

_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.S)
# Names are written into DDL (CREATE DATABASE, table names), so only plain identifiers.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_HOST_PORT = re.compile(rf"(?P<host>{_HOST.pattern})(?::(?P<port>\d{{1,5}}))?")
_USER = re.compile(r"[A-Za-z0-9_.@%+-]+")


@dataclass(frozen=True)
class DuckDBLocation:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class ChdbLocation:
    """ClickHouse's engine in this process, its data in the directory `path`."""

    path: Path
    # chdb holds one store per directory; its tables are kept in this database of it.
    database: str = "runs"

    def __str__(self) -> str:
        return f"chdb:{self.path}"


@dataclass(frozen=True)
class ClickHouseLocation:
    """A ClickHouse server reached through its HTTP interface; `str()` never holds a password."""

    user: str
    host: str
    port: int
    database: str
    tls: bool = False

    @property
    def scheme(self) -> str:
        return "clickhouses" if self.tls else "clickhouse"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.database}"


StoreLocation = DuckDBLocation | ChdbLocation | ClickHouseLocation


def parse_location(text: str, name: str = "RUNS_DB") -> StoreLocation:
    """The store a RUNS_DB / --db value names; SettingError with one line naming `name` and what
    is allowed when it names none."""
    if text.lower().startswith("chdb:"):
        return _chdb(text, name)
    scheme_match = _SCHEME.fullmatch(text.strip())
    if scheme_match is None:
        return DuckDBLocation(_path(text, name, text))
    scheme = scheme_match["scheme"].lower()
    if scheme not in ("clickhouse", "clickhouses"):
        raise _not_allowed(name, text)
    return _clickhouse(scheme == "clickhouses", scheme_match["rest"], text, name)


def current_location(override: str | None = None) -> StoreLocation:
    """The location the CLI's --db (`override`) names when given, else RUNS_DB's."""
    if override:
        return parse_location(str(override), "--db")
    return parse_location(settings.get("RUNS_DB"))


def _path(path: str, name: str, text: str) -> Path:
    if not path.strip() or "\0" in path:
        raise _not_allowed(name, text)
    return Path(path).expanduser()


def _chdb(text: str, name: str) -> ChdbLocation:
    return ChdbLocation(_path(text[len("chdb:") :], name, text))


def _clickhouse(tls: bool, rest: str, text: str, name: str) -> ClickHouseLocation:
    userinfo, at, address = rest.rpartition("@")
    if at and ":" in userinfo:
        raise SettingError(_password_refused(name, text, userinfo))
    host_port, slash, database = address.partition("/")
    found = _HOST_PORT.fullmatch(host_port)
    user = unquote(userinfo) if at else "default"
    if (
        not found
        or not slash
        or not _IDENTIFIER.fullmatch(database)
        or (at and not _USER.fullmatch(userinfo))
    ):
        raise _not_allowed(name, text)
    port = int(found["port"]) if found["port"] else (HTTPS_PORT if tls else HTTP_PORT)
    if not 1 <= port <= 65535:
        raise _not_allowed(name, text)
    return ClickHouseLocation(user, found["host"], port, database, tls)


def _password_refused(name: str, text: str, userinfo: str) -> str:
    user = userinfo.partition(":")[0]
    shown = text.replace(userinfo, f"{user}:***", 1)
    return (
        f"{name}={shown!r} is not allowed: it holds a password. Put the password in "
        f"RUNS_CLICKHOUSE_PASSWORD and leave it out of the URL, e.g. "
        f"{name}={shown.replace(f'{user}:***@', f'{user}@', 1)!r}"
    )


def _not_allowed(name: str, text: str) -> SettingError:
    return SettingError(f"{name}={text!r} is not allowed: use {_ALLOWED}, e.g. {name}={_EXAMPLE}")
