"""Hand-made run records in the engine's shapes, and helpers to write them and read the store back.

The sample generator makes realistic bulk data; these build the one record a test is about, so
each test states exactly the fields it checks. Expected values in tests come from these inputs,
never from what the store happened to produce.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent

FLOW_VERSION = {
    "id": "fV3r",
    "displayName": "Triage support email",
    "trigger": {
        "name": "trigger",
        "displayName": "New Email",
        "type": "PIECE_TRIGGER",
        "settings": {"pieceName": "@activepieces/piece-gmail", "triggerName": "new_email"},
        "nextAction": {
            "name": "step_1",
            "displayName": "Extract order id",
            "type": "CODE",
            "settings": {},
            "nextAction": {
                "name": "step_2",
                "displayName": "Ask the agent",
                "type": "PIECE",
                "settings": {"pieceName": "@activepieces/piece-ai", "actionName": "run_agent"},
                "nextAction": {
                    "name": "step_3",
                    "displayName": "Send Message To A Channel",
                    "type": "PIECE",
                    "settings": {
                        "pieceName": "@activepieces/piece-slack",
                        "actionName": "send_channel_message",
                    },
                },
            },
        },
    },
}

AGENT_OUTPUT = {
    "prompt": "Classify the email and look up the order",
    "status": "COMPLETED",
    "steps": [
        {"type": "MARKDOWN", "markdown": "I'll fetch order 1042 first."},
        {
            "type": "TOOL_CALL",
            "toolCallType": "PIECE",
            "toolName": "shopify-get_order",
            "toolCallId": "call_01",
            "status": "completed",
            "startTime": "2026-11-03T09:14:03.010Z",
            "endTime": "2026-11-03T09:14:04.220Z",
            "input": {"instruction": "Fetch order 1042"},
            "output": {
                "status": "SUCCESS",
                "resolvedInput": {"orderId": "1042"},
                "output": {"total": "59.00"},
            },
        },
        {"type": "MARKDOWN", "markdown": "Delivered order; customer requests a refund."},
    ],
    "structuredOutput": {"category": "refund", "priority": "high"},
}

SLACK_ERROR = '{"response":{"status":403,"body":{"ok":false,"error":"not_in_channel"}}}'


def example_steps() -> dict:
    """The steps of run-records.md's example: trigger, code, agent, a failed Slack message."""
    return {
        "trigger": {
            "type": "PIECE_TRIGGER",
            "status": "SUCCEEDED",
            "input": {},
            "duration": 0,
            "output": {"from": "ana@example.com", "subject": "Refund for order #1042"},
        },
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "duration": 41,
            "input": {"subject": "Refund for order #1042"},
            "output": {"orderId": "1042"},
        },
        "step_2": {
            "type": "PIECE",
            "status": "SUCCEEDED",
            "duration": 5120,
            "input": {
                "prompt": "Classify the email and look up the order",
                "aiProviderModel": {"provider": "openai", "model": "gpt-4.1"},
                "maxSteps": 10,
            },
            "output": copy.deepcopy(AGENT_OUTPUT),
        },
        "step_3": {
            "type": "PIECE",
            "status": "FAILED",
            "duration": 312,
            "input": {"channel": "C0123", "text": "High-priority refund: order #1042"},
            "errorMessage": SLACK_ERROR,
        },
    }


def engine_run(
    run_id: str = "Xk2mP9qLr4TnV8wYz1AbC",
    created: str = "2026-11-03T09:14:02.118Z",
    status: str = "FAILED",
    **fields,
) -> dict:
    """A run in the engine's newer shape (GET /v1/flow-runs/{id}); fields override or add."""
    record = {
        "id": run_id,
        "created": created,
        "updated": "2026-11-03T09:14:09.904Z",
        "projectId": "pR0j3ct",
        "flowId": "fL0w",
        "flowVersionId": "fV3r",
        "flowVersion": copy.deepcopy(FLOW_VERSION),
        "environment": "PRODUCTION",
        "status": status,
        "tags": [],
        "archivedAt": None,
        "startTime": "2026-11-03T09:14:02.530Z",
        "finishTime": "2026-11-03T09:14:09.880Z",
        "failedStep": {
            "name": "step_3",
            "displayName": "Send Message To A Channel",
            "message": '{"error":"not_in_channel"}',
        },
        "steps": example_steps(),
    }
    record.update(fields)
    return record


def simple_run(
    run_id: str,
    created: str = "2026-11-03T09:00:00Z",
    status: str = "SUCCEEDED",
    flow: str = "Daily digest",
    **fields,
) -> dict:
    """A small finished run without steps, for tests about identity, filters and counts."""
    record = {
        "id": run_id,
        "created": created,
        "updated": created,
        "status": status,
        "flowId": "flow-" + flow.lower().replace(" ", "-"),
        "flowVersion": {"id": "v-" + flow.lower().replace(" ", "-"), "displayName": flow},
        "environment": "PRODUCTION",
        "startTime": created,
        "finishTime": created,
        "steps": None,
    }
    record.update(fields)
    return record


def older_run(run_id: str = "old-1", **fields) -> dict:
    """A run in the engine's older shape: flowDisplayName, duration, failedStepName."""
    record = {
        "id": run_id,
        "created": "2024-05-01T10:00:00.000Z",
        "updated": "2024-05-01T10:00:03.000Z",
        "projectId": "pR0j3ct",
        "flowId": "fL0w-old",
        "flowVersionId": "fV-old",
        "flowDisplayName": "Legacy CRM sync",
        "environment": "PRODUCTION",
        "status": "FAILED",
        "duration": 2750,
        "tasks": 3,
        "failedStepName": "step_2",
        "steps": {
            "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
            "step_1": {
                "type": "PIECE",
                "status": "SUCCEEDED",
                "duration": 900,
                "input": {"id": 7},
                "output": {"ok": True},
            },
            "step_2": {
                "type": "CODE",
                "status": "FAILED",
                "duration": 12,
                "input": {},
                "errorMessage": "TypeError: Invalid URL",
            },
        },
    }
    record.update(fields)
    return record


# ------------------------------------------------------------------ files


def write_jsonl(path: Path, records, gz: bool = False) -> Path:
    text = "".join(json.dumps(record) + "\n" for record in records)
    return write_text(path, text, gz)


def write_text(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


BIG_TEMPLATE = json.dumps(
    {
        "id": "@ID@",
        "created": "@T0@",
        "updated": "@T1@",
        "projectId": "p1",
        "flowId": "f-@F@",
        "flowVersionId": "v-@F@",
        "flowVersion": {"id": "v-@F@", "displayName": "Flow @F@"},
        "environment": "PRODUCTION",
        "status": "SUCCEEDED",
        "startTime": "@T0@",
        "finishTime": "@T1@",
        "tags": ["bulk"],
        "archivedAt": None,
        "failedStep": None,
        "steps": {
            "trigger": {
                "type": "PIECE_TRIGGER",
                "status": "SUCCEEDED",
                "input": {},
                "duration": 0,
                "output": {"email": "user@ID@@example.com", "subject": "Order @ID@"},
            },
            "step_1": {
                "type": "LOOP_ON_ITEMS",
                "status": "SUCCEEDED",
                "duration": 40,
                "input": {"items": [1, 2]},
                "output": {
                    "item": 2,
                    "index": 2,
                    "iterations": [
                        {
                            "step_2": {
                                "type": "CODE",
                                "status": "SUCCEEDED",
                                "duration": 3,
                                "input": {"n": 1},
                                "output": {"double": 2},
                            }
                        },
                        {
                            "step_2": {
                                "type": "CODE",
                                "status": "SUCCEEDED",
                                "duration": 4,
                                "input": {"n": 2},
                                "output": {"double": 4},
                            }
                        },
                    ],
                },
            },
            "step_3": {
                "type": "PIECE",
                "status": "SUCCEEDED",
                "duration": 250,
                "input": {"channel": "C0123", "text": "Processed order @ID@"},
                "output": {"ok": True, "ts": "1700000000.000100"},
            },
        },
    }
)


def write_big_jsonl(path: Path, count: int, prefix: str = "big") -> Path:
    """`count` engine-shaped runs with steps (a loop included), one per line, written fast."""
    head, tail = BIG_TEMPLATE.split('"@ID@"', 1)
    with open(path, "w", encoding="utf-8") as out:
        for number in range(count):
            second = number % 86_400
            t0 = (
                f"2026-10-{1 + number // 86_400 % 28:02d}T{second // 3600:02d}:"
                f"{second // 60 % 60:02d}:{second % 60:02d}.000Z"
            )
            t1 = t0.replace(".000Z", ".250Z")
            line = (
                (head + f'"{prefix}-{number}"' + tail)
                .replace("@T0@", t0)
                .replace("@T1@", t1)
                .replace("@F@", str(number % 12))
                .replace("@ID@", str(number))
            )
            out.write(line + "\n")
    return path


# ------------------------------------------------------------------ reading the store back


def exported_rows(data: bytes, fmt: str) -> list[dict]:
    """The rows of an export (csv, jsonl or parquet bytes) as dicts."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Query a database file read-only (the store must not hold it)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def run_row(db: Path, run_id: str) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cursor = con.execute("SELECT * FROM runs WHERE id = ?", [run_id])
        names = [column[0] for column in cursor.description]
        found = cursor.fetchall()
    finally:
        con.close()
    assert len(found) == 1, f"expected one run {run_id!r}, found {len(found)}"
    return dict(zip(names, found[0], strict=True))


def run_cli(
    *args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`python -m runs_store ARGS` in its own process, as a user runs it (RUNS_DB unset)."""
    full_env = {key: value for key, value in os.environ.items() if key != "RUNS_DB"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "runs_store", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def store_with(path: Path, records: list[dict], source: str = "test-records") -> Path:
    """A real store holding exactly `records`, loaded by the real ingest; every one must load."""
    from runs_store.ingest.pipeline import ingest_items, records_as_items
    from runs_store.store.database import open_db

    with open_db(path) as con:
        summary = ingest_items(con, records_as_items(records), source)
    assert summary.rejected == 0, summary.rejections
    return path


class StderrWatch:
    """Reads a child's stderr as it comes, and waits (with a deadline) for what it shows."""

    def __init__(self, child: subprocess.Popen):
        self.text = ""
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(child,), daemon=True)
        self.reader.start()

    def _read(self, child: subprocess.Popen) -> None:
        assert child.stderr is not None
        while chunk := os.read(child.stderr.fileno(), 4096):
            with self.changed:
                self.text += chunk.decode(errors="replace")
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for_fetched(self, at_least: int, seconds: float) -> int:
        def fetched() -> int:
            found = re.findall(r"([\d,]+) fetched", self.text)
            return int(found[-1].replace(",", "")) if found else 0

        with self.changed:
            self.changed.wait_for(
                lambda: fetched() >= at_least or not self.reader.is_alive(), timeout=seconds
            )
            return fetched()
