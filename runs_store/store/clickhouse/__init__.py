"""The store on ClickHouse: a server over HTTP (`clickhouse://`) or its engine in this process
(`chdb:PATH`), with the DuckDB store's tables (see `schema`) behind one small connection
(`connection.Connection`). `open_store` opens a location and ensures its schema."""

from __future__ import annotations

from runs_store.domain.errors import StoreError
from runs_store.store.clickhouse.connection import Connection, connect_chdb, connect_http
from runs_store.store.clickhouse.schema import ensure_schema, identifier
from runs_store.store.location import ChdbLocation, ClickHouseLocation

__all__ = ["Connection", "open_store"]


def open_store(
    location: ChdbLocation | ClickHouseLocation,
    cluster: str | None = None,
    password: str | None = None,
) -> Connection:
    """A connection to the store at `location`, its database and tables made or migrated first;
    unqualified table names then name the store's tables. On a server, `cluster` makes them
    Replicated and Distributed over that cluster (see docs/clickhouse.md); the password is
    RUNS_CLICKHOUSE_PASSWORD's unless given."""
    if isinstance(location, ChdbLocation):
        if cluster:
            raise StoreError(
                f"--cluster {cluster} needs a ClickHouse server (clickhouse://...); "
                f"{location} is ClickHouse's engine in this process, which has no cluster"
            )
        con = connect_chdb(location)
    else:
        if cluster:
            identifier(cluster)  # refuses a name that is not one, before connecting
        con = connect_http(location, password)
    try:
        con.cluster = cluster or None
        if cluster:
            # Inserts through a Distributed table reach their shard before they return, so a
            # read right after a write sees it.
            con.set_setting("distributed_foreground_insert", "1")
        ensure_schema(con, location.database, cluster)
        con.use(location.database)
    except BaseException:
        con.close()
        raise
    return con
