"""Two hand-made runs the Run page is timed on: one with 20 steps, one with a 5 MB step output.

The generator's runs have at most a handful of top-level steps, so these two are written here, in
the engine's own JSON shape, and loaded into every benchmark store through the real ingest. Their
step payloads are copied from generated runs (an agent timeline, HTTP and code outputs), so the
Run page renders the same kinds of content it meets in real data.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from sample_data.generator import generate_runs, write_jsonl

STEPS_RUN_ID = "bench20stepsRun000001"
BIG_OUTPUT_RUN_ID = "bench5mbOutputRun0001"
STEP_COUNT = 20
BIG_OUTPUT_BYTES = 5 * 1024 * 1024


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _template_steps(seed: int = 5) -> list[dict]:
    """Step outputs (not triggers) from generated succeeded runs, richest first."""
    found: list[dict] = []
    for run in generate_runs(400, days=1, seed=seed, test_share=0.0):
        for name, step in (run.get("steps") or {}).items():
            if name != "trigger" and step.get("status") == "SUCCEEDED":
                found.append(step)
    found.sort(key=lambda step: -len(json.dumps(step)))
    return found[:40]


def _chain(names: list[str], display: dict[str, str]) -> dict:
    """A linear flowVersion step tree: trigger -> step_1 -> ... with display names."""
    tree = None
    for name in reversed(names):
        node = {
            "name": name,
            "displayName": display[name],
            "type": "PIECE_TRIGGER" if name == "trigger" else "CODE",
            "settings": {"pieceName": "@activepieces/piece-http", "actionName": "send_request"},
            "valid": True,
        }
        if tree is not None:
            node["nextAction"] = tree
        tree = node
    return tree


def _run(run_id: str, flow: str, steps: dict, created: datetime) -> dict:
    names = list(steps)
    display = {name: ("Trigger" if name == "trigger" else f"Step {name[5:]}") for name in names}
    duration = sum(step.get("duration", 0) for step in steps.values())
    return {
        "id": run_id,
        "created": _iso(created),
        "updated": _iso(created + timedelta(milliseconds=duration + 50)),
        "projectId": "benchProject000000001",
        "flowId": f"{run_id[:16]}Flow0",
        "flowVersionId": f"{run_id[:16]}Ver01",
        "flowVersion": {
            "id": f"{run_id[:16]}Ver01",
            "displayName": flow,
            "trigger": _chain(names, display),
        },
        "environment": "PRODUCTION",
        "status": "SUCCEEDED",
        "tags": ["benchmark"],
        "archivedAt": None,
        "startTime": _iso(created),
        "finishTime": _iso(created + timedelta(milliseconds=duration)),
        "failedStep": None,
        "stepsCount": len(names),
        "steps": steps,
    }


def twenty_step_run(created: datetime) -> dict:
    templates = _template_steps()
    steps = {
        "trigger": {
            "type": "PIECE_TRIGGER",
            "status": "SUCCEEDED",
            "input": {},
            "output": {"body": {"event": "benchmark"}},
            "duration": 0,
        }
    }
    for number in range(1, STEP_COUNT):
        steps[f"step_{number}"] = templates[(number - 1) % len(templates)]
    return _run(STEPS_RUN_ID, "Benchmark: 20 steps", steps, created)


def big_output_run(created: datetime) -> dict:
    row = {
        "id": 0,
        "email": "someone@example.com",
        "name": "A customer with a long name",
        "note": "x" * 200,
    }
    size = len(json.dumps(row, separators=(",", ":"))) + 1
    rows = [dict(row, id=number) for number in range(BIG_OUTPUT_BYTES // size)]
    steps = {
        "trigger": {
            "type": "PIECE_TRIGGER",
            "status": "SUCCEEDED",
            "input": {},
            "output": {"body": {"event": "export"}},
            "duration": 0,
        },
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "input": {"limit": len(rows)},
            "output": {"rows": rows},
            "duration": 1850,
        },
        "step_2": {
            "type": "PIECE",
            "status": "SUCCEEDED",
            "input": {"count": len(rows)},
            "output": {"ok": True},
            "duration": 120,
        },
    }
    return _run(BIG_OUTPUT_RUN_ID, "Benchmark: 5 MB output", steps, created)


def write_handmade(path: Path, now: datetime) -> dict[str, str]:
    """Writes both runs as engine JSONL; returns {what: run id}."""
    created = now - timedelta(hours=1)
    write_jsonl(path, [twenty_step_run(created), big_output_run(created)])
    return {"run_20_steps": STEPS_RUN_ID, "run_5mb_output": BIG_OUTPUT_RUN_ID}
