"""The run columns copied from an engine run object, each declared once: where it comes from and
what kind of value it is.

A column's sources are the record's fields in order of precedence (newer engine shape first, then
the older one, then a fallback): the first one set wins, as `a or b or c` would have it. Its kind
says how a value is read and when it is refused. The Python normaliser (`records.normalize_run`)
reads these columns with `read_field`; the fast path (`ingest.bulk_jsonl`) builds its SQL for the
same columns from the same declarations, so that both give the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, overload


class RecordRejected(Exception):
    """A record the store cannot take; str() is the reason."""


class Kind(Enum):
    TEXT = "text"  # a string; another scalar is kept as its text, "" is no value
    INT = "int"  # a whole number; a decimal is truncated, anything else refused
    TIMESTAMP = "timestamp"  # an ISO-8601 moment, kept as naive UTC
    TEXT_LIST = "text list"  # a list, each item kept as its text


@dataclass(frozen=True)
class RunField:
    column: str
    kind: Kind
    sources: tuple[str, ...]  # dotted paths into the run object, first set wins
    required: bool = False  # a record without any of its sources is refused

    def missing_reason(self) -> str:
        *first, last = self.sources
        named = f"{', '.join(first)} or {last}" if first else last
        return f"no {self.column.replace('_', ' ')} ({named})"


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
    RunField("archived_at", Kind.TIMESTAMP, ("archivedAt",)),
    RunField("tags", Kind.TEXT_LIST, ("tags",)),
    RunField("parent_run_id", Kind.TEXT, ("parentRunId",)),
    RunField("tasks", Kind.INT, ("tasks",)),
    RunField("steps_count", Kind.INT, ("stepsCount",)),
)
RUN_FIELDS_BY_COLUMN = {field.column: field for field in RUN_FIELDS}


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


def read_field(record: dict, field: RunField):
    """The column's value in the run object, or RecordRejected naming what is wrong."""
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
    return text_list(value, named)
