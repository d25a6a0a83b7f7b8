"""The facts of every Run Agent step in the store, kept beside its steps: `agent_steps` (one row
per agent step) and `agent_tool_calls` (one row per tool call).

They are worked out in Python from the stored steps by the domain's rules
(`runs_store.domain.agents`, the one place each rule is declared), never in SQL: the ingest's
every path (the Python path and the JSONL fast path alike write `run_steps` first, and the facts
are read from there, so both give the same facts), a ClickHouse store's apply (on its scratch
DuckDB, then copied with the steps), and the migration that gives a store loaded before them its
facts from the steps it holds, without reading its files again. A step is read only when it may
be an agent step (the AI piece's run_agent action, or an output naming agent blocks), a batch
at a time, so memory stays flat however many agents a store holds.

Each row carries its run's version (`run_updated_at`), as a ClickHouse step does: a read keeps a
run's facts of its current version (`(id, updated_at) IN (SELECT run_id, run_updated_at ...)`),
which is how a newer version's facts win on ClickHouse, where the older rows stay until a merge.
On DuckDB a run's facts are deleted and written again with its steps.
"""

from __future__ import annotations

from collections.abc import Iterable

from runs_store.domain.agents import step_facts
from runs_store.domain.step_tree import AGENT_ACTION, AGENT_PIECE
from runs_store.store import backend
from runs_store.store.backend import CLICKHOUSE, dialect

STEPS_TABLE = "agent_steps"
CALLS_TABLE = "agent_tool_calls"
TABLES = (STEPS_TABLE, CALLS_TABLE)
BATCH_STEPS = 1_000  # agent steps read (with their payloads) at a time

# (name, DuckDB type, ClickHouse type) of each column, in order.
STEP_COLUMNS = (
    ("run_id", "VARCHAR NOT NULL", "String"),
    ("position", "INTEGER NOT NULL", "Int32"),
    ("step_name", "VARCHAR NOT NULL", "String"),
    ("step_display", "VARCHAR", "Nullable(String)"),
    ("duration_ms", "BIGINT", "Nullable(Int64)"),  # the agent step's, as recorded
    ("flow_name", "VARCHAR NOT NULL", "LowCardinality(String)"),
    ("started_at", "TIMESTAMP NOT NULL", "DateTime64(6, 'UTC')"),  # the run's
    ("provider", "VARCHAR", "LowCardinality(Nullable(String))"),
    ("model", "VARCHAR", "LowCardinality(Nullable(String))"),
    ("agent_status", "VARCHAR", "LowCardinality(Nullable(String))"),
    ("max_steps", "INTEGER", "Nullable(Int32)"),
    ("thoughts", "INTEGER NOT NULL", "Int32"),
    ("tool_calls", "INTEGER NOT NULL", "Int32"),
    ("failed_calls", "INTEGER NOT NULL", "Int32"),
    ("unfinished_calls", "INTEGER NOT NULL", "Int32"),
    ("tools_ms", "BIGINT NOT NULL", "Int64"),
    ("hit_max_steps", "BOOLEAN NOT NULL", "Bool"),
    ("input_tokens", "BIGINT", "Nullable(Int64)"),
    ("output_tokens", "BIGINT", "Nullable(Int64)"),
    ("total_tokens", "BIGINT", "Nullable(Int64)"),
    ("run_updated_at", "TIMESTAMP NOT NULL", "DateTime64(6, 'UTC')"),
)
CALL_COLUMNS = (
    ("run_id", "VARCHAR NOT NULL", "String"),
    ("position", "INTEGER NOT NULL", "Int32"),  # the agent step's
    ("step_name", "VARCHAR NOT NULL", "String"),
    ("call_index", "INTEGER NOT NULL", "Int32"),  # 0-based, in the order the agent called
    ("tool", "VARCHAR NOT NULL", "String"),
    ("tool_type", "VARCHAR NOT NULL", "LowCardinality(String)"),
    ("outcome", "VARCHAR NOT NULL", "LowCardinality(String)"),  # succeeded, failed, unfinished
    ("duration_ms", "BIGINT", "Nullable(Int64)"),
    ("error", "VARCHAR", "Nullable(String) CODEC(ZSTD(3))"),  # as recorded; masked when shown
    ("provider", "VARCHAR", "LowCardinality(Nullable(String))"),
    ("model", "VARCHAR", "LowCardinality(Nullable(String))"),
    ("flow_name", "VARCHAR NOT NULL", "LowCardinality(String)"),
    ("started_at", "TIMESTAMP NOT NULL", "DateTime64(6, 'UTC')"),  # the run's
    ("run_updated_at", "TIMESTAMP NOT NULL", "DateTime64(6, 'UTC')"),
)


# A fact row's model as the Agents view, the price table and the model filter name it.
NO_MODEL = "(no model recorded)"


def model_label_sql(alias: str, no_model: str) -> str:
    """SQL: the model of a fact row of `alias` as `provider/model`, the model alone without a
    provider, and NO_MODEL (bound to the placeholder `no_model`) without one."""
    return (
        f"CASE WHEN {alias}.model IS NULL THEN {no_model} WHEN {alias}.provider IS NULL "
        f"THEN {alias}.model ELSE concat({alias}.provider, '/', {alias}.model) END"
    )


# An agent step's status as the Agents view and the agent status filter name it: as recorded, and
# NO_STATUS (bound to a placeholder) when the output records none.
NO_STATUS = "(none recorded)"


def status_label_sql(alias: str, no_status: str) -> str:
    """SQL: the agent status of a fact row of `alias`, NO_STATUS (bound to the placeholder
    `no_status`) without one."""
    return f"coalesce({alias}.agent_status, {no_status})"


def _duckdb_table(name: str, columns: tuple) -> str:
    body = ",\n    ".join(f"{column} {kind}" for column, kind, _ in columns)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n);\n"


DUCKDB_TABLES = _duckdb_table(STEPS_TABLE, STEP_COLUMNS) + _duckdb_table(CALLS_TABLE, CALL_COLUMNS)

# The steps that may be agent steps (domain.agents.step_facts decides): a superset, by text.
_MAY_BE_AGENT = (
    "((s.piece_name = $agent_piece AND s.action_name = $agent_action) "
    "OR s.output LIKE $tool_call_block OR s.output LIKE $markdown_block)"
)
_AGENT_PARAMS = {
    "agent_piece": AGENT_PIECE,
    "agent_action": AGENT_ACTION,
    "tool_call_block": "%TOOL_CALL%",
    "markdown_block": "%MARKDOWN%",
}
# What each candidate row holds, in order (`fact_rows` reads them so).
_CANDIDATE = (
    "s.run_id, s.position, s.name, s.display_name, s.duration_ms, s.piece_name, s.action_name, "
    "s.input, s.output, s.error, r.flow_name, r.started_at, r.updated_at"
)


# ---------------------------------------------------------------- facts as rows


def fact_rows(candidates: Iterable[tuple]) -> tuple[list[tuple], list[tuple]]:
    """The agent_steps and agent_tool_calls rows of candidate steps (rows of _CANDIDATE); a step
    that is not an agent step gives none."""
    steps: list[tuple] = []
    calls: list[tuple] = []
    for row in candidates:
        run_id, position, name, display, duration, piece, action, given, output, error = row[:10]
        flow_name, started_at, updated_at = row[10:]
        facts = step_facts(piece, action, given, output, error)
        if facts is None:
            continue
        steps.append(
            (
                *(run_id, position, name, display, duration, flow_name, started_at),
                *(facts.provider, facts.model, facts.status, facts.max_steps, facts.thoughts),
                *(facts.tool_calls, facts.failed_calls, facts.unfinished_calls, facts.tools_ms),
                *(facts.hit_max_steps, facts.input_tokens, facts.output_tokens),
                *(facts.total_tokens, updated_at),
            )
        )
        calls.extend(
            (
                *(run_id, position, name, call.index, call.tool, call.tool_type, call.outcome),
                *(call.duration_ms, call.error, facts.provider, facts.model, flow_name),
                *(started_at, updated_at),
            )
            for call in facts.calls
        )
    return steps, calls


def _arrow_table(columns: tuple, rows: list[tuple]):
    """Rows as an Arrow table of the columns' types (ClickHouse takes inserts as Arrow)."""
    import pyarrow as pa

    types = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64()}
    types |= {"TIMESTAMP": pa.timestamp("us"), "BOOLEAN": pa.bool_()}
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.table(
        {
            name: pa.array(list(column), type=types[kind.split()[0]])
            for (name, kind, _), column in zip(columns, values, strict=True)
        }
    )


def _duckdb_insert(con, table: str, columns: tuple, rows: list[tuple]) -> None:
    """Rows into a DuckDB table as one list parameter per column (no pyarrow, no pandas: their
    import would cost an ingest more than its facts)."""
    unnested = ", ".join(
        f"unnest(${name}::{kind.split()[0]}[]) AS {name}" for name, kind, _ in columns
    )
    values = list(zip(*rows, strict=True))
    con.execute(
        f"INSERT INTO {table} BY NAME SELECT {unnested}",
        {name: list(column) for (name, _, _), column in zip(columns, values, strict=True)},
    )


def _insert(con, rows: tuple[list[tuple], list[tuple]], database: str = "") -> None:
    prefix = f"{database}." if database else ""
    for table, columns, found in zip(TABLES, (STEP_COLUMNS, CALL_COLUMNS), rows, strict=True):
        if not found:
            continue
        if dialect(con) == CLICKHOUSE:
            con.insert_arrow(f"{prefix}{table}", _arrow_table(columns, found))
        else:
            _duckdb_insert(con, table, columns, found)


# ---------------------------------------------------------------- DuckDB: ingest and migration

_CANDIDATES_TABLE = "agent_candidates"


def refresh(con, runs_sql: str) -> None:
    """The facts of the runs `runs_sql` selects (a SELECT of run ids, with no values), worked
    out again from their stored steps: the ingest's apply, in its transaction (DuckDB)."""
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id IN ({runs_sql})")
    write_facts(con, f"s.run_id IN ({runs_sql})")


def carry_version(con, runs_sql: str) -> None:
    """The facts of the runs `runs_sql` selects stamped with the runs' current version: a newer
    version that brings no steps (a row of our flat export) keeps the steps, and facts, it had."""
    for table in TABLES:
        con.execute(
            f"UPDATE {table} SET run_updated_at = r.updated_at FROM runs r "
            f"WHERE {table}.run_id = r.id AND r.id IN ({runs_sql})"
        )


def write_facts(con, condition: str = "true") -> int:
    """Writes the facts of the stored agent steps that meet `condition` (SQL on run_steps `s`,
    with no values), a batch of steps at a time; returns how many agent steps it wrote."""
    first, last = con.execute(
        f"SELECT min(rowid), max(rowid) FROM run_steps s WHERE {condition}"
    ).fetchall()[0]
    if first is None:
        return 0
    # The steps' rows are found by the narrow run_id column first: a file's steps are appended
    # together, so the payloads read are those of their span of rows, not the whole table's.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_CANDIDATES_TABLE} AS "
        f"SELECT row_number() OVER () AS n, {_CANDIDATE} "
        "FROM run_steps s JOIN runs r ON r.id = s.run_id "
        f"WHERE s.rowid BETWEEN $first_row AND $last_row AND ({condition}) AND {_MAY_BE_AGENT}",
        {**_AGENT_PARAMS, "first_row": first, "last_row": last},
    )
    try:
        total = con.execute(f"SELECT count(*) FROM temp.{_CANDIDATES_TABLE}").fetchall()[0][0]
        written = 0
        for first in range(1, total + 1, BATCH_STEPS):
            candidates = con.execute(
                f"SELECT * EXCLUDE (n) FROM temp.{_CANDIDATES_TABLE} "
                "WHERE n >= $first AND n < $last",
                {"first": first, "last": first + BATCH_STEPS},
            ).fetchall()
            rows = fact_rows(candidates)
            _insert(con, rows)
            written += len(rows[0])
        return written
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{_CANDIDATES_TABLE}")


def backfill(con) -> int:
    """Every stored agent step's facts (a store loaded before they were kept, at migration)."""
    for table in TABLES:
        con.execute(f"DELETE FROM {table}")
    return write_facts(con)


# ---------------------------------------------------------------- ClickHouse: migration


def clickhouse_backfill(con, database: str) -> int:
    """Every current agent step's facts of a ClickHouse store, in slices of its runs (by a hash
    of the run id) small enough to hold; `database` is a quoted identifier."""
    steps = f"(SELECT * FROM {database}.run_steps FINAL) AS s"
    runs = f"(SELECT id, flow_name, started_at, updated_at FROM {database}.runs FINAL) AS r"
    joined = f"{steps} INNER JOIN {runs} ON s.run_id = r.id AND s.run_updated_at = r.updated_at"
    found = backend.rows(con, f"SELECT count() FROM {joined} WHERE {_MAY_BE_AGENT}", _AGENT_PARAMS)
    slices = max(1, int(found[0][0]) // BATCH_STEPS + 1)
    written = 0
    for number in range(slices):
        candidates = backend.arrow(
            con,
            f"SELECT {_CANDIDATE} FROM {joined} WHERE {_MAY_BE_AGENT} "
            "AND cityHash64(s.run_id) % $slices = $slice",
            {**_AGENT_PARAMS, "slices": slices, "slice": number},
        )  # as Arrow: times come back naive UTC, as DuckDB's
        rows = fact_rows(tuple(row.values()) for row in candidates.to_pylist())
        _insert(con, rows, database)
        written += len(rows[0])
    return written
