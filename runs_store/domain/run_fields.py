"""The run columns copied from an engine run object, each declared once: where it comes from and
what kind of value it is.

A column's sources are the record's fields in order of precedence (newer engine shape first, then
the older one, then a fallback): the first one set wins, as `a or b or c` would have it. When none
is set, its fallback columns (read before it) give the value: that is how a run's `updated` falls
back on its finish, then its start. Its kind says how a value is read and when it is refused. The
same is declared for the flat export columns of a CSV or Parquet file (`FLAT_FIELDS`), and the
test-run rule (`is_test_run`) once for every shape. The Python normaliser (`records.normalize_run`)
reads these columns with `read_field`; the fast path (`ingest.bulk_jsonl`) builds its SQL for the
same columns from the same declarations, so that both give the same row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal, overload

from runs_store.domain.statuses import UNFINISHED


class RecordRejected(Exception):
    """A record the store cannot take; str() is the reason."""


class Kind(Enum):
    TEXT = "text"  # a string; another scalar is kept as its text, "" is no value
    INT = "int"  # a whole number; a decimal is truncated, anything else refused
    TIMESTAMP = "timestamp"  # an ISO-8601 moment, kept as naive UTC
    TEXT_LIST = "text list"  # a list, each item kept as its text
    BOOL = "bool"  # true or false; anything else refused
    JSON = "json"  # any JSON value, kept as its JSON text


@dataclass(frozen=True)
class RunField:
    column: str
    kind: Kind
    sources: tuple[str, ...]  # dotted paths into the run object, first set wins
    required: bool = False  # a record without any of its sources is refused
    fallback: tuple[str, ...] = ()  # columns read earlier, the first set taken when no source is

    def missing_reason(self) -> str:
        *first, last = self.sources
        named = f"{', '.join(first)} or {last}" if first else last
        return f"no {self.column.replace('_', ' ')} ({named})"


# The run's environment says whether it is a test run: never shown, only counted.
ENVIRONMENT_SOURCE = "environment"
TEST_ENVIRONMENT = "TESTING"

# In the order of records.RUN_COLUMNS.
RUN_FIELDS = (
    RunField("project_id", Kind.TEXT, ("projectId",)),
    RunField("flow_id", Kind.TEXT, ("flowId",)),
    RunField("flow_version_id", Kind.TEXT, ("flowVersionId", "flowVersion.id")),
    RunField(
        "flow_name",
        Kind.TEXT,
        ("flowVersion.displayName", "flowDisplayName", "flowId"),
        required=True,
    ),
    RunField("started_at", Kind.TIMESTAMP, ("created", "startTime"), required=True),
    RunField("start_time", Kind.TIMESTAMP, ("startTime",)),
    RunField("finish_time", Kind.TIMESTAMP, ("finishTime",)),
    RunField("archived_at", Kind.TIMESTAMP, ("archivedAt",)),
    # the newer version of a run wins: its `updated`, else its finish, else its start
    RunField("updated_at", Kind.TIMESTAMP, ("updated",), fallback=("finish_time", "started_at")),
    RunField("tags", Kind.TEXT_LIST, ("tags",)),
    RunField("parent_run_id", Kind.TEXT, ("parentRunId",)),
    RunField("tasks", Kind.INT, ("tasks",)),
    RunField("steps_count", Kind.INT, ("stepsCount",)),
    RunField("pause_metadata", Kind.JSON, ("pauseMetadata",)),
    # the newer engine's fields (0.84 and later): who started a run, where its log is, whether
    # the engine cut its steps, where its time went before it ran, and the engine's own error
    RunField("triggered_by", Kind.TEXT, ("triggeredBy",)),
    RunField("logs_file_id", Kind.TEXT, ("logsFileId",)),
    RunField("steps_data_truncated", Kind.BOOL, ("stepsDataTruncated",)),
    RunField("timeline", Kind.JSON, ("timeline",)),
    RunField("internal_error", Kind.JSON, ("internalError",)),
)
RUN_FIELDS_BY_COLUMN = {field.column: field for field in RUN_FIELDS}
# The engine's own figure, read only when a finished run has no start and finish to subtract.
GIVEN_DURATION = RunField("duration_ms", Kind.INT, ("duration",))

# The columns of our flat export (CSV, Parquet, flat JSONL), as they are read back. No SQL path
# reads these: records.normalize_flat_row reads them all with read_field.
FLAT_FIELDS = (
    RunField("project_id", Kind.TEXT, ("project_id",)),
    RunField("flow_id", Kind.TEXT, ("flow_id",)),
    RunField("flow_version_id", Kind.TEXT, ("flow_version_id",)),
    RunField("flow_name", Kind.TEXT, ("flow", "flow_id"), required=True),
    RunField("started_at", Kind.TIMESTAMP, ("started_at",), required=True),
    RunField("finish_time", Kind.TIMESTAMP, ("finished_at",)),
    RunField("failed_step", Kind.TEXT, ("failed_step",)),
    RunField("failed_step_display", Kind.TEXT, ("failed_step_display",)),
    RunField("archived_at", Kind.TIMESTAMP, ("archived_at",)),
    RunField("updated_at", Kind.TIMESTAMP, ("updated_at",), fallback=("finish_time", "started_at")),
)
FLAT_FIELDS_BY_COLUMN = {field.column: field for field in FLAT_FIELDS}
GIVEN_FLAT_DURATION = RunField("duration_ms", Kind.INT, ("duration_ms",))


def duration_ms(row: dict, record: dict, given: RunField) -> int | None:
    """A finished run's duration: its finish less its start, else the figure the record gives."""
    if row["status"] in UNFINISHED:
        return None
    start, finish = row.get("start_time"), row.get("finish_time")
    if start is not None and finish is not None:
        if finish < start:
            raise RecordRejected("finishTime is before startTime")
        return (finish - start) // timedelta(milliseconds=1)
    return read_field(record, given)


def is_test_run(record: dict) -> bool:
    return text_value(record.get(ENVIRONMENT_SOURCE)) == TEST_ENVIRONMENT


# ---------------------------------------------------------------- values of each kind


@overload
def parse_time(value, field: str, required: Literal[True]) -> datetime: ...
@overload
def parse_time(value, field: str, required: bool = False) -> datetime | None: ...
def parse_time(value, field: str, required: bool = False) -> datetime | None:
    """An ISO-8601 string (or datetime) as naive UTC; RecordRejected if it cannot be read."""
    if value is None or value == "":
        if required:
            raise RecordRejected(f"missing {field}")
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            if value.endswith("Z"):  # the engine's form: already UTC
                return datetime.fromisoformat(value[:-1])
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RecordRejected(f"unparseable timestamp in {field}: {value!r}") from None
    else:
        raise RecordRejected(f"unparseable timestamp in {field}: {value!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def text_value(value) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def optional_int(value, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise RecordRejected(f"{field} is not a number: {value!r}") from None


def optional_bool(value, field: str) -> bool | None:
    if value is None or value == "":
        return None
    if not isinstance(value, bool):
        raise RecordRejected(f"{field} is not true or false: {value!r}")
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def json_text(value) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def text_list(value, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordRejected(f"{field} is not a list")
    return [str(item) for item in value]


# ---------------------------------------------------------------- reading a run object


def source_value(record: dict, path: str) -> Any:
    """The value at a dotted path of the record; None when a step of the path is not an object."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def read_field(record: dict, field: RunField, row: dict | None = None):
    """The column's value in the run object (or, when none of its sources is set, the first of its
    fallback columns set in `row`), or RecordRejected naming what is wrong."""
    value = _read_sources(record, field)
    for column in field.fallback:
        if value is not None:
            break
        value = (row or {}).get(column)
    return value


def _read_sources(record: dict, field: RunField):
    value, named = None, field.sources[0]
    for named in field.sources:  # `a or b or c`: the first value set, else the last one
        value = source_value(record, named)
        if value:
            break
    if field.required and not value:
        raise RecordRejected(field.missing_reason())
    if field.kind is Kind.TEXT:
        return text_value(value)
    if field.kind is Kind.INT:
        return optional_int(value, named)
    if field.kind is Kind.TIMESTAMP:
        return parse_time(value, named)
    if field.kind is Kind.BOOL:
        return optional_bool(value, named)
    if field.kind is Kind.JSON:
        return json_text(value)
    return text_list(value, named)
