"""The ClickHouse store's tables, declared once, and the DDL for one server or a cluster.

The tables mirror the DuckDB store's (`store/database.py`: runs, run_steps, rejects, meta,
pull_state, pull_unfinished) column for column, with ClickHouse types and engines chosen for how
ClickHouse keeps data. ClickHouse appends and merges later instead of updating in place, so:

- A newer version of a run is a new row. `runs` is a ReplacingMergeTree versioned by
  `updated_at`: of the rows with one sorting key the latest `updated_at` is kept (on a tie, the
  one inserted last). Its sorting key holds only what never changes for a run, the start and the
  id (`(started_at, id)`), so every version of a run shares one key; the partition (the month of
  `started_at`) derives from it, so every version also lands in one partition. The key orders a
  partition the way the Runs page reads it, newest first (read backwards); the page's status and
  flow filters use data-skipping indexes, the run page's lookup by id a bloom filter.
- Until a merge, both versions are on disk: reads say `FINAL` (see `latest`), which merges as it
  reads. With the partition derived from the key, `do_not_merge_across_partitions_select_final`
  is safe to set on such reads.
- A run's steps belong to one version of it: each step row carries `run_updated_at`, the
  version of the run it came with. A newer version's steps replace the older ones at the same
  position; steps at positions the newer version no longer has are read away by keeping only the
  rows of the run's current `updated_at`.
- Small tables updated in place in DuckDB are versioned by the time of the write (`set_at`,
  `saved_at`); `pull_unfinished` deletes by writing a row with `is_deleted = 1`.
- `meta` holds the schema version. The change counter caches key on is the number of rows in
  `writes` (one row per write): rows are only ever added, so concurrent writers never lose a
  count, where reading a counter and writing it back would.

On a cluster (`cluster=NAME`), each table is a Replicated table on every node (`NAME_local`,
its ZooKeeper path from the `{shard}` and `{replica}` macros) and a Distributed table under the
plain name that reads all shards and routes inserts by a key of what never changes (a run and
its steps by the run id, so all versions of a run, and its steps, are on one shard and FINAL
sees them together). Both layouts come from the same declarations, so they cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runs_store.domain.errors import DatabaseUnreadable, StoreError
from runs_store.store import agent_facts
from runs_store.store.rollups import clickhouse_rebuild

SCHEMA_VERSION = "3"

# A time as the store keeps times: naive UTC, microseconds (DuckDB's TIMESTAMP).
TIME = "DateTime64(6, 'UTC')"
# Long JSON text (step payloads, raw rejected records) compresses far better with zstd.
LONG_TEXT = "Nullable(String) CODEC(ZSTD(3))"


@dataclass(frozen=True)
class Table:
    """One table: its columns and indexes as in CREATE TABLE, its MergeTree engine and keys, and
    the key that places a row on a shard (a function of columns that never change for it)."""

    name: str
    columns: tuple[str, ...]
    order_by: str
    shard_by: str
    engine: str = "MergeTree"
    engine_args: tuple[str, ...] = ()
    partition_by: str = ""
    indexes: tuple[str, ...] = ()


RUNS = Table(
    "runs",
    columns=(
        "id String",
        "project_id Nullable(String)",
        "flow_id Nullable(String)",
        "flow_version_id Nullable(String)",
        "flow_name LowCardinality(String)",
        "status LowCardinality(String)",
        f"started_at {TIME}",  # the run's `created`: when its trigger fired
        f"start_time Nullable({TIME})",  # when execution began (`startTime`)
        f"finish_time Nullable({TIME})",
        "duration_ms Nullable(Int64)",
        "failed_step Nullable(String)",
        "failed_step_display Nullable(String)",
        "error_message Nullable(String)",
        "error_signature Nullable(String)",
        f"archived_at Nullable({TIME})",
        f"updated_at {TIME}",
        "tags Array(String)",  # ClickHouse arrays are never NULL: DuckDB's NULL reads as []
        "parent_run_id Nullable(String)",
        "tasks Nullable(Int32)",
        "steps_count Nullable(Int32)",
        "has_steps Bool",
        "pause_metadata Nullable(String)",
        "source Nullable(String)",
        "triggered_by Nullable(String)",
        "logs_file_id Nullable(String)",
        "steps_data_truncated Nullable(Bool)",
        "timeline Nullable(String)",  # JSON: {legs: [[{name, durationMs}]]}
        "internal_error Nullable(String)",  # JSON: {source, message, code, occurredAt}
    ),
    engine="ReplacingMergeTree",
    engine_args=("updated_at",),
    partition_by="toYYYYMM(started_at)",
    order_by="(started_at, id)",
    indexes=(
        "INDEX by_status status TYPE set(32) GRANULARITY 1",
        "INDEX by_flow flow_name TYPE bloom_filter(0.01) GRANULARITY 1",
        "INDEX by_id id TYPE bloom_filter(0.001) GRANULARITY 1",
        "INDEX by_failed_step failed_step TYPE bloom_filter(0.01) GRANULARITY 1",
    ),
    shard_by="cityHash64(id)",
)

RUN_STEPS = Table(
    "run_steps",
    columns=(
        "run_id String",
        "position Int32",
        "name String",
        "display_name Nullable(String)",
        "type LowCardinality(Nullable(String))",
        "status LowCardinality(Nullable(String))",
        "duration_ms Nullable(Int64)",
        "piece_name LowCardinality(Nullable(String))",
        "action_name LowCardinality(Nullable(String))",
        f"input {LONG_TEXT}",
        f"output {LONG_TEXT}",
        f"error {LONG_TEXT}",
        f"run_updated_at {TIME}",  # the version of the run this step came with
    ),
    engine="ReplacingMergeTree",
    engine_args=("run_updated_at",),
    order_by="(run_id, position)",
    shard_by="cityHash64(run_id)",
)

REJECTS = Table(
    "rejects",
    columns=(
        "source String",
        "unit String",
        "position Int64",
        "reason String",
        "raw String CODEC(ZSTD(3))",
        f"rejected_at {TIME}",
    ),
    order_by="(source, unit, position)",
    shard_by="cityHash64(source)",
)

META = Table(
    "meta",
    columns=("key String", "value String", f"set_at {TIME} DEFAULT now64(6)"),
    engine="ReplacingMergeTree",
    engine_args=("set_at",),
    order_by="key",
    shard_by="cityHash64(key)",
)

WRITES = Table(
    "writes",
    columns=(f"written_at {TIME} DEFAULT now64(6)",),
    order_by="written_at",
    shard_by="rand()",
)

PULL_STATE = Table(
    "pull_state",
    columns=(
        "source String",
        "project_id String",
        "marker Nullable(String)",  # JSON, the source's own: where the next page starts
        f"last_pull_at Nullable({TIME})",
        f"last_ok_at Nullable({TIME})",
        "runs_pulled Int64 DEFAULT 0",
        "last_error Nullable(String)",
        f"saved_at {TIME} DEFAULT now64(6)",
    ),
    engine="ReplacingMergeTree",
    engine_args=("saved_at",),
    order_by="(source, project_id)",
    shard_by="cityHash64(source, project_id)",
)

PULL_UNFINISHED = Table(
    "pull_unfinished",
    columns=(
        "source String",
        "project_id String",
        "run_id String",
        f"saved_at {TIME} DEFAULT now64(6)",
        "is_deleted UInt8 DEFAULT 0",
    ),
    engine="ReplacingMergeTree",
    engine_args=("saved_at", "is_deleted"),
    order_by="(source, project_id, run_id)",
    shard_by="cityHash64(source, project_id)",
)

# Hourly counts of the runs, kept after raw runs are pruned (see store/rollups.py): an hour is
# replaced by a lightweight DELETE of its rows and an INSERT of its new aggregate.
ROLLUPS = Table(
    "run_rollups",
    columns=(
        f"hour {TIME}",  # the UTC hour the runs started in
        "flow_id Nullable(String)",
        "flow_name LowCardinality(String)",
        "flow_version_id Nullable(String)",
        "status LowCardinality(String)",
        "failed_step Nullable(String)",
        "failed_step_display Nullable(String)",
        "archived Bool",
        "duration_bucket Nullable(Int16)",  # NULL: no duration
        "runs Int64",
        f"first_started_at {TIME}",
        f"last_started_at {TIME}",
    ),
    partition_by="toYYYYMM(hour)",
    order_by="(hour, flow_name, status)",
    shard_by="cityHash64(hour)",
)

# The facts of every Run Agent step (see store/agent_facts.py), versioned like the steps they
# are read from: a newer version of a run brings its own, and reads keep the current version's.
AGENT_STEPS = Table(
    agent_facts.STEPS_TABLE,
    columns=tuple(f"{name} {kind}" for name, _, kind in agent_facts.STEP_COLUMNS),
    engine="ReplacingMergeTree",
    engine_args=("run_updated_at",),
    order_by="(run_id, position)",
    shard_by="cityHash64(run_id)",
)
AGENT_TOOL_CALLS = Table(
    agent_facts.CALLS_TABLE,
    columns=tuple(f"{name} {kind}" for name, _, kind in agent_facts.CALL_COLUMNS),
    engine="ReplacingMergeTree",
    engine_args=("run_updated_at",),
    order_by="(run_id, position, call_index)",
    shard_by="cityHash64(run_id)",
    indexes=("INDEX by_tool tool TYPE bloom_filter(0.01) GRANULARITY 1",),
)

TABLES = (
    RUNS,
    RUN_STEPS,
    REJECTS,
    META,
    WRITES,
    PULL_STATE,
    PULL_UNFINISHED,
    ROLLUPS,
    AGENT_STEPS,
    AGENT_TOOL_CALLS,
)


@dataclass(frozen=True)
class RebuildRollups:
    """A migration step: every hour's rollup rows counted again from the raw runs (emptied
    first, so a step cut short is simply run again)."""


@dataclass(frozen=True)
class BackfillAgentFacts:
    """A migration step: every current agent step's facts worked out from the stored steps
    (emptied first, so a step cut short is simply run again). Python does it, after the
    step's statements."""


Step = Table | tuple[str, str] | RebuildRollups | BackfillAgentFacts


# Each step from one schema version to the next, for a store made by an earlier release: the
# tables each step adds, the columns it adds (ADD COLUMN text by table name) or the rollups to
# count again, so that both layouts get the same change.
MIGRATIONS: dict[str, tuple[Step, ...]] = {
    "1": (ROLLUPS, RebuildRollups()),
    "2": (AGENT_STEPS, AGENT_TOOL_CALLS, BackfillAgentFacts()),
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def latest(table: str) -> str:
    """A table as reads name it: each key once, its newest version (merged as it is read)."""
    return f"{table} FINAL"


def column_names(table: Table) -> list[str]:
    return [column.split()[0] for column in table.columns]


# One run's steps as its newest version has them, in order (`run_id` bound by name).
STEPS_OF_RUN = (
    f"SELECT {', '.join(column_names(RUN_STEPS)[:-1])} FROM {latest(RUN_STEPS.name)} "
    "WHERE run_id = {run_id:String} AND run_updated_at = "
    f"(SELECT max(updated_at) FROM {latest(RUNS.name)} WHERE id = {{run_id:String}}) "
    "ORDER BY position"
)


# ---------------------------------------------------------------- DDL


def identifier(name: str) -> str:
    """`name` quoted for DDL; only plain identifiers are taken (they come from RUNS_DB or the
    --cluster option, and are written into statements, never bound)."""
    if not _IDENTIFIER.fullmatch(name):
        raise StoreError(
            f"{name!r} is not a ClickHouse name this store takes: use letters, digits, _"
        )
    return f"`{name}`"


def create_database(database: str, cluster: str | None = None) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {identifier(database)}{_on(cluster)}"


def create_statements(table: Table, database: str, cluster: str | None = None) -> list[str]:
    """CREATE TABLE for one server, or for a cluster the Replicated table on every node and the
    Distributed table over it."""
    if cluster is None:
        return [_create(table, identifier(database), table.name, table.engine, table.engine_args)]
    local = local_name(table.name)
    replicated = (
        "'/clickhouse/tables/{shard}/{database}/{table}'",
        "'{replica}'",
        *table.engine_args,
    )
    db = identifier(database)
    return [
        _create(table, db, local, f"Replicated{table.engine}", replicated, cluster),
        _distributed(table, db, local, cluster),
    ]


def schema_statements(database: str, cluster: str | None = None) -> list[str]:
    """Every statement that makes the store's database and tables, in order."""
    statements = [create_database(database, cluster)]
    for table in TABLES:
        statements += create_statements(table, database, cluster)
    return statements


def local_name(name: str) -> str:
    """On a cluster, the name of a table's Replicated table on each node (where lightweight
    DELETE and OPTIMIZE go: a Distributed table takes neither)."""
    return f"{name}_local"


def _create(
    table: Table,
    database: str,
    name: str,
    engine: str,
    engine_args: tuple[str, ...],
    cluster: str | None = None,
) -> str:
    body = ",\n    ".join(table.columns + table.indexes)
    clauses = [f"ENGINE = {engine}({', '.join(engine_args)})"]
    if table.partition_by:
        clauses.append(f"PARTITION BY {table.partition_by}")
    clauses.append(f"ORDER BY {table.order_by}")
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{identifier(name)}{_on(cluster)}\n"
        f"(\n    {body}\n)\n" + "\n".join(clauses)
    )


def _distributed(table: Table, database: str, local: str, cluster: str) -> str:
    """The Distributed table under the table's own name: reads every shard's `local`, and
    sends each inserted row to the shard its `shard_by` picks."""
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{identifier(table.name)}{_on(cluster)} "
        f"AS {database}.{identifier(local)}\n"
        f"ENGINE = Distributed({identifier(cluster)}, {database}, {identifier(local)}, "
        f"{table.shard_by})"
    )


def _on(cluster: str | None) -> str:
    return f" ON CLUSTER {identifier(cluster)}" if cluster else ""


def _migration_statements(steps: tuple[Step, ...], database: str, cluster: str | None) -> list[str]:
    statements: list[str] = []
    for step in steps:
        if isinstance(step, BackfillAgentFacts):
            names = [
                local_name(t.name) if cluster else t.name for t in (AGENT_STEPS, AGENT_TOOL_CALLS)
            ]
            statements += [
                f"TRUNCATE TABLE IF EXISTS {identifier(database)}.{identifier(name)}{_on(cluster)}"
                for name in names
            ]
            continue
        if isinstance(step, Table):
            statements += create_statements(step, database, cluster)
            continue
        if isinstance(step, RebuildRollups):
            db = identifier(database)
            name = local_name(ROLLUPS.name) if cluster else ROLLUPS.name
            statements += [
                f"TRUNCATE TABLE IF EXISTS {db}.{identifier(name)}{_on(cluster)}",
                clickhouse_rebuild(db),
            ]
            continue
        table, column = step
        names = [local_name(table), table] if cluster else [table]
        statements += [
            f"ALTER TABLE {identifier(database)}.{identifier(name)}{_on(cluster)} "
            f"ADD COLUMN IF NOT EXISTS {column}"
            for name in names
        ]
    return statements


# ---------------------------------------------------------------- the schema in a store


def ensure_schema(con, database: str, cluster: str | None = None) -> None:
    """Makes the store's database and tables when missing, and brings a store of an earlier
    release up to SCHEMA_VERSION; refuses one made by a later release. Idempotent: two
    processes may run it at once."""
    if not _exists(con, f"EXISTS DATABASE {identifier(database)}"):
        con.command(create_database(database, cluster))
    if not _exists(con, f"EXISTS TABLE {identifier(database)}.{identifier(META.name)}"):
        for statement in schema_statements(database, cluster)[1:]:
            con.command(statement)
        _set_meta(con, database, "schema_version", SCHEMA_VERSION)
    migrate(con, database, cluster)


def migrate(con, database: str, cluster: str | None = None) -> None:
    """One step at a time from the store's version to SCHEMA_VERSION. A step is a few
    idempotent DDL statements (ClickHouse has no transactions): one cut short is done again."""
    version = schema_version(con, database)
    while version in MIGRATIONS:
        for statement in _migration_statements(MIGRATIONS[version], database, cluster):
            con.command(statement)
        if any(isinstance(step, BackfillAgentFacts) for step in MIGRATIONS[version]):
            agent_facts.clickhouse_backfill(con, identifier(database))
        version = str(int(version) + 1)
        _set_meta(con, database, "schema_version", version)
    if version != SCHEMA_VERSION:
        raise DatabaseUnreadable(
            f"The ClickHouse store's schema is version {version}, which this release does not "
            f"know (it knows {SCHEMA_VERSION}): it was made by a later release of Runs Explorer."
        )


def schema_version(con, database: str) -> str | None:
    rows = con.execute(
        f"SELECT value FROM {identifier(database)}.{latest(META.name)} WHERE key = {{key:String}}",
        {"key": "schema_version"},
    )
    return rows[0][0] if rows else None


def generation(con) -> int:
    """A number that grows with every write: caches key on it to notice new data."""
    return int(con.execute(f"SELECT count() FROM {WRITES.name}")[0][0])


def bump_generation(con) -> None:
    con.command(f"INSERT INTO {WRITES.name} (written_at) SELECT now64(6)")


def _set_meta(con, database: str, key: str, value: str) -> None:
    con.command(
        f"INSERT INTO {identifier(database)}.{META.name} (key, value) "
        "SELECT {key:String}, {value:String}",
        {"key": key, "value": value},
    )


def _exists(con, sql: str) -> bool:
    return bool(con.execute(sql)[0][0])
