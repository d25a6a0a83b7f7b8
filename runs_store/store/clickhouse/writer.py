"""What writers do to a ClickHouse store: the versions it holds, new run versions and their steps,
rejects, the pull's state, the change counter.

ClickHouse has no transactions and never updates in place, so each write here is an insert that
the tables' engines resolve on read (see `schema`): a run's newer version is a new row of `runs`
(ReplacingMergeTree by `updated_at`), its steps new rows stamped with that version
(`run_updated_at`), a pull's state a new row with the time it was saved, a forgotten unfinished
run a row with `is_deleted = 1`. The order of the inserts keeps what a reader sees whole: a run's
steps go in before the run itself, so a reader sees the older version with its steps until the
newer one arrives with its own.

Deciding what is new, updated or unchanged is the ingest's (`ingest/clickhouse_apply.py`); this
module only reads and writes the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from runs_store.store.clickhouse.schema import (
    AGENT_STEPS,
    AGENT_TOOL_CALLS,
    PULL_STATE,
    PULL_UNFINISHED,
    REJECTS,
    RUN_STEPS,
    RUNS,
    bump_generation,
    column_names,
    identifier,
    latest,
    local_name,
)

# Ids asked about in one query: a parameter of this many ids is ~2 MB, sent as a form body.
IDS_PER_QUERY = 50_000

HELD_SCHEMA = pa.schema(
    [("id", pa.string()), ("updated_at", pa.timestamp("us")), ("has_steps", pa.bool_())]
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _chunks(ids: list[str], size: int = IDS_PER_QUERY) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# ---------------------------------------------------------------- runs and steps


def held_versions(con, ids: Iterable[str]) -> pa.Table:
    """The stored version (`updated_at`) and `has_steps` of each of `ids` the store holds."""
    found: list[tuple] = []
    for chunk in _chunks(sorted(set(ids))):
        found += con.execute(
            f"SELECT id, updated_at, has_steps FROM {latest(RUNS.name)} "
            "WHERE id IN {ids:Array(String)}",
            {"ids": chunk},
        )
    columns: list[list] = [list(c) for c in zip(*found, strict=True)] if found else [[], [], []]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, HELD_SCHEMA, strict=True)],
        schema=HELD_SCHEMA,
    )


def insert_runs(con, batch: pa.Table | pa.RecordBatch) -> None:
    """New run versions (the runs table's columns). A run without tags is stored as []."""
    table = _table(batch)
    if not table.num_rows:
        return
    if "tags" in table.column_names:
        tags = table["tags"]
        if tags.null_count:
            filled = pa.array(
                [value if value is not None else [] for value in tags.to_pylist()],
                type=tags.type,
            )
            table = table.set_column(table.column_names.index("tags"), "tags", filled)
    con.insert_arrow(RUNS.name, table.select(column_names(RUNS)))


def insert_steps(con, batch: pa.Table | pa.RecordBatch) -> None:
    """Steps of new run versions, each with `run_updated_at`, the version it came with."""
    table = _table(batch)
    if table.num_rows:
        con.insert_arrow(RUN_STEPS.name, table.select(column_names(RUN_STEPS)))


def insert_facts(con, table: str, batch: pa.Table | pa.RecordBatch) -> None:
    """Agent facts (store/agent_facts.py) of new run versions, each with its `run_updated_at`."""
    declared = {AGENT_STEPS.name: AGENT_STEPS, AGENT_TOOL_CALLS.name: AGENT_TOOL_CALLS}[table]
    rows = _table(batch)
    if rows.num_rows:
        con.insert_arrow(declared.name, rows.select(column_names(declared)))


def carry_steps(con, run_ids: list[str], old: list[datetime], new: list[datetime]) -> None:
    """The steps (and agent facts) each run held at version `old` again, for its version `new`:
    a newer version that brings no steps of its own (a row of our flat export) keeps those it
    had."""
    if not run_ids:
        return
    for table in (RUN_STEPS, AGENT_STEPS, AGENT_TOOL_CALLS):
        _carry(con, table, run_ids, old, new)


def _carry(con, table, run_ids: list[str], old: list[datetime], new: list[datetime]) -> None:
    columns = [name for name in column_names(table) if name != "run_updated_at"]
    con.command(
        f"INSERT INTO {table.name} ({', '.join(columns)}, run_updated_at) "
        f"SELECT {', '.join('s.' + c for c in columns)}, v.new_at "
        f"FROM (SELECT * FROM {latest(table.name)}) AS s INNER JOIN ("
        "SELECT t.1 AS id, t.2 AS old_at, t.3 AS new_at FROM (SELECT arrayJoin(arrayZip("
        "{ids:Array(String)}, {old:Array(DateTime64(6, 'UTC'))}, "
        "{new:Array(DateTime64(6, 'UTC'))})) AS t)) AS v "
        "ON s.run_id = v.id AND s.run_updated_at = v.old_at",
        {"ids": run_ids, "old": old, "new": new},
    )


def _table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


# ---------------------------------------------------------------- rejects


def store_rejects(con, source: str, batch: pa.Table, replace: bool = True) -> None:
    """A source's rejects (the rejects table's columns): replacing its earlier ones (a file loaded
    again), or added to them (`replace` False: the batches of a pull)."""
    if replace:
        delete_where(con, REJECTS.name, "source = {source:String}", {"source": source})
    if batch.num_rows:
        con.insert_arrow(REJECTS.name, batch.select(column_names(REJECTS)))


def delete_where(con, table: str, condition: str, params: dict) -> None:
    """A lightweight DELETE; on a cluster, of the table on every node (a Distributed table
    takes none)."""
    cluster = getattr(con, "cluster", None)
    target = f"{local_name(table)} ON CLUSTER {identifier(cluster)}" if cluster else table
    con.command(f"DELETE FROM {target} WHERE {condition}", params)


def written(con) -> None:
    """One write done: the change counter grows (caches see new data)."""
    bump_generation(con)


# ---------------------------------------------------------------- a pull's state

_STATE_COLUMNS = ("marker", "last_pull_at", "last_ok_at", "runs_pulled", "last_error")


def pull_state_row(con, source: str, project: str) -> tuple | None:
    """(marker, last_pull_at, last_ok_at, runs_pulled, last_error) of one project, if pulled."""
    rows = con.execute(
        f"SELECT {', '.join(_STATE_COLUMNS)} FROM {latest(PULL_STATE.name)} "
        "WHERE source = {source:String} AND project_id = {project:String}",
        {"source": source, "project": project},
    )
    return tuple(rows[0]) if rows else None


def unfinished_runs(con, source: str, project: str, among: list[str] | None = None) -> list[str]:
    """The project's runs a pull saw unfinished (of `among`, when given), in id order."""
    params: dict[str, object] = {"source": source, "project": project}
    where = ""
    if among is not None:
        if not among:
            return []
        where = " AND run_id IN {ids:Array(String)}"
        params["ids"] = among
    rows = con.execute(
        f"SELECT run_id FROM {latest(PULL_UNFINISHED.name)} WHERE source = {{source:String}} "
        f"AND project_id = {{project:String}} AND is_deleted = 0{where} ORDER BY run_id",
        params,
    )
    return [row[0] for row in rows]


def pull_states(con) -> list[dict]:
    """Every (engine, project) pulled so far, with its count of unfinished runs."""
    table = con.query_arrow(
        "SELECT s.source AS source, s.project_id AS project_id, s.last_pull_at AS last_pull_at, "
        "s.last_ok_at AS last_ok_at, s.runs_pulled AS runs_pulled, "
        "s.last_error AS last_error, toInt64(coalesce(u.unfinished, 0)) AS unfinished "
        f"FROM (SELECT * FROM {latest(PULL_STATE.name)}) AS s "
        "LEFT JOIN (SELECT source, project_id, "
        f"count() AS unfinished FROM {latest(PULL_UNFINISHED.name)} WHERE is_deleted = 0 "
        "GROUP BY source, project_id) AS u ON u.source = s.source AND u.project_id = s.project_id "
        "ORDER BY source, project_id SETTINGS join_use_nulls = 1"
    )
    return table.to_pylist()


def save_pull_state(con, source: str, project: str, **changes) -> None:
    """The project's state with `changes` (of marker as an object, last_pull_at, last_ok_at,
    runs_pulled, last_error) as a new row; `pulled=N` adds N to runs_pulled."""
    row = pull_state_row(con, source, project)
    state: dict[str, Any] = dict(zip(_STATE_COLUMNS, row, strict=True)) if row else {}
    pulled = changes.pop("pulled", 0)
    if "marker" in changes:
        marker = changes.pop("marker")
        state["marker"] = None if marker is None else json.dumps(marker)
    state.update(changes)
    state["runs_pulled"] = int(state.get("runs_pulled") or 0) + pulled
    record = {"source": source, "project_id": project, **state, "saved_at": _now()}
    con.insert_arrow(PULL_STATE.name, _state_table(record))


def set_unfinished(
    con, source: str, project: str, forget: Iterable[str], unfinished: Iterable[str] = ()
) -> None:
    """Forgets the project's unfinished runs among `forget` (those it holds) and records
    `unfinished` as unfinished, in one insert."""
    keep = sorted(set(unfinished))
    gone = sorted(set(unfinished_runs(con, source, project, sorted(set(forget)))) - set(keep))
    if not gone and not keep:
        return
    ids = gone + keep
    now = _now()
    table = pa.table(
        {
            "source": pa.array([source] * len(ids), pa.string()),
            "project_id": pa.array([project] * len(ids), pa.string()),
            "run_id": pa.array(ids, pa.string()),
            "saved_at": pa.array([now] * len(ids), pa.timestamp("us")),
            "is_deleted": pa.array([1] * len(gone) + [0] * len(keep), pa.uint8()),
        }
    )
    con.insert_arrow(PULL_UNFINISHED.name, table)


def _state_table(record: dict) -> pa.Table:
    ts = pa.timestamp("us")
    types = {
        "source": pa.string(),
        "project_id": pa.string(),
        "marker": pa.string(),
        "last_pull_at": ts,
        "last_ok_at": ts,
        "runs_pulled": pa.int64(),
        "last_error": pa.string(),
        "saved_at": ts,
    }
    return pa.table({name: pa.array([record.get(name)], kind) for name, kind in types.items()})
