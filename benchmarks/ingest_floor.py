"""The least a DuckDB ingest of an engine JSONL file with steps can cost here: the floor under
the ingest figure.

`python -m benchmarks.ingest_floor FILE DB` reads the file with DuckDB's JSON reader and writes
its runs and their steps into a store with our schema and indexes, in one transaction, and
nothing else: no record is checked, no run is compared with the store, no step gets its name,
position or catalog entry, no error its signature, and bad input would be lost or fail the load.
The ingest benchmark runs it on the same files, so the gap between the two is what judging
costs; the floor itself is what DuckDB needs to parse the JSON and write the rows on this machine.
"""

from __future__ import annotations

import sys

import duckdb

from runs_store.domain.records import STEPS_TYPE
from runs_store.store.database import INDEXES, SCHEMA

_RUN_COLUMNS = (
    "{id: 'VARCHAR', environment: 'VARCHAR', status: 'VARCHAR', flowId: 'VARCHAR', "
    "created: 'TIMESTAMP', startTime: 'TIMESTAMP', finishTime: 'TIMESTAMP', "
    "updated: 'TIMESTAMP', flowVersion: 'STRUCT(displayName VARCHAR)', "
    "failedStep: 'STRUCT(name VARCHAR, message VARCHAR)', "
    "steps: 'MAP(VARCHAR, STRUCT(status VARCHAR))'}"
)

INSERT_RUNS = f"""
INSERT INTO runs BY NAME
SELECT id, coalesce(flowVersion.displayName, flowId, id) AS flow_name, status,
       coalesce(created, startTime) AS started_at, startTime AS start_time,
       finishTime AS finish_time, coalesce(updated, created) AS updated_at,
       coalesce(cardinality(steps) > 0, false) AS has_steps,
       failedStep.name AS failed_step, failedStep.message AS error_message
FROM read_json(?, format = 'newline_delimited', columns = {_RUN_COLUMNS})
WHERE environment IS DISTINCT FROM 'TESTING'
"""

INSERT_STEPS = f"""
INSERT INTO run_steps BY NAME
SELECT id AS run_id, 0 AS position, e.key AS name, e.value.type AS type,
       e.value.status AS status, e.value.duration::BIGINT AS duration_ms,
       nullif(e.value.input::VARCHAR, 'null') AS input,
       nullif(e.value.output::VARCHAR, 'null') AS output,
       nullif(e.value.errorMessage::VARCHAR, 'null') AS error
FROM (SELECT id, unnest(map_entries(steps)) AS e
      FROM read_json(?, format = 'newline_delimited',
                     columns = {{id: 'VARCHAR', environment: 'VARCHAR', steps: '{STEPS_TYPE}'}})
      WHERE environment IS DISTINCT FROM 'TESTING')
"""


def load_without_checks(source: str, target: str) -> int:
    """Loads the file's runs and steps; returns how many runs were written."""
    con = duckdb.connect(target, config={"memory_limit": "512MB"})
    try:
        con.execute(SCHEMA)
        con.execute(INDEXES)
        con.execute("BEGIN TRANSACTION")
        runs = con.execute(INSERT_RUNS, [source]).fetchall()[0][0]
        con.execute(INSERT_STEPS, [source])
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return runs


def main(argv: list[str]) -> int:
    source, target = argv
    print(f"Loaded without checks: {load_without_checks(source, target):,} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
