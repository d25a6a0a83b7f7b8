"""Each declared run field (runs_store.domain.run_fields) gives the same row by both paths.

For every field, each of its sources alone, all of them together (precedence), none, an empty or
null value, and odd values are written to one JSONL file and loaded by the fast path (DuckDB's
reader, `bulk_jsonl`) and by the Python reader alone; every column of every run and every rejected
record must match. Records in the usual shape must be judged in SQL, not handed to Python, so the
comparison really is of the two paths. And the fast path's SQL holds no mapping of a declared field
written by hand: it is generated from the declaration.
"""

from __future__ import annotations

import json
import re

import pytest

from factories import rows, simple_run, write_jsonl
from runs_store.domain import run_fields
from runs_store.domain.records import RUN_COLUMNS, normalize_run
from runs_store.domain.run_fields import (
    FLAT_FIELDS,
    RUN_FIELDS,
    TEST_ENVIRONMENT,
    Kind,
    RecordRejected,
    RunField,
    is_test_run,
)
from runs_store.ingest import bulk_jsonl
from runs_store.ingest.pipeline import ingest_paths
from runs_store.services import export
from runs_store.services.export import EXPORT_COLUMNS
from runs_store.store.database import open_db
from test_bulk_jsonl import assert_same_store, load_both_ways

# A value of each kind in the engine's usual form, and values SQL leaves to Python (read or
# rejected there): a number for a text, a decimal or text for a count, a timestamp without Z, ...
USUAL = {
    Kind.TEXT: "value",
    Kind.INT: 7,
    Kind.TIMESTAMP: "2026-11-03T09:1{k}:05.250Z",  # between the base run's start and finish
    Kind.TEXT_LIST: ["billing", "eu"],
    Kind.BOOL: True,
    Kind.JSON: {"legs": [[{"name": "QUEUE", "durationMs": 120}, {"name": "RUN", "durationMs": 9}]]},
}
# Any JSON value is kept as its text, read alike both ways: these are usual too.
DEEP = json.loads("[" * 300 + "]" * 300)
ODD = {
    Kind.TEXT: [5, True, {"a": 1}],
    Kind.INT: [3.7, "12", "twelve", True, 0],
    Kind.TIMESTAMP: ["2026-11-03 09:14:05", "2026-11-03T10:14:05+01:00", "yesterday", 17],
    Kind.TEXT_LIST: ["billing", [1, "b"], {"a": 1}],
    Kind.BOOL: ["true", 1, {"a": 1}, False],
    Kind.JSON: ["text", 5, [1, "ü"], False, DEEP],
}


def without_sources(record: dict, field: RunField) -> dict:
    for path in field.sources:
        *parents, name = path.split(".")
        holder = record
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(name, None)
    return record


def with_source(record: dict, path: str, value) -> dict:
    *parents, name = path.split(".")
    holder = record
    for parent in parents:
        holder = holder.setdefault(parent, {})
    holder[name] = value
    return record


def usual_value(field: RunField, source: str):
    """A usual value of the field's kind, different for each of its sources."""
    value = USUAL[field.kind]
    if field.kind is Kind.TEXT:
        return f"{value}-{source}"
    if field.kind is Kind.TIMESTAMP:
        return str(value).format(k=field.sources.index(source))
    return value


def base_run(run_id: str) -> dict:
    """A run whose start and finish are an hour either side of every usual timestamp, so that no
    field's value puts a finish before a start."""
    return simple_run(run_id, startTime="2026-11-03T08:00:00Z", finishTime="2026-11-03T10:00:00Z")


def field_cases(field: RunField) -> list[tuple[dict, bool]]:
    """(record, in the usual shape) for every case of the field; ids are unique in the file."""
    cases: list[tuple[dict, bool]] = []

    def case(name: str, values: dict, usual: bool) -> None:
        record = without_sources(base_run(f"{field.column}-{len(cases)}-{name}"), field)
        for path, value in values.items():
            with_source(record, path, value)
        cases.append((record, usual))

    case("none", {}, usual=not field.required)
    case("all", {path: usual_value(field, path) for path in field.sources}, usual=True)
    for k, path in enumerate(field.sources):
        case(f"only-{path}", {path: usual_value(field, path)}, usual=True)
        case(f"null-{path}", {path: None}, usual=not field.required)
        if field.kind is Kind.TEXT:  # "" is no value: the next source is read
            later = {p: usual_value(field, p) for p in field.sources[k + 1 :]}
            case(f"empty-{path}", {path: "", **later}, usual=bool(later) or not field.required)
        for n, odd in enumerate(ODD[field.kind]):
            usual = (
                (field.kind in (Kind.INT, Kind.BOOL) and odd is not True and odd == 0)  # falsy
                or (field.kind is Kind.JSON and odd is not DEEP)  # any JSON value not too deep
            )
            case(f"odd{n}-{path}", {path: odd}, usual=usual)
    return cases


@pytest.mark.parametrize("field", RUN_FIELDS, ids=lambda field: field.column)
def test_each_source_of_a_declared_field_loads_the_same_both_ways(
    tmp_path, monkeypatch, field: RunField
):
    cases = field_cases(field)
    path = write_jsonl(tmp_path / f"{field.column}.jsonl", [record for record, _ in cases])
    handed_to_python: list[int] = []
    take_lines = bulk_jsonl._take_lines

    def noting(source, ordinals, batches, records_read):
        handed_to_python.extend(ordinals)
        return take_lines(source, ordinals, batches, records_read)

    monkeypatch.setattr(bulk_jsonl, "_take_lines", noting)
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    judged_in_sql = [line for line, (_, usual) in enumerate(cases, 1) if usual]
    assert not set(judged_in_sql) & set(handed_to_python), "a usual record was left to Python"
    assert handed_to_python, "no odd value was left to Python: the test is not testing that path"


def test_the_first_source_set_wins_and_its_kind_reads_it():
    record = simple_run("r1", flowDisplayName="Old name", flowVersionId="", tasks=3.9)
    record["flowVersion"] = {"id": "v-9", "displayName": ""}
    row = normalize_run(record, "test").row
    assert (row["flow_name"], row["flow_version_id"], row["tasks"]) == ("Old name", "v-9", 3)


def test_a_required_field_without_any_source_names_them_all():
    record = without_sources(simple_run("r1"), run_fields.RUN_FIELDS_BY_COLUMN["flow_name"])
    with pytest.raises(RecordRejected) as rejected:
        normalize_run(record, "test")
    assert (
        str(rejected.value) == "no flow name (flowVersion.displayName, flowDisplayName or flowId)"
    )


def test_every_declared_field_is_a_run_column_and_every_source_is_read_by_the_fast_path():
    assert [field.column for field in RUN_FIELDS] == [
        column for column in RUN_COLUMNS if column in run_fields.RUN_FIELDS_BY_COLUMN
    ]
    read = bulk_jsonl._read_columns("JSON")
    for field in RUN_FIELDS:
        for path in field.sources:
            top, _, inner = path.partition(".")
            assert f"'{top}'" in read, path
            assert not inner or re.search(rf"'{top}': 'STRUCT\([^']*\b{inner} JSON", read), path


def test_only_a_text_or_timestamp_field_may_fall_back_on_another_source_in_sql():
    chained = RunField("tasks", Kind.INT, ("tasks", "taskCount"))
    with pytest.raises(ValueError, match="only text and timestamp fields"):
        bulk_jsonl.field_value_sql(chained)


# flowVersion.id also keys a flow version's step catalog (version_id), a rule of its own.
ALSO_READ_BY_OTHER_RULES = {"flowVersion.id"}


@pytest.mark.parametrize("template", ["_CLASSIFY", "_STAGE_RUNS"])
def test_the_fast_paths_sql_maps_no_declared_field_by_hand(template):
    text = getattr(bulk_jsonl, template)
    if template == "_STAGE_RUNS":  # filled in when the module loads: take the fragment out again
        assert bulk_jsonl.FIELD_VALUES in text
        text = text.replace(bulk_jsonl.FIELD_VALUES, "@FIELD_VALUES@")
    else:
        assert "@FIELD_CHECKS@" in text and "@FIELD_STRUCT_SOURCES@" in text
    for field in RUN_FIELDS:
        assert not re.search(rf"\bAS\s+{field.column}\b", text, re.IGNORECASE), field.column
        for path in set(field.sources) - ALSO_READ_BY_OTHER_RULES:
            assert not re.search(rf"(?<![\w.]){re.escape(path)}\b", text, re.IGNORECASE), path


def test_the_fast_path_runs_the_generated_sql():
    for numbered in (False, True):
        sql = bulk_jsonl._classify(numbered)
        assert bulk_jsonl.FIELD_CHECKS in sql and "@" not in sql
    for field in RUN_FIELDS:
        assert bulk_jsonl.field_value_sql(field, staged=True) in bulk_jsonl._STAGE_RUNS
        for check in bulk_jsonl.field_checks_sql(field):
            assert check in bulk_jsonl.FIELD_CHECKS


# ---------------------------------------------------------------- times, test runs, flat columns


def test_times_follow_their_declared_precedence_and_fallback_both_ways(tmp_path):
    records = [
        simple_run("created-wins", startTime="2026-11-03T08:59:00Z"),
        without_sources(simple_run("start-stands-in"), RunField("x", Kind.TEXT, ("created",))),
        simple_run("finish-stands-in", updated=None, finishTime="2026-11-03T09:05:00Z"),
        simple_run("start-stands-in-for-update", status="RUNNING", updated=None, finishTime=None),
    ]
    path = write_jsonl(tmp_path / "times.jsonl", records)
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    got = {
        run_id: (str(started), str(updated))
        for run_id, started, updated in rows(
            tmp_path / "fast.duckdb", "SELECT id, started_at, updated_at FROM runs"
        )
    }
    assert got == {
        "created-wins": ("2026-11-03 09:00:00", "2026-11-03 09:00:00"),
        "start-stands-in": ("2026-11-03 09:00:00", "2026-11-03 09:00:00"),
        "finish-stands-in": ("2026-11-03 09:00:00", "2026-11-03 09:05:00"),
        "start-stands-in-for-update": ("2026-11-03 09:00:00", "2026-11-03 09:00:00"),
    }


def test_a_later_update_wins_by_the_declared_update_time_both_ways(tmp_path):
    """The newer version of a run wins, whichever line it is on; without `updated` its finish
    decides."""
    records = [
        simple_run("r1", status="RUNNING", updated="2026-11-03T09:00:01Z", finishTime=None),
        simple_run("r1", status="SUCCEEDED", updated=None, finishTime="2026-11-03T09:00:09Z"),
        simple_run("r1", status="FAILED", updated="2026-11-03T09:00:05Z"),
    ]
    path = write_jsonl(tmp_path / "versions.jsonl", records)
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert rows(tmp_path / "fast.duckdb", "SELECT status FROM runs") == [("SUCCEEDED",)]


ENVIRONMENT_LINES = {
    "TESTING": '"TESTING"',
    "escaped": '"TEST\\u0049NG"',
    "production": '"PRODUCTION"',
    "lower case": '"testing"',
    "null": "null",
    "a number": "5",
}


def test_the_test_run_rule_is_the_same_both_ways(tmp_path):
    lines = []
    for n, (name, environment) in enumerate(ENVIRONMENT_LINES.items()):
        record = simple_run(f"env-{n}-{name}")
        text = json.dumps(record).replace('"PRODUCTION"', environment)
        lines.append(text)
    lines.append(
        json.dumps({k: v for k, v in simple_run("env-missing").items() if k != "environment"})
    )
    path = tmp_path / "environments.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fast, slow = load_both_ways(tmp_path, path)
    assert_same_store(tmp_path, fast, slow)
    assert fast.test_runs == 2 and fast.new == len(lines) - 2
    assert is_test_run({"environment": TEST_ENVIRONMENT})
    assert bulk_jsonl.TEST_RUN_SQL in bulk_jsonl.FILE_STEP_MAPS


def test_every_flat_export_column_is_declared_once_and_read_back(shared_db, tmp_path):
    """Each column of our export is either a declared flat field (written from, and read back into,
    the same store column) or one of normalize_flat_row's own rules; an export loads back as the
    same runs, for every flat column."""
    declared = {field.sources[0]: field for field in FLAT_FIELDS}
    assert set(EXPORT_COLUMNS) == set(declared) | set(export._OWN_EXPORT)
    assert not set(declared) & set(export._OWN_EXPORT)
    compared = sorted({field.column for field in FLAT_FIELDS} | {"id", "status", "duration_ms"})
    query = f"SELECT {', '.join(compared)} FROM runs ORDER BY id"
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"runs.{fmt}"
        with open_db(shared_db, read_only=True) as con:
            out.write_bytes(export.export_bytes(con, fmt, mask=False))
        again = tmp_path / f"again-{fmt}.duckdb"
        summary = ingest_paths(again, [out])
        assert summary.rejected == 0 and summary.new > 1000
        assert rows(again, query) == rows(shared_db, query), fmt
