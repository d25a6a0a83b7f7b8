"""The rules that read an agent step's facts (runs_store/domain/agents.py), table-driven, and the
price table's file (runs_store/services/agent_prices.py): well-formed shapes give the facts the
engine's records mean, hostile ones give what can be read and never raise."""

from __future__ import annotations

import copy
import json

import pytest

from factories import AGENT_OUTPUT
from run_records import failed_tool_agent_output
from runs_store.domain import agents
from runs_store.services.agent_prices import ModelPrice, PricesFileError, load_prices

INPUT = {
    "prompt": "Classify the email",
    "aiProviderModel": {"provider": "openai", "model": "gpt-4.1"},
    "maxSteps": 10,
}


def call(**fields) -> dict:
    block = {
        "type": "TOOL_CALL",
        "toolCallType": "PIECE",
        "toolName": "shopify-get_order",
        "toolCallId": "call_1",
        "status": "completed",
        "startTime": "2026-11-03T09:14:03.010Z",
        "endTime": "2026-11-03T09:14:04.220Z",
        "output": {"status": "SUCCESS", "output": {}},
    }
    return {key: value for key, value in (block | fields).items() if value is not ...}


def test_the_engines_example_agent():
    facts = agents.agent_facts(INPUT, AGENT_OUTPUT)
    assert (facts.provider, facts.model, facts.status, facts.max_steps) == (
        "openai",
        "gpt-4.1",
        "COMPLETED",
        10,
    )
    assert (facts.thoughts, facts.tool_calls, facts.failed_calls, facts.unfinished_calls) == (
        2,
        1,
        0,
        0,
    )
    assert facts.calls[0] == agents.ToolCallFacts(
        0, "shopify-get_order", "PIECE", "succeeded", 1210, None
    )
    assert (facts.tools_ms, facts.hit_max_steps, facts.total_tokens) == (1210, False, None)


def test_a_failed_piece_tool_gives_its_error():
    facts = agents.agent_facts(INPUT, failed_tool_agent_output())
    assert [c.outcome for c in facts.calls] == ["succeeded", "failed"]
    assert facts.calls[1].error == "Mailbox ana@example.com is full"
    assert facts.calls[1].tool_type == "MCP" and facts.failed_calls == 1


OUTCOMES = [
    ("completed with SUCCESS", call(), "succeeded", 1210),
    ("completed, result FAILED", call(output={"status": "FAILED"}), "failed", 1210),
    ("failToolCall's result", call(output={"status": "FAILED"}, endTime=...), "failed", None),
    ("a result in lower case", call(output={"status": "failed"}), "failed", 1210),
    ("an MCP error", call(output={"isError": True, "content": []}), "failed", 1210),
    (
        "in progress, no end",
        call(status="in-progress", endTime=..., output=...),
        "unfinished",
        None,
    ),
    ("no status, no end", call(status=..., endTime=..., output=...), "unfinished", None),
    ("no status but an end", call(status=..., output=...), "succeeded", 1210),
    (
        "an MCP result",
        call(output={"content": [{"type": "text", "text": "ok"}]}),
        "succeeded",
        1210,
    ),
    ("an end before its start", call(endTime="2026-11-03T09:00:00Z"), "succeeded", None),
    ("unreadable times", call(startTime="soon", endTime=17), "succeeded", None),
]


@pytest.mark.parametrize(
    ("case", "block", "outcome", "duration"), OUTCOMES, ids=[o[0] for o in OUTCOMES]
)
def test_a_tool_calls_outcome_and_duration(case, block, outcome, duration):
    (found,) = agents.tool_calls({"steps": [block]})
    assert (found.outcome, found.duration_ms) == (outcome, duration), case


def test_tool_types_outside_the_engines_read_as_unknown():
    types = ["PIECE", "FLOW", "MCP", "KNOWLEDGE_BASE", "UNKNOWN", "INTERNAL", None, 3, ["x"]]
    blocks = [call(toolCallType=kind) for kind in types]
    assert [c.tool_type for c in agents.tool_calls({"steps": blocks})] == [
        "PIECE",
        "FLOW",
        "MCP",
        "KNOWLEDGE_BASE",
        *["UNKNOWN"] * 5,
    ]


def test_errors_are_text_bounded_in_length():
    blocks = [
        call(output={"status": "FAILED", "errorMessage": {"code": 429}}),
        call(output={"status": "FAILED", "errorMessage": "x" * 10_000}),
        call(output={"isError": True, "content": [{"type": "text", "text": "mcp down"}]}),
        call(output={"status": "FAILED", "errorMessage": ""}),
    ]
    errors = [c.error for c in agents.tool_calls({"steps": blocks})]
    assert errors[0] == '{"code": 429}' and len(errors[1]) == 2000
    assert errors[2:] == ["mcp down", None]


HIT = [
    ("failed with as many calls as steps", "FAILED", 3, 3, None, True),
    ("failed with more calls (parallel)", "FAILED", 2, 5, None, True),
    ("failed short of the limit", "FAILED", 5, 4, None, False),
    ("completed at the limit", "COMPLETED", 3, 3, None, False),
    ("still running at the limit", "IN_PROGRESS", 3, 3, None, False),
    ("no limit recorded", "FAILED", None, 30, None, False),
    ("a zero limit", "FAILED", 0, 0, None, False),
    ("the error says so", "COMPLETED", 20, 1, "Agent stopped: reached maxSteps (20)", True),
    ("the error says so in words", None, None, 0, "hit the max steps limit", True),
    ("another error", "FAILED", 20, 1, "Overloaded", False),
    ("another error after the last allowed call", "FAILED", 3, 3, "Overloaded", False),
]


@pytest.mark.parametrize(
    ("case", "status", "limit", "calls", "error", "hit"), HIT, ids=[h[0] for h in HIT]
)
def test_stopping_at_max_steps(case, status, limit, calls, error, hit):
    assert agents.hit_max_steps(status, limit, calls, error) is hit, case


def test_token_usage_when_recorded():
    def usage(value):
        return agents.agent_facts(INPUT, {"steps": [], "usage": value})

    counted = usage({"inputTokens": 1200, "outputTokens": 80, "totalTokens": 1280})
    assert (counted.input_tokens, counted.output_tokens, counted.total_tokens) == (1200, 80, 1280)
    assert usage({"inputTokens": 10, "outputTokens": 5}).total_tokens == 15
    assert usage({"inputTokens": "10", "outputTokens": 5.0}).total_tokens == 15
    odd = usage({"inputTokens": -1, "outputTokens": True, "totalTokens": "many"})
    assert (odd.input_tokens, odd.output_tokens, odd.total_tokens) == (None, None, None)
    summed = agents.agent_facts(INPUT, {"totalUsage": {"inputTokens": 3, "outputTokens": 4}})
    assert summed.total_tokens == 7
    assert agents.agent_facts(INPUT, {"usage": "lots"}).total_tokens is None


HOSTILE = [
    None,
    "text",
    42,
    [],
    {"steps": None},
    {"steps": "a"},
    {"steps": {"0": {"type": "TOOL_CALL"}}},
    {"steps": [None, 1, "x", [], {"type": None}, {"type": "TOOL_CALL", "toolName": None}]},
    {"status": {"nested": 1}, "steps": [{"type": "MARKDOWN", "markdown": None}]},
    {"steps": [{"type": "TOOL_CALL", "output": ["not", "a", "dict"], "toolName": 7}]},
]


@pytest.mark.parametrize("output", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize(
    "step_input", [None, "x", [], {"aiProviderModel": "gpt"}, {"maxSteps": "lots"}]
)
def test_hostile_shapes_give_what_can_be_read_and_never_raise(output, step_input):
    facts = agents.agent_facts(step_input, output)
    assert facts.tool_calls == len(facts.calls) >= 0 and facts.max_steps is None
    assert all(c.tool and c.tool_type in agents.TOOL_TYPES for c in facts.calls)
    assert facts.hit_max_steps is False


def test_a_huge_timeline_is_read_whole():
    output = copy.deepcopy(AGENT_OUTPUT)
    output["steps"] = [call(toolCallId=f"c{i}") for i in range(20_000)]
    output["steps"][7]["output"] = {"status": "FAILED", "errorMessage": "x" * 1_000_000}
    facts = agents.step_facts(None, None, json.dumps(INPUT), json.dumps(output), None)
    assert facts is not None and facts.tool_calls == 20_000 and facts.failed_calls == 1


def test_stored_steps_are_read_only_when_they_are_agents():
    assert (
        agents.step_facts("@activepieces/piece-slack", "send", "{}", '{"ok": true}', None) is None
    )
    assert agents.step_facts(None, None, None, '{"steps": "MARKDOWN TOOL_CALL"}', None) is None
    assert agents.step_facts(None, None, None, "not json", '"boom"') is None
    by_piece = agents.step_facts("@activepieces/piece-ai", "run_agent", "[1", "{oops", '"x"')
    assert by_piece is not None and by_piece.tool_calls == 0
    by_blocks = agents.step_facts(None, None, None, json.dumps(AGENT_OUTPUT), None)
    assert by_blocks is not None and by_blocks.tool_calls == 1
    said = agents.step_facts(None, None, None, json.dumps(AGENT_OUTPUT), '"reached maxSteps (3)"')
    assert said is not None and said.hit_max_steps


# ------------------------------------------------------------------ the price table


def test_a_price_file_is_read(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."openai/gpt-4o"]\ninput_per_million = 2.5\noutput_per_million = 10\n'
        '[models."google/gemini-2.0-flash"]\ninput_per_million = 0\noutput_per_million = 0.4\n'
    )
    prices = load_prices(path)
    assert prices == {
        "openai/gpt-4o": ModelPrice(2.5, 10.0),
        "google/gemini-2.0-flash": ModelPrice(0.0, 0.4),
    }
    assert prices["openai/gpt-4o"].cost(1_000_000, 500_000) == pytest.approx(7.5)
    assert prices["openai/gpt-4o"].cost(None, 5) is None


def test_no_price_file_set_means_no_prices(monkeypatch):
    monkeypatch.delenv("RUNS_AGENT_PRICES", raising=False)
    assert load_prices() == {}


def test_a_bad_price_file_says_every_mistake_on_its_own_line(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."openai/gpt-4o"]\ninput_per_million = "2.5"\noutput_per_million = -1\n'
        '[models."anthropic/claude-sonnet-4"]\ninput_per_million = 3\ncurrency = "EUR"\n'
    )
    with pytest.raises(PricesFileError) as raised:
        load_prices(path)
    lines = str(raised.value).splitlines()
    assert lines == [
        f"{path}: model 'openai/gpt-4o': input_per_million must be a number, got '2.5'",
        f"{path}: model 'openai/gpt-4o': output_per_million must be 0 or more, got -1",
        f"{path}: model 'anthropic/claude-sonnet-4': output_per_million must be a number, got None",
        (
            f"{path}: model 'anthropic/claude-sonnet-4': unknown key 'currency' "
            "(known: input_per_million, output_per_million)"
        ),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("models = 3", "no .models"),
        ("not toml ===", "not a readable TOML file"),
        ('[models]\n"openai/gpt-4o" = 3', "must be a table of prices"),
    ],
)
def test_a_price_file_of_the_wrong_shape_is_refused(tmp_path, text, says):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PricesFileError, match=says):
        load_prices(path)
    with pytest.raises(PricesFileError, match="cannot read"):
        load_prices(tmp_path / "missing.toml")
