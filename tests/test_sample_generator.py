"""The sample generator: deterministic, engine-shaped runs, realistic where the app looks."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sample_data.generator import generate_runs, write_jsonl

END = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
DAYS = 30
SEED = 5
ALL_STATUSES = {
    "SUCCEEDED",
    "RUNNING",
    "PAUSED",
    "FAILED",
    "CANCELED",
    "QUOTA_EXCEEDED",
    "TIMEOUT",
    "QUEUED",
    "INTERNAL_ERROR",
    "MEMORY_LIMIT_EXCEEDED",
    "LOG_SIZE_EXCEEDED",
}
UNFINISHED = {"QUEUED", "RUNNING", "PAUSED"}
STEP_TYPES = {"PIECE_TRIGGER", "EMPTY", "PIECE", "CODE", "LOOP_ON_ITEMS", "ROUTER"}
STEP_STATUSES = {"SUCCEEDED", "FAILED", "PAUSED", "RUNNING", "STOPPED"}
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms_between(earlier: str, later: str) -> int:
    return round((parse(later) - parse(earlier)).total_seconds() * 1000)


def flow_name(run: dict) -> str:
    return run["flowVersion"]["displayName"] if "flowVersion" in run else run["flowDisplayName"]


def walk_tree(action):
    """Every action of an engine step tree: nextAction chains, loop bodies, router branches."""
    while action:
        yield action
        yield from walk_tree(action.get("firstLoopAction"))
        for child in action.get("children") or []:
            yield from walk_tree(child)
        action = action.get("nextAction")


def chain_names(action) -> set[str]:
    return {node["name"] for node in walk_tree(action)}


def tree_catalog(run: dict) -> dict[str, dict]:
    return {node["name"]: node for node in walk_tree(run["flowVersion"]["trigger"])}


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return list(generate_runs(20_000, days=DAYS, seed=SEED, end=END))


@pytest.fixture(scope="module")
def with_steps(runs) -> list[dict]:
    return [run for run in runs if run["steps"]]


@pytest.fixture(scope="module")
def mixed_runs() -> list[dict]:
    """Runs with many older-engine records and many TESTING runs."""
    return list(generate_runs(4000, seed=SEED, end=END, legacy_share=0.3, test_share=0.25))


# ---------------------------------------------------------------- determinism and the basics


def test_same_arguments_give_identical_runs():
    first = json.dumps(list(generate_runs(2000, seed=3, end=END, legacy_share=0.1)))
    second = json.dumps(list(generate_runs(2000, seed=3, end=END, legacy_share=0.1)))
    assert first == second


def test_different_seeds_give_different_runs():
    one = list(generate_runs(500, seed=1, end=END))
    two = list(generate_runs(500, seed=2, end=END))
    assert [run["id"] for run in one] != [run["id"] for run in two]
    assert [run["created"] for run in one] != [run["created"] for run in two]


def test_a_naive_end_is_read_as_utc():
    naive = list(generate_runs(200, seed=4, end=END.replace(tzinfo=None)))
    aware = list(generate_runs(200, seed=4, end=END))
    assert naive == aware


@pytest.mark.parametrize("count", [0, 1, 17, 2500])
def test_yields_exactly_count_runs(count):
    assert sum(1 for _ in generate_runs(count, end=END)) == count


def test_default_end_is_now():
    newest = list(generate_runs(5))[-1]
    assert abs(datetime.now(UTC) - parse(newest["created"])) < timedelta(minutes=5)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"count": -1}, "count must be >= 0"),
        ({"count": 5, "days": 0}, "days must be > 0"),
        ({"count": 5, "legacy_share": 1.5}, "legacy_share must be between 0 and 1"),
        ({"count": 5, "test_share": -0.1}, "test_share must be between 0 and 1"),
    ],
)
def test_rejects_impossible_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_runs(**arguments)


def test_ids_are_unique_21_character_alphanumeric(runs):
    ids = [run["id"] for run in runs]
    assert len(set(ids)) == len(ids)
    assert all(len(run_id) == 21 and run_id.isalnum() and run_id.isascii() for run_id in ids)


def test_created_times_ascend_within_the_range_and_the_newest_is_near_end(runs):
    created = [parse(run["created"]) for run in runs]
    assert created == sorted(created)
    assert created[0] >= END - timedelta(days=DAYS)
    assert created[-1] <= END
    assert END - created[-1] < timedelta(minutes=5)


def test_timestamps_have_milliseconds_and_z(runs):
    for run in runs[::37]:
        for key in ("created", "updated", "startTime", "finishTime", "archivedAt"):
            assert run[key] is None or ISO_MS.match(run[key]), (key, run[key])


# ---------------------------------------------------------------- statuses and times


def test_all_eleven_statuses_appear_with_succeeded_dominant(runs):
    counts = Counter(run["status"] for run in runs)
    shares = {status: count / len(runs) for status, count in counts.items()}
    assert set(shares) == ALL_STATUSES
    assert 0.80 <= shares["SUCCEEDED"] <= 0.89
    assert 0.06 <= shares["FAILED"] <= 0.12
    rest = [share for status, share in shares.items() if status not in ("SUCCEEDED", "FAILED")]
    assert max(rest) < 0.05


def test_unfinished_runs_have_the_engines_null_times(runs):
    for run in runs:
        if run["status"] == "QUEUED":
            assert run["startTime"] is None and run["finishTime"] is None and run["steps"] is None
        elif run["status"] in ("RUNNING", "PAUSED"):
            assert run["startTime"] is not None and run["finishTime"] is None
        else:
            assert run["startTime"] is not None and run["finishTime"] is not None


def test_paused_runs_wait_on_a_delay_or_a_webhook(runs):
    paused = [run for run in runs if run["status"] == "PAUSED"]
    kinds = Counter(run["pauseMetadata"]["type"] for run in paused)
    assert set(kinds) == {"DELAY", "WEBHOOK"}
    for run in paused:
        meta = run["pauseMetadata"]
        if meta["type"] == "DELAY":
            assert parse(meta["resumeDateTime"]) > END
        else:
            assert len(meta["requestId"]) == 21
        assert list(run["steps"].values())[-1]["status"] == "PAUSED"
    assert not any("pauseMetadata" in run for run in runs if run["status"] != "PAUSED")


def test_unfinished_runs_are_recent_except_a_few_stuck_ones(runs):
    age = {
        status: [END - parse(run["created"]) for run in runs if run["status"] == status]
        for status in UNFINISHED
    }
    assert all(a < timedelta(minutes=30) for a in age["QUEUED"])
    assert all(a < timedelta(days=3) for a in age["PAUSED"])
    stuck = [a for a in age["RUNNING"] if a > timedelta(days=1)]
    recent = [a for a in age["RUNNING"] if a < timedelta(hours=1)]
    assert stuck and recent


def test_times_are_consistent(runs):
    for run in runs:
        created, updated = parse(run["created"]), parse(run["updated"])
        assert updated >= created and updated <= END
        if run["startTime"]:
            assert parse(run["startTime"]) > created
        if run["finishTime"]:
            assert run["finishTime"] >= run["startTime"] and updated >= parse(run["finishTime"])
            assert parse(run["finishTime"]) <= END
            spent = sum(step.get("duration") or 0 for step in (run["steps"] or {}).values())
            assert ms_between(run["startTime"], run["finishTime"]) >= spent


def test_quota_exceeded_runs_come_in_month_end_bursts(runs):
    quota = [run for run in runs if run["status"] == "QUOTA_EXCEEDED"]
    assert len(quota) > 100
    for run in quota:
        created = parse(run["created"])
        assert (created + timedelta(hours=48)).month != created.month, run["created"]
        assert run["steps"] in (None, {}) and run["failedStep"] is None
        assert ms_between(run["startTime"], run["finishTime"]) < 1000
    flows = {flow_name(run) for run in quota}
    assert len(flows) >= 5


# ---------------------------------------------------------------- failures


def test_failed_runs_point_at_their_last_step(with_steps):
    failed = [run for run in with_steps if run["status"] == "FAILED"]
    assert len(failed) > 1000
    for run in failed:
        name, step = list(run["steps"].items())[-1]
        assert run["failedStep"]["name"] == name
        assert run["failedStep"]["displayName"] == tree_catalog(run)[name]["displayName"]
        assert step["status"] == "FAILED" and step["errorMessage"] == run["failedStep"]["message"]
        assert all(other["status"] == "SUCCEEDED" for other in list(run["steps"].values())[:-1])


def test_only_failed_runs_have_a_failed_step(runs):
    assert all(run["failedStep"] is None for run in runs if run["status"] != "FAILED")
    assert all(run["failedStep"] for run in runs if run["status"] == "FAILED")


def test_error_messages_are_the_ones_people_really_see(runs):
    messages = [run["failedStep"]["message"] for run in runs if run["status"] == "FAILED"]
    text = "\n".join(messages)
    for fragment in (
        '"error":"not_in_channel"',
        "TypeError: Invalid URL",
        '"retry-after"',
        "Cannot read properties of undefined (reading 'email')",
        '"customer_id" is required',
        "invalid_auth",
        "ETIMEDOUT",
        '"status":429',
    ):
        assert fragment in text, fragment
    decoded = [json.loads(message) for message in messages if message.startswith("{")]
    assert any(value.get("response", {}).get("status") == 403 for value in decoded)
    assert len(set(messages)) > 300  # ids and numbers vary inside the same kind of error


def test_a_new_version_raises_one_flows_failure_rate_at_one_step(runs):
    tally = defaultdict(lambda: [0, 0])
    first_seen, failed_at = {}, defaultdict(Counter)
    for run in runs:
        if run["status"] in ("SUCCEEDED", "FAILED"):
            key = (flow_name(run), run["flowVersionId"])
            first_seen.setdefault(key, run["created"])
            tally[key][1] += 1
            if run["status"] == "FAILED":
                tally[key][0] += 1
                failed_at[key][run["failedStep"]["name"]] += 1
    jumps = []
    for flow in {name for name, _ in tally}:
        versions = sorted(
            (first_seen[key], key) for key in tally if key[0] == flow and tally[key][1] >= 200
        )
        rates = [tally[key][0] / tally[key][1] for _, key in versions]
        if len(rates) >= 2 and rates[-1] >= 0.2 and max(rates[:-1]) <= 0.06:
            jumps.append(versions[-1][1])
    assert len(jumps) == 1
    _, count = failed_at[jumps[0]].most_common(1)[0]
    assert count / sum(failed_at[jumps[0]].values()) > 0.8


def test_halted_runs_have_no_failed_step_and_at_most_partial_steps(runs):
    halts = ("TIMEOUT", "CANCELED", "MEMORY_LIMIT_EXCEEDED", "INTERNAL_ERROR", "LOG_SIZE_EXCEEDED")
    halted = [run for run in runs if run["status"] in halts]
    for run in halted:
        assert run["failedStep"] is None
        assert all(step["status"] == "SUCCEEDED" for step in (run["steps"] or {}).values())
    timeouts = [run for run in halted if run["status"] == "TIMEOUT"]
    assert all(ms_between(run["startTime"], run["finishTime"]) >= 600_000 for run in timeouts)


# ---------------------------------------------------------------- flows and step shapes


def test_flows_have_fixed_step_trees_and_a_few_versions(runs):
    flows = defaultdict(set)
    trees = defaultdict(set)
    for run in runs:
        flows[flow_name(run)].add(run["flowVersionId"])
        trees[flow_name(run)].add(json.dumps(run["flowVersion"]["trigger"]))
        assert run["flowVersion"]["id"] == run["flowVersionId"]
        assert run["flowVersion"]["flowId"] == run["flowId"]
    assert 10 <= len(flows) <= 15
    assert all(len(tree) == 1 for tree in trees.values())
    volumes = Counter(flow_name(run) for run in runs)
    busy = [flow for flow, n in volumes.items() if n >= 200]
    assert all(2 <= len(flows[flow]) <= 4 for flow in busy)
    assert max(volumes.values()) > 10 * min(volumes.values())
    assert len({run["projectId"] for run in runs}) == 2


def test_step_trees_are_linked_like_the_engines(runs):
    seen_types, null_branch = set(), False
    for run in {flow_name(run): run for run in runs}.values():
        trigger = run["flowVersion"]["trigger"]
        assert trigger["name"] == "trigger" and trigger["type"] in ("PIECE_TRIGGER", "EMPTY")
        nodes = list(walk_tree(trigger))
        assert len({node["name"] for node in nodes}) == len(nodes)
        for node in nodes:
            seen_types.add(node["type"])
            if node["type"] == "PIECE":
                assert node["settings"]["pieceName"].startswith("@activepieces/piece-")
                assert node["settings"]["actionName"]
            if node["type"] == "LOOP_ON_ITEMS":
                assert node["firstLoopAction"]["name"].startswith("step_")
            if node["type"] == "ROUTER":
                assert len(node["children"]) == len(node["settings"]["branches"]) >= 2
                assert all("branchName" in branch for branch in node["settings"]["branches"])
                null_branch = null_branch or None in node["children"]
    assert seen_types == STEP_TYPES
    assert null_branch


def test_steps_are_keyed_in_execution_order(with_steps):
    for run in with_steps[::7]:
        names = list(run["steps"])
        assert names[0] == "trigger"
        numbers = [int(name.split("_")[1]) for name in names[1:]]
        assert numbers == sorted(numbers)
        for step in run["steps"].values():
            assert step["type"] in STEP_TYPES and step["status"] in STEP_STATUSES


def test_loop_outputs_hold_one_to_five_iterations_of_child_steps(with_steps):
    loops = [
        (run, name, step)
        for run in with_steps
        for name, step in run["steps"].items()
        if step["type"] == "LOOP_ON_ITEMS"
    ]
    assert len(loops) > 500
    for run, name, step in loops[::11]:
        output = step["output"]
        assert {"item", "index", "iterations"} <= set(output)
        assert 1 <= len(output["iterations"]) <= 5 and output["index"] == len(output["iterations"])
        body = chain_names(tree_catalog(run)[name]["firstLoopAction"])
        for iteration in output["iterations"]:
            assert set(iteration) == body
            for child in iteration.values():
                assert child["status"] == "SUCCEEDED" and "output" in child
        assert not body & set(run["steps"])


def test_only_the_taken_router_branch_runs(with_steps):
    checked = 0
    for run in with_steps:
        if run["status"] != "SUCCEEDED":
            continue
        for name, step in run["steps"].items():
            if step["type"] != "ROUTER":
                continue
            branches = step["output"]["branches"]
            taken = [branch["branchIndex"] for branch in branches if branch["evaluation"]]
            assert len(taken) == 1
            assert [branch["branchIndex"] for branch in branches] == list(range(len(branches)))
            children = tree_catalog(run)[name]["children"]
            for index, child in enumerate(children):
                ran = chain_names(child) & set(run["steps"])
                assert ran == (chain_names(child) if index == taken[0] else set())
            checked += 1
    assert checked > 1000


def agent_steps(runs):
    for run in runs:
        catalog = tree_catalog(run)
        for name, step in run["steps"].items():
            if catalog[name]["settings"].get("actionName") == "run_agent":
                yield run, step


def test_run_agent_steps_carry_a_timeline(with_steps):
    agents = list(agent_steps([run for run in with_steps if "flowVersion" in run]))
    assert len(agents) > 1000
    statuses, tool_results, kinds, models = Counter(), Counter(), Counter(), Counter()
    unfinished = usage = 0
    for run, step in agents:
        assert {"prompt", "aiProviderModel", "maxSteps"} <= set(step["input"])
        models[step["input"]["aiProviderModel"]["model"]] += 1
        assert set(step["input"]["aiProviderModel"]) == {"provider", "model"}
        if step["status"] == "RUNNING" and "output" not in step:
            continue
        output = step["output"]
        statuses[output["status"]] += 1
        assert output["prompt"] == step["input"]["prompt"]
        for block in output["steps"]:
            assert block["type"] in ("MARKDOWN", "TOOL_CALL")
            if block["type"] == "MARKDOWN":
                assert block["markdown"]
                continue
            assert block["toolCallType"] in ("PIECE", "FLOW", "MCP", "KNOWLEDGE_BASE")
            kinds[block["toolCallType"]] += 1
            assert block["toolName"] and block["toolCallId"]
            assert block["startTime"] >= run["startTime"]
            if block["status"] == "completed":
                assert block["endTime"] >= block["startTime"]
                tool_results[block["output"]["status"]] += 1
            else:
                assert block["status"] == "in-progress" and "endTime" not in block
                unfinished += 1
        if "usage" in output:
            counts = output["usage"]
            assert counts["totalTokens"] == counts["inputTokens"] + counts["outputTokens"] > 0
            usage += 1
        if output["status"] == "COMPLETED":
            assert output["structuredOutput"] and 3000 <= step["duration"] <= 40_000
    assert statuses["COMPLETED"] > 1000 and statuses["FAILED"] > 10
    assert tool_results["SUCCESS"] > 1000 and tool_results["FAILED"] > 50
    # the agents' newer parts: five models, knowledge-base tools, calls that never returned,
    # token counts in most outputs
    assert len(models) == 5 and min(models.values()) > 50
    assert min(kinds[kind] for kind in ("PIECE", "FLOW", "MCP", "KNOWLEDGE_BASE")) > 50
    assert unfinished >= 1 and 0.6 < usage / sum(statuses.values()) < 0.9


def test_step_durations_are_realistic(with_steps):
    by_kind = defaultdict(list)
    for run in with_steps:
        if "flowVersion" not in run:
            continue
        catalog = tree_catalog(run)
        for name, step in run["steps"].items():
            piece = catalog[name]["settings"].get("pieceName", "")
            if step["status"] == "SUCCEEDED" and step["type"] == "CODE":
                by_kind["code"].append(step["duration"])
            elif (
                step["status"] == "SUCCEEDED"
                and step["type"] == "PIECE"
                and piece.endswith(("-slack", "-http", "-hubspot", "-gmail"))
            ):
                by_kind["api"].append(step["duration"])
    assert min(by_kind["code"]) >= 5 and max(by_kind["code"]) <= 80
    assert min(by_kind["api"]) >= 150 and max(by_kind["api"]) <= 3000


# ---------------------------------------------------------------- shares and extras


def test_legacy_share_uses_the_older_engines_fields(mixed_runs):
    legacy = [run for run in mixed_runs if "flowDisplayName" in run]
    assert 0.26 <= len(legacy) / len(mixed_runs) <= 0.34
    for run in legacy:
        assert "flowVersion" not in run and "failedStep" not in run and "stepsCount" not in run
        assert isinstance(run["tasks"], int)
        if run["finishTime"]:
            assert run["duration"] == ms_between(run["startTime"], run["finishTime"])
        if run["status"] == "FAILED" and run["steps"]:
            assert run["failedStepName"] == list(run["steps"])[-1]
        elif run["status"] == "FAILED":
            assert run["failedStepName"].startswith("step_")
        else:
            assert "failedStepName" not in run
    newer = [run for run in mixed_runs if "flowDisplayName" not in run]
    for run in newer:
        assert "flowVersion" in run and "failedStep" in run and "duration" not in run


def test_no_legacy_records_by_default(runs):
    older_fields = {"flowDisplayName", "failedStepName", "tasks", "duration"}
    assert not any(older_fields & set(run) for run in runs)
    assert all(isinstance(run["stepsCount"], int) for run in runs)


def test_testing_share_is_honoured(runs, mixed_runs):
    assert 0.005 <= sum(run["environment"] == "TESTING" for run in runs) / len(runs) <= 0.02
    testing = sum(run["environment"] == "TESTING" for run in mixed_runs)
    assert 0.22 <= testing / len(mixed_runs) <= 0.28
    assert {run["environment"] for run in mixed_runs} == {"TESTING", "PRODUCTION"}


def test_about_three_percent_are_archived_after_they_finished(runs):
    finished = [run for run in runs if run["status"] not in UNFINISHED]
    archived = [run for run in finished if run["archivedAt"]]
    assert 0.02 <= len(archived) / len(finished) <= 0.04
    for run in archived:
        assert run["archivedAt"] > run["finishTime"] and run["updated"] >= run["archivedAt"]
    assert not any(run["archivedAt"] for run in runs if run["status"] in UNFINISHED)


def test_about_one_percent_of_finished_runs_have_purged_logs(runs):
    finished = [run for run in runs if run["status"] in ("SUCCEEDED", "FAILED")]
    purged = sum(run["steps"] is None for run in finished)
    assert 0.005 <= purged / len(finished) <= 0.02


def test_tags_and_subflow_parents(runs):
    tagged = [run for run in runs if run["tags"]]
    assert 0.2 <= len(tagged) / len(runs) <= 0.6
    children = [run for run in runs if "parentRunId" in run]
    assert children and {flow_name(run) for run in children} == {"Enrich company domain"}
    earlier_ids = {run["id"] for run in runs}
    assert sum(run["parentRunId"] in earlier_ids for run in children) / len(children) > 0.9


def distinct_payloads(runs, key: str) -> str:
    """JSON of every distinct step input or output (runs share them, so dedupe by identity)."""
    payloads = {id(step.get(key)): step.get(key) for run in runs for step in run["steps"].values()}
    return json.dumps(list(payloads.values()))


def test_step_inputs_carry_secrets_to_mask(with_steps):
    inputs = distinct_payloads(with_steps, "input")
    for secret in (
        '"Authorization": "Bearer sk_live_',
        '"Authorization": "SSWS ',
        '"Cookie": "',
        '"api_key": "',
        '"password": "',
        '"webhook_secret": "whsec_',
    ):
        assert secret in inputs, secret
    outputs = distinct_payloads(with_steps, "output")
    assert '"token": "' in outputs and '"download_token": "' in outputs


def test_volume_follows_a_daily_and_weekly_rhythm(runs):
    created = [parse(run["created"]) for run in runs]
    by_hour = Counter(moment.hour for moment in created)
    night = sum(by_hour[h] for h in range(5)) / 5
    afternoon = sum(by_hour[h] for h in range(12, 17)) / 5
    assert night < 0.4 * afternoon
    by_day = Counter(moment.date() for moment in created)
    whole_days = [day for day in by_day if END.date() - timedelta(days=DAYS) < day < END.date()]
    weekend = [by_day[day] for day in whole_days if day.weekday() >= 5]
    weekday = [by_day[day] for day in whole_days if day.weekday() < 5]
    assert sum(weekend) / len(weekend) < 0.6 * sum(weekday) / len(weekday)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.jsonl.gz"])
def test_write_jsonl_writes_one_run_per_line(tmp_path, name):
    expected = list(generate_runs(120, seed=9, end=END))
    path = tmp_path / name
    assert write_jsonl(path, iter(expected)) == 120
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        assert [json.loads(line) for line in lines] == expected


def test_write_jsonl_gzip_flag_overrides_the_suffix(tmp_path):
    path = tmp_path / "runs.data"
    write_jsonl(path, generate_runs(3, end=END), gzip=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
