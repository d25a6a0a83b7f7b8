"""The same store on each backend, for tests that run on DuckDB and on ClickHouse (chdb).

A DuckDB store built by the real ingest from the sample generator is the reference; its tables are
copied as they are (Arrow) into a chdb store, each step row stamped with its run's version
(`run_updated_at`, which the ClickHouse schema keys steps by). So both hold the very same runs,
and a test compares what each backend answers against one oracle.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from runs_store.store.clickhouse import open_store
from runs_store.store.location import ChdbLocation

# What each ClickHouse table takes from the DuckDB store (steps get their run's version).
COPIED = {
    "runs": "SELECT * FROM runs",
    "run_steps": "SELECT s.*, r.updated_at AS run_updated_at FROM run_steps s "
    "JOIN runs r ON r.id = s.run_id",
    "rejects": "SELECT * FROM rejects",
}


def copy_to_chdb(duckdb_path: Path, location: ChdbLocation) -> ChdbLocation:
    """The DuckDB store's runs, steps and rejects into a new chdb store at `location`."""
    source = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        with open_store(location) as con:
            for table, select in COPIED.items():
                rows = source.sql(select).to_arrow_table()
                if rows.num_rows:
                    con.insert_arrow(table, rows)
    finally:
        source.close()
    return location
