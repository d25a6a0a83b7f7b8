"""What the alerts remember between checks, in the store itself: the last judgement of each rule
per flow (`alert_checks`), every incident from its first firing to its resolution
(`alert_incidents`), and the outbox of messages to deliver with each one's attempts
(`alert_deliveries`). Kept in the store, so that a new process (cron's next `alerts check`, a
restart of `alerts watch`) neither repeats an incident nor forgets a message not yet delivered.

The tables are made on first use (CREATE TABLE IF NOT EXISTS), beside the schema versioned in
`database.py`, and declared once here for both engines. Rows are written whole, by key:

- DuckDB replaces a row in place (DELETE and INSERT), in the caller's transaction (`atomic`);
- ClickHouse appends the row's new version: each table is a ReplacingMergeTree versioned by
  `saved_at` (the time of the write, microseconds; on a tie the row inserted last wins) and read
  with FINAL (`backend.latest`); a check row that is gone is written once more with
  `is_deleted = 1`. Both read back the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from runs_store.store.backend import CLICKHOUSE, dialect, latest, rows

# Column kinds: (DuckDB type, ClickHouse type, Arrow type name).
_TEXT = ("VARCHAR", "String", "string")
_MAYBE_TEXT = ("VARCHAR", "Nullable(String)", "string")
_TIME = ("TIMESTAMP", "DateTime64(6, 'UTC')", "timestamp")
_MAYBE_TIME = ("TIMESTAMP", "Nullable(DateTime64(6, 'UTC'))", "timestamp")
_MAYBE_NUMBER = ("DOUBLE", "Nullable(Float64)", "float64")
_COUNT = ("BIGINT", "Int64", "int64")


@dataclass(frozen=True)
class CheckRow:
    """The last judgement of a rule on a flow (and a new error's signature, `detail`)."""

    rule: str
    flow: str
    detail: str
    kind: str
    state: str  # firing | ok | not enough runs
    measured: float | None
    threshold: float | None
    runs: int
    window_start: datetime
    window_end: datetime
    summary: str
    query: str  # JSON: the Runs page's URL query for the runs behind it
    since: datetime  # when the rule and flow came to this state
    checked_at: datetime


@dataclass(frozen=True)
class IncidentRow:
    """One incident: a rule firing on a flow (and signature), from opened to resolved."""

    id: str
    rule: str
    flow: str
    detail: str
    kind: str
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolution: str | None  # "cleared", or why it was closed without a message
    measured: float | None  # the numbers of its latest firing judgement
    threshold: float | None
    runs: int
    window_start: datetime
    window_end: datetime
    summary: str
    query: str


@dataclass(frozen=True)
class DeliveryRow:
    """One message to one channel, and how delivering it went."""

    id: str  # the message's key and the channel: one row per message and channel, ever
    incident_id: str | None  # None for a digest or a test message
    channel: str
    kind: str  # firing | resolved | digest | test
    title: str
    message: str  # JSON of the Message
    state: str  # pending | sent | failed_config
    attempts: int
    next_attempt_at: datetime | None  # when a pending one is due
    detail: str | None  # the last attempt's outcome, one line, no secret
    created_at: datetime
    sent_at: datetime | None


PENDING, SENT, FAILED_CONFIG = "pending", "sent", "failed_config"

_KINDS = {
    "rule": _TEXT,
    "flow": _TEXT,
    "detail": _TEXT,
    "kind": _TEXT,
    "state": _TEXT,
    "measured": _MAYBE_NUMBER,
    "threshold": _MAYBE_NUMBER,
    "runs": _COUNT,
    "window_start": _TIME,
    "window_end": _TIME,
    "summary": _TEXT,
    "query": _TEXT,
    "since": _TIME,
    "checked_at": _TIME,
    "id": _TEXT,
    "opened_at": _TIME,
    "last_seen_at": _TIME,
    "resolved_at": _MAYBE_TIME,
    "resolution": _MAYBE_TEXT,
    "incident_id": _MAYBE_TEXT,
    "channel": _TEXT,
    "title": _TEXT,
    "message": _TEXT,
    "attempts": _COUNT,
    "next_attempt_at": _MAYBE_TIME,
    "created_at": _TIME,
    "sent_at": _MAYBE_TIME,
}


@dataclass(frozen=True)
class _Table:
    name: str
    row: type
    key: tuple[str, ...]
    deletable: bool = False  # rows may go: ClickHouse marks them is_deleted

    @property
    def columns(self) -> list[str]:
        return [f.name for f in fields(self.row)]


CHECKS = _Table("alert_checks", CheckRow, ("rule", "flow", "detail"), deletable=True)
INCIDENTS = _Table("alert_incidents", IncidentRow, ("id",))
DELIVERIES = _Table("alert_deliveries", DeliveryRow, ("id",))
TABLES = (CHECKS, INCIDENTS, DELIVERIES)


# ---------------------------------------------------------------- DDL


def duckdb_ddl(table: _Table) -> str:
    body = [f"{name} {_KINDS[name][0]}" for name in table.columns]
    body += ["saved_at TIMESTAMP", "is_deleted UTINYINT DEFAULT 0"]
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(body)})"


def clickhouse_table(table: _Table):
    """The table as the ClickHouse schema declares tables (one server or a cluster)."""
    from runs_store.store.clickhouse.schema import TIME, Table

    columns = tuple(f"{name} {_KINDS[name][1]}" for name in table.columns)
    columns += (f"saved_at {TIME} DEFAULT now64(6)", "is_deleted UInt8 DEFAULT 0")
    return Table(
        table.name,
        columns=columns,
        engine="ReplacingMergeTree",
        engine_args=("saved_at", "is_deleted"),
        order_by=f"({', '.join(table.key)})",
        shard_by="0",  # small tables: one shard keeps every version of a row together
    )


def ensure_tables(con) -> None:
    """Makes the alert tables where they are missing (idempotent, two processes at once too)."""
    if dialect(con) != CLICKHOUSE:
        for table in TABLES:
            con.execute(duckdb_ddl(table))
        return
    from runs_store.store.clickhouse.schema import create_statements

    for table in TABLES:
        for statement in create_statements(
            clickhouse_table(table), con.location.database, con.cluster
        ):
            con.command(statement)


def has_tables(con) -> bool:
    """Whether the alert tables exist (a store no check has run on yet has none)."""
    if dialect(con) == CLICKHOUSE:
        return bool(con.execute("EXISTS TABLE alert_deliveries")[0][0])
    import duckdb

    try:
        con.table(DELIVERIES.name)
    except duckdb.CatalogException:
        return False
    return True


@contextmanager
def atomic(con) -> Iterator[None]:
    """The writes of the block in one transaction on DuckDB (ClickHouse has none: each write
    there is one INSERT, ordered so that a run cut short is completed by the next)."""
    if dialect(con) == CLICKHOUSE:
        yield
        return
    from runs_store.store.database import transaction

    with transaction(con):
        yield


# ---------------------------------------------------------------- writing and reading rows


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _arrow(table: _Table, items: Sequence[Any], deleted: bool = False):
    import pyarrow as pa

    kinds = {"string": pa.string(), "timestamp": pa.timestamp("us")}
    kinds |= {"float64": pa.float64(), "int64": pa.int64()}
    saved = _now()
    columns = {
        name: pa.array([getattr(item, name) for item in items], kinds[_KINDS[name][2]])
        for name in table.columns
    }
    columns["saved_at"] = pa.array([saved] * len(items), pa.timestamp("us"))
    columns["is_deleted"] = pa.array([int(deleted)] * len(items), pa.uint8())
    return pa.table(columns)


def _write(con, table: _Table, items: Sequence[Any], deleted: bool = False) -> None:
    """Each row's new version (DuckDB: the row replaced; ClickHouse: a new version)."""
    if not items:
        return
    batch = _arrow(table, items, deleted)
    if dialect(con) == CLICKHOUSE:
        con.insert_arrow(table.name, batch)
        return
    _delete_keys(con, table, items)
    if not deleted:
        from runs_store.store.database import insert_arrow

        insert_arrow(con, table.name, batch)


def _delete_keys(con, table: _Table, items: Sequence[Any]) -> None:
    for chunk in _chunks(items):
        params: dict[str, Any] = {}
        matches = []
        for number, item in enumerate(chunk):
            parts = []
            for column in table.key:
                params[f"{column}{number}"] = getattr(item, column)
                parts.append(f"{column} = ${column}{number}")
            matches.append("(" + " AND ".join(parts) + ")")
        con.execute(f"DELETE FROM {table.name} WHERE {' OR '.join(matches)}", params)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read(con, table: _Table, where: str = "", params=None, tail: str = "") -> list:
    sql = (
        f"SELECT {', '.join(table.columns)} FROM {latest(con, table.name)} "
        f"WHERE is_deleted = 0 {('AND ' + where) if where else ''} {tail}"
    )
    return [table.row(*found) for found in rows(con, sql, params or {})]


# ---------------------------------------------------------------- checks


def read_checks(con) -> list[CheckRow]:
    if not has_tables(con):
        return []
    return _read(con, CHECKS, tail="ORDER BY rule, flow, detail")


def replace_checks(con, current: list[CheckRow], previous: list[CheckRow]) -> None:
    """The checks are now `current`: rows of `previous` not among them go."""
    kept = {(row.rule, row.flow, row.detail) for row in current}
    gone = [row for row in previous if (row.rule, row.flow, row.detail) not in kept]
    _write(con, CHECKS, gone, deleted=True)
    _write(con, CHECKS, current)


# ---------------------------------------------------------------- incidents


def open_incidents(con) -> list[IncidentRow]:
    return _read(con, INCIDENTS, "resolved_at IS NULL", tail="ORDER BY opened_at, id")


def incidents_of(con, rule: str, flow: str, detail: str) -> int:
    """How many incidents a rule, flow and detail have had (numbers the next one)."""
    sql = (
        f"SELECT count(*) FROM {latest(con, INCIDENTS.name)} WHERE is_deleted = 0 "
        "AND rule = $rule AND flow = $flow AND detail = $detail"
    )
    return int(rows(con, sql, {"rule": rule, "flow": flow, "detail": detail})[0][0])


def save_incidents(con, items: list[IncidentRow]) -> None:
    _write(con, INCIDENTS, items)


def recent_incidents(con, limit: int = 50) -> list[IncidentRow]:
    if not has_tables(con):
        return []
    return _read(
        con,
        INCIDENTS,
        tail="ORDER BY opened_at DESC, id DESC LIMIT $limit",
        params={"limit": limit},
    )


def incident(con, incident_id: str) -> IncidentRow | None:
    if not has_tables(con):
        return None
    found = _read(con, INCIDENTS, "id = $id", {"id": incident_id})
    return found[0] if found else None


# ---------------------------------------------------------------- deliveries


def add_deliveries(con, items: list[DeliveryRow]) -> list[DeliveryRow]:
    """Queues the deliveries the outbox does not hold yet (by id); returns those added."""
    if not items:
        return []
    ids = {item.id for item in items}
    held = {row.id for row in _deliveries_by_id(con, sorted(ids))}
    added = [item for item in items if item.id not in held]
    _write(con, DELIVERIES, added)
    return added


def _deliveries_by_id(con, ids: list[str]) -> list[DeliveryRow]:
    found: list[DeliveryRow] = []
    for chunk in _chunks(ids):
        params = {f"id{number}": value for number, value in enumerate(chunk)}
        listed = ", ".join(f"${name}" for name in params)
        found += _read(con, DELIVERIES, f"id IN ({listed})", params)
    return found


def due_deliveries(con, now: datetime) -> list[DeliveryRow]:
    """Pending deliveries whose next attempt is due, oldest first."""
    return _read(
        con,
        DELIVERIES,
        "state = $state AND (next_attempt_at IS NULL OR next_attempt_at <= $now)",
        {"state": PENDING, "now": now},
        tail="ORDER BY created_at, id",
    )


def pending_deliveries(con) -> list[DeliveryRow]:
    if not has_tables(con):
        return []
    return _read(con, DELIVERIES, "state = $state", {"state": PENDING}, "ORDER BY created_at, id")


def save_deliveries(con, items: list[DeliveryRow]) -> None:
    _write(con, DELIVERIES, items)


def recent_deliveries(con, limit: int = 50) -> list[DeliveryRow]:
    if not has_tables(con):
        return []
    return _read(
        con,
        DELIVERIES,
        tail="ORDER BY created_at DESC, id DESC LIMIT $limit",
        params={"limit": limit},
    )


def deliveries_of(con, incident_id: str) -> list[DeliveryRow]:
    if not has_tables(con):
        return []
    return _read(
        con, DELIVERIES, "incident_id = $incident", {"incident": incident_id}, "ORDER BY created_at"
    )
