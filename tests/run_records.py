"""Hand-made runs for the Run page tests: one record per thing the page must show.

Built on tests/factories.py's engine-shaped example (trigger, code, Run Agent, failed Slack
message). Each builder states the fields its tests check, so expected values are read from these
records, never from what the store or the page produced. `build_run_db` ingests them into a real
DuckDB file the way the CLI does.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path

from factories import AGENT_OUTPUT, FLOW_VERSION, engine_run, example_steps, store_with

FAILED_RUN = "run-failed"  # the example run: step_3 failed, step_2 is a Run Agent step
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_STEP_TITLE = "**bold** <script>alert(1)</script> [click](javascript:alert(2))"
XSS_OUTPUT_TEXT = "<b>html</b> :red[red] $x$ [link](javascript:alert(3))"
HUGE_ROWS = 5_300  # rows of 1,000 characters: a step output of about 5 MB
BIG_SECRET = "ak_big_secret_Zq81"

# Values that must never be shown while masking is on, each next to a value that must be kept.
SECRETS = {
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl",
    "cookie": "sid=s3cr3t-session-77",
    "password": "hunter2-Pa55w0rd",
    "api_key": "ak_live_51HxQ2",
    "header_value": "xk-998877-secret",
    "url_key": "QK7x9sLm2Yp",
    "sk": "sk-proj-ABCDEFGHIJKLMNOP1234",
    "access_token": "ya29.a0AfH6SMxx",
    "client_secret": "cs_live_Zq81wPx",
    "refresh_token": "rt-77aa-kk",
}
KEPT = {"username": "ana", "content_type": "application/json", "expires_in": 3599}


def secret_input() -> dict:
    return {
        "url": f"https://api.example.com/v1/orders?api_key={SECRETS['url_key']}&page=2",
        "headers": {
            "Authorization": f"Bearer {SECRETS['bearer']}",
            "Content-Type": KEPT["content_type"],
            "Cookie": SECRETS["cookie"],
        },
        "auth": {"username": KEPT["username"], "password": SECRETS["password"]},
        "api_key": SECRETS["api_key"],
        "header_list": [{"name": "X-Api-Key", "value": SECRETS["header_value"]}],
        "note": f"call it with {SECRETS['sk']} please",
        # request bodies recorded as strings: JSON text, and a form body
        "body": json.dumps({"client_id": "app-1", "client_secret": SECRETS["client_secret"]}),
        "form": f"refresh_token={SECRETS['refresh_token']}&grant_type=refresh_token",
    }


def secret_output() -> dict:
    return {
        "access_token": SECRETS["access_token"],
        "expires_in": KEPT["expires_in"],
        "token_type": "Bearer",
    }


def flow_version(version_id: str, name: str, titles: dict[str, str] | None = None) -> dict:
    """A flow version whose step tree gives each step of `titles` its display name, in order."""
    tree = None
    for step_name, title in reversed(list((titles or {}).items())):
        step = {"name": step_name, "displayName": title, "type": "CODE", "settings": {}}
        if tree is not None:
            step["nextAction"] = tree
        tree = step
    version = {"id": version_id, "displayName": name}
    if tree is not None:
        version["trigger"] = tree
    return version


def succeeded_steps(order_id: str = "1041", code_ms: int = 55, slack_ms: int = 280) -> dict:
    """The example's steps as a successful run of the same flow had them."""
    steps = example_steps()
    steps["step_1"].update(duration=code_ms, output={"orderId": order_id})
    steps["step_3"] = {
        "type": "PIECE",
        "status": "SUCCEEDED",
        "duration": slack_ms,
        "input": steps["step_3"]["input"],
        "output": {"ok": True, "ts": "17.5"},
    }
    return steps


def success_run(
    run_id: str, created: str, flow_id: str = "fL0w", steps="example", **fields
) -> dict:
    return engine_run(
        run_id,
        created=created,
        status="SUCCEEDED",
        flowId=flow_id,
        failedStep=None,
        startTime=created,
        finishTime=created,
        steps=succeeded_steps() if steps == "example" else steps,
        **fields,
    )


def comparison_runs() -> list[dict]:
    """The failed example and the successful runs around it, nearest first."""
    return [
        engine_run(FAILED_RUN),  # created 2026-11-03T09:14:02.118Z
        success_run("ok-near", "2026-11-02T09:00:00.000Z"),
        success_run("ok-far", "2026-10-20T09:00:00.000Z", steps=succeeded_steps("1000")),
        success_run("ok-after", "2026-11-05T09:00:00.000Z"),
        success_run("ok-purged", "2026-11-03T09:00:00.000Z", steps=None),  # nearer, no steps
        success_run("other-flow-ok", "2026-11-03T09:10:00.000Z", flow_id="fL0w-other"),
        engine_run("lonely-failed", created="2026-11-01T08:00:00.000Z", flowId="fL0w-later"),
        success_run("later-ok", "2026-11-02T08:00:00.000Z", flow_id="fL0w-later"),
        engine_run("never-succeeded", created="2026-11-01T08:00:00.000Z", flowId="fL0w-none"),
    ]


def loop_steps(iterations: int = 3, failed_iteration: int | None = 2) -> dict:
    """A loop whose iterations ran `step_2` (one failed), then a router and its branch."""
    runs = []
    for number in range(1, iterations + 1):
        failed = number == failed_iteration
        child = {
            "type": "CODE",
            "status": "FAILED" if failed else "SUCCEEDED",
            "duration": 10 + number,
            "input": {"n": number},
        }
        child.update(
            {"errorMessage": f"item {number} is not a number"}
            if failed
            else {"output": {"double": 2 * number}}
        )
        runs.append({"step_2": child})
    return {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "LOOP_ON_ITEMS",
            "status": "FAILED" if failed_iteration else "SUCCEEDED",
            "duration": 120,
            "input": {"items": list(range(1, iterations + 1))},
            "output": {"item": iterations, "index": iterations, "iterations": runs},
        },
        "step_3": {
            "type": "ROUTER",
            "status": "SUCCEEDED",
            "duration": 2,
            "input": {},
            "output": {
                "branches": [
                    {"branchName": "Refund", "branchIndex": 1, "evaluation": True},
                    {"branchName": "Otherwise", "branchIndex": 2, "evaluation": False},
                ]
            },
        },
        "step_4": {"type": "PIECE", "status": "PAUSED", "duration": 7, "input": {"wait": 1}},
    }


def loop_run(run_id: str = "loop-run", **fields) -> dict:
    record = engine_run(
        run_id,
        flowId="fL0w-loop",
        flowVersionId="fV-loop",
        flowVersion=flow_version("fV-loop", "Double the items"),
        failedStep={"name": "step_2", "displayName": None, "message": "item 2 is not a number"},
        steps=loop_steps(),
    )
    record.update(fields)
    return record


def failed_tool_agent_output() -> dict:
    output = copy.deepcopy(AGENT_OUTPUT)
    output["status"] = "FAILED"
    output["steps"].append(
        {
            "type": "TOOL_CALL",
            "toolCallType": "MCP",
            "toolName": "gmail-send_email",
            "toolCallId": "call_02",
            "status": "completed",
            "startTime": "2026-11-03T09:14:05.000Z",
            "endTime": "2026-11-03T09:14:05.450Z",
            "input": {"instruction": "Tell the customer"},
            "output": {
                "status": "FAILED",
                "resolvedInput": {"to": "ana@example.com"},
                "errorMessage": "Mailbox ana@example.com is full",
            },
        }
    )
    return output


def agent_failure_run(run_id: str = "agent-failed") -> dict:
    steps = example_steps()
    steps["step_2"].update(
        status="FAILED",
        output=failed_tool_agent_output(),
        errorMessage="The agent could not finish",
    )
    del steps["step_3"]
    return engine_run(
        run_id,
        flowId="fL0w-agent",
        failedStep={"name": "step_2", "displayName": "Ask the agent"},
        steps=steps,
    )


def secrets_run(run_id: str = "secrets-run") -> dict:
    steps = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "PIECE",
            "status": "FAILED",
            "duration": 90,
            "input": secret_input(),
            "output": secret_output(),
            "errorMessage": f"401 for Authorization: Bearer {SECRETS['bearer']}",
        },
    }
    return engine_run(
        run_id,
        flowId="fL0w-secrets",
        steps=steps,
        failedStep={"name": "step_1", "displayName": "Call the API"},
    )


def huge_output() -> dict:
    return {
        "api_key": BIG_SECRET,
        "rows": [f"{number:06d}" + "x" * 994 for number in range(HUGE_ROWS)],
    }


def huge_run(run_id: str = "huge-run") -> dict:
    steps = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "duration": 1500,
            "input": {"pages": 53},
            "output": huge_output(),
        },
    }
    return success_run(run_id, "2026-11-03T10:00:00.000Z", flow_id="fL0w-huge", steps=steps)


def xss_run(run_id: str = "xss-run") -> dict:
    steps = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "CODE",
            "status": "SUCCEEDED",
            "duration": 5,
            "input": {"html": XSS_OUTPUT_TEXT},
            "output": {"html": XSS_OUTPUT_TEXT},
        },
        "step_2": {
            "type": "CODE",
            "status": "FAILED",
            "duration": 6,
            "input": {},
            "errorMessage": f"{XSS_NAME} failed **badly**",
        },
    }
    return engine_run(
        run_id,
        flowId="fL0w-xss",
        flowVersionId="fV-xss",
        flowVersion=flow_version("fV-xss", XSS_NAME, {"step_1": XSS_STEP_TITLE}),
        failedStep={"name": "step_2", "displayName": None},
        steps=steps,
        tags=[XSS_NAME],
    )


# Record text holding markdown links and bare addresses: none may ever become a link on screen.
LINK_HOST = "evil.example"
LINK_FLOW = f"**bold** [f](http://{LINK_HOST}/f)"
LINK_STEP_TITLE = f"Notify [s](http://{LINK_HOST}/s) at https://{LINK_HOST}/step"
LINK_ERROR = (
    f"Request failed: [click](http://{LINK_HOST}/x) see https://{LINK_HOST}/bare "
    f"or write to ops@{LINK_HOST}"
)
LINK_THOUGHT = f"Look at [t](http://{LINK_HOST}/t) and www.{LINK_HOST}/thought"
LINK_TOOL = f"crm-[tool](http://{LINK_HOST}/tool)"
LINK_TOOL_STATUS = f"https://{LINK_HOST}/status"
LINK_TOOL_ERROR = f"Tool said [retry](http://{LINK_HOST}/retry) https://{LINK_HOST}/tool-bare"
# What a link to a page may carry (a flow, a failed step's name): anyone can write one.
LINK_IN_URL = f"[log in](http://{LINK_HOST}/login) or https://{LINK_HOST}/here"
LINK_RUN = "link-run"  # the newest of the failed runs
LINK_RUNS = 20  # failed runs of the new version, and as many successes of the old one


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def link_agent_output() -> dict:
    """The example agent's output with a thought, a tool name, status and error holding links."""
    output = copy.deepcopy(AGENT_OUTPUT)
    output["steps"][0]["markdown"] = LINK_THOUGHT
    output["steps"].append(
        {
            "type": "TOOL_CALL",
            "toolCallType": "MCP",
            "toolName": LINK_TOOL,
            "toolCallId": "call_02",
            "status": "completed",
            "startTime": "2026-11-03T09:14:05.000Z",
            "endTime": "2026-11-03T09:14:05.450Z",
            "input": {"instruction": LINK_ERROR},
            "output": {"status": LINK_TOOL_STATUS, "errorMessage": LINK_TOOL_ERROR},
        }
    )
    return output


def link_runs(now: datetime) -> list[dict]:
    """One flow named LINK_FLOW: LINK_RUNS failed runs of version fV-links three days before
    `now` (LINK_RUN the newest), whose failed step LINK_STEP_TITLE recorded LINK_ERROR and whose
    agent step thought and called tools in links, after as many successes of its previous
    version five days before `now`: enough runs for Insights' "failure rate rose" sentence."""
    version = copy.deepcopy(FLOW_VERSION)
    version.update(id="fV-links", displayName=LINK_FLOW)
    version["trigger"]["nextAction"]["nextAction"]["nextAction"]["displayName"] = LINK_STEP_TITLE
    previous = {**copy.deepcopy(version), "id": "fV-links-before"}
    records = []
    for number in range(LINK_RUNS):
        start = now - timedelta(days=3, minutes=number)
        steps = example_steps()
        steps["step_2"]["output"] = link_agent_output()
        steps["step_3"]["errorMessage"] = LINK_ERROR
        records.append(
            engine_run(
                LINK_RUN if number == 0 else f"link-run-{number}",
                created=_stamp(start),
                updated=_stamp(start + timedelta(seconds=8)),
                startTime=_stamp(start),
                finishTime=_stamp(start + timedelta(seconds=7)),
                flowId="fL0w-links",
                flowVersionId=version["id"],
                flowVersion=version,
                steps=steps,
                failedStep={
                    "name": "step_3",
                    "displayName": LINK_STEP_TITLE,
                    "message": LINK_ERROR,
                },
            )
        )
    for number in range(LINK_RUNS):
        records.append(
            success_run(
                f"link-ok-{number}",
                _stamp(now - timedelta(days=5, minutes=number)),
                flow_id="fL0w-links",
                flowVersionId=previous["id"],
                flowVersion=previous,
            )
        )
    return records


MULTILINE_ERROR = (
    "ValidationError: 2 fields are invalid\n"
    "  email: must be an email address\n"
    "  amount: must be a positive number"
)


def multiline_error_run(run_id: str = "multiline-error") -> dict:
    """A step whose plain-text error has more lines than its headline shows."""
    steps = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "CODE",
            "status": "FAILED",
            "duration": 3,
            "input": {},
            "errorMessage": MULTILINE_ERROR,
        },
    }
    return engine_run(
        run_id,
        flowId="fL0w-multiline",
        steps=steps,
        failedStep={"name": "step_1", "displayName": None},
    )


def purged_run(run_id: str = "purged-run", steps=None) -> dict:
    return engine_run(
        run_id,
        flowId="fL0w-purged",
        steps=steps,
        failedStep={
            "name": "step_3",
            "displayName": "Send Message To A Channel",
            "message": "Authorization: Bearer " + SECRETS["bearer"] + " was refused",
        },
    )


BANNER_START = "2026-06-12T03:23:00.000Z"  # the seed's "Jun 12, 2026, 3:23 AM" in UTC
STARTED = datetime(2026, 6, 12, 3, 23)


def timed_run(run_id: str, status: str, took_ms: int | None, **fields) -> dict:
    """A run created at the seed's banner time that ran for `took_ms` (None: not finished)."""
    finish = (
        None
        if took_ms is None
        else ((STARTED + timedelta(milliseconds=took_ms)).isoformat(timespec="milliseconds") + "Z")
    )
    record = engine_run(
        run_id,
        created=BANNER_START,
        status=status,
        flowId="fL0w-banner",
        startTime=BANNER_START,
        finishTime=finish,
        failedStep=None,
        steps={
            "trigger": {
                "type": "EMPTY",
                "status": "SUCCEEDED",
                "input": {},
                "output": {},
                "duration": 0,
            }
        },
    )
    record.update(fields)
    return record


def compact_size(value) -> int:
    """Bytes of a JSON value as the store keeps it (DuckDB writes JSON without spaces)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def build_run_db(path: Path, records: list[dict]) -> Path:
    """A real store holding `records`, loaded under the default settings (the 5 MB step too)."""
    return store_with(path, records, "run-page-tests")
