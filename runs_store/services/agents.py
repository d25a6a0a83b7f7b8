"""The numbers behind Insights' Agents view and the `agents` command: which tools agents call and
how often those calls fail or hang, how slow tools and models are, which agents stopped at their
step limit, what agents cost. Computed in SQL from the agent facts the ingest keeps
(store/agent_facts.py), on DuckDB or ClickHouse alike.

Every function takes the connection and a `RunFilter` first, as Insights' do: the filter picks
runs (its WHERE read on `runs`, in their newest version on ClickHouse) and a number counts the
facts of those runs' current version (each fact row names the run version it was read from,
`run_updated_at`). Time buckets are the run's start in the user's calendar (`unit`, `tz_name`),
as every Insights trend. Only aggregated rows leave the database; the one text each query has
runs on both engines, values bound by name.

A tool call is `succeeded`, `failed` or `unfinished` by the rules of domain/agents.py;
`failure_rate` is failed / calls. Durations are milliseconds. Error texts are masked as every
error shown (services/masking.py). Each number opens its runs: `tool_runs`, `model_runs`,
`status_runs`, `calls_runs`, `flow_runs` and `bucket_runs` give the RunFilter (the Runs page's
view: `RunsView.tool`, `tool_outcome`, `agent_model`, `agent_status`, `max_steps`,
`tool_calls`). A number that counts calls or agent steps opens the runs that hold them (fewer
when a run holds several); one that counts runs opens exactly those.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import tzinfo
from typing import BinaryIO

import pandas as pd

from runs_store.domain.agents import AGENT_FAILED, FAILED, UNFINISHED
from runs_store.queries.filters import RunFilter, day_window
from runs_store.queries.named_params import Params, merged
from runs_store.services.agent_prices import ModelPrice, load_prices
from runs_store.services.export import neutralise_formulas
from runs_store.services.insights import (
    UNITS,
    _local_bucket,
    _quantile,
    _rows,
    _where,
    bucket_days,
)
from runs_store.services.masking import messages_as_shown
from runs_store.store.agent_facts import NO_MODEL, NO_STATUS, model_label_sql, status_label_sql
from runs_store.store.backend import latest

TOP_KEYS = 8  # the tools or models a trend shows, the most called first
# The `agents` command's columns, one row per tool, and its formats.
TOOL_COLUMNS = (
    "tool",
    "type",
    "calls",
    "failed",
    "unfinished",
    "failure_rate",
    "p50_ms",
    "p95_ms",
    "runs",
)
TOOL_FORMATS = ("json", "csv")
CALL_COUNTS = (
    "count(*) AS calls, "
    "count(*) FILTER (WHERE c.outcome = $failed) AS failed, "
    "count(*) FILTER (WHERE c.outcome = $unfinished) AS unfinished"
)
_OUTCOMES: Params = {"failed": FAILED, "unfinished": UNFINISHED}
_FAILED: Params = {"failed": FAILED}
_MODEL: Params = {"no_model": NO_MODEL}  # the parameter of model_label


def model_label(alias: str) -> str:
    """SQL: a fact row's model as `provider/model` (the name the price table uses)."""
    return model_label_sql(alias, "$no_model")


# ---------------------------------------------------------------- the facts of the filter's runs


def _runs_of(con, run_filter: RunFilter, one_run: bool) -> tuple[str, Params]:
    where, params = _where(con, run_filter, *(("id = $run_id",) if one_run else ()))
    sql = f"(SELECT id, updated_at, flow_name, started_at FROM {latest(con, 'runs')} {where}) AS r"
    return sql, params


def _one_run(one_run: bool) -> str:
    """The facts' own narrowing to one run (`$run_id`): a run page reads no other run's."""
    return "WHERE run_id = $run_id " if one_run else ""


def _calls(con, run_filter: RunFilter, one_run: bool = False) -> tuple[str, Params]:
    """FROM text: the filter's runs' tool calls `c`, joined to their run `r` (only the run
    `$run_id`, for `one_run`)."""
    runs, params = _runs_of(con, run_filter, one_run)
    sql = (
        "(SELECT run_id, run_updated_at, position, call_index, tool, tool_type, outcome, "
        f"duration_ms, error, provider, model FROM {latest(con, 'agent_tool_calls')} "
        f"{_one_run(one_run)}) AS c "
        f"INNER JOIN {runs} ON c.run_id = r.id AND c.run_updated_at = r.updated_at"
    )
    return sql, params


def _agents(con, run_filter: RunFilter, one_run: bool = False) -> tuple[str, Params]:
    """FROM text: the filter's runs' agent steps `a`, joined to their run `r` (only the run
    `$run_id`, for `one_run`)."""
    runs, params = _runs_of(con, run_filter, one_run)
    sql = (
        "(SELECT run_id, run_updated_at, position, step_name, step_display, duration_ms, "
        "provider, model, agent_status, max_steps, thoughts, tool_calls, failed_calls, "
        "unfinished_calls, tools_ms, hit_max_steps, input_tokens, output_tokens, total_tokens "
        f"FROM {latest(con, 'agent_steps')} {_one_run(one_run)}) AS a "
        f"INNER JOIN {runs} ON a.run_id = r.id AND a.run_updated_at = r.updated_at"
    )
    return sql, params


# ---------------------------------------------------------------- names, for the filters


def tool_names(con) -> list[str]:
    """Every tool the store's agents called (in their runs' current versions, archived runs
    included), sorted: the choices of the agent tool filter."""
    calls, params = _calls(con, RunFilter(include_archived=True))
    found = _rows(con, f"SELECT DISTINCT c.tool AS tool FROM {calls}", params)
    return sorted(found["tool"])


def model_names(con) -> list[str]:
    """Every model the store's agents ran on, named as the Agents view names it, sorted: the
    choices of the agent model filter."""
    agents, params = _agents(con, RunFilter(include_archived=True))
    sql = f"SELECT DISTINCT {model_label('a')} AS model FROM {agents}"
    return sorted(_rows(con, sql, merged(params, _MODEL))["model"])


# ---------------------------------------------------------------- tools


def tools(con, run_filter: RunFilter) -> pd.DataFrame:
    """One row per tool: tool, type, calls, failed, unfinished, failure_rate (failed / calls),
    p50_ms, p95_ms (of the calls with a duration), runs (that called it); most called first."""
    calls, params = _calls(con, run_filter)
    return _rows(
        con,
        f"""
        WITH per_tool AS (
            SELECT c.tool AS tool, c.tool_type AS type, {CALL_COUNTS},
                   {_quantile(con, "c.duration_ms", 0.5)} AS p50_ms,
                   {_quantile(con, "c.duration_ms", 0.95)} AS p95_ms,
                   count(DISTINCT c.run_id) AS runs
            FROM {calls} GROUP BY c.tool, c.tool_type)
        SELECT tool, type, calls, failed, unfinished, failed / calls AS failure_rate,
               p50_ms, p95_ms, runs
        FROM per_tool ORDER BY calls DESC, tool, type""",
        merged(params, _OUTCOMES),
    )


def write_tools(con, run_filter: RunFilter, out: BinaryIO, fmt: str) -> int:
    """The tools table (TOOL_COLUMNS) for scripts and notebooks: a JSON array of objects, or CSV
    with text cells a spreadsheet would run as a formula neutralised, as exports are. Returns
    the number of tools."""
    found = tools(con, run_filter)
    if fmt == "csv":
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        table = pa.Table.from_pandas(found, preserve_index=False)
        table = table.cast(
            pa.schema(
                [
                    (f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
                    for f in table.schema
                ]
            )
        )
        safe = [neutralise_formulas(batch) for batch in table.to_batches()]
        pa_csv.write_csv(pa.Table.from_batches(safe, schema=table.schema) if safe else table, out)
    elif fmt == "json":
        records = [
            {name: _plain(value) for name, value in row.items()} for row in found.to_dict("records")
        ]
        out.write(json.dumps(records, ensure_ascii=False, indent=1).encode() + b"\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return len(found)


def _plain(value):
    """A frame's value as JSON takes it: a missing number is null."""
    return None if _missing(value) else value


def slowest_tools(con, run_filter: RunFilter, limit: int = 15) -> pd.DataFrame:
    """The tools with the highest p95 call duration: the columns of `tools`."""
    found = tools(con, run_filter).dropna(subset=["p95_ms"])
    return found.sort_values(["p95_ms", "tool"], ascending=[False, True]).head(limit)


def tool_errors(con, run_filter: RunFilter, tool: str, limit: int = 20) -> pd.DataFrame:
    """A tool's failed calls grouped by error text (masked): error, calls, runs; most first."""
    calls, params = _calls(con, run_filter)
    found = _rows(
        con,
        f"""
        SELECT c.error AS error, count(*) AS calls, count(DISTINCT c.run_id) AS runs
        FROM {calls} WHERE c.tool = $tool AND c.outcome = $failed
        GROUP BY c.error ORDER BY calls DESC, error LIMIT $limit""",
        merged(params, _FAILED, {"tool": tool, "limit": limit}),
    )
    found["error"] = messages_as_shown(found["error"].tolist())
    return found


def failure_over_time(
    con, run_filter: RunFilter, unit: str, tz_name: str, by: str = "tool", top: int = TOP_KEYS
) -> pd.DataFrame:
    """Tool-call failure rate per local `unit` bucket of the runs' start, per tool (`by`
    "tool") or per model ("model"), for the `top` most called: bucket, key, calls, failed,
    rate (failed / calls)."""
    if unit not in UNITS:
        raise ValueError(f"unknown time unit {unit!r}")
    if by not in ("tool", "model"):
        raise ValueError(f"a failure rate is per tool or per model, not per {by!r}")
    key = "c.tool" if by == "tool" else model_label("c")
    calls, params = _calls(con, run_filter)
    bucket, bucket_params = _local_bucket(con, run_filter, unit, tz_name)
    return _rows(
        con,
        f"""
        WITH counted AS (
            SELECT {bucket} AS bucket, {key} AS key,
                   count(*) AS calls, count(*) FILTER (WHERE c.outcome = $failed) AS failed
            FROM {calls} GROUP BY ALL),
        most AS (
            SELECT key FROM counted GROUP BY key ORDER BY sum(calls) DESC, key LIMIT $top)
        SELECT bucket, key, calls, failed, failed / calls AS rate FROM counted
        WHERE key IN (SELECT key FROM most) ORDER BY key, bucket""",
        merged(params, bucket_params, _FAILED, _MODEL if by == "model" else {}, {"top": top}),
    )


# ---------------------------------------------------------------- agents and models


def calls_per_run(con, run_filter: RunFilter) -> pd.DataFrame:
    """How many tool calls a run's agents made, as a distribution: tool_calls, runs."""
    agents, params = _agents(con, run_filter)
    return _rows(
        con,
        f"""
        WITH per_run AS (
            SELECT a.run_id AS run_id, CAST(sum(a.tool_calls) AS BIGINT) AS n
            FROM {agents} GROUP BY a.run_id)
        SELECT n AS tool_calls, count(*) AS runs FROM per_run GROUP BY n ORDER BY n""",
        params,
    )


def max_steps_runs(con, run_filter: RunFilter, limit: int = 100) -> pd.DataFrame:
    """The agent steps that stopped at their step limit, newest run first: run_id, started_at,
    flow_name, step_name, step_display, model, max_steps, tool_calls, agent_status."""
    agents, params = _agents(con, run_filter)
    return _rows(
        con,
        f"""
        SELECT a.run_id AS run_id, r.started_at AS started_at, r.flow_name AS flow_name,
               a.step_name AS step_name, a.step_display AS step_display,
               {model_label("a")} AS model, a.max_steps AS max_steps,
               a.tool_calls AS tool_calls, a.agent_status AS agent_status
        FROM {agents} WHERE a.hit_max_steps
        ORDER BY started_at DESC, run_id DESC, a.position LIMIT $limit""",
        merged(params, _MODEL, {"limit": limit}),
    )


def status_by_flow(con, run_filter: RunFilter) -> pd.DataFrame:
    """Agent steps per flow and agent status (COMPLETED, FAILED, IN_PROGRESS as recorded,
    NO_STATUS without one): flow_name, agent_status, steps, runs, hit_max_steps (agent steps),
    max_steps_runs (the runs holding them)."""
    agents, params = _agents(con, run_filter)
    status = status_label_sql("a", "$no_status")
    return _rows(
        con,
        f"""
        SELECT r.flow_name AS flow_name, {status} AS agent_status,
               count(*) AS steps, count(DISTINCT a.run_id) AS runs,
               count(*) FILTER (WHERE a.hit_max_steps) AS hit_max_steps,
               count(DISTINCT CASE WHEN a.hit_max_steps THEN a.run_id END) AS max_steps_runs
        FROM {agents} GROUP BY r.flow_name, {status}
        ORDER BY flow_name, agent_status""",
        merged(params, {"no_status": NO_STATUS}),
    )


def models(con, run_filter: RunFilter) -> pd.DataFrame:
    """One row per model (`provider/model`): model, agent_steps, runs, agents_failed,
    hit_max_steps, tool_calls, failed_calls, unfinished_calls, failure_rate (failed / tool
    calls), p50_ms, p95_ms (the agent steps' durations); most used first."""
    agents, params = _agents(con, run_filter)
    return _rows(
        con,
        f"""
        WITH per_model AS (
            SELECT {model_label("a")} AS model, count(*) AS agent_steps,
                   count(DISTINCT a.run_id) AS runs,
                   count(*) FILTER (WHERE a.agent_status = $agent_failed) AS agents_failed,
                   count(*) FILTER (WHERE a.hit_max_steps) AS hit_max_steps,
                   CAST(sum(a.tool_calls) AS BIGINT) AS tool_calls,
                   CAST(sum(a.failed_calls) AS BIGINT) AS failed_calls,
                   CAST(sum(a.unfinished_calls) AS BIGINT) AS unfinished_calls,
                   {_quantile(con, "a.duration_ms", 0.5)} AS p50_ms,
                   {_quantile(con, "a.duration_ms", 0.95)} AS p95_ms
            FROM {agents} GROUP BY {model_label("a")})
        SELECT model, agent_steps, runs, agents_failed, hit_max_steps, tool_calls, failed_calls,
               unfinished_calls,
               CASE WHEN tool_calls > 0 THEN failed_calls / tool_calls END AS failure_rate,
               p50_ms, p95_ms
        FROM per_model ORDER BY agent_steps DESC, model""",
        merged(params, _MODEL, {"agent_failed": AGENT_FAILED}),
    )


def tokens_and_cost(
    con, run_filter: RunFilter, prices: dict[str, ModelPrice] | None = None
) -> pd.DataFrame:
    """Tokens per flow and model, and their cost from the price table (`prices`, default the
    RUNS_AGENT_PRICES file): flow_name, model, agent_steps, steps_with_tokens, input_tokens,
    output_tokens, total_tokens, cost (NaN without a price for the model, or without token
    counts). Only steps whose output records tokens count (the engine's records none of its
    own; see docs/agents.md)."""
    agents, params = _agents(con, run_filter)
    found = _rows(
        con,
        f"""
        SELECT r.flow_name AS flow_name, {model_label("a")} AS model, count(*) AS agent_steps,
               count(a.total_tokens) AS steps_with_tokens,
               {_sum_of_recorded("a.input_tokens")} AS input_tokens,
               {_sum_of_recorded("a.output_tokens")} AS output_tokens,
               {_sum_of_recorded("a.total_tokens")} AS total_tokens
        FROM {agents} GROUP BY r.flow_name, {model_label("a")}
        ORDER BY total_tokens DESC NULLS LAST, flow_name, model""",
        merged(params, _MODEL),
    )
    priced = load_prices() if prices is None else prices
    costs = [
        _cost(priced.get(model), given, taken)
        for model, given, taken in zip(
            found["model"], found["input_tokens"], found["output_tokens"], strict=True
        )
    ]
    found["cost"] = pd.Series(costs, index=found.index, dtype="float64")
    return found


def _sum_of_recorded(column: str) -> str:
    """SQL: the sum of a column's recorded values as BIGINT; NULL when none is recorded (alike
    on both engines: ClickHouse's cast of a NULL sum to BIGINT fails)."""
    return f"CASE WHEN count({column}) > 0 THEN CAST(sum(coalesce({column}, 0)) AS BIGINT) END"


def _cost(price: ModelPrice | None, input_tokens, output_tokens) -> float | None:
    if price is None or _missing(input_tokens) or _missing(output_tokens):
        return None
    return price.cost(float(input_tokens), float(output_tokens))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# ---------------------------------------------------------------- one run


def run_agents(con, run_id: str) -> pd.DataFrame:
    """A run's agent steps (its current version), in order: position, step_name, step_display,
    model, agent_status, max_steps, thoughts, tool_calls, failed_calls, unfinished_calls,
    tools_ms, hit_max_steps, input_tokens, output_tokens, total_tokens, duration_ms."""
    agents, params = _agents(con, RunFilter(include_archived=True), one_run=True)
    return _rows(
        con,
        f"""
        SELECT a.position AS position, a.step_name AS step_name, a.step_display AS step_display,
               {model_label("a")} AS model, a.agent_status AS agent_status,
               a.max_steps AS max_steps, a.thoughts AS thoughts, a.tool_calls AS tool_calls,
               a.failed_calls AS failed_calls, a.unfinished_calls AS unfinished_calls,
               a.tools_ms AS tools_ms, a.hit_max_steps AS hit_max_steps,
               a.input_tokens AS input_tokens, a.output_tokens AS output_tokens,
               a.total_tokens AS total_tokens, a.duration_ms AS duration_ms
        FROM {agents} ORDER BY position""",
        merged(params, _MODEL, {"run_id": run_id}),
    )


def run_tool_calls(con, run_id: str, mask: bool | None = None) -> pd.DataFrame:
    """A run's tool calls (its current version), in order: position, step_name, call_index,
    tool, type, outcome, duration_ms, error (masked unless `mask` is False)."""
    calls, params = _calls(con, RunFilter(include_archived=True), one_run=True)
    found = _rows(
        con,
        f"""
        SELECT c.position AS position, c.call_index AS call_index, c.tool AS tool,
               c.tool_type AS type, c.outcome AS outcome, c.duration_ms AS duration_ms,
               c.error AS error
        FROM {calls} ORDER BY position, call_index""",
        merged(params, {"run_id": run_id}),
    )
    found["error"] = messages_as_shown(found["error"].tolist(), mask)
    return found


# ---------------------------------------------------------------- drill-downs


def tool_runs(run_filter: RunFilter, tool: str = "", outcome: str = "") -> RunFilter:
    """The runs a tool's number counts: those that called it (`outcome`, failed or unfinished:
    where a call to it ended so); no tool with an outcome: where any tool call ended so."""
    return replace(run_filter, tool=tool, tool_outcome=outcome)


def model_runs(run_filter: RunFilter, model: str, outcome: str = "") -> RunFilter:
    """The runs a model's number counts: those whose agents ran on it (`provider/model`);
    with an `outcome`, where a tool call of its agent ended so."""
    return replace(run_filter, agent_model=model, tool_outcome=outcome)


def status_runs(
    run_filter: RunFilter, flow: str, status: str, max_steps: bool = False
) -> RunFilter:
    """The runs of a row of `status_by_flow`: the flow's runs with an agent step that ended in
    `status` (`max_steps`: and stopped at its step limit)."""
    return replace(run_filter, flows=(flow,), agent_status=status, max_steps=max_steps)


def calls_runs(run_filter: RunFilter, tool_calls: int) -> RunFilter:
    """The runs of a bar of `calls_per_run`: those whose agent steps made that many tool calls
    in all."""
    return replace(run_filter, tool_calls=tool_calls)


def flow_runs(run_filter: RunFilter, flow: str) -> RunFilter:
    """The runs of one flow of a per-flow number."""
    return replace(run_filter, flows=(flow,))


def bucket_runs(run_filter: RunFilter, bucket: str, unit: str, tz: tzinfo) -> RunFilter:
    """The runs of one time bucket of a trend (its whole days in the user's timezone, as a
    custom range of the Runs page covers them)."""
    first, last = bucket_days(bucket, unit)
    since, until = day_window(first, last, tz)
    return replace(run_filter, since=since, until=until)
