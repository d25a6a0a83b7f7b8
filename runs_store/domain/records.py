"""Turning one run record into the rows the store keeps, or a reason to reject it.

Reads the engine's run objects in both its newer shape (`flowVersion.displayName`, `failedStep`,
`finishTime - startTime`) and its older one (`flowDisplayName`, `failedStepName`, `duration`),
and the flat rows of a CSV or Parquet export. Each record is judged on its own: a bad one raises
`RecordRejected` with a reason a person can act on, and the rest of its file still loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runs_store.domain.bounded_json import has_surrogate_escape
from runs_store.domain.run_fields import (
    FLAT_FIELDS,
    GIVEN_DURATION,
    GIVEN_FLAT_DURATION,
    RUN_FIELDS,
    RecordRejected,
    duration_ms,
    is_test_run,
    json_text,
    read_field,
    text_value,
)
from runs_store.domain.signatures import error_signature
from runs_store.domain.statuses import parse_status

MAX_ERROR_CHARS = 2000

RUN_COLUMNS = (
    "id",
    "project_id",
    "flow_id",
    "flow_version_id",
    "flow_name",
    "status",
    "started_at",
    "start_time",
    "finish_time",
    "duration_ms",
    "failed_step",
    "failed_step_display",
    "error_message",
    "error_signature",
    "archived_at",
    "updated_at",
    "tags",
    "parent_run_id",
    "tasks",
    "steps_count",
    "has_steps",
    "pause_metadata",
    "source",
    "triggered_by",
    "logs_file_id",
    "steps_data_truncated",
    "timeline",
    "internal_error",
)


# What the store reads of each step output, as DuckDB parses it out of a run's `steps` object.
STEPS_TYPE = (
    "MAP(VARCHAR, STRUCT(type VARCHAR, status VARCHAR, duration DOUBLE, input JSON, "
    "output JSON, errorMessage JSON))"
)


class TestRun(Exception):
    """A run from the engine's TESTING environment: never shown, only counted."""


@dataclass
class NormalizedRun:
    row: dict
    steps_json: str | None = None  # JSON text with the run's steps at `$.steps`
    catalog: dict[str, dict] | None = None  # step name -> display name, piece, action
    step_names: list[str] | None = None  # execution order


# ---------------------------------------------------------------- values


def _error_text(value) -> str | None:
    """errorMessage may be any JSON value; as text it is the string itself or its JSON."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json_text(value)


def _status_name(value) -> str:
    if value is None or value == "":
        raise RecordRejected("missing status")
    found = parse_status(value) if isinstance(value, str) else None
    if found is None:
        raise RecordRejected(f"unknown status {value!r}")
    return found.name


def _run_id(value) -> str:
    if value is None or value == "":
        raise RecordRejected("missing id")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RecordRejected(f"id is not text: {value!r}")
    return str(value).strip()


# ---------------------------------------------------------------- steps

_CATALOGS: dict[str, dict[str, dict]] = {}


def step_catalog(flow_version) -> dict[str, dict]:
    """The flow version's step catalog, computed once per version id (versions never change)."""
    version_id = flow_version.get("id") if isinstance(flow_version, dict) else None
    # a version seen without its step graph (an API list item) is not remembered as stepless
    if not isinstance(version_id, str) or flow_version.get("trigger") is None:
        return _step_catalog(flow_version)
    catalog = _CATALOGS.get(version_id)
    if catalog is None:
        if len(_CATALOGS) > 10_000:
            _CATALOGS.clear()
        catalog = _CATALOGS[version_id] = _step_catalog(flow_version)
    return catalog


def _step_catalog(flow_version) -> dict[str, dict]:
    """Step name -> {displayName, pieceName, actionName} from the flow version's step tree."""
    catalog: dict[str, dict] = {}
    if not isinstance(flow_version, dict):
        return catalog
    pending = [flow_version.get("trigger")]
    while pending:
        step = pending.pop()
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            continue
        step_settings = step.get("settings")
        if not isinstance(step_settings, dict):
            step_settings = {}
        catalog[step["name"]] = {
            "displayName": step.get("displayName"),
            "pieceName": step_settings.get("pieceName"),
            "actionName": step_settings.get("actionName") or step_settings.get("triggerName"),
        }
        pending.append(step.get("nextAction"))
        pending.append(step.get("firstLoopAction"))
        children = step.get("children")
        if isinstance(children, list):
            pending.extend(children)
    return catalog


def _check_steps(steps) -> dict:
    if steps is None:
        return {}
    if not isinstance(steps, dict):
        raise RecordRejected("steps is not an object of step outputs")
    for name, output in steps.items():
        if not isinstance(output, dict):
            raise RecordRejected(f"step {name!r} is not an object")
    return steps


def first_failed_step(steps: dict, depth: int = 0) -> tuple[str, dict] | None:
    """The first FAILED step in execution order, looking inside loop iterations."""
    for name, output in steps.items():
        if not isinstance(output, dict):
            continue
        iterations = (
            (output.get("output") or {}).get("iterations")
            if isinstance(output.get("output"), dict)
            else None
        )
        if isinstance(iterations, list) and depth < 5:
            for iteration in iterations:
                if isinstance(iteration, dict):
                    nested = first_failed_step(iteration, depth + 1)
                    if nested:
                        return nested
        if output.get("status") == "FAILED":
            return name, output
    return None


# ---------------------------------------------------------------- runs


def failed_step_fields(record: dict, steps: dict, catalog: dict) -> tuple:
    failed = record.get("failedStep")
    name = display = message = None
    if isinstance(failed, dict):
        name, display = failed.get("name"), failed.get("displayName")
        message = failed.get("message")
    elif failed is not None and not isinstance(failed, dict):
        raise RecordRejected("failedStep is not an object")
    name = name or record.get("failedStepName")
    first = first_failed_step(steps)
    if first and (name is None or name == first[0]):
        name = first[0]
        message = message if message not in (None, "") else first[1].get("errorMessage")
    if name and not display:
        display = catalog.get(name, {}).get("displayName")
    return text_value(name), text_value(display), _error_text(message)


def normalize_run(record, source: str, record_text: str | None = None) -> NormalizedRun:
    """One engine run object -> the run row, and its steps as JSON for the store to explode.

    `record_text` is the record's own JSON text when the caller has it: the store then reads the
    steps out of it (`$.steps`) instead of having them encoded again.
    """
    if not isinstance(record, dict):
        raise RecordRejected(f"not a JSON object (got {type(record).__name__})")
    run_id = _run_id(record.get("id"))
    if is_test_run(record):
        raise TestRun(run_id)
    row: dict = {"id": run_id, "status": _status_name(record.get("status"))}
    for field in RUN_FIELDS:  # in column order, so that a record's first fault is the one named
        row[field.column] = read_field(record, field, row)
    row["duration_ms"] = duration_ms(row, record, GIVEN_DURATION)
    raw_steps = record.get("steps")
    steps = _check_steps(raw_steps)
    catalog = step_catalog(record.get("flowVersion"))
    failed_step, failed_display, error = failed_step_fields(record, steps, catalog)
    row.update(
        failed_step=failed_step,
        failed_step_display=failed_display,
        **_error_columns(error),
        has_steps=isinstance(raw_steps, dict) and len(raw_steps) > 0,
        source=source,
    )
    row = {column: row[column] for column in RUN_COLUMNS}
    if not steps:
        return NormalizedRun(row, None, catalog)
    if record_text is None or has_surrogate_escape(record_text):  # not for DuckDB as it is
        record_text = json_text({"steps": steps})
    return NormalizedRun(row, record_text, catalog, list(steps))


def _error_columns(error: str | None) -> dict:
    return {
        "error_message": error[:MAX_ERROR_CHARS] if error else None,
        "error_signature": error_signature(error) if error else None,
    }


# ---------------------------------------------------------------- flat rows (CSV / Parquet)

_TRUE = {"true", "1", "yes", "y", "t"}


def _flat_archived_at(row: dict, read: dict) -> datetime | None:
    """Our export's `archived_at`, or its older `archived` flag (the run's start then stands in)."""
    if read["archived_at"] is not None:
        return read["archived_at"]
    flag = row.get("archived")
    is_archived = flag is True or (isinstance(flag, str) and flag.strip().lower() in _TRUE)
    return read["started_at"] if is_archived else None


def normalize_flat_row(row: dict, source: str, record_text: str | None = None) -> NormalizedRun:
    """One row of the export columns (id, flow, status, started_at, ...) -> a run row."""
    run_id = _run_id(row.get("id"))
    if is_test_run(row):
        raise TestRun(run_id)
    read: dict = {"id": run_id, "status": _status_name(row.get("status"))}
    for field in FLAT_FIELDS:
        read[field.column] = read_field(row, field, read)
    read["archived_at"] = _flat_archived_at(row, read)
    read["duration_ms"] = duration_ms(read, row, GIVEN_FLAT_DURATION)
    read.update(_error_columns(text_value(row.get("error_message"))), has_steps=False)
    read["source"] = source
    return NormalizedRun({column: read.get(column) for column in RUN_COLUMNS})
