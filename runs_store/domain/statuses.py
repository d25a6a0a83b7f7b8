"""The eleven run statuses, in one place.

Every page, chart and the CLI read a status's label, colour, meaning and hint from here, so a
status looks and reads the same everywhere. Names are the engine's `FlowRunStatus` values; labels,
meanings and hints are the Runs page documentation's own words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunStatus:
    name: str
    label: str
    color: str  # hex, used by tables, legends and charts
    badge: str  # one of st.badge's colours
    meaning: str
    hint: str | None = None

    @property
    def finished(self) -> bool:
        return self.name not in UNFINISHED

    @property
    def is_failure(self) -> bool:
        return self.name in FAILED_STATES


STATUSES: tuple[RunStatus, ...] = (
    RunStatus(
        "SUCCEEDED",
        "Succeeded",
        "#21a366",
        "green",
        "The flow ran from start to finish and every step completed without error.",
    ),
    RunStatus(
        "RUNNING",
        "Running",
        "#1c83e1",
        "blue",
        "The flow is currently executing and has not finished yet.",
    ),
    RunStatus(
        "PAUSED",
        "Paused",
        "#8e6fd8",
        "violet",
        "The flow is waiting — for example, on a Delay step or a pending Approval. "
        "It resumes automatically once the wait condition is met.",
    ),
    RunStatus(
        "FAILED",
        "Failed",
        "#e0393e",
        "red",
        "A step in the flow returned an error and the Run could not be completed.",
    ),
    RunStatus("CANCELED", "Canceled", "#808495", "gray", "The Run was stopped before it finished."),
    RunStatus(
        "QUOTA_EXCEEDED",
        "Quota Exceeded",
        "#f08c00",
        "orange",
        "The Run could not proceed because there are no AI Workflow Runs available in the "
        "current period.",
        "You may contact Sales to increase your limit.",
    ),
    RunStatus(
        "TIMEOUT",
        "Timeout",
        "#c2255c",
        "red",
        "The Run exceeded the maximum allowed execution time and was halted.",
        "You may contact Support for details.",
    ),
    RunStatus(
        "QUEUED",
        "Queued",
        "#74c0fc",
        "blue",
        "The Run is waiting in the queue to start — for example, when other runs are "
        "executing ahead of it.",
        "You may contact Support for details.",
    ),
    RunStatus(
        "INTERNAL_ERROR",
        "Internal Error",
        "#862e9c",
        "violet",
        "The Run failed due to an unexpected system error rather than a problem inside the "
        "flow itself.",
        "You may contact Support for details.",
    ),
    RunStatus(
        "MEMORY_LIMIT_EXCEEDED",
        "Memory Limit Exceeded",
        "#a61e4d",
        "red",
        "The Run used more memory than the allowed limit and was halted.",
        "You may contact Support for details.",
    ),
    RunStatus(
        "LOG_SIZE_EXCEEDED",
        "Log Size Exceeded",
        "#e8590c",
        "orange",
        "The Run produced more log data than the allowed limit and was halted.",
        "You may contact Support for details.",
    ),
)

UNFINISHED = frozenset({"QUEUED", "RUNNING", "PAUSED"})
FAILED_STATES = frozenset(
    {
        "FAILED",
        "INTERNAL_ERROR",
        "QUOTA_EXCEEDED",
        "TIMEOUT",
        "MEMORY_LIMIT_EXCEEDED",
        "LOG_SIZE_EXCEEDED",
    }
)

BY_NAME: dict[str, RunStatus] = {s.name: s for s in STATUSES}
_BY_ANY_SPELLING: dict[str, RunStatus] = {
    **{s.name.lower(): s for s in STATUSES},
    **{s.label.lower(): s for s in STATUSES},
}
STATUS_NAMES: tuple[str, ...] = tuple(s.name for s in STATUSES)
FINISHED_STATES = frozenset(STATUS_NAMES) - UNFINISHED  # the runs that have an outcome
COLORS: dict[str, str] = {s.name: s.color for s in STATUSES}
LABEL_COLORS: dict[str, str] = {s.label: s.color for s in STATUSES}


def status(name: str) -> RunStatus:
    """The status for an enum name; KeyError for anything else."""
    return BY_NAME[name]


def parse_status(text: str) -> RunStatus | None:
    """Accepts the enum name or the label, any case ("QUOTA_EXCEEDED", "Quota Exceeded")."""
    cleaned = str(text).strip().lower()
    return _BY_ANY_SPELLING.get(cleaned) or _BY_ANY_SPELLING.get(cleaned.replace(" ", "_"))


def label(name: str) -> str:
    found = BY_NAME.get(name)
    return found.label if found else name


def in_order(names) -> list[str]:
    """The given status names in the usual order (that of STATUSES); anything else left out."""
    wanted = set(names)
    return [name for name in STATUS_NAMES if name in wanted]


# How a run's summary reads: "success", "error", "warning" or "info" (a page picks the box).
_TONES: dict[str, str] = {
    "SUCCEEDED": "success",
    "CANCELED": "warning",
    **dict.fromkeys(FAILED_STATES, "error"),
}


def tone(name: str | None) -> str:
    """The tone of a run with this status; "info" for a run still going or an unknown status."""
    return _TONES.get(name or "", "info")


# The engine's step statuses; it shows STOPPED as Succeeded.
STEP_STATUS_LABELS: dict[str, str] = {
    "SUCCEEDED": "Succeeded",
    "STOPPED": "Succeeded",
    "FAILED": "Failed",
    "PAUSED": "Paused",
    "RUNNING": "Running",
}
STEP_STATUS_BADGES: dict[str, str] = {
    "SUCCEEDED": "green",
    "STOPPED": "green",
    "FAILED": "red",
    "PAUSED": "gray",
    "RUNNING": "blue",
}
UNKNOWN_STEP_STATUS = "UNKNOWN"


def step_status_label(name: str | None) -> str:
    """A step status's label; one the engine may add later reads as its own name, title-cased,
    and a missing one as "Unknown"."""
    name = name or UNKNOWN_STEP_STATUS
    return STEP_STATUS_LABELS.get(name, name.title())


def step_status_badge(name: str | None) -> str:
    """A step status's badge colour (one of st.badge's); gray for any other."""
    return STEP_STATUS_BADGES.get(name or "", "gray")
