"""The facts of a Run Agent step, read from its input and output: what Insights' Agents view and
the Runs page's tool filters count.

An agent step records its model and limit in its input (`aiProviderModel: {provider, model}`,
`maxSteps`) and its work in its output, the engine's `AgentResult`
(`{prompt, status, steps, structuredOutput?}`): thoughts (MARKDOWN blocks) and tool calls
(TOOL_CALL blocks), see docs/agents.md for the engine's source. These functions turn one step into
a row of facts and one row per tool call, by the rules declared here once: the ingest (every
path), the migration that backfills older stores and the tests all call them. Anything malformed
gives what can be read and never raises: a step whose output is not an agent result gives no
tool calls, a call without times no duration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import orjson

from runs_store.domain.records import MAX_ERROR_CHARS
from runs_store.domain.run_fields import json_text
from runs_store.domain.step_tree import is_agent_step, tool_call_ms

# A tool call's type, as the engine's ToolCallType names it; anything else reads as UNKNOWN.
TOOL_TYPES = ("PIECE", "FLOW", "MCP", "KNOWLEDGE_BASE", "UNKNOWN")
# A tool call's outcome.
SUCCEEDED = "succeeded"
FAILED = "failed"
UNFINISHED = "unfinished"  # started (block status in-progress) and never ended
OUTCOMES = (SUCCEEDED, FAILED, UNFINISHED)
# The engine's statuses: the block's while it runs (ToolCallStatus), the tool's result
# (ExecutionToolStatus), the agent's (AgentTaskStatus).
CALL_COMPLETED = "completed"
RESULT_FAILED = "FAILED"
AGENT_COMPLETED = "COMPLETED"
AGENT_FAILED = "FAILED"
AGENT_IN_PROGRESS = "IN_PROGRESS"
AGENT_STATUSES = (AGENT_COMPLETED, AGENT_FAILED, AGENT_IN_PROGRESS)
# An agent step's error that says it ran out of steps (the engine records no reason of its own).
_MAX_STEPS_TEXT = re.compile(r"max[ _-]?steps", re.IGNORECASE)
MAX_TOOL_NAME = 200


@dataclass(frozen=True)
class ToolCallFacts:
    index: int  # 0-based, among the step's tool calls, in the order it made them
    tool: str
    tool_type: str  # one of TOOL_TYPES
    outcome: str  # one of OUTCOMES
    duration_ms: int | None  # endTime - startTime, when both are recorded
    error: str | None  # the failed call's error as recorded (masked where it is shown)


@dataclass(frozen=True)
class AgentFacts:
    provider: str | None
    model: str | None
    status: str | None  # the agent's: COMPLETED, FAILED or IN_PROGRESS as recorded
    max_steps: int | None
    thoughts: int
    calls: tuple[ToolCallFacts, ...]
    hit_max_steps: bool
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None

    @property
    def tool_calls(self) -> int:
        return len(self.calls)

    @property
    def failed_calls(self) -> int:
        return sum(call.outcome == FAILED for call in self.calls)

    @property
    def unfinished_calls(self) -> int:
        return sum(call.outcome == UNFINISHED for call in self.calls)

    @property
    def tools_ms(self) -> int:
        """Time spent in tools: the sum of the calls' recorded durations."""
        return sum(call.duration_ms or 0 for call in self.calls)


# ---------------------------------------------------------------- reading values


def _text(value, limit: int = MAX_TOOL_NAME) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return str(value)[:limit]


def _count(value) -> int | None:
    """A whole, non-negative number as recorded (a number or its text), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != number or number < 0 or number > 2**62:  # NaN, negative, absurd
        return None
    return int(number)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _error_text(value) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json_text(value)
    return text[:MAX_ERROR_CHARS] if text else None


# ---------------------------------------------------------------- tool calls


def tool_type(value) -> str:
    """The engine's ToolCallType; UNKNOWN for a type it does not name (or none)."""
    return value if isinstance(value, str) and value in TOOL_TYPES else "UNKNOWN"


def call_failed(result) -> bool:
    """A tool's result says it failed: a piece or flow tool's `status` FAILED (the engine's
    ExecutionToolStatus), or an MCP tool's result with `isError` true."""
    result = _dict(result)
    status = result.get("status")
    return (isinstance(status, str) and status.upper() == RESULT_FAILED) or result.get(
        "isError"
    ) is True


def call_outcome(block: dict) -> str:
    """failed when its result says so; unfinished when it never ended (the block is not
    completed and has no endTime); succeeded otherwise."""
    if call_failed(block.get("output")):
        return FAILED
    if block.get("status") != CALL_COMPLETED and not block.get("endTime"):
        return UNFINISHED
    return SUCCEEDED


def call_error(result) -> str | None:
    """A failed call's error text: its errorMessage, else an MCP error's first text content."""
    result = _dict(result)
    error = _error_text(result.get("errorMessage"))
    if error is None and result.get("isError") is True:
        content = result.get("content")
        texts = (
            [part.get("text") for part in content or () if isinstance(part, dict)]
            if isinstance(content, list)
            else []
        )
        error = _error_text(next((text for text in texts if text), None))
    return error


def _call(index: int, block: dict) -> ToolCallFacts:
    outcome = call_outcome(block)
    return ToolCallFacts(
        index,
        _text(block.get("toolName")) or _text(block.get("displayName")) or "(unnamed tool)",
        tool_type(block.get("toolCallType")),
        outcome,
        tool_call_ms(block),
        call_error(block.get("output")) if outcome == FAILED else None,
    )


def _blocks(output) -> list:
    steps = _dict(output).get("steps")
    return steps if isinstance(steps, list) else []


def tool_calls(output) -> tuple[ToolCallFacts, ...]:
    """Every TOOL_CALL block of an agent's output, in order."""
    calls = [b for b in _blocks(output) if isinstance(b, dict) and b.get("type") == "TOOL_CALL"]
    return tuple(_call(index, block) for index, block in enumerate(calls))


def thoughts(output) -> int:
    """The MARKDOWN blocks: the agent's thoughts."""
    return sum(isinstance(b, dict) and b.get("type") == "MARKDOWN" for b in _blocks(output))


# ---------------------------------------------------------------- the agent


def hit_max_steps(status, max_steps: int | None, calls: int, step_error) -> bool:
    """Whether the agent stopped at its step limit. The engine stops the agent after `maxSteps`
    model steps (AI SDK `stepCountIs(maxSteps)`) and, as it never called its completion tool,
    marks it FAILED with no message of its own; every step before the last made at least one
    tool call, and the last one too or the agent would have stopped by itself. So: a step error
    that says it ran out of steps, or FAILED with at least `maxSteps` tool calls and no error
    that names another cause (a provider's "Overloaded" after the last call, say)."""
    if isinstance(step_error, str) and step_error:
        return bool(_MAX_STEPS_TEXT.search(step_error))
    return status == AGENT_FAILED and max_steps is not None and 0 < max_steps <= calls


def _usage(output) -> tuple[int | None, int | None, int | None]:
    """Token counts when the output records them (`usage` or `totalUsage`, the AI SDK's
    {inputTokens, outputTokens, totalTokens}); the total is the sum when not given."""
    output = _dict(output)
    usage = _dict(output.get("usage")) or _dict(output.get("totalUsage"))
    given = _count(usage.get("inputTokens")), _count(usage.get("outputTokens"))
    total = _count(usage.get("totalTokens"))
    if total is None and None not in given:
        total = given[0] + given[1]  # type: ignore[operator]
    return given[0], given[1], total


def _model(step_input) -> tuple[str | None, str | None]:
    model = _dict(_dict(step_input).get("aiProviderModel"))
    return _text(model.get("provider")), _text(model.get("model"))


def agent_facts(step_input, output, step_error=None) -> AgentFacts:
    """The facts of one agent step from its input, output and errorMessage (parsed JSON)."""
    provider, model = _model(step_input)
    status = _text(_dict(output).get("status"))
    max_steps = _count(_dict(step_input).get("maxSteps"))
    calls = tool_calls(output)
    error = step_error if isinstance(step_error, str) else _error_text(step_error)
    return AgentFacts(
        provider,
        model,
        status,
        max_steps,
        thoughts(output),
        calls,
        hit_max_steps(status, max_steps, len(calls), error),
        *_usage(output),
    )


def parsed(text):
    """A stored payload (JSON text) as a value; text that is not JSON stays text. orjson reads
    it (the facts' main cost at ingest); json what orjson refuses (integers past 64 bits)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except (TypeError, ValueError):
        pass
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return text


def step_facts(piece_name, action_name, input_text, output_text, error_text) -> AgentFacts | None:
    """The facts of a stored step (its payloads as JSON text), or None when it is not an agent
    step (step_tree.is_agent_step)."""
    output = parsed(output_text)
    if not is_agent_step(piece_name, action_name, output):
        return None
    return agent_facts(parsed(input_text), output, parsed(error_text))
