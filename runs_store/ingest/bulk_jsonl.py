"""Engine JSONL read by DuckDB's own JSON reader: the fast path of ingest.

Parsing each record in Python costs more than everything else ingest does, so a `.jsonl` file is
read by `read_json` in C++ on every core. Every record it reads is judged by one SQL pass: a
record in the engine's usual shape (string id, a known status name, timestamps in the engine's
`...Z` form, steps an object of objects, ...) becomes a staged run row right there. Anything else
(a line that is not JSON, a missing id, a status label, an odd timestamp, a list page on one line)
is handed, with its line, to the same Python code that reads every other format, which loads it or
rejects it with its reason. So both paths give the same rows; only the common case is fast.

A clean file (every record usual, no run twice) is judged without its steps' inputs and outputs:
only what judging needs (step names, statuses, errors, loops' iterations). Its steps are read again,
in full and with no error ignored, straight into the store when its runs are applied
(`FILE_STEP_MAPS`): they are never staged. Any other file is read again numbered, steps and all.

Python still does what is small and subtle: step catalogs (once per flow version), error
signatures (once per distinct message), and the failed step of runs with a failure inside a loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import duckdb

from runs_store.domain.bounded_json import MAX_JSON_DEPTH, TooDeep, loads_bounded
from runs_store.domain.records import (
    MAX_ERROR_CHARS,
    STEPS_TYPE,
    failed_step_fields,
    step_catalog,
)
from runs_store.domain.run_fields import (
    ENVIRONMENT_SOURCE,
    RUN_FIELDS,
    RUN_FIELDS_BY_COLUMN,
    TEST_ENVIRONMENT,
    Kind,
    RunField,
    json_text,
)
from runs_store.domain.signatures import error_signature
from runs_store.domain.statuses import STATUSES, UNFINISHED
from runs_store.ingest.limits import max_record_chars
from runs_store.ingest.readers import SourceFile, bounded_lines, json_items, too_large_item

# Records are ordered by line; a line that holds a list page gives several records.
SEQ_PER_LINE = 1024
PYTHON_SLICE_RECORDS = 20_000
MAX_RECORD_BYTES = 1024 * 1024  # the reader's buffer size; longer lines are still read
# A step payload sits three levels down in its run (run, steps, step): one with more opening
# brackets than this might nest past MAX_JSON_DEPTH, and is left to Python, which counts exactly.
PAYLOAD_DEPTH = MAX_JSON_DEPTH - 3

# The fields of a run object read, as JSON: the ones the rules below read, then the top-level
# sources of the declared run fields (run_fields.RUN_FIELDS; flowVersion is read as a struct).
_OWN_COLUMNS = (
    "id",
    "environment",
    "status",
    "created",
    "startTime",
    "finishTime",
    "updated",
    "failedStep",
    "failedStepName",
    "duration",
    "steps",
)
_FIELD_SOURCES = tuple(
    dict.fromkeys(source for field in RUN_FIELDS for source in field.sources if "." not in source)
)
_COLUMNS = _OWN_COLUMNS + tuple(name for name in _FIELD_SOURCES if name not in _OWN_COLUMNS)
# What a clean file's first read takes of each step (its steps are loaded by FILE_STEP_MAPS).
JUDGED_STEPS_TYPE = (
    "MAP(VARCHAR, STRUCT(type VARCHAR, status VARCHAR, errorMessage JSON, "
    "output STRUCT(iterations JSON)))"
)


def _read_columns(steps_type: str) -> str:
    return (
        "{"
        + ", ".join(f"'{name}': '{steps_type if name == 'steps' else 'JSON'}'" for name in _COLUMNS)
        + ", 'flowVersion': 'STRUCT(id JSON, displayName JSON, trigger JSON)'}"
    )


_STATUS_NAMES = ", ".join(f"'{status.name}'" for status in STATUSES)
_UNFINISHED_NAMES = ", ".join(f"'{name}'" for name in sorted(UNFINISHED))

# The engine's timestamp form only; anything else goes to Python, which says what is wrong.
_ENGINE_TS_JSON = r'"\d{4}-\d\d-\d\dT([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3}|\.\d{6})?Z"'
_MACROS = r"""
CREATE OR REPLACE TEMP MACRO engine_ts(j) AS
    CASE WHEN regexp_full_match(j, '@ENGINE_TS@')
         THEN try_cast(substr(j, 2, length(j) - 3) AS TIMESTAMP) END;
CREATE OR REPLACE TEMP MACRO text_ok(j) AS j IS NULL OR json_type(j) = 'VARCHAR';
CREATE OR REPLACE TEMP MACRO text_of(j) AS nullif(j ->> '$', '');
CREATE OR REPLACE TEMP MACRO int_ok(j) AS j IS NULL OR json_type(j) IN ('BIGINT', 'UBIGINT');
CREATE OR REPLACE TEMP MACRO may_be_deep(j) AS
    strlen(j::VARCHAR) - strlen(replace(replace(j::VARCHAR, '{', ''), '[', '')) > @DEPTH@;
CREATE OR REPLACE TEMP MACRO step_may_be_deep(v) AS
    may_be_deep(v.input) OR may_be_deep(v.output) OR may_be_deep(v.errorMessage);
""".replace("@DEPTH@", str(PAYLOAD_DEPTH)).replace("@ENGINE_TS@", _ENGINE_TS_JSON)

# ---------------------------------------------------------------- the declared run fields in SQL
# Each kind of run_fields.Kind as the SQL that reads a source (a JSON value) the way
# run_fields.read_field does, and the check that the source holds a value it reads that way without
# a question (anything else sends the record to Python). A source path is the column read_json
# gives (flowVersion.displayName is a field of the flowVersion struct).
_KIND_VALUE_SQL = {
    Kind.TEXT: "text_of({})",
    Kind.INT: "try_cast({} AS INTEGER)",
    Kind.TIMESTAMP: "{}__ts",  # parsed once per record in _CLASSIFY's base (TS_PARSED)
    Kind.TEXT_LIST: "CASE WHEN {0} IS NOT NULL THEN json_transform({0}, '[\"VARCHAR\"]') END",
    Kind.BOOL: "({0} ->> '$')::BOOLEAN",
}
_KIND_CHECK_SQL = {
    Kind.TEXT: "text_ok({})",
    Kind.INT: "int_ok({})",
    Kind.TIMESTAMP: "({0} IS NULL OR {0}__ts IS NOT NULL)",
    Kind.TEXT_LIST: """({0} IS NULL OR json_type({0}) = 'ARRAY' AND coalesce(list_bool_and(
            list_transform(json_transform({0}, '["JSON"]'), lambda t: json_type(t) = 'VARCHAR')),
            true))""",
    Kind.BOOL: "({0} IS NULL OR json_type({0}) IN ('BOOLEAN', 'NULL'))",
    Kind.JSON: "NOT coalesce(may_be_deep({0}), false)",
}


def field_value_sql(field: RunField, staged: bool = False) -> str:
    """The column's value: its first source set, read from the record (in _CLASSIFY) or from the
    judged row (`staged`, in _STAGE_RUNS), else its fallback columns' values. Only text and
    timestamp sources can be chained: SQL's coalesce and Python's `or` agree on a missing or ""
    text and on a timestamp in the usual form, not on a 0 or an empty list."""
    if len(field.sources) > 1 and field.kind not in (Kind.TEXT, Kind.TIMESTAMP):
        raise ValueError(f"{field.column}: only text and timestamp fields can have several sources")
    if field.kind is Kind.JSON:  # encoded in Python, as the Python path does (stage.python_json)
        return f"pj.{field.column}"
    values = [
        _KIND_VALUE_SQL[field.kind].format(_staged_source(source) if staged else source)
        for source in field.sources
    ] + [field_value_sql(RUN_FIELDS_BY_COLUMN[column], staged) for column in field.fallback]
    return values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"


def _staged_source(path: str) -> str:
    """A source as a column of the judged rows: a path into a struct is carried by its name."""
    return f'j."{path}"' if "." in path else f"j.{path}"


def field_checks_sql(field: RunField) -> list[str]:
    """The column's checks in `usual`: each source holds a value SQL reads as Python does (and a
    required column has one)."""
    checks = [_KIND_CHECK_SQL[field.kind].format(source) for source in field.sources]
    if field.required:
        checks.append(f"{field_value_sql(field)} IS NOT NULL")
    return checks


# Filled into _CLASSIFY: the checks of every source in `usual`, and the sources inside a struct
# carried by name; into _STAGE_RUNS: each declared column's value, read from the judged row (the
# values are worked out there, not in _CLASSIFY: a judged row holding them would need more memory).
FIELD_CHECKS = "\n    AND ".join(
    dict.fromkeys(check for field in RUN_FIELDS for check in field_checks_sql(field))
)
FIELD_STRUCT_SOURCES = "".join(
    f',\n    {path} AS "{path}"'
    for path in dict.fromkeys(source for field in RUN_FIELDS for source in field.sources)
    if "." in path
)
JSON_FIELDS = tuple(field for field in RUN_FIELDS if field.kind is Kind.JSON)
FIELD_VALUES = ",\n       ".join(
    f"{field_value_sql(field, staged=True)} AS {field.column}" for field in RUN_FIELDS
)

# Each timestamp source parsed once per record (the engine's form only), carried by the judged
# rows as SOURCE__ts: the checks and the values read that.
assert all(
    "." not in source for f in RUN_FIELDS if f.kind is Kind.TIMESTAMP for source in f.sources
), "a timestamp source inside a struct needs its own parsed column name"
TS_PARSED = "".join(
    f",\n           engine_ts({source}) AS {source}__ts"
    for source in dict.fromkeys(
        source for field in RUN_FIELDS if field.kind is Kind.TIMESTAMP for source in field.sources
    )
)

# A test run as run_fields.is_test_run has it: the environment, a JSON value, is the test one.
TEST_RUN_SQL = f"coalesce(text_of({ENVIRONMENT_SOURCE}) = '{TEST_ENVIRONMENT}', false)"
_GENERATED = {
    "@FIELD_STRUCT_SOURCES@": FIELD_STRUCT_SOURCES,
    "@FIELD_CHECKS@": FIELD_CHECKS,
    "@START_TS@": field_value_sql(RUN_FIELDS_BY_COLUMN["start_time"]),
    "@FINISH_TS@": field_value_sql(RUN_FIELDS_BY_COLUMN["finish_time"]),
    "@TEST_RUN@": TEST_RUN_SQL,
    "@TS_PARSED@": TS_PARSED,
}

# Whitespace that Python's str.strip() takes off: an id starting or ending with it is read in
# Python (records.py strips it), not here.
_EDGE_SPACE = r"[\s\pZ\x0b\x1c-\x1f\x85]"

# One row per record read, with what it becomes and whether it is in the usual shape (`usual`).
# The @NAMES@ are filled in by _classify: a clean file's first read, or a numbered careful one.
_CLASSIFY = f"""
CREATE OR REPLACE TABLE stage.judged_rows AS
WITH raw AS (
    SELECT * FROM read_json(?, format = 'newline_delimited', ignore_errors = true,
                            compression = ?, maximum_object_size = {MAX_RECORD_BYTES},
                            columns = @COLUMNS@) @NUMBERED@
), base AS (
    SELECT *,
           id ->> '$' AS id_text,
           status ->> '$' AS status_text@TS_PARSED@,
           @START_TS@ AS start_ts,
           @FINISH_TS@ AS finish_ts,
           @STEP_MAP@ AS step_map,
           @FIRST_FAILED@ AS first_failed,
           CASE WHEN json_type(failedStep) = 'OBJECT'
                THEN json_transform(failedStep, '{{"name": "JSON", "displayName": "JSON",
                                                   "message": "JSON"}}') END AS failed
    FROM raw
), checked AS (
    SELECT *,
        coalesce(json_type(id) = 'VARCHAR' AND id_text <> ''
            AND NOT regexp_matches(id_text, '^{_EDGE_SPACE}|{_EDGE_SPACE}$'),
            false) AS id_usual,
        CASE WHEN status_text IN ({_UNFINISHED_NAMES}) THEN NULL
             WHEN start_ts IS NOT NULL AND finish_ts IS NOT NULL
                 THEN (epoch_us(finish_ts) - epoch_us(start_ts)) // 1000
             ELSE try_cast(duration AS BIGINT) END AS duration_ms,
        -- the failed step as records.failed_step_fields names it, when no loop hides one
        coalesce(text_of(failed.name), failedStepName ->> '$') AS named_failure,
        first_failed IS NOT NULL
            AND (named_failure IS NULL OR named_failure = first_failed.key) AS step_failure
    FROM base
)
SELECT * EXCLUDE (steps, flowVersion, failedStep, step_map, named_failure@ORDINALITY@),
    @LINE@ AS line@STAGED_STEPS@@FIELD_STRUCT_SOURCES@,
    flowVersion.id AS version_id,
    flowVersion.trigger AS trigger,
    CASE WHEN cardinality(step_map) > 0 THEN map_keys(step_map) END AS step_names,
    coalesce(cardinality(step_map) > 0, false) AS has_steps,
    nullif(CASE WHEN step_failure THEN first_failed.key ELSE named_failure END, '')
        AS failed_name,
    coalesce(text_of(failed.message),
             CASE WHEN step_failure THEN text_of(first_failed.value.errorMessage) END)
        AS failed_error,
    coalesce(id_usual AND @TEST_RUN@, false) AS test_run,
    -- NULL anywhere below means "not usual": the record goes to Python, it is never dropped
    coalesce(id_usual AND NOT @TEST_RUN@
    AND json_type(status) = 'VARCHAR' AND status_text IN ({_STATUS_NAMES})
    AND (start_ts IS NULL OR finish_ts IS NULL OR finish_ts >= start_ts)
    AND (start_ts IS NOT NULL AND finish_ts IS NOT NULL OR int_ok(duration))
    AND @FIELD_CHECKS@
    AND text_ok(failedStepName)
    -- a flow version's trigger is read for its step catalog, keyed by its id
    AND (flowVersion.id IS NOT NULL OR flowVersion.trigger IS NULL)
    AND (failedStep IS NULL OR failed IS NOT NULL AND text_ok(failed.name)
         AND text_ok(failed.displayName))
    AND (steps IS NULL OR step_map IS NOT NULL AND coalesce(list_bool_and(list_transform(
            -- a step without type and status was not an object, or is odd: Python judges it
            map_values(step_map), lambda v: v.type IS NOT NULL OR v.status IS NOT NULL)), true))
    AND NOT coalesce(may_be_deep(failedStep), false)
    AND @SHALLOW@,
        false) AS usual,
    -- the failed step of these is worked out in Python (records.failed_step_fields)
    @PYTHON_FAILED@
        OR coalesce(json_type(failed.message) NOT IN ('VARCHAR', 'NULL'), false) AS python_failed,
    CASE WHEN python_failed THEN @FAILED_STEPS@ END AS failed_steps_text,
    CASE WHEN python_failed THEN failedStep END AS failed_step_json
FROM checked
"""

# A clean file's first read: steps as JUDGED_STEPS_TYPE; the first FAILED step is found in SQL
# unless a loop's iterations hold a failure (Python looks inside) or its error is not text.
_JUDGING = {
    "@COLUMNS@": _read_columns(JUDGED_STEPS_TYPE),
    "@NUMBERED@": "",
    "@ORDINALITY@": "",
    "@LINE@": "NULL::BIGINT",
    "@STAGED_STEPS@": "",
    "@STEP_MAP@": "steps",
    "@FIRST_FAILED@": "list_filter(map_entries(step_map), lambda e: e.value.status = 'FAILED')[1]",
    "@PYTHON_FAILED@": """coalesce(list_bool_or(list_transform(map_values(step_map),
        lambda v: contains(v.output.iterations, '"FAILED"'))), false)
        OR coalesce(step_failure AND json_type(first_failed.value.errorMessage)
                    NOT IN ('VARCHAR', 'NULL'), false)""",
    "@FAILED_STEPS@": "to_json(step_map)",
    "@SHALLOW@": "true",  # its payloads are not read here: FILE_STEP_MAPS checks them
}
# The careful read: numbered by line, steps whole (staged for the store), and every run with a
# failure anywhere in its steps handed to Python for its failed step.
_CAREFUL = {
    "@COLUMNS@": _read_columns("JSON"),
    "@NUMBERED@": "WITH ORDINALITY",
    "@ORDINALITY@": ", ordinality",
    "@LINE@": "ordinality - 1",
    "@STAGED_STEPS@": ", step_map",
    "@STEP_MAP@": f"""CASE WHEN starts_with(steps, '{{')
                           THEN json_transform(steps, '"{STEPS_TYPE}"') END""",
    "@FIRST_FAILED@": "NULL::STRUCT(key VARCHAR, value STRUCT(errorMessage JSON))",
    "@PYTHON_FAILED@": """coalesce(contains(steps, '"FAILED"'), false)""",
    "@FAILED_STEPS@": "steps",
    "@SHALLOW@": """NOT coalesce(list_bool_or(list_transform(map_values(step_map),
        lambda v: step_may_be_deep(v))), false)""",
}

# The steps of a file judged by its first read, read again whole when its runs are applied. No
# error is ignored: steps that are not an object of step objects fail the read (the first read
# saw them as no steps), and the file is then read the careful way.
FILE_STEP_MAPS = f"""
SELECT id ->> '$' AS id,
       CASE WHEN list_bool_or(list_transform(map_values(steps), lambda v: step_may_be_deep(v)))
            THEN error('a step payload may nest too deep: read the file carefully')
            ELSE steps END AS steps
FROM read_json(?, format = 'newline_delimited', compression = ?,
    maximum_object_size = {MAX_RECORD_BYTES},
    columns = {{'id': 'JSON', 'environment': 'JSON', 'steps': '{STEPS_TYPE}'}})
WHERE NOT {TEST_RUN_SQL} AND cardinality(steps) > 0
"""

_STAGE_RUNS = """
INSERT INTO stage.runs BY NAME
SELECT j.id_text AS id, @FIELD_VALUES@,
       j.status_text AS status, j.duration_ms,
       coalesce(f.failed_step, CASE WHEN NOT j.python_failed THEN j.failed_name END)
           AS failed_step,
       coalesce(f.failed_step_display, CASE WHEN NOT j.python_failed THEN coalesce(
                text_of(j.failed.displayName),
                nullif(c.display_name, '')) END) AS failed_step_display,
       left(e.error, ?) AS error_message, g.signature AS error_signature,
       j.has_steps, ? AS source,
       (j.r + 1) * ? AS seq, false AS flat,
       k.catalog_key, j.step_names
FROM stage.judged j
LEFT JOIN stage.version_keys k ON k.version_id = text_of(j.version_id)
LEFT JOIN stage.python_fields f ON f.r = j.r
LEFT JOIN stage.python_json pj ON pj.r = j.r
LEFT JOIN stage.catalog c ON c.catalog_key = k.catalog_key AND c.name = j.failed_name
LEFT JOIN stage.errors e ON e.r = j.r
LEFT JOIN stage.signatures g ON g.error = e.error
WHERE j.usual AND NOT j.test_run
""".replace("@FIELD_VALUES@", FIELD_VALUES)

# After a careful read the steps stay where the reader put them; the Python path's runs keep
# theirs in stage.runs.
_STEP_MAPS = f"""
CREATE OR REPLACE VIEW stage.run_step_maps AS
SELECT seq, steps FROM stage.runs WHERE steps IS NOT NULL
UNION ALL
SELECT (r + 1) * {SEQ_PER_LINE} AS seq, step_map AS steps FROM stage.judged
WHERE usual AND NOT test_run AND cardinality(step_map) > 0
"""

_ERRORS = """
CREATE TABLE stage.errors AS
SELECT j.r AS r, coalesce(f.error, CASE WHEN NOT j.python_failed THEN j.failed_error END) AS error
FROM stage.judged j LEFT JOIN stage.python_fields f ON f.r = j.r
WHERE j.usual AND NOT j.test_run AND (j.failed_error IS NOT NULL OR f.error IS NOT NULL)
"""


class BulkUnavailable(Exception):
    """The file cannot be read by DuckDB's reader as a whole; the caller reads it in Python."""


class StepsNotUsual(Exception):
    """FILE_STEP_MAPS failed on steps the first read could not see were odd: the caller reads the
    file again the careful way (`stage_jsonl(careful=True)`)."""


@contextmanager
def _insertion_order_free(con) -> Iterator[None]:
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("RESET preserve_insertion_order")


@contextmanager
def reading_progress(con, source: SourceFile, progress, half: int) -> Iterator[None]:
    """Reports DuckDB's progress through the file while its reader runs, as the first half of
    the bar (judging the records) or the second (loading the runs and their steps)."""
    if progress is None:
        yield
        return
    finished = threading.Event()
    start = source.total_bytes * half // 2

    def report() -> None:
        shown = start  # the file may be read twice (see _read_judged): the bar never goes back
        while not finished.wait(0.25):
            done = start + int(source.total_bytes * min(con.query_progress(), 100) / 200)
            if done > shown:
                shown = done
                progress(done, source.total_bytes)

    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        yield
    finally:
        finished.set()
        reporter.join()
    # not reached when the block failed: its transaction is aborted until the caller rolls back,
    # and the next reading_progress sets the same settings again
    con.execute("RESET enable_progress_bar")
    con.execute("RESET enable_progress_bar_print")
    progress(start + source.total_bytes // 2, source.total_bytes)


def stage_jsonl(
    con,
    source: SourceFile,
    batches,
    progress: Callable[[int, int], None] | None,
    careful: bool = False,
) -> list | None:
    """Stages a JSONL file into `stage.runs` / `stage.catalog` (the caller's staging database),
    usual records in SQL, the rest through `batches.take` with their line numbers. Returns the
    parameters of FILE_STEP_MAPS when the file's steps are left in it (a clean file read once),
    None when they are staged in `stage.run_step_maps`. `careful` skips the first read."""
    con.execute(_MACROS)
    with _insertion_order_free(con):  # rows carry their line; keeping order costs memory
        return _stage_records(con, source, batches, progress, careful)


def _stage_records(con, source: SourceFile, batches, progress, careful: bool) -> list | None:
    arguments = [str(source.path), "gzip" if source.gzipped else "none"]
    with reading_progress(con, source, progress, half=0):
        judged_only = _read_judged(con, arguments, careful)
    catalogs = _stage_catalogs(con)
    _stage_python_fields(con, catalogs)
    _stage_errors(con)
    con.execute(_STAGE_RUNS, [MAX_ERROR_CHARS, source.name, SEQ_PER_LINE])
    batches.test_runs += con.execute("SELECT count(*) FROM stage.judged WHERE test_run").fetchall()[
        0
    ][0]
    if judged_only:
        return arguments
    con.execute(_STEP_MAPS)
    unusual = [
        row[0] + 1
        for row in con.execute(
            "SELECT r FROM stage.judged WHERE NOT usual AND NOT test_run ORDER BY r"
        ).fetchall()
    ]
    if unusual:
        _take_lines(
            source,
            unusual,
            batches,
            con.execute("SELECT count(*) FROM stage.judged").fetchall()[0][0],
        )
    return None


def _read_judged(con, arguments: list, careful: bool) -> bool:
    """Reads and judges every record into `stage.judged`, `r` being its record number; True
    when that was a clean file's first read (its steps left in the file).

    Numbering records by line (WITH ORDINALITY) makes DuckDB read the file on one thread, at
    about half the speed. Line order only matters for records handed to Python (their line numbers)
    and for several versions of one run in the file (the later line wins a tie), so the file is
    read unnumbered first and read again numbered only when it holds either."""
    judged_only = not careful and _read_unnumbered(con, arguments) and not _needs_line_order(con)
    if not judged_only:
        con.execute(_classify(numbered=True), arguments)
    con.execute(
        "CREATE OR REPLACE VIEW stage.judged AS "
        "SELECT * EXCLUDE (line), coalesce(line, rowid) AS r FROM stage.judged_rows"
    )
    return judged_only


def _read_unnumbered(con, arguments: list) -> bool:
    """Reads on every core; False when that needs more memory than the limit allows (each
    thread holds its own buffers), so that the file is read on one thread instead."""
    try:
        con.execute(_classify(numbered=False), arguments)
    except duckdb.OutOfMemoryException:
        return False
    return True


def _classify(numbered: bool) -> str:
    """The unnumbered read is a clean file's first read (_JUDGING); the numbered one is careful."""
    sql = _CLASSIFY
    for name, fragment in _GENERATED.items():
        sql = sql.replace(name, fragment)
    for name, fragment in (_CAREFUL if numbered else _JUDGING).items():
        sql = sql.replace(name, fragment)
    return sql


def _needs_line_order(con) -> bool:
    return con.execute("""
        SELECT count(*) FILTER (WHERE NOT usual AND NOT test_run) > 0
               OR count(DISTINCT id_text) FILTER (WHERE usual AND NOT test_run)
                  < count(*) FILTER (WHERE usual AND NOT test_run)
        FROM stage.judged_rows""").fetchall()[0][0]


def _stage_catalogs(con) -> dict[str, dict]:
    """Step catalogs, one per flow version, computed by the same code as the Python path."""
    versions = con.execute("""
        WITH first AS (
            SELECT version_id, min(r) AS r FROM stage.judged
            WHERE usual AND NOT test_run AND version_id IS NOT NULL GROUP BY ALL)
        SELECT text_of(j.version_id), j.trigger FROM stage.judged j
        WHERE j.r IN (SELECT r FROM first) ORDER BY 1""").fetchall()
    keys: list[tuple[str, int]] = []
    rows: list[tuple] = []
    catalogs: dict[str, dict] = {}
    for number, (version_id, trigger) in enumerate(versions, 1):
        key = -number  # the Python path numbers its catalogs 1, 2, ...
        catalog = catalogs[version_id] = step_catalog(
            {"id": version_id, "trigger": _trigger(trigger)}
        )
        if not catalog:
            continue
        keys.append((version_id, key))
        rows.extend(
            (key, name, entry.get("displayName"), entry.get("pieceName"), entry.get("actionName"))
            for name, entry in catalog.items()
        )
    _create_from_rows(
        con, "stage.version_keys", ["version_id", "catalog_key"], ["VARCHAR", "BIGINT"], keys
    )
    _insert_rows(
        con,
        "stage.catalog",
        ["catalog_key", "name", "display_name", "piece_name", "action_name"],
        ["BIGINT", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"],
        rows,
    )
    return catalogs


def _trigger(text: str | None):
    """A flow version's trigger for its step catalog; one nested past MAX_JSON_DEPTH gives no
    step names (the runs still load; their steps show without display names)."""
    try:
        return loads_bounded(text) if text else None
    except TooDeep:
        return None


def _judged_steps(text: str) -> dict:
    """A first read's steps (no payloads, but loops' iterations): iterations nested too deep send
    the file to the careful read, where such a run goes to Python and is rejected."""
    try:
        return loads_bounded(text)
    except TooDeep:
        raise StepsNotUsual("a loop's iterations nest too deep") from None


def _stage_python_fields(con, catalogs: dict[str, dict]) -> None:
    """The failed step and error of runs with a failure in their steps (few rows, subtle rules),
    and the JSON fields as the Python path encodes them: the Python code decides."""

    def failed_fields(r, failed, failed_name, steps, version_id) -> tuple:
        record = {
            "failedStep": json.loads(failed) if failed else None,
            "failedStepName": json.loads(failed_name) if failed_name else None,
        }
        return (
            r,
            *failed_step_fields(
                record, _judged_steps(steps) if steps else {}, catalogs.get(version_id, {})
            ),
        )

    _stage_computed(
        con,
        "stage.python_fields",
        ["r", "failed_step", "failed_step_display", "error"],
        "r, failed_step_json, failedStepName, failed_steps_text, text_of(version_id)",
        "python_failed",
        failed_fields,
    )
    _stage_computed(
        con,
        "stage.python_json",
        ["r", *(field.column for field in JSON_FIELDS)],
        ", ".join(["r", *(field.sources[0] for field in JSON_FIELDS)]),
        " OR ".join(f"{field.sources[0]} IS NOT NULL" for field in JSON_FIELDS),
        lambda r, *texts: (r, *(json_text(json.loads(text)) if text else None for text in texts)),
    )


def _stage_computed(
    con, table: str, names: list[str], columns: str, condition: str, compute: Callable[..., tuple]
) -> None:
    """A table of rows computed in Python from some staged records, a slice of records at a
    time so that memory does not grow with the file."""
    types = ["BIGINT"] + ["VARCHAR"] * (len(names) - 1)
    _create_from_rows(con, table, names, types, [])
    last = con.execute("SELECT max(r) FROM stage.judged").fetchall()[0][0]
    for first in range(0, (last or 0) + 1, PYTHON_SLICE_RECORDS):
        rows = con.execute(
            f"SELECT {columns} FROM stage.judged WHERE usual AND NOT test_run "
            f"AND {condition} AND r >= ? AND r < ?",
            [first, first + PYTHON_SLICE_RECORDS],
        ).fetchall()
        _insert_rows(con, table, names, types, [compute(*row) for row in rows])


def _stage_errors(con) -> None:
    """Error signatures, computed once per distinct message."""
    con.execute(_ERRORS)
    messages = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT error FROM stage.errors WHERE error IS NOT NULL"
        ).fetchall()
    ]
    signatures = [(message, error_signature(message)) for message in messages]
    _create_from_rows(
        con, "stage.signatures", ["error", "signature"], ["VARCHAR", "VARCHAR"], signatures
    )


def _create_from_rows(
    con, table: str, names: list[str], types: list[str], rows: list[tuple]
) -> None:
    """A table from Python rows, passed as one list parameter per column (turning them into
    Arrow would import pandas, ~0.4 s of every ingest)."""
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS SELECT {_unnested(names, types)}",
        _columns(names, rows),
    )


def _insert_rows(con, table: str, names: list[str], types: list[str], rows: list[tuple]) -> None:
    if rows:
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT {_unnested(names, types)}", _columns(names, rows)
        )


def _unnested(names: list[str], types: list[str]) -> str:
    return ", ".join(
        f"unnest(?::{kind}[]) AS {name}" for name, kind in zip(names, types, strict=True)
    )


def _columns(names: list[str], rows: list[tuple]) -> list[list]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def _take_lines(source: SourceFile, ordinals: list[int], batches, records_read: int) -> None:
    """Hands the records DuckDB's reader counted as numbers `ordinals` (1-based, blank lines not
    counted) to the Python path, with their real line numbers."""
    wanted = set(ordinals)
    found = 0
    for ordinal, number, text, too_large in _non_blank_lines(source):
        if ordinal in wanted:
            items = (
                [too_large_item("line", number, text)]
                if too_large
                else json_items("line", number, text)
            )
            for k, item in enumerate(items):
                batches.take(item, seq=ordinal * SEQ_PER_LINE + min(k, SEQ_PER_LINE - 1))
        found = ordinal
    if found != records_read:
        raise BulkUnavailable(f"DuckDB read {records_read} records, Python {found} lines")


def _non_blank_lines(source: SourceFile) -> Iterator[tuple[int, int, str, bool]]:
    """(ordinal among non-blank lines, line number, stripped text, too large) for each non-blank
    line; of a line past RUNS_MAX_RECORD_MB only the head is read into memory."""
    with source.open_text() as text:
        ordinal = 0
        for number, line, too_large in bounded_lines(text, max_record_chars()):
            stripped = line.strip()
            if stripped:
                ordinal += 1
                yield ordinal, number, stripped, too_large
