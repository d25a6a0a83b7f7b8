"""What one run record becomes in the store: its run row, its steps, or a rejection with a reason.

Each test writes the records it is about to a real file, ingests it into a real DuckDB file the way
the CLI does, and reads the rows back.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from factories import (
    AGENT_OUTPUT,
    SLACK_ERROR,
    engine_run,
    example_steps,
    older_run,
    rows,
    run_row,
    simple_run,
    write_jsonl,
    write_text,
)
from runs_store.domain.signatures import error_signature
from runs_store.domain.statuses import STATUSES
from runs_store.ingest.pipeline import ingest_paths


def load(tmp_path, records, name="runs.jsonl"):
    db = tmp_path / "runs.duckdb"
    path = write_jsonl(tmp_path / name, records)
    return db, ingest_paths(db, [path])


def steps_of(db, run_id):
    found = rows(
        db,
        "SELECT position, name, display_name, type, status, duration_ms, piece_name, "
        "action_name, input, output, error FROM run_steps WHERE run_id = ? "
        "ORDER BY position",
        [run_id],
    )
    keys = (
        "position",
        "name",
        "display_name",
        "type",
        "status",
        "duration_ms",
        "piece_name",
        "action_name",
        "input",
        "output",
        "error",
    )
    return [dict(zip(keys, row, strict=True)) for row in found]


# ------------------------------------------------------------------ the newer shape


def test_a_newer_shape_run_keeps_its_fields(tmp_path):
    record = engine_run(
        tags=["vip", "eu"], parentRunId="parent-1", stepsCount=4, archivedAt="2026-11-04T08:00:00Z"
    )
    db, summary = load(tmp_path, [record])
    run = run_row(db, record["id"])
    assert summary.new == 1 and summary.rejected == 0
    assert run["flow_name"] == "Triage support email"
    assert run["status"] == "FAILED"
    assert run["started_at"] == datetime(2026, 11, 3, 9, 14, 2, 118000)
    assert run["start_time"] == datetime(2026, 11, 3, 9, 14, 2, 530000)
    assert run["finish_time"] == datetime(2026, 11, 3, 9, 14, 9, 880000)
    assert run["updated_at"] == datetime(2026, 11, 3, 9, 14, 9, 904000)
    assert run["archived_at"] == datetime(2026, 11, 4, 8, 0, 0)
    ids = (run["project_id"], run["flow_id"], run["flow_version_id"])
    assert ids == ("pR0j3ct", "fL0w", "fV3r")
    assert run["tags"] == ["vip", "eu"] and run["parent_run_id"] == "parent-1"
    assert run["steps_count"] == 4 and run["has_steps"] is True


def test_duration_is_finish_time_minus_start_time(tmp_path):
    record = engine_run()
    db, _ = load(tmp_path, [record])
    expected = (
        datetime.fromisoformat(record["finishTime"]) - datetime.fromisoformat(record["startTime"])
    ).total_seconds() * 1000
    assert run_row(db, record["id"])["duration_ms"] == int(expected)


def test_started_at_is_created_not_start_time(tmp_path):
    record = engine_run(
        created="2026-11-03T09:00:00Z",
        startTime="2026-11-03T09:05:00Z",
        finishTime="2026-11-03T09:05:01Z",
    )
    db, _ = load(tmp_path, [record])
    assert run_row(db, record["id"])["started_at"] == datetime(2026, 11, 3, 9, 0, 0)


def test_timestamps_with_an_offset_are_stored_as_utc(tmp_path):
    record = simple_run("tz", created="2026-11-03T10:00:00+02:00")
    db, _ = load(tmp_path, [record])
    assert run_row(db, "tz")["started_at"] == datetime(2026, 11, 3, 8, 0, 0)


def test_the_failed_step_keeps_its_name_display_name_and_message(tmp_path):
    record = engine_run()
    db, _ = load(tmp_path, [record])
    run = run_row(db, record["id"])
    assert run["failed_step"] == "step_3"
    assert run["failed_step_display"] == "Send Message To A Channel"
    assert run["error_message"] == record["failedStep"]["message"]
    assert run["error_signature"] == error_signature(record["failedStep"]["message"])


@pytest.mark.parametrize("status", ["RUNNING", "QUEUED", "PAUSED"])
def test_an_unfinished_run_has_no_duration(tmp_path, status):
    record = engine_run(
        status=status,
        finishTime=None,
        failedStep=None,
        duration=999,
        steps={"trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}}},
    )
    db, _ = load(tmp_path, [record])
    run = run_row(db, record["id"])
    assert run["duration_ms"] is None and run["finish_time"] is None
    assert run["status"] == status


def test_pause_metadata_is_kept_as_json(tmp_path):
    pause = {"type": "DELAY", "resumeDateTime": "2026-11-05T00:00:00.000Z"}
    record = engine_run(status="PAUSED", finishTime=None, failedStep=None, pauseMetadata=pause)
    db, _ = load(tmp_path, [record])
    assert json.loads(run_row(db, record["id"])["pause_metadata"]) == pause


# ------------------------------------------------------------------ the older shape


def test_an_older_shape_run_reads_flow_display_name_duration_and_failed_step_name(tmp_path):
    record = older_run()
    db, summary = load(tmp_path, [record])
    run = run_row(db, "old-1")
    assert summary.new == 1
    assert run["flow_name"] == "Legacy CRM sync"
    assert run["duration_ms"] == 2750
    assert run["failed_step"] == "step_2"
    assert run["error_message"] == "TypeError: Invalid URL"
    assert run["tasks"] == 3
    assert run["started_at"] == datetime(2024, 5, 1, 10, 0, 0)


def test_an_older_run_without_steps_still_has_its_failed_step_name(tmp_path):
    record = older_run(steps=None)
    db, _ = load(tmp_path, [record])
    run = run_row(db, "old-1")
    assert run["failed_step"] == "step_2" and run["has_steps"] is False
    assert rows(db, "SELECT count(*) FROM run_steps")[0][0] == 0


# ------------------------------------------------------------------ failed step fallback


def test_without_failed_step_the_first_failed_step_is_the_failed_step(tmp_path):
    steps = example_steps()
    steps["step_4"] = {"type": "CODE", "status": "FAILED", "input": {}, "errorMessage": "later"}
    record = engine_run(failedStep=None, steps=steps)
    db, _ = load(tmp_path, [record])
    run = run_row(db, record["id"])
    assert run["failed_step"] == "step_3"
    assert run["failed_step_display"] == "Send Message To A Channel"  # from flowVersion
    assert run["error_message"] == SLACK_ERROR


def test_the_first_failed_step_is_found_inside_a_loop_iteration(tmp_path):
    steps = {
        "trigger": {"type": "PIECE_TRIGGER", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "LOOP_ON_ITEMS",
            "status": "FAILED",
            "input": {"items": [1, 2]},
            "output": {
                "item": 2,
                "index": 2,
                "iterations": [
                    {"step_2": {"type": "CODE", "status": "SUCCEEDED", "input": {}, "output": {}}},
                    {
                        "step_2": {
                            "type": "CODE",
                            "status": "FAILED",
                            "input": {},
                            "errorMessage": "Cannot read properties of undefined",
                        }
                    },
                ],
            },
        },
    }
    record = engine_run(failedStep=None, steps=steps, flowVersion={"displayName": "Loop flow"})
    db, _ = load(tmp_path, [record])
    run = run_row(db, record["id"])
    assert run["failed_step"] == "step_2"
    assert run["error_message"] == "Cannot read properties of undefined"


def test_an_error_message_that_is_not_a_string_is_kept_as_json(tmp_path):
    steps = {
        "step_1": {
            "type": "CODE",
            "status": "FAILED",
            "input": {},
            "errorMessage": {"message": "boom", "code": 500},
        }
    }
    record = engine_run(failedStep=None, steps=steps)
    db, _ = load(tmp_path, [record])
    stored = run_row(db, record["id"])["error_message"]
    assert json.loads(stored) == {"message": "boom", "code": 500}


def test_a_succeeded_run_has_no_failed_step(tmp_path):
    record = simple_run("ok")
    db, _ = load(tmp_path, [record])
    run = run_row(db, "ok")
    assert run["failed_step"] is None and run["error_message"] is None


# ------------------------------------------------------------------ steps


def test_steps_keep_execution_order_type_status_duration_and_payloads(tmp_path):
    record = engine_run()
    db, _ = load(tmp_path, [record])
    stored = steps_of(db, record["id"])
    assert [step["name"] for step in stored] == list(record["steps"])
    assert [step["position"] for step in stored] == list(range(len(record["steps"])))
    for step, given in zip(stored, record["steps"].values(), strict=True):
        assert step["type"] == given["type"] and step["status"] == given["status"]
        assert step["duration_ms"] == given.get("duration")
        assert json.loads(step["input"]) == given["input"]
        assert (json.loads(step["output"]) if step["output"] else None) == given.get("output")
        assert (json.loads(step["error"]) if step["error"] else None) == given.get("errorMessage")


def test_step_order_is_execution_order_even_when_names_sort_differently(tmp_path):
    steps = {
        name: {"type": "CODE", "status": "SUCCEEDED", "input": {}, "output": {"n": name}}
        for name in ("trigger", "step_10", "step_2", "a_last", "step_1")
    }
    record = engine_run(failedStep=None, status="SUCCEEDED", steps=steps)
    db, _ = load(tmp_path, [record])
    assert [step["name"] for step in steps_of(db, record["id"])] == list(steps)


def test_steps_get_display_name_piece_and_action_from_the_flow_version(tmp_path):
    record = engine_run()
    db, _ = load(tmp_path, [record])
    by_name = {step["name"]: step for step in steps_of(db, record["id"])}
    assert by_name["trigger"]["display_name"] == "New Email"
    assert by_name["trigger"]["action_name"] == "new_email"
    assert by_name["step_2"]["piece_name"] == "@activepieces/piece-ai"
    assert by_name["step_2"]["action_name"] == "run_agent"
    assert by_name["step_3"]["display_name"] == "Send Message To A Channel"


def test_loop_iterations_and_router_branches_keep_their_structure(tmp_path):
    loop_output = {
        "item": "b",
        "index": 2,
        "iterations": [
            {"step_2": {"type": "CODE", "status": "SUCCEEDED", "input": {"x": "a"}, "output": 1}},
            {"step_2": {"type": "CODE", "status": "SUCCEEDED", "input": {"x": "b"}, "output": 2}},
        ],
    }
    router_output = {
        "branches": [
            {"branchName": "VIP", "branchIndex": 0, "evaluation": False},
            {"branchName": "Otherwise", "branchIndex": 1, "evaluation": True},
        ]
    }
    steps = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "LOOP_ON_ITEMS",
            "status": "SUCCEEDED",
            "input": {},
            "output": loop_output,
        },
        "step_3": {"type": "ROUTER", "status": "SUCCEEDED", "input": {}, "output": router_output},
    }
    record = engine_run(status="SUCCEEDED", failedStep=None, steps=steps)
    db, _ = load(tmp_path, [record])
    by_name = {step["name"]: step for step in steps_of(db, record["id"])}
    assert json.loads(by_name["step_1"]["output"]) == loop_output
    assert json.loads(by_name["step_3"]["output"]) == router_output
    assert set(by_name) == {"trigger", "step_1", "step_3"}  # loop children stay inside the loop


def test_an_agent_steps_timeline_blocks_stay_in_order(tmp_path):
    record = engine_run()
    db, _ = load(tmp_path, [record])
    agent = {step["name"]: step for step in steps_of(db, record["id"])}["step_2"]
    blocks = json.loads(agent["output"])["steps"]
    assert [block["type"] for block in blocks] == [b["type"] for b in AGENT_OUTPUT["steps"]]
    assert blocks == AGENT_OUTPUT["steps"]


def test_unicode_in_payloads_survives(tmp_path):
    steps = {
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "input": {"name": "Zoë 東京 🚀"},
            "output": {"quote": '"quoted" \\ backslash\nnewline'},
        }
    }
    record = engine_run(status="SUCCEEDED", failedStep=None, steps=steps)
    db, _ = load(tmp_path, [record])
    step = steps_of(db, record["id"])[0]
    assert json.loads(step["input"]) == steps["step_1"]["input"]
    assert json.loads(step["output"]) == steps["step_1"]["output"]


def test_purged_logs_leave_a_run_without_steps(tmp_path):
    record = engine_run(steps=None)
    db, _ = load(tmp_path, [record])
    assert run_row(db, record["id"])["has_steps"] is False
    assert steps_of(db, record["id"]) == []


# ------------------------------------------------------------------ statuses and test runs


@pytest.mark.parametrize("spelling", ["name", "label", "lower"])
def test_every_status_is_read_by_enum_name_or_label(tmp_path, spelling):
    def spell(run_status):
        return {
            "name": run_status.name,
            "label": run_status.label,
            "lower": run_status.label.lower(),
        }[spelling]

    records = [simple_run(f"r{n}", status=spell(s)) for n, s in enumerate(STATUSES)]
    db, summary = load(tmp_path, records)
    stored = dict(rows(db, "SELECT id, status FROM runs"))
    assert summary.rejected == 0
    assert stored == {f"r{n}": s.name for n, s in enumerate(STATUSES)}


def test_test_runs_are_counted_and_never_stored(tmp_path):
    records = [
        simple_run("live"),
        simple_run("test-1", environment="TESTING"),
        simple_run("test-2", environment="TESTING"),
    ]
    db, summary = load(tmp_path, records)
    assert summary.test_runs == 2 and summary.new == 1
    assert rows(db, "SELECT id FROM runs") == [("live",)]
    assert "2 test runs skipped" in summary.line()


# ------------------------------------------------------------------ rejected records

BAD_RECORDS = {
    "no id": (
        {"created": "2026-11-03T09:00:00Z", "status": "SUCCEEDED", "flowDisplayName": "F"},
        "missing id",
    ),
    "empty id": (simple_run(""), "missing id"),
    "id not text": (simple_run(["x"]), "id is not text"),
    "unknown status": (simple_run("s1", status="EXPLODED"), "unknown status"),
    "missing status": (simple_run("s2", status=None), "missing status"),
    "unparseable created": (simple_run("t1", created="yesterday-ish"), "unparseable timestamp"),
    "unparseable finishTime": (
        simple_run("t2", finishTime="31/12/2026"),
        "unparseable timestamp in finishTime",
    ),
    "missing created": (
        simple_run("t3", created=None, startTime=None),
        "no started at (created or startTime)",
    ),
    "steps not an object": (simple_run("st1", steps=["trigger"]), "steps is not an object"),
    "a step not an object": (simple_run("st2", steps={"trigger": "ok"}), "is not an object"),
    "finish before start": (
        simple_run("fb", startTime="2026-11-03T09:00:05Z", finishTime="2026-11-03T09:00:01Z"),
        "finishTime is before startTime",
    ),
    "no flow name": (
        {"id": "nf", "created": "2026-11-03T09:00:00Z", "status": "SUCCEEDED"},
        "no flow name",
    ),
    "tags not a list": (simple_run("tg", tags="vip"), "tags is not a list"),
    "failedStep not an object": (
        simple_run("fs", failedStep="step_3"),
        "failedStep is not an object",
    ),
    "duration not a number": (older_run("du", duration="slow"), "duration is not a number"),
}


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_a_bad_record_is_rejected_with_its_reason_while_good_ones_load(tmp_path, kind):
    bad, reason = BAD_RECORDS[kind]
    db, summary = load(tmp_path, [simple_run("good-1"), bad, simple_run("good-2")])
    assert summary.new == 2 and summary.rejected == 1
    assert {row[0] for row in rows(db, "SELECT id FROM runs")} == {"good-1", "good-2"}
    stored = rows(db, "SELECT source, unit, position, reason, raw FROM rejects")
    assert len(stored) == 1
    source, unit, position, stored_reason, raw = stored[0]
    assert source == str(tmp_path / "runs.jsonl") and (unit, position) == ("line", 2)
    assert reason in stored_reason
    assert raw == json.dumps(bad)  # verbatim: the line as it was in the file


def test_lines_that_are_not_json_or_not_objects_are_rejected_verbatim(tmp_path):
    good = json.dumps(simple_run("good"))
    text = "\n".join([good, "{not json at all", "[1, 2, 3]", '"just a string"', "42", good]) + "\n"
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [write_text(tmp_path / "mixed.jsonl", text)])
    found = rows(db, "SELECT position, reason, raw FROM rejects ORDER BY position")
    assert [(p, raw) for p, _, raw in found] == [
        (2, "{not json at all"),
        (3, "[1, 2, 3]"),
        (4, '"just a string"'),
        (5, "42"),
    ]
    assert found[0][1].startswith("not valid JSON")
    assert all(reason.startswith("not a JSON object") for _, reason, _ in found[1:])
    # the same id twice in one file is one run
    assert summary.new == 1 and summary.rejected == 4
