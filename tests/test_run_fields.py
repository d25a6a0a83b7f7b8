"""Each declared run field (runs_store.domain.run_fields) gives the same row by both paths.

For every field, each of its sources alone, all of them together (precedence), none, an empty or
null value, and odd values are written to one JSONL file and loaded by the fast path (DuckDB's
reader, `bulk_jsonl`) and by the Python reader alone; every column of every run and every rejected
record must match. Records in the usual shape must be judged in SQL, not handed to Python, so the
comparison really is of the two paths. And the fast path's SQL holds no mapping of a declared field
written by hand: it is generated from the declaration.
"""

from __future__ import annotations

import re

import pytest

from factories import simple_run, write_jsonl
from runs_store.domain import run_fields
from runs_store.domain.records import RUN_COLUMNS, normalize_run
from runs_store.domain.run_fields import RUN_FIELDS, Kind, RecordRejected, RunField
from runs_store.ingest import bulk_jsonl
from test_bulk_jsonl import assert_same_store, load_both_ways

# A value of each kind in the engine's usual form, and values SQL leaves to Python (read or
# rejected there): a number for a text, a decimal or text for a count, a timestamp without Z, ...
USUAL = {
    Kind.TEXT: "value",
    Kind.INT: 7,
    Kind.TIMESTAMP: "2026-11-03T09:14:05.250Z",
    Kind.TEXT_LIST: ["billing", "eu"],
}
ODD = {
    Kind.TEXT: [5, True, {"a": 1}],
    Kind.INT: [3.7, "12", "twelve", True, 0],
    Kind.TIMESTAMP: ["2026-11-03 09:14:05", "2026-11-03T10:14:05+01:00", "yesterday", 17],
    Kind.TEXT_LIST: ["billing", [1, "b"], {"a": 1}],
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
    value = USUAL[field.kind]
    return f"{value}-{source}" if isinstance(value, str) and field.kind is Kind.TEXT else value


def field_cases(field: RunField) -> list[tuple[dict, bool]]:
    """(record, in the usual shape) for every case of the field; ids are unique in the file."""
    cases: list[tuple[dict, bool]] = []

    def case(name: str, values: dict, usual: bool) -> None:
        record = without_sources(simple_run(f"{field.column}-{len(cases)}-{name}"), field)
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
            usual = field.kind is Kind.INT and odd == 0  # a whole number, if a falsy one
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


def test_only_a_text_field_may_fall_back_on_another_source_in_sql():
    chained = RunField("tasks", Kind.INT, ("tasks", "taskCount"))
    with pytest.raises(ValueError, match="only text fields"):
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
