"""What happened inside a step, read from its output JSON: loop iterations, router branches,
and a Run Agent step's timeline.

The engine records a loop's child steps per iteration inside the loop's output, a router's
decision inside its output, and an AI agent's thoughts and tool calls as a list of blocks in the
agent step's output. These functions turn those shapes into small display-ready records, and
tolerate anything malformed by returning nothing rather than failing the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runs_store.domain.run_fields import RecordRejected, parse_time

AGENT_PIECE = "@activepieces/piece-ai"
AGENT_ACTION = "run_agent"
MAX_ITERATIONS_SHOWN = 100
MAX_DEPTH = 5
TYPE_LABELS = {
    "PIECE_TRIGGER": "Trigger",
    "EMPTY": "Trigger",
    "PIECE": "Action",
    "CODE": "Code",
    "LOOP_ON_ITEMS": "Loop",
    "ROUTER": "Router",
}
# An agent's tool call status (the block's while it runs, the result's once known): its label and
# badge colour (one of st.badge's).
TOOL_CALL_STATUSES: dict[str, tuple[str, str]] = {
    "SUCCESS": ("Succeeded", "green"),
    "completed": ("Completed", "green"),
    "FAILED": ("Failed", "red"),
    "in-progress": ("In progress", "blue"),
}


@dataclass(frozen=True)
class ChildStep:
    name: str
    type: str | None
    status: str | None
    duration_ms: int | None
    error: object = None  # the errorMessage as recorded
    iterations: int | None = None  # a nested loop's iteration count


@dataclass(frozen=True)
class Iteration:
    number: int  # 1-based
    steps: tuple[ChildStep, ...]

    @property
    def failed(self) -> bool:
        return any(step.status == "FAILED" for step in self.steps)

    @property
    def duration_ms(self) -> int:
        return sum(step.duration_ms or 0 for step in self.steps)


@dataclass(frozen=True)
class Loop:
    count: int
    shown: tuple[Iteration, ...]  # the first MAX_ITERATIONS_SHOWN

    @property
    def failed_iterations(self) -> tuple[int, ...]:
        return tuple(iteration.number for iteration in self.shown if iteration.failed)


@dataclass(frozen=True)
class Branch:
    name: str
    number: int  # 1-based
    taken: bool


@dataclass(frozen=True)
class TimelineEntry:
    kind: str  # "thought" or "tool_call"
    text: str = ""  # a thought's markdown, kept as text
    tool_name: str = ""
    tool_type: str = ""  # PIECE, FLOW or MCP
    status: str = ""  # completed / in-progress, then SUCCESS / FAILED when known
    params: object = None  # what the agent asked the tool for (`input`)
    resolved: object = None  # the parameters the tool really ran with (`resolvedInput`)
    output: object = None
    error: object = None
    duration_ms: int | None = None

    @property
    def status_badge(self) -> tuple[str, str]:
        """A tool call's (label, badge colour); any other status is the record's own text, gray."""
        return TOOL_CALL_STATUSES.get(self.status, (self.status or "Unknown", "gray"))


@dataclass(frozen=True)
class AgentTimeline:
    prompt: str
    status: str
    model: str
    entries: tuple[TimelineEntry, ...]
    structured_output: object = None


def type_label(step_type: str | None, piece_name=None, action_name=None) -> str:
    """A step type in words: Trigger, Action, Code, Loop, Router, or Run Agent."""
    if piece_name == AGENT_PIECE and action_name == AGENT_ACTION:
        return "Run Agent"
    return TYPE_LABELS.get(step_type or "", (step_type or "Unknown").title())


# ---------------------------------------------------------------- loops


def _int_or_none(value) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(float(value))
    except (TypeError, ValueError):
        return None


def _child_step(name: str, value: dict, depth: int) -> ChildStep:
    nested = read_loop(value.get("output"), depth + 1)
    return ChildStep(
        str(name),
        _str_or_none(value.get("type")),
        _str_or_none(value.get("status")),
        _int_or_none(value.get("duration")),
        value.get("errorMessage"),
        nested.count if nested else None,
    )


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def read_loop(output, depth: int = 0) -> Loop | None:
    """A loop step's iterations and their child steps, or None if the output has none."""
    if depth > MAX_DEPTH or not isinstance(output, dict):
        return None
    iterations = output.get("iterations")
    if not isinstance(iterations, list):
        return None
    shown = []
    for number, iteration in enumerate(iterations[:MAX_ITERATIONS_SHOWN], 1):
        steps = iteration.items() if isinstance(iteration, dict) else ()
        shown.append(
            Iteration(
                number,
                tuple(
                    _child_step(name, value, depth)
                    for name, value in steps
                    if isinstance(value, dict)
                ),
            )
        )
    return Loop(len(iterations), tuple(shown))


def loop_child_names(output) -> frozenset[str]:
    """Names of every step that ran inside a loop's iterations (to find a nested failed step)."""
    loop = read_loop(output)
    if loop is None:
        return frozenset()
    return frozenset(step.name for iteration in loop.shown for step in iteration.steps)


# ---------------------------------------------------------------- routers


def read_branches(output) -> tuple[Branch, ...]:
    """A router's branches with the ones it took marked."""
    if not isinstance(output, dict) or not isinstance(output.get("branches"), list):
        return ()
    branches = []
    for number, branch in enumerate(output["branches"], 1):
        if isinstance(branch, dict):
            name = branch.get("branchName") or f"Branch {number}"
            index = _int_or_none(branch.get("branchIndex"))
            branches.append(
                Branch(
                    str(name),
                    (index + 1) if index is not None else number,
                    branch.get("evaluation") is True,
                )
            )
    return tuple(branches)


# ---------------------------------------------------------------- Run Agent timeline


def _blocks(output) -> list | None:
    if not isinstance(output, dict) or not isinstance(output.get("steps"), list):
        return None
    return output["steps"]


def is_agent_step(piece_name, action_name, output) -> bool:
    """A Run Agent step: the AI piece's run_agent action, or an output of agent blocks."""
    if piece_name == AGENT_PIECE and action_name == AGENT_ACTION:
        return True
    blocks = _blocks(output)
    return blocks is not None and any(
        isinstance(block, dict) and block.get("type") in ("MARKDOWN", "TOOL_CALL")
        for block in blocks
    )


def _time(value) -> datetime | None:
    try:
        return parse_time(value, "time")
    except RecordRejected:
        return None


def tool_call_ms(block: dict) -> int | None:
    """A tool call's endTime - startTime in ms; None unless both are recorded, in order."""
    start, end = _time(block.get("startTime")), _time(block.get("endTime"))
    if start is None or end is None or end < start:
        return None
    return int((end - start).total_seconds() * 1000)


def _tool_call(block: dict) -> TimelineEntry:
    result = block.get("output")
    if not isinstance(result, dict):
        result = {}
    status = str(result.get("status") or block.get("status") or "")
    return TimelineEntry(
        "tool_call",
        tool_name=str(block.get("toolName") or "tool"),
        tool_type=str(block.get("toolCallType") or ""),
        status=status,
        params=block.get("input"),
        resolved=result.get("resolvedInput"),
        output=result.get("output"),
        error=result.get("errorMessage"),
        duration_ms=tool_call_ms(block),
    )


def _entry(block) -> TimelineEntry | None:
    if not isinstance(block, dict):
        return None
    if block.get("type") == "MARKDOWN":
        return TimelineEntry("thought", text=str(block.get("markdown") or ""))
    if block.get("type") == "TOOL_CALL":
        return _tool_call(block)
    return None


def _model_name(step_input) -> str:
    model = step_input.get("aiProviderModel") if isinstance(step_input, dict) else None
    if not isinstance(model, dict):
        return ""
    return " / ".join(str(model[key]) for key in ("provider", "model") if model.get(key))


def read_timeline(step_input, output) -> AgentTimeline | None:
    """The agent's prompt, then its thoughts and tool calls in order."""
    blocks = _blocks(output) or []
    entries = tuple(entry for entry in map(_entry, blocks) if entry is not None)
    prompt = (output or {}).get("prompt") if isinstance(output, dict) else None
    if prompt is None and isinstance(step_input, dict):
        prompt = step_input.get("prompt")
    status = output.get("status") if isinstance(output, dict) else None
    structured = output.get("structuredOutput") if isinstance(output, dict) else None
    return AgentTimeline(
        str(prompt or ""), str(status or ""), _model_name(step_input), entries, structured
    )
