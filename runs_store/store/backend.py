"""The store, whichever engine holds it: a DuckDB file (the default), ClickHouse's engine in this
process (chdb), or a ClickHouse server.

Everything above the store takes a connection, `con`, and runs SQL through the three readers here
(`rows`, `frame`, `arrow`), which take the same SQL and named parameters for every engine. A query
written in SQL both engines read alike is written once: its `$name` placeholders are bound as
DuckDB's own, or rewritten for ClickHouse as the typed `{name:Type}` it requires (the type read
from the value). Where the engines' SQL differs, a query keeps one text per dialect
(`by_dialect`), and `dialect(con)` says which to run. Values are bound as parameters in every
case, never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from runs_store.store.location import (
    ChdbLocation,
    ClickHouseLocation,
    DuckDBLocation,
    StoreLocation,
    current_location,
)

DUCKDB = "duckdb"
CLICKHOUSE = "clickhouse"

if TYPE_CHECKING:  # pandas and pyarrow cost the CLI ~0.8 s at start: imported when used
    import pandas as pd
    import pyarrow as pa

Params = Mapping[str, Any]


def dialect(con) -> str:
    """DUCKDB or CLICKHOUSE: which SQL the connection's engine reads."""
    return DUCKDB if isinstance(con, duckdb.DuckDBPyConnection) else CLICKHOUSE


def by_dialect(con, duckdb_sql: str, clickhouse_sql: str) -> str:
    """The text of a query that differs between the engines, for this connection's."""
    return clickhouse_sql if dialect(con) == CLICKHOUSE else duckdb_sql


def rows(con, sql: str, params: Params | None = None) -> list[tuple]:
    if dialect(con) == CLICKHOUSE:
        return con.execute(*clickhouse_params(sql, params))
    return con.execute(sql, dict(params or {})).fetchall()


def arrow(con, sql: str, params: Params | None = None) -> pa.Table:
    if dialect(con) == CLICKHOUSE:
        return con.query_arrow(*clickhouse_params(sql, params))
    return con.sql(sql, params=dict(params) if params else None).to_arrow_table()


def arrow_batches(
    con, sql: str, params: Params | None = None, batch_rows: int = 50_000
) -> pa.RecordBatchReader:
    """The result as a stream of Arrow record batches (of about `batch_rows` rows), so that a
    large result never sits in memory whole."""
    if dialect(con) == CLICKHOUSE:
        return con.query_arrow_batches(*clickhouse_params(sql, params), batch_rows=batch_rows)
    return con.sql(sql, params=dict(params) if params else None).to_arrow_reader(batch_rows)


def latest(con, table: str, alias: str = "") -> str:
    """A table of the store as a read names it in FROM: on ClickHouse `table FINAL`, each key
    once in its newest version (see docs/clickhouse.md), with its alias where FINAL wants it."""
    named = f"{table} AS {alias}" if alias else table
    return f"{named} FINAL" if dialect(con) == CLICKHOUSE else named


def generation(con) -> int:
    """A number that grows with every write to the store: caches key on it to notice new data."""
    if dialect(con) == CLICKHOUSE:
        from runs_store.store.clickhouse import schema

        return schema.generation(con)
    from runs_store.store.database import generation as duckdb_generation

    return duckdb_generation(con)


def frame(con, sql: str, params: Params | None = None) -> pd.DataFrame:
    if dialect(con) == CLICKHOUSE:
        return con.query_arrow(*clickhouse_params(sql, params)).to_pandas()
    return con.execute(sql, dict(params or {})).df()


# ---------------------------------------------------------------- ClickHouse's typed parameters


def clickhouse_params(sql: str, params: Params | None) -> tuple[str, dict[str, Any]]:
    """The SQL with each `$name` placeholder written `{name:Type}`, as ClickHouse binds it, the
    type read from the value. DuckDB's tokenizer finds the placeholders, so a `$` inside a string
    or a comment stays as it is."""
    values = dict(params or {})
    tokens = duckdb.tokenize(sql)
    bounds = [start for start, _ in tokens] + [len(sql)]
    pieces, last = [], 0
    for index, ((start, kind), end) in enumerate(zip(tokens, bounds[1:], strict=True)):
        if kind != duckdb.token_type.operator or sql[start:end].strip() != "$":
            continue
        if index + 1 >= len(tokens):
            continue
        name_start = tokens[index + 1][0]
        name_end = bounds[index + 2]
        name = sql[name_start:name_end].strip()
        if name not in values:
            raise ValueError(f"no value for ${name}")
        pieces += [sql[last:start], f"{{{name}:{clickhouse_type(values[name])}}}"]
        last = name_start + len(name)
    return "".join(pieces) + sql[last:], values


def clickhouse_type(value: Any) -> str:
    """The ClickHouse type a Python value is bound as."""
    if value is None:
        return "Nullable(String)"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, datetime):  # naive UTC, as the store's times (not the server's zone)
        return "DateTime64(6, 'UTC')"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list | tuple):
        kinds = {clickhouse_type(item) for item in value if item is not None}
        inner = kinds.pop() if len(kinds) == 1 else "String"
        return f"Array({inner})"
    raise TypeError(f"no ClickHouse type for a {type(value).__name__} parameter")


# ---------------------------------------------------------------- opening a store


@contextmanager
def open_store(
    override: str | Path | None = None,
    read_only: bool = False,
    cluster: str | None = None,
    wait_seconds: float | None = None,
) -> Iterator[Any]:
    """A connection to the store RUNS_DB (or `override`, the CLI's --db) names, its schema made
    or brought up to date: DuckDB's connection, or a ClickHouse one."""
    location = current_location(None if override is None else str(override))
    with open_location(location, read_only, cluster, wait_seconds) as con:
        yield con


@contextmanager
def open_location(
    location: StoreLocation,
    read_only: bool = False,
    cluster: str | None = None,
    wait_seconds: float | None = None,
) -> Iterator[Any]:
    """`wait_seconds`: how long a DuckDB file another process holds is waited for (default
    RUNS_LOCK_WAIT_SECONDS)."""
    if isinstance(location, DuckDBLocation):
        from runs_store.store.database import open_db

        with open_db(location.path, read_only=read_only, wait_seconds=wait_seconds) as con:
            yield con
        return
    from runs_store.store import clickhouse

    assert isinstance(location, ChdbLocation | ClickHouseLocation)
    clickhouse_con = clickhouse.open_store(location, cluster=cluster)
    try:
        yield clickhouse_con
    finally:
        clickhouse_con.close()
