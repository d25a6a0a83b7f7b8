"""One connection to ClickHouse, whether its engine runs in this process (chdb) or on a server.

Both kinds are clickhouse-connect clients: its HTTP client for a server, and its chdb backend for
the engine in this process, which runs queries in the same Native format and binds parameters
the same way. So SQL, parameter binding and type conversion are one code path for both, and what
the tests prove of one holds of the other. `Connection` narrows the client to what the store
uses: rows, Arrow tables in and out, and statements.

Values are only ever bound as ClickHouse parameters, `{name:Type}` in the SQL and sent apart
from it: clickhouse-connect formats values into the SQL text itself when a query has no such
placeholder, so every call here checks that the parameters and the placeholders match.

Times are naive UTC, as everywhere in the store: columns are declared `DateTime64(6, 'UTC')`,
rows come back naive (clickhouse-connect's default for UTC columns) and Arrow tables have the
zone taken off.

Errors become the store's own, in one line a user can act on, and never carry the password.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
from clickhouse_connect.driver.exceptions import OperationalError

from runs_store import settings
from runs_store.domain.errors import DatabaseBusy, DatabaseUnreadable, StoreError
from runs_store.store.location import ChdbLocation, ClickHouseLocation

Params = Mapping[str, object]
T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\{(?P<name>\w+):(?P<type>[^{}]+)\}")
# ClickHouse's error codes for a user it does not know or a password it does not take.
_REFUSED_CODES = {192, 193, 194, 516}
_CONNECT_TIMEOUT_SECONDS = 10

# clickhouse-connect logs a failed request with its traceback before raising it; with no handler
# configured, Python would print that to stderr beside the store's one line. Its records still
# reach the handlers an application configures.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())


class ClickHouseError(StoreError):
    """ClickHouse refused or failed a statement; the message is ClickHouse's, in one line."""


class ClickHouseRefused(ClickHouseError):
    """The server refused the user or the password."""


class ClickHouseUnreachable(ClickHouseError):
    """No ClickHouse server answered at the location."""


class Connection:
    """A ClickHouse store's connection: `execute` (rows), `query_arrow`, `insert_arrow`,
    `command` (a statement without rows), `close`. Also a context manager."""

    def __init__(self, client: Client, location: ChdbLocation | ClickHouseLocation, secret: str):
        self._client = client
        self.location = location
        self._secret = secret
        # The cluster the store's tables are spread over (open_store's), None on one server.
        self.cluster: str | None = None
        # chdb's engine takes one statement at a time from this process's threads (a pull asks
        # which runs it lacks from its reading thread while it commits); a server, any number.
        self._lock = threading.Lock() if isinstance(location, ChdbLocation) else None

    def execute(self, sql: str, params: Params | None = None) -> list[tuple]:
        """The rows of a query, as tuples."""
        bound = bound_params(sql, params)
        return self._run(
            lambda: [tuple(row) for row in self._client.query(sql, parameters=bound).result_rows]
        )

    def query_arrow(self, sql: str, params: Params | None = None) -> pa.Table:
        """The result of a query as an Arrow table, times as naive UTC."""
        bound = bound_params(sql, params)
        table = self._run(lambda: self._client.query_arrow(sql, parameters=bound, use_strings=True))
        return naive_utc(table)

    def query_arrow_batches(
        self, sql: str, params: Params | None = None, batch_rows: int = 65_536
    ) -> pa.RecordBatchReader:
        """The result of a query as a stream of Arrow record batches of up to `batch_rows` rows
        (times as naive UTC), read from ClickHouse as they are consumed. On chdb the engine is
        held until the stream is read to its end or dropped."""
        bound = bound_params(sql, params)
        settings = {"max_block_size": batch_rows}

        def batches() -> Iterator[pa.RecordBatch]:
            if self._lock is not None:
                self._lock.acquire()
            try:
                stream = self._client.query_arrow_stream(
                    sql, parameters=bound, settings=settings, use_strings=True
                )
                with stream:
                    for batch in stream:
                        yield from naive_utc(pa.Table.from_batches([batch])).to_batches()
            except (DriverError, OSError) as error:
                raise store_error(error, self.location, self._secret) from None
            finally:
                if self._lock is not None:
                    self._lock.release()

        stream = batches()
        first = next(stream, None)
        if first is None:  # no rows: the columns are asked for on their own
            empty = self.query_arrow(f"SELECT * FROM ({sql}) LIMIT 0", params)
            return pa.RecordBatchReader.from_batches(empty.schema, iter(()))
        rest = itertools.chain([first], stream)
        return pa.RecordBatchReader.from_batches(first.schema, rest)

    def insert_arrow(self, table_name: str, table: pa.Table) -> None:
        """Appends an Arrow table to a table with the same column names (the others take their
        defaults)."""
        self._run(lambda: self._client.insert_arrow(table_name, table))

    def command(self, sql: str, params: Params | None = None) -> None:
        """A statement that returns no rows: DDL, INSERT ... SELECT, DELETE, SYSTEM, OPTIMIZE."""
        bound = bound_params(sql, params)
        self._run(lambda: self._client.command(sql, parameters=bound))

    def set_setting(self, name: str, value: str) -> None:
        """A ClickHouse setting for every later statement of this connection."""
        self._client.set_client_setting(name, value)

    def use(self, database: str) -> None:
        """Unqualified table names in later statements name tables of `database`."""
        self._client.database = database

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _run(self, call: Callable[[], T]) -> T:
        try:
            if self._lock is None:
                return call()
            with self._lock:
                return call()
        except (DriverError, OSError) as error:
            raise store_error(error, self.location, self._secret) from None


def bound_params(sql: str, params: Params | None) -> dict[str, object] | None:
    """`params` when each has its `{name:Type}` placeholder in `sql` and each placeholder its
    value (so clickhouse-connect binds them on the server, never into the SQL text)."""
    wanted = {found["name"] for found in _PLACEHOLDER.finditer(sql)}
    given = set(params or ())
    if wanted != given:
        raise ValueError(
            f"parameters {sorted(given)} do not match the placeholders {sorted(wanted)} of {sql!r}"
        )
    return dict(params) if params else None


def naive_utc(table: pa.Table) -> pa.Table:
    """The table with every zoned timestamp column as naive UTC (the same instants)."""
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit), f.nullable, f.metadata)
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields, table.schema.metadata))


# ---------------------------------------------------------------- opening


def connect_http(location: ClickHouseLocation, password: str | None = None) -> Connection:
    """A connection to the server at `location`, the password from RUNS_CLICKHOUSE_PASSWORD
    unless given. Raises ClickHouseRefused or ClickHouseUnreachable in one line."""
    if password is None:
        password = settings.current().clickhouse_password.reveal()
    try:
        client = clickhouse_connect.get_client(
            host=location.host.strip("[]"),
            port=location.port,
            username=location.user,
            password=password,
            secure=location.tls,
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            # Each request stands alone: no server session, so one connection may serve
            # several threads (a session allows one query at a time).
            autogenerate_session_id=False,
            # ClickHouse's message and error name, without the URL and server version.
            show_clickhouse_errors="scrub",
        )
    except (DriverError, OSError) as error:
        raise store_error(error, location, password) from None
    return Connection(client, location, password)


def connect_chdb(location: ChdbLocation, wait_seconds: float | None = None) -> Connection:
    """A connection to ClickHouse's engine in this process, on the store at `location.path`
    (created when missing). Waits up to RUNS_LOCK_WAIT_SECONDS while another process holds
    it, then raises DatabaseBusy; chdb holds one store per process, so another path while one
    is open raises DatabaseUnreadable."""
    if wait_seconds is None:
        wait_seconds = settings.current().lock_wait_seconds
    location.path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        # Asked first, as chdb prints its own lines when it finds the store locked.
        holder = _other_holder(location.path)
        if holder is None:
            try:
                client = clickhouse_connect.get_client(interface="chdb", path=str(location.path))
                return Connection(client, location, "")
            except Exception as error:  # chdb raises RuntimeError, clickhouse-connect its own
                holder = _other_holder(location.path)
                if holder is None:
                    raise DatabaseUnreadable(
                        f"Cannot open the ClickHouse store {location}: {_one_line(str(error))}"
                    ) from None
        if time.monotonic() >= deadline:
            raise DatabaseBusy(
                f"The ClickHouse store {location} is in use by another process (process "
                f"{holder}), for example an ingest or another Runs Explorer. Wait for it to "
                "finish and try again."
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _other_holder(path: Path) -> int | None:
    """The process id of another process serving the store, if one does. ClickHouse writes its
    process id into the `status` file of the directory it serves and locks that file for as
    long as it runs (this process's own engine holds it too, and may open it again)."""
    try:
        with open(path / "status", "rb") as file:
            text = file.read().decode(errors="replace")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            else:
                fcntl.flock(file, fcntl.LOCK_UN)
                return None  # left behind by a process that ended
    except FileNotFoundError:
        return None
    found = re.search(r"PID: (\d+)", text)
    pid = int(found.group(1)) if found else 0
    return None if pid == os.getpid() else pid


# ---------------------------------------------------------------- errors


def store_error(
    error: Exception, location: ChdbLocation | ClickHouseLocation, secret: str
) -> ClickHouseError:
    """The store's one-line error for what the driver raised, without the password."""
    code = getattr(error, "code", None)
    if code in _REFUSED_CODES:
        found: ClickHouseError = ClickHouseRefused(
            f"ClickHouse at {location} refused user {getattr(location, 'user', '')!r}: "
            "check the user in RUNS_DB (or --db) and the password in RUNS_CLICKHOUSE_PASSWORD"
        )
    elif isinstance(error, OperationalError | OSError) and code is None:
        found = ClickHouseUnreachable(
            f"Cannot reach ClickHouse at {location}: {_reason(error)}. Check the host and port "
            "in RUNS_DB (or --db) and that the server is running."
        )
    else:
        found = ClickHouseError(f"ClickHouse at {location}: {_server_message(error)}")
    return _without(found, secret)


def _server_message(error: Exception) -> str:
    """ClickHouse's own `Code: N. DB::Exception: ...` text when the driver quotes it."""
    text = _one_line(str(error))
    _, quoted, message = text.partition("server response: ")
    return message if quoted else text


def _reason(error: BaseException) -> str:
    """The operating system's word for a failed connection (connection refused, name not
    known, timed out), from the chain of causes."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        with suppress(AttributeError):
            reason = seen.reason  # type: ignore[attr-defined]  # urllib3's MaxRetryError
            if isinstance(reason, BaseException):
                seen = reason
                continue
        seen = seen.__cause__ or seen.__context__
    return _one_line(str(error)) or type(error).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _without(error: ClickHouseError, secret: str) -> ClickHouseError:
    if secret and secret in str(error):
        return type(error)(str(error).replace(secret, "***"))
    return error
