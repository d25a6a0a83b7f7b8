"""AI agent facts and analytics (issue #18) against a store with known answers, on both backends.

The runs are built here from a plan (`SPECS`): each agent step's model, status, limit, token
counts and tool calls with their outcome and duration are chosen first, then written in the
engine's shapes. Every expected figure is worked out from the plan by this module's own oracle,
never from what the store holds; the store is loaded by the real ingest (the Python path, the
JSONL fast path, and a ClickHouse store's apply).
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from backends import ingest_to_chdb
from factories import FLOW_VERSION, rows, run_cli, store_with, write_jsonl
from runs_store.queries.filters import RunFilter
from runs_store.services import agents
from runs_store.services.runs_list import count_runs
from runs_store.store.backend import latest, open_location
from runs_store.store.backend import rows as backend_rows
from runs_store.store.database import open_db
from runs_store.store.location import ChdbLocation

BASE = datetime(2026, 11, 2, 8, 0)
SECRET = "sk-proj-ABCDEFGHIJKLMNOP1234"
TOOLS = (
    ("shopify-get_order", "PIECE"),
    ("exa_search", "MCP"),
    ("Enrich company domain", "FLOW"),
    ("Support policies", "KNOWLEDGE_BASE"),
    ("mystery_tool", "UNKNOWN"),
)
MODELS = (
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.0-flash"),
    (None, "local-llama"),  # no provider: named by the model alone
    (None, None),  # no model recorded
)
FLOWS = ("Triage support email", "Lead enrichment agent", "Invoice agent")
PRICES = {
    "openai/gpt-4o": agents.ModelPrice(2.5, 10.0),
    "anthropic/claude-sonnet-4": agents.ModelPrice(3.0, 15.0),
}


# ------------------------------------------------------------------ the plan


@dataclass
class Call:
    tool: str
    kind: str
    outcome: str  # succeeded, failed, unfinished
    duration: int | None  # None: no times recorded (or never returned)
    mcp_error: bool = False  # failed as an MCP result (isError) rather than status FAILED


@dataclass
class Agent:
    name: str  # step name
    provider: str | None
    model: str | None
    status: str
    max_steps: int
    calls: list[Call]
    thoughts: int
    usage: dict | None
    error: str | None = None  # the step's errorMessage

    @property
    def label(self) -> str:
        if self.model is None:
            return agents.NO_MODEL
        return self.model if self.provider is None else f"{self.provider}/{self.model}"

    @property
    def hit_max_steps(self) -> bool:  # the rule of docs/agents.md, from the plan
        said = self.error is not None and "maxsteps" in self.error.lower().replace(" ", "")
        return said or (self.status == "FAILED" and len(self.calls) >= self.max_steps)


@dataclass
class Spec:
    run_id: str
    flow: str
    created: datetime
    archived: bool
    agents: list[Agent] = field(default_factory=list)


def plan(count: int = 72, seed: int = 18) -> list[Spec]:
    g = random.Random(seed)
    specs = []
    for number in range(count):
        spec = Spec(
            f"agent-run-{number:03d}",
            FLOWS[number % 3],
            BASE + timedelta(hours=7 * number, minutes=g.randint(0, 50)),
            archived=number % 11 == 5,
        )
        for name in ("step_2", "step_5")[: 1 + (number % 4 == 0)]:
            spec.agents.append(_agent(g, name))
        specs.append(spec)
    return specs


def _agent(g: random.Random, name: str) -> Agent:
    provider, model = g.choice(MODELS)
    status = g.choice(("COMPLETED", "COMPLETED", "FAILED", "IN_PROGRESS"))
    calls = []
    for _ in range(g.randint(0, 6)):
        tool, kind = g.choice(TOOLS)
        outcome = g.choices(("succeeded", "failed", "unfinished"), (0.7, 0.2, 0.1))[0]
        duration = None if outcome == "unfinished" or g.random() < 0.1 else g.randint(5, 9000)
        calls.append(Call(tool, kind, outcome, duration, outcome == "failed" and kind == "MCP"))
    usage = None
    if g.random() < 0.6:
        read, written = g.randint(100, 90_000), g.randint(10, 4000)
        usage = {"inputTokens": read, "outputTokens": written}
        if g.random() < 0.7:
            usage["totalTokens"] = read + written
    error = (
        "Agent stopped: reached maxSteps (4)" if status == "FAILED" and g.random() < 0.3 else None
    )
    return Agent(
        name, provider, model, status, g.randint(1, 5), calls, g.randint(0, 4), usage, error
    )


# ------------------------------------------------------------------ the plan in the engine's shapes


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _block(call: Call, index: int, start: datetime) -> dict:
    block = {
        "type": "TOOL_CALL",
        "toolCallType": call.kind,
        "toolName": call.tool,
        "toolCallId": f"call_{index}",
        "input": {"q": index},
    }
    if call.outcome == "unfinished":
        return block | {"status": "in-progress", "startTime": _iso(start)}
    block["status"] = "completed"
    if call.duration is not None:
        block["startTime"] = _iso(start)
        block["endTime"] = _iso(start + timedelta(milliseconds=call.duration))
    if call.outcome == "succeeded":
        block["output"] = {"status": "SUCCESS", "output": {"ok": True}, "resolvedInput": {}}
    elif call.mcp_error:
        block["output"] = {"isError": True, "content": [{"type": "text", "text": "mcp down"}]}
    else:
        message = f"{call.tool} refused api_key={SECRET}"
        block["output"] = {"status": "FAILED", "resolvedInput": {}, "errorMessage": message}
    return block


def _agent_step(agent: Agent, start: datetime) -> dict:
    blocks: list[dict] = [
        {"type": "MARKDOWN", "markdown": f"thought {i}"} for i in range(agent.thoughts)
    ]
    for index, call in enumerate(agent.calls):
        blocks.append(_block(call, index, start + timedelta(seconds=index)))
    output: dict = {"prompt": "Do the task", "status": agent.status, "steps": blocks}
    if agent.usage is not None:
        output["usage"] = agent.usage
    model = {
        key: value for key, value in (("provider", agent.provider), ("model", agent.model)) if value
    }
    step = {
        "type": "PIECE",
        "status": "FAILED" if agent.status == "FAILED" else "SUCCEEDED",
        "duration": 1000 + 10 * len(agent.calls),
        "input": {"prompt": "Do the task", "aiProviderModel": model, "maxSteps": agent.max_steps},
        "output": output,
    }
    if agent.error:
        step["errorMessage"] = agent.error
    return step


def record(spec: Spec, updated: datetime | None = None) -> dict:
    steps = {
        "trigger": {"type": "PIECE_TRIGGER", "status": "SUCCEEDED", "input": {}, "output": {}},
        # a step whose text names agent blocks but is not an agent: no facts
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "duration": 3,
            "input": {},
            "output": {"note": "MARKDOWN and TOOL_CALL are words here", "steps": "none"},
        },
    }
    for agent in spec.agents:
        steps[agent.name] = _agent_step(agent, spec.created + timedelta(seconds=1))
    failed = any(agent.status == "FAILED" for agent in spec.agents)
    version = copy.deepcopy(FLOW_VERSION) | {"id": f"v-{spec.flow}", "displayName": spec.flow}
    finish = spec.created + timedelta(seconds=30)
    return {
        "id": spec.run_id,
        "created": _iso(spec.created),
        "updated": _iso(updated or finish),
        "projectId": "p",
        "flowId": f"f-{spec.flow}",
        "flowVersionId": version["id"],
        "flowVersion": version,
        "environment": "PRODUCTION",
        "status": "FAILED" if failed else "SUCCEEDED",
        "tags": [],
        "archivedAt": _iso(finish) if spec.archived else None,
        "startTime": _iso(spec.created),
        "finishTime": _iso(finish),
        "failedStep": None,
        "steps": steps,
    }


SPECS = plan()
RECORDS = [record(spec) for spec in SPECS]


# ------------------------------------------------------------------ the oracle


def shown(specs=SPECS) -> list[Spec]:
    """The runs the default filter shows: not archived."""
    return [spec for spec in specs if not spec.archived]


def calls_of(specs) -> list[tuple[Spec, Agent, Call]]:
    return [(s, a, c) for s in specs for a in s.agents for c in a.calls]


def percentile(values: list[int], level: float) -> float | None:
    return float(np.percentile(values, level * 100)) if values else None


def expected_tools(specs) -> pd.DataFrame:
    groups: dict = defaultdict(list)
    for spec, _, call in calls_of(specs):
        groups[(call.tool, call.kind)].append((spec.run_id, call))
    found = []
    for (tool, kind), items in groups.items():
        calls = [call for _, call in items]
        durations = [call.duration for call in calls if call.duration is not None]
        failed = sum(call.outcome == "failed" for call in calls)
        found.append(
            {
                "tool": tool,
                "type": kind,
                "calls": len(calls),
                "failed": failed,
                "unfinished": sum(call.outcome == "unfinished" for call in calls),
                "failure_rate": failed / len(calls),
                "p50_ms": percentile(durations, 0.5),
                "p95_ms": percentile(durations, 0.95),
                "runs": len({run_id for run_id, _ in items}),
            }
        )
    return pd.DataFrame(found).sort_values(["calls", "tool"], ascending=[False, True])


# ------------------------------------------------------------------ the stores


@pytest.fixture(scope="module")
def duckdb_store(tmp_path_factory):
    """The plan loaded by the Python path."""
    return store_with(tmp_path_factory.mktemp("agents") / "runs.duckdb", copy.deepcopy(RECORDS))


@pytest.fixture(scope="module")
def chdb_store(request, tmp_path_factory):
    """The plan loaded into a chdb store by the real ingest (the ClickHouse apply)."""
    shared = request.getfixturevalue("shared_chdb")
    location = ChdbLocation(shared.path, database="agents_known")
    return ingest_to_chdb(copy.deepcopy(RECORDS), location, "agents-plan")


@pytest.fixture(params=["duckdb", "chdb"])
def con(request):
    if request.param == "duckdb":
        with open_db(request.getfixturevalue("duckdb_store"), read_only=True) as connection:
            yield connection
        return
    with open_location(request.getfixturevalue("chdb_store")) as connection:
        yield connection


def test_the_plan_covers_every_case():
    calls = calls_of(SPECS)
    assert {call.outcome for _, _, call in calls} == {"succeeded", "failed", "unfinished"}
    assert {call.kind for _, _, call in calls} == {kind for _, kind in TOOLS}
    agents_ = [agent for spec in SPECS for agent in spec.agents]
    assert sum(agent.hit_max_steps for agent in agents_) >= 3
    assert any(agent.usage and "totalTokens" not in agent.usage for agent in agents_)
    assert any(spec.archived and spec.agents for spec in SPECS)


def test_the_tools_table_equals_the_oracle(con):
    got = agents.tools(con, RunFilter()).reset_index(drop=True)
    want = expected_tools(shown()).reset_index(drop=True)
    assert list(got.columns) == list(agents.TOOL_COLUMNS)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_like=False, atol=1e-9)


def test_the_filters_choices_are_every_tool_and_model_of_the_store(con):
    # archived runs included: their tools and models may be filtered on too
    tools = {call.tool for spec in SPECS for agent in spec.agents for call in agent.calls}
    models = {agent.label for spec in SPECS for agent in spec.agents}
    assert agents.tool_names(con) == sorted(tools)
    assert agents.model_names(con) == sorted(models)


def test_a_date_range_and_archived_runs_pick_the_calls_counted(con):
    since, until = BASE + timedelta(days=5), BASE + timedelta(days=14)
    run_filter = RunFilter(since=since, until=until, include_archived=True)
    picked = [spec for spec in SPECS if since <= spec.created < until]
    got = agents.tools(con, run_filter).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got, expected_tools(picked).reset_index(drop=True), check_dtype=False, atol=1e-9
    )


def test_the_runs_filter_finds_runs_by_tool_and_by_a_calls_outcome(con):
    for tool, _ in TOOLS:
        called = {s.run_id for s, _, c in calls_of(shown()) if c.tool == tool}
        assert count_runs(con, RunFilter(tool=tool)) == len(called) > 0
        for outcome in ("failed", "unfinished"):
            ended = {
                s.run_id for s, _, c in calls_of(shown()) if c.tool == tool and c.outcome == outcome
            }
            assert count_runs(con, RunFilter(tool=tool, tool_outcome=outcome)) == len(ended)
    for outcome in ("failed", "unfinished"):
        ended = {s.run_id for s, _, c in calls_of(shown()) if c.outcome == outcome}
        assert count_runs(con, RunFilter(tool_outcome=outcome)) == len(ended) > 0
    assert count_runs(con, RunFilter(tool="no such tool")) == 0


# ------------------------------------------------------------------ each number opens its runs


def test_a_tools_row_and_its_failed_and_unfinished_cells_open_the_runs_they_count(con):
    """Runs opens exactly the tool's runs; a Failed or Unfinished cell counts calls and opens
    the runs holding them (the documented runs count: no more runs than calls)."""
    table = agents.tools(con, RunFilter())
    for row in table.to_dict("records"):
        opened = count_runs(con, agents.tool_runs(RunFilter(), row["tool"]))
        assert opened == row["runs"]
        for outcome in ("failed", "unfinished"):
            holding = {
                s.run_id
                for s, _, c in calls_of(shown())
                if c.tool == row["tool"] and c.outcome == outcome
            }
            drilled = agents.tool_runs(RunFilter(), row["tool"], outcome)
            assert count_runs(con, drilled) == len(holding) <= row[outcome]
    assert agents.tool_runs(RunFilter(), "exa_search", "unfinished") == RunFilter(
        tool="exa_search", tool_outcome="unfinished"
    )


def test_a_models_row_and_its_failed_calls_open_the_runs_they_count(con):
    for row in agents.models(con, RunFilter()).to_dict("records"):
        assert count_runs(con, agents.model_runs(RunFilter(), row["model"])) == row["runs"]
        failing = {
            s.run_id
            for s, a, c in calls_of(shown())
            if a.label == row["model"] and c.outcome == "failed"
        }
        drilled = agents.model_runs(RunFilter(), row["model"], "failed")
        assert count_runs(con, drilled) == len(failing) <= row["failed_calls"]


def test_a_status_by_flow_row_and_its_max_steps_cell_open_the_runs_they_count(con):
    table = agents.status_by_flow(con, RunFilter())
    stopped_somewhere = 0
    for row in table.to_dict("records"):
        flow, status = row["flow_name"], row["agent_status"]
        ended = {
            s.run_id
            for s in shown()
            if s.flow == flow and any(a.status == status for a in s.agents)
        }
        stopped = {
            s.run_id
            for s in shown()
            if s.flow == flow and any(a.status == status and a.hit_max_steps for a in s.agents)
        }
        assert count_runs(con, agents.status_runs(RunFilter(), flow, status)) == row["runs"]
        assert row["runs"] == len(ended)
        drilled = agents.status_runs(RunFilter(), flow, status, max_steps=True)
        assert count_runs(con, drilled) == row["max_steps_runs"] == len(stopped)
        assert row["max_steps_runs"] <= row["hit_max_steps"]
        stopped_somewhere += len(stopped)
    assert stopped_somewhere >= 3


def test_a_calls_per_run_bar_opens_the_runs_it_counts(con):
    bars = agents.calls_per_run(con, RunFilter())
    assert 0 in set(bars["tool_calls"])  # agents that called no tool: a run of agents, no call
    for calls, runs in zip(bars["tool_calls"], bars["runs"], strict=True):
        assert count_runs(con, agents.calls_runs(RunFilter(), int(calls))) == runs
    beyond = int(bars["tool_calls"].max()) + 1
    assert count_runs(con, agents.calls_runs(RunFilter(), beyond)) == 0
    # a run without agent steps made no tool calls but is no run of the chart's
    assert count_runs(con, RunFilter(tool_calls=0)) == int(
        bars.loc[bars["tool_calls"] == 0, "runs"].iloc[0]
    )


def test_a_tokens_row_opens_the_flows_runs_with_an_agent_on_its_model(con):
    for row in agents.tokens_and_cost(con, RunFilter(), prices=PRICES).to_dict("records"):
        want = {
            s.run_id
            for s in shown()
            if s.flow == row["flow_name"] and any(a.label == row["model"] for a in s.agents)
        }
        narrowed = agents.model_runs(agents.flow_runs(RunFilter(), row["flow_name"]), row["model"])
        assert count_runs(con, narrowed) == len(want) <= row["agent_steps"]


def test_the_runs_filter_finds_runs_by_their_agents_model(con):
    labels = {agent.label for spec in SPECS for agent in spec.agents}
    assert agents.NO_MODEL in labels and "local-llama" in labels
    for label in labels:
        want = {spec.run_id for spec in shown() if any(a.label == label for a in spec.agents)}
        assert count_runs(con, RunFilter(agent_model=label)) == len(want) > 0
        assert agents.model_runs(RunFilter(), label) == RunFilter(agent_model=label)
    assert count_runs(con, RunFilter(agent_model="openai")) == 0  # a whole name, not a part


def test_models_equal_the_oracle(con):
    per_model: dict = defaultdict(list)
    for spec in shown():
        for agent in spec.agents:
            per_model[agent.label].append((spec, agent))
    got = agents.models(con, RunFilter()).set_index("model")
    assert set(got.index) == set(per_model)
    for label, items in per_model.items():
        row = got.loc[label]
        calls = [call for _, agent in items for call in agent.calls]
        failed = sum(call.outcome == "failed" for call in calls)
        assert row["agent_steps"] == len(items)
        assert row["runs"] == len({spec.run_id for spec, _ in items})
        assert row["agents_failed"] == sum(agent.status == "FAILED" for _, agent in items)
        assert row["hit_max_steps"] == sum(agent.hit_max_steps for _, agent in items)
        assert (row["tool_calls"], row["failed_calls"]) == (len(calls), failed)
        assert row["unfinished_calls"] == sum(call.outcome == "unfinished" for call in calls)
        if calls:
            assert row["failure_rate"] == pytest.approx(failed / len(calls))
        durations = [1000 + 10 * len(agent.calls) for _, agent in items]
        assert row["p50_ms"] == pytest.approx(percentile(durations, 0.5))
        assert row["p95_ms"] == pytest.approx(percentile(durations, 0.95))


def test_calls_per_run_status_by_flow_and_max_steps_equal_the_oracle(con):
    per_run = Counter(sum(len(a.calls) for a in spec.agents) for spec in shown() if spec.agents)
    got = agents.calls_per_run(con, RunFilter())
    assert dict(zip(got["tool_calls"], got["runs"], strict=True)) == per_run

    statuses: Counter = Counter()
    hits: Counter = Counter()
    for spec in shown():
        for agent in spec.agents:
            statuses[(spec.flow, agent.status)] += 1
            hits[(spec.flow, agent.status)] += agent.hit_max_steps
    got = agents.status_by_flow(con, RunFilter())
    keys = list(zip(got["flow_name"], got["agent_status"], strict=True))
    assert dict(zip(keys, got["steps"], strict=True)) == statuses
    assert dict(zip(keys, got["hit_max_steps"], strict=True)) == hits

    stopped = {(s.run_id, a.name) for s in shown() for a in s.agents if a.hit_max_steps}
    got = agents.max_steps_runs(con, RunFilter())
    assert set(zip(got["run_id"], got["step_name"], strict=True)) == stopped
    assert list(got["started_at"]) == sorted(got["started_at"], reverse=True)


def test_tokens_and_cost_per_flow_and_model_equal_the_oracle(con):
    want: dict = defaultdict(lambda: [0, 0, [], [], []])
    for spec in shown():
        for agent in spec.agents:
            entry = want[(spec.flow, agent.label)]
            entry[0] += 1
            if agent.usage:
                entry[1] += 1
                read, written = agent.usage["inputTokens"], agent.usage["outputTokens"]
                entry[2].append(read)
                entry[3].append(written)
                entry[4].append(agent.usage.get("totalTokens", read + written))
    got = agents.tokens_and_cost(con, RunFilter(), prices=PRICES)
    assert len(got) == len(want)
    for row in got.to_dict("records"):
        steps, recorded, read, written, total = want[(row["flow_name"], row["model"])]
        assert (row["agent_steps"], row["steps_with_tokens"]) == (steps, recorded)
        if not recorded:
            assert pd.isna(row["total_tokens"]) and pd.isna(row["cost"])
            continue
        assert (row["input_tokens"], row["output_tokens"]) == (sum(read), sum(written))
        assert row["total_tokens"] == sum(total)
        price = PRICES.get(row["model"])
        if price is None:
            assert pd.isna(row["cost"])
        else:
            expected = (
                sum(read) * price.input_per_million + sum(written) * price.output_per_million
            ) / 1e6
            assert row["cost"] == pytest.approx(expected)


def test_failure_over_time_per_tool_and_per_model_equal_the_oracle(con):
    for by in ("tool", "model"):
        want: dict = defaultdict(lambda: [0, 0])
        for spec, agent, call in calls_of(shown()):
            key = call.tool if by == "tool" else agent.label
            entry = want[(pd.Timestamp(spec.created.date()), key)]
            entry[0] += 1
            entry[1] += call.outcome == "failed"
        got = agents.failure_over_time(con, RunFilter(), "day", "UTC", by=by, top=50)
        found = {
            (pd.Timestamp(b), k): [c, f]
            for b, k, c, f in zip(
                got["bucket"], got["key"], got["calls"], got["failed"], strict=True
            )
        }
        assert found == want
        assert (got["rate"] == got["failed"] / got["calls"]).all()


def test_a_runs_agents_and_calls_with_errors_masked(con):
    spec = next(
        s
        for s in SPECS
        if any(c.outcome == "failed" and not c.mcp_error for _, _, c in calls_of([s]))
    )
    summary = agents.run_agents(con, spec.run_id)
    assert list(summary["step_name"]) == [agent.name for agent in spec.agents]
    assert list(summary["tool_calls"]) == [len(agent.calls) for agent in spec.agents]
    assert list(summary["tools_ms"]) == [
        sum(call.duration or 0 for call in agent.calls) for agent in spec.agents
    ]
    calls = agents.run_tool_calls(con, spec.run_id)
    assert list(calls["outcome"]) == [c.outcome for a in spec.agents for c in a.calls]
    errors = [error for error in calls["error"] if isinstance(error, str)]
    assert errors and all(SECRET not in error for error in errors)
    assert all("refused" in error or "mcp down" in error for error in errors)


def test_a_tools_errors_are_grouped_and_masked(con):
    failed = [
        c
        for _, _, c in calls_of(shown())
        if c.tool == "shopify-get_order" and c.outcome == "failed"
    ]
    got = agents.tool_errors(con, RunFilter(), "shopify-get_order")
    assert got["calls"].sum() == len(failed) > 0
    assert all(SECRET not in error for error in got["error"])


# -------------------------------------------------------------- every path writes the same facts

FACTS = (
    "SELECT * FROM agent_steps ORDER BY run_id, position",
    "SELECT * FROM agent_tool_calls ORDER BY run_id, position, call_index",
)


def test_the_jsonl_fast_path_writes_the_facts_the_python_path_writes(duckdb_store, tmp_path):
    from runs_store.ingest.pipeline import ingest_paths

    path = write_jsonl(tmp_path / "agents.jsonl", copy.deepcopy(RECORDS))
    summary = ingest_paths(tmp_path / "fast.duckdb", [path])
    assert summary.read_by == "duckdb" and summary.new == len(RECORDS)
    for sql in FACTS:
        assert rows(tmp_path / "fast.duckdb", sql) == rows(duckdb_store, sql)


def test_the_chdb_store_holds_the_facts_the_duckdb_store_holds(duckdb_store, chdb_store):
    with open_location(chdb_store) as connection:
        for sql in FACTS:
            table = sql.split()[3]
            got = connection.query_arrow(sql.replace(table, f"{table} FINAL")).to_pylist()
            assert [tuple(row.values()) for row in got] == rows(duckdb_store, sql)


def hostile_records() -> list[dict]:
    """Agent steps of odd shapes: every path loads them and agrees on their facts."""
    odd_outputs = [
        {"prompt": "p", "status": "COMPLETED", "steps": "not a list"},
        {"prompt": "p", "status": 7, "steps": [None, 3, "x", {"type": "TOOL_CALL"}]},
        {
            "status": "FAILED",
            "steps": [
                {
                    "type": "TOOL_CALL",
                    "toolName": {"a": 1},
                    "output": "x",
                    "startTime": "yesterday",
                    "endTime": 5,
                }
            ],
        },
        {
            "steps": [
                {"type": "MARKDOWN"},
                {
                    "type": "TOOL_CALL",
                    "toolName": "t" * 5000,
                    "toolCallType": "ROBOT",
                    "status": "completed",
                    "output": {"status": "failed", "errorMessage": {"e": [1]}},
                },
            ],
            "usage": {"inputTokens": "12", "outputTokens": -4, "totalTokens": True},
        },
        {
            "prompt": "huge",
            "status": "COMPLETED",
            "steps": [{"type": "MARKDOWN", "markdown": "m" * 300_000}] * 3,
        },
        "just text",
    ]
    records = []
    for number, output in enumerate(odd_outputs):
        run = record(Spec(f"odd-{number}", "Odd flow", BASE + timedelta(hours=number), False))
        run["steps"]["step_2"] = {
            "type": "PIECE",
            "status": "SUCCEEDED",
            "duration": 5,
            "input": ["not", "a", "dict"]
            if number == 1
            else {"maxSteps": "lots", "aiProviderModel": 4},
            "output": output,
        }
        records.append(run)
    return records


def test_hostile_agent_steps_give_the_same_facts_on_every_path(tmp_path):
    from runs_store.ingest.pipeline import ingest_paths

    records = hostile_records()
    python = store_with(tmp_path / "python.duckdb", copy.deepcopy(records))
    summary = ingest_paths(tmp_path / "fast.duckdb", [write_jsonl(tmp_path / "odd.jsonl", records)])
    assert summary.rejected == 0 and summary.new == len(records)
    for sql in FACTS:
        assert rows(tmp_path / "fast.duckdb", sql) == rows(python, sql)
    steps = rows(
        python,
        "SELECT run_id, tool_calls, failed_calls, total_tokens FROM agent_steps ORDER BY run_id",
    )
    assert ("odd-3", 1, 1, None) in steps  # status "failed" counts; a bad total is no total
    calls = rows(
        python, "SELECT tool_type, length(tool), error FROM agent_tool_calls WHERE run_id = 'odd-3'"
    )
    assert calls == [("UNKNOWN", 200, '{"e": [1]}')]


# -------------------------------------------------------------- newer versions, flat rows, pruning


def store_of(backend: str, records: list[dict], tmp_path, request):
    """A new store holding `records`, loaded by the real ingest: opens it when called."""
    if backend == "duckdb":
        path = store_with(tmp_path / "runs.duckdb", copy.deepcopy(records))
        return lambda: open_db(path)
    shared = request.getfixturevalue("shared_chdb")
    database = f"t_{uuid.uuid4().hex[:12]}"
    location = ChdbLocation(shared.path, database=database)
    ingest_to_chdb(copy.deepcopy(records), location, "test-records")
    return lambda: open_location(location)


def _newer_with_fewer_calls(spec: Spec) -> dict:
    newer = copy.deepcopy(spec)
    for agent in newer.agents:
        agent.calls = [Call("replacement_tool", "PIECE", "failed", 10)]
    return record(newer, updated=spec.created + timedelta(days=2))


def _flat_newer(spec: Spec) -> dict:
    return {
        "id": spec.run_id,
        "flow": spec.flow,
        "status": "SUCCEEDED",
        "started_at": spec.created.isoformat(),
        "updated_at": (spec.created + timedelta(days=3)).isoformat(),
    }


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
def test_a_newer_version_replaces_its_facts_and_a_flat_one_keeps_them(backend, tmp_path, request):
    from runs_store.ingest.pipeline import ingest_items, records_as_items

    replaced, kept = SPECS[2], SPECS[3]  # not archived, with calls
    assert replaced.agents[0].calls and kept.agents[0].calls and not replaced.archived
    opened = store_of(backend, RECORDS[:8], tmp_path, request)
    old_tool, kept_tool = replaced.agents[0].calls[0].tool, kept.agents[0].calls[0].tool
    with opened() as connection:
        ingest_items(connection, records_as_items([_newer_with_fewer_calls(replaced)]), "newer")
        ingest_items(connection, records_as_items([_flat_newer(kept)]), "flat")
        assert (
            count_runs(connection, RunFilter(tool="replacement_tool", tool_outcome="failed")) == 1
        )
        # its calls in all are the newer version's: one per agent step
        mine = RunFilter(search=replaced.run_id)
        assert count_runs(connection, mine.with_(tool_calls=len(replaced.agents))) == 1
        before = sum(len(agent.calls) for agent in replaced.agents)
        assert before != len(replaced.agents)
        assert count_runs(connection, mine.with_(tool_calls=before)) == 0
        still = {s.run_id for s, _, c in calls_of(shown(SPECS[:8])) if c.tool == old_tool}
        assert count_runs(connection, RunFilter(tool=old_tool)) == len(still - {replaced.run_id})
        # the flat row brought no steps: the run keeps its steps and their facts
        calling = {s.run_id for s, _, c in calls_of(shown(SPECS[:8])) if c.tool == kept_tool}
        assert count_runs(connection, RunFilter(tool=kept_tool)) == len(calling - {replaced.run_id})
        assert kept.run_id in calling
        summary = agents.run_agents(connection, kept.run_id)
        assert list(summary["tool_calls"]) == [len(agent.calls) for agent in kept.agents]


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
def test_pruning_a_run_deletes_its_facts(backend, tmp_path, request, monkeypatch):
    from runs_store.store import rollups

    opened = store_of(backend, RECORDS, tmp_path, request)
    now = SPECS[-1].created + timedelta(hours=1)
    monkeypatch.setenv("RUNS_RETENTION_DAYS", "5")
    with opened() as connection:
        pruned = rollups.prune(connection, now=now)
        assert pruned.runs > 0
        boundary = pruned.boundary
        kept = [spec for spec in SPECS if spec.created >= boundary]
        want = expected_tools(shown(kept)).reset_index(drop=True)
        got = agents.tools(connection, RunFilter()).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-9)
        for table in ("agent_steps", "agent_tool_calls"):
            left = f"SELECT count(*) FROM {latest(connection, table)} WHERE started_at < $t"
            assert backend_rows(connection, left, {"t": boundary}) == [(0,)]


# ------------------------------------------------------------------ ClickHouse migration


def test_a_clickhouse_store_of_schema_2_gets_its_facts_from_its_steps(
    chdb_store, duckdb_store, request, monkeypatch
):
    from runs_store.store import agent_facts
    from runs_store.store.clickhouse.schema import SCHEMA_VERSION

    monkeypatch.setattr(agent_facts, "BATCH_STEPS", 9)  # read in many slices of the runs

    shared = request.getfixturevalue("shared_chdb")
    location = ingest_to_chdb(
        copy.deepcopy(RECORDS), ChdbLocation(shared.path, database="agents_v2"), "v2"
    )
    with open_location(location) as connection:
        connection.command("DROP TABLE agent_steps")
        connection.command("DROP TABLE agent_tool_calls")
        connection.command("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    with open_location(location) as connection:
        version = connection.execute("SELECT value FROM meta FINAL WHERE key = 'schema_version'")
        assert version == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == "3"
        for sql in FACTS:
            table = sql.split()[3]
            got = connection.query_arrow(sql.replace(table, f"{table} FINAL")).to_pylist()
            assert [tuple(row.values()) for row in got] == rows(duckdb_store, sql)


# ------------------------------------------------------------------ the command


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_agents_command_prints_one_row_per_tool(duckdb_store, fmt):
    result = run_cli("agents", "--db", str(duckdb_store), "--since", "2026-11-01", "--format", fmt)
    assert result.returncode == 0, result.stderr
    if fmt == "json":
        got = pd.DataFrame(json.loads(result.stdout))
    else:
        import io

        got = pd.read_csv(io.StringIO(result.stdout))
    want = expected_tools(shown()).reset_index(drop=True)
    assert list(got.columns) == list(agents.TOOL_COLUMNS)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-9)
    assert f"{len(want)} tools." in result.stderr


def test_the_agents_command_needs_a_start_and_a_readable_date(duckdb_store):
    assert run_cli("agents", "--db", str(duckdb_store)).returncode == 2
    result = run_cli("agents", "--db", str(duckdb_store), "--since", "last week")
    assert result.returncode == 2 and "--since" in result.stderr
