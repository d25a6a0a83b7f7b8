"""The engine fake keeps the engine's contract: the API connector's tests are only as good as it.

Each test speaks to a real FakeEngine over HTTP with nothing but the standard library, and checks
one point of docs/engine-api-contract.md: inclusive windows, archived and TESTING runs, both
cursor styles (the legacy one reproducing issue #9357), slices through /v1/files, the engine's
error bodies, and the injected faults the connector must survive. GET /v1/flows/{id}?versionId=
gives back the step graph (display, piece and action names) that the run routes cut away.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlencode

import pytest

from fake_engine_api import FakeEngine, NotAnEngine
from sample_data.generator import generate_runs

TOKEN = "sk-test-token"
END = datetime(2026, 11, 5)
OTHER_VALID_ID = "Zz9Zz9Zz9Zz9Zz9Zz9Zz9"
DRAFT_VERSION_ID = "Dr4ftVersion000000000"
# PopulatedFlow (shared automation/flows/flow.ts) and FlowVersion (flow-version.ts) as served.
FLOW_KEYS = {
    "id",
    "created",
    "updated",
    "projectId",
    "externalId",
    "ownerId",
    "folderId",
    "status",
    "publishedVersionId",
    "metadata",
    "operationStatus",
    "timeSavedPerRun",
    "templateId",
    "version",
}
VERSION_KEYS = {
    "id",
    "created",
    "updated",
    "flowId",
    "displayName",
    "trigger",
    "updatedBy",
    "valid",
    "schemaVersion",
    "agentIds",
    "state",
    "connectionIds",
    "backupFiles",
    "notes",
}
# No proxy from the environment: every request stays on 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


@functools.cache
def sample_runs() -> tuple[dict, ...]:
    return tuple(generate_runs(400, days=3, seed=11, end=END))


def main_project() -> str:
    return Counter(run["projectId"] for run in sample_runs()).most_common(1)[0][0]


def other_project() -> str:
    return Counter(run["projectId"] for run in sample_runs()).most_common(2)[1][0]


def listable(runs, project: str) -> list[dict]:
    return [
        run
        for run in runs
        if run["projectId"] == project
        and run["environment"] == "PRODUCTION"
        and run["archivedAt"] is None
    ]


def fetch(url: str, token: str | None = TOKEN, timeout: float = 5.0) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout) as answer:
            return Answer(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def list_url(fake: FakeEngine, **params) -> str:
    params.setdefault("projectId", main_project())
    return f"{fake.base_url}/v1/flow-runs?{urlencode(params, doseq=True)}"


def run_url(fake: FakeEngine, run_id: str) -> str:
    return f"{fake.base_url}/v1/flow-runs/{run_id}"


def ids_of(answer: Answer) -> list[str]:
    return [run["id"] for run in answer.json()["data"]]


def walk_next(fake: FakeEngine, limit: int, **params) -> list[str]:
    """Follows `next` alone from the first page to the last, as a naive client would."""
    seen, cursor = [], None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        page = fetch(list_url(fake, **query)).json()
        seen += [run["id"] for run in page["data"]]
        cursor = page["next"]
        if cursor is None:
            return seen


def inner_cursor(cursor: str) -> str:
    """The paginator's own cursor inside pagination-utils' base64("next_" + c)."""
    outer = base64.b64decode(cursor).decode()
    assert outer.startswith(("next_", "prev_"))
    return base64.b64decode(outer[5:]).decode()


def with_created(run: dict, created: datetime, **fields) -> dict:
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z"
    return {**run, "created": stamp, **fields}


def runs_sharing_a_second(count_in_second: int, count_before: int) -> list[dict]:
    """`count_in_second` runs created within one second (newest first), then one run in each of
    the `count_before` seconds before it: the case of engine issue #9357."""
    base = listable(sample_runs(), main_project())
    second = datetime(2026, 11, 4, 12, 0, 10)
    made = [
        with_created(base[i], second + timedelta(milliseconds=900 - 100 * i))
        for i in range(count_in_second)
    ]
    made += [
        with_created(base[count_in_second + i], second - timedelta(seconds=i + 1, milliseconds=500))
        for i in range(count_before)
    ]
    return made


# ------------------------------------------------------------------ the list


def test_a_page_is_newest_first_without_steps_and_names_the_flow_version():
    with FakeEngine(sample_runs()) as fake:
        page = fetch(list_url(fake, limit=20)).json()
    created = [run["created"] for run in page["data"]]
    assert created == sorted(created, reverse=True) and len(created) == 20
    assert all("steps" not in run for run in page["data"])
    assert all(set(run["flowVersion"]) == {"displayName"} for run in page["data"])
    assert page["previous"] is None and page["next"] is not None


def test_the_default_limit_is_ten_and_the_page_cap_cuts_bigger_ones():
    with FakeEngine(sample_runs()) as fake:
        assert len(ids_of(fetch(list_url(fake)))) == 10
        assert len(ids_of(fetch(list_url(fake, limit=300)))) == 100
        assert len(ids_of(fetch(list_url(fake, limit=0)))) == 100  # the paginator's default
    with FakeEngine(sample_runs(), page_cap=None) as fake:
        everything = ids_of(fetch(list_url(fake, limit=300)))
    assert len(everything) == 300


def test_created_after_and_created_before_are_both_inclusive():
    newest_first = sorted(
        listable(sample_runs(), main_project()), key=lambda run: run["created"], reverse=True
    )
    latest, earliest = newest_first[3], newest_first[12]
    with FakeEngine(sample_runs()) as fake:
        window = fetch(
            list_url(
                fake, createdAfter=earliest["created"], createdBefore=latest["created"], limit=50
            )
        )
    assert ids_of(window) == [run["id"] for run in newest_first[3:13]]


def test_archived_runs_are_listed_only_with_include_archived():
    project_runs = [run for run in sample_runs() if run["projectId"] == main_project()]
    archived = {run["id"] for run in project_runs if run["archivedAt"] is not None}
    assert archived, "the sample should hold archived runs"
    with FakeEngine(sample_runs(), page_cap=None) as fake:
        default = set(ids_of(fetch(list_url(fake, limit=-1))))
        with_archived = set(ids_of(fetch(list_url(fake, limit=-1, includeArchived="true"))))
    assert not default & archived
    assert archived <= with_archived


def test_testing_runs_are_never_listed_but_are_returned_by_id():
    test_run = {**listable(sample_runs(), main_project())[0], "environment": "TESTING"}
    with FakeEngine([test_run]) as fake:
        listed = fetch(list_url(fake, flowRunIds=test_run["id"]))
        by_id = fetch(run_url(fake, test_run["id"]))
    assert ids_of(listed) == []
    assert by_id.status == 200 and by_id.json()["environment"] == "TESTING"


def test_status_and_flow_id_filters_repeat():
    runs = listable(sample_runs(), main_project())
    flows = sorted({run["flowId"] for run in runs})[:2]
    expected = {run["id"] for run in runs if run["flowId"] in flows and run["status"] == "FAILED"}
    expected |= {run["id"] for run in runs if run["flowId"] in flows and run["status"] == "PAUSED"}
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(list_url(fake, flowId=flows, status=["FAILED", "PAUSED"], limit=100))
    assert set(ids_of(answer)) == expected and expected


def test_a_list_without_project_id_is_a_validation_error():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(f"{fake.base_url}/v1/flow-runs?limit=5")
    assert answer.status == 400
    assert answer.json()["code"] == "FST_ERR_VALIDATION"


# ------------------------------------------------------------------ cursors


def test_the_keyset_cursor_walks_every_run_exactly_once_even_when_created_ties():
    runs = listable(sample_runs(), main_project())
    tied = [{**run, "created": runs[i - i % 5]["created"]} for i, run in enumerate(runs)]
    expected = [
        run["id"] for run in sorted(tied, key=lambda r: (r["created"], r["id"]), reverse=True)
    ]
    with FakeEngine(tied) as fake:
        walked = walk_next(fake, limit=7)
    assert walked == expected


def test_the_keyset_cursor_holds_the_last_row_created_as_postgres_text_and_its_id():
    with FakeEngine(sample_runs()) as fake:
        first = fetch(list_url(fake, limit=4)).json()
        second = fetch(list_url(fake, limit=4, cursor=first["next"])).json()
    last = first["data"][-1]
    cursor = json.loads(inner_cursor(first["next"]))
    assert cursor["id"] == last["id"]
    assert cursor["created"] == last["created"].replace("T", " ").replace("Z", "+00")
    assert json.loads(inner_cursor(second["previous"]))["id"] == second["data"][0]["id"]


def test_following_previous_from_the_second_page_gives_the_first_page_again():
    with FakeEngine(sample_runs()) as fake:
        first = fetch(list_url(fake, limit=6)).json()
        second = fetch(list_url(fake, limit=6, cursor=first["next"])).json()
        back = fetch(list_url(fake, limit=6, cursor=second["previous"])).json()
    assert [run["id"] for run in back["data"]] == [run["id"] for run in first["data"]]
    assert back["next"] is not None


def test_a_keyset_engine_still_reads_a_legacy_cursor():
    runs = listable(sample_runs(), main_project())
    pivot = sorted(runs, key=lambda run: run["created"], reverse=True)[5]
    pivot_ms = int(datetime.fromisoformat(pivot["created"]).timestamp() * 1000)
    inner = base64.b64encode(f"created:{pivot_ms}".encode()).decode()
    cursor = base64.b64encode(f"next_{inner}".encode()).decode()
    with FakeEngine(sample_runs()) as fake:
        page = fetch(list_url(fake, limit=3, cursor=cursor)).json()
    assert all(run["created"] < pivot["created"] for run in page["data"])
    assert len(page["data"]) == 3


def test_the_legacy_cursor_is_base64_of_created_and_epoch_milliseconds():
    with FakeEngine(sample_runs(), cursor_style="legacy") as fake:
        page = fetch(list_url(fake, limit=4)).json()
    last = datetime.fromisoformat(page["data"][-1]["created"])
    assert inner_cursor(page["next"]) == f"created:{int(last.timestamp() * 1000)}"


def test_the_legacy_cursor_skips_runs_sharing_the_second_that_ends_a_page():
    runs = runs_sharing_a_second(count_in_second=5, count_before=2)
    with FakeEngine(runs, cursor_style="legacy") as fake:
        walked = walk_next(fake, limit=4)
    # Page 1 ends at the 4th run of second :10; page 2 starts below that whole second.
    assert walked == [run["id"] for run in runs[:4] + runs[5:]]
    assert runs[4]["id"] not in walked


def test_the_legacy_cursor_reads_one_page_of_a_second_holding_more_runs_than_the_limit():
    runs = runs_sharing_a_second(count_in_second=6, count_before=2)
    with FakeEngine(runs, cursor_style="legacy") as fake:
        walked = walk_next(fake, limit=3)
    assert walked == [run["id"] for run in runs[:3] + runs[6:]]


def test_the_keyset_cursor_reads_the_same_runs_the_legacy_one_skips():
    runs = runs_sharing_a_second(count_in_second=5, count_before=2)
    with FakeEngine(runs) as fake:
        walked = walk_next(fake, limit=4)
    assert sorted(walked) == sorted(run["id"] for run in runs)


# ------------------------------------------------------------------ one run and its slices


def run_with_a_big_step(threshold: int) -> tuple[dict, str]:
    for run in listable(sample_runs(), main_project()):
        for name, step in (run["steps"] or {}).items():
            output = json.dumps(step.get("output"), separators=(",", ":"), ensure_ascii=False)
            if len(output.encode()) > threshold:
                return run, name
    raise AssertionError("no step output over the threshold in the sample")


def test_a_big_step_output_is_a_slice_whose_file_holds_the_raw_json():
    run, step_name = run_with_a_big_step(2048)
    with FakeEngine(sample_runs(), slice_threshold=2048) as fake:
        step = fetch(run_url(fake, run["id"])).json()["steps"][step_name]
        ref = step["output"]
        file = fetch(ref["url"], token=None)
    assert step["outputType"] == "slice" and set(ref) == {"fileId", "size", "url"}
    assert file.status == 200
    assert file.headers["Content-Type"] == "application/octet-stream"
    assert json.loads(file.body) == run["steps"][step_name]["output"]
    assert len(file.body) == ref["size"]


def test_small_outputs_and_a_fake_without_slices_keep_the_value():
    run, step_name = run_with_a_big_step(2048)
    with FakeEngine(sample_runs(), slices=False, slice_threshold=2048) as fake:
        step = fetch(run_url(fake, run["id"])).json()["steps"][step_name]
    assert "outputType" not in step
    assert step["output"] == run["steps"][step_name]["output"]


def test_an_expired_slice_file_is_not_found():
    run, step_name = run_with_a_big_step(2048)
    with FakeEngine(sample_runs(), slice_threshold=2048) as fake:
        ref = fake.slice_refs(run["id"])[step_name]
        fake.expire_file(ref["fileId"])
        answer = fetch(ref["url"])
    assert answer.status == 404
    assert answer.json() == {
        "code": "ENTITY_NOT_FOUND",
        "params": {"entityType": "file", "entityId": ref["fileId"], "message": "File not found"},
    }


def test_a_file_read_needs_the_token_of_its_slice_url():
    run, step_name = run_with_a_big_step(2048)
    with FakeEngine(sample_runs(), slice_threshold=2048) as fake:
        ref = fake.slice_refs(run["id"])[step_name]
        wrong = fetch(f"{fake.base_url}/v1/files/{ref['fileId']}?token=not-the-token")
        missing = fetch(f"{fake.base_url}/v1/files/{ref['fileId']}")
    assert wrong.status == 401 and wrong.json()["code"] == "INVALID_BEARER_TOKEN"
    assert missing.status == 400


def test_a_purged_run_has_empty_steps_by_id():
    purged = next(run for run in sample_runs() if run["steps"] is None)
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(run_url(fake, purged["id"])).json()
    assert answer["steps"] == {}


def test_an_unknown_run_id_is_not_found():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(run_url(fake, OTHER_VALID_ID))
    assert answer.status == 404
    assert answer.json() == {
        "code": "ENTITY_NOT_FOUND",
        "params": {"entityId": OTHER_VALID_ID, "entityType": "flow_run"},
    }


# ------------------------------------------------------------------ a flow with a run's version


def flow_url(fake: FakeEngine, flow_id: str, **params) -> str:
    query = f"?{urlencode(params, doseq=True)}" if params else ""
    return f"{fake.base_url}/v1/flows/{flow_id}{query}"


def graph_steps(step: dict | None) -> Iterator[dict]:
    """Every step of a version's linked graph: nextAction, a loop's firstLoopAction, a router's
    children (one chain per branch, None for an empty one)."""
    while step is not None:
        yield step
        yield from graph_steps(step.get("firstLoopAction"))
        for child in step.get("children") or ():
            yield from graph_steps(child)
        step = step.get("nextAction")


def runs_of_flow(flow_id: str) -> list[dict]:
    return [run for run in sample_runs() if run["flowId"] == flow_id]


def test_a_flow_with_a_runs_version_holds_the_step_graph_the_run_routes_cut():
    run = next(run for run in listable(sample_runs(), main_project()) if run["steps"])
    with FakeEngine(sample_runs()) as fake:
        by_id = fetch(run_url(fake, run["id"])).json()
        answer = fetch(flow_url(fake, run["flowId"], versionId=run["flowVersionId"]))
    assert set(by_id["flowVersion"]) == {"displayName"}
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    flow = answer.json()
    assert set(flow) == FLOW_KEYS
    assert (flow["id"], flow["projectId"]) == (run["flowId"], run["projectId"])
    version = flow["version"]
    assert set(version) == VERSION_KEYS
    assert (version["id"], version["flowId"]) == (run["flowVersionId"], run["flowId"])
    assert version["displayName"] == run["flowVersion"]["displayName"]
    assert version["trigger"] == run["flowVersion"]["trigger"]
    steps = {step["name"]: step for step in graph_steps(version["trigger"])}
    assert set(run["steps"]) <= set(steps)
    assert steps["trigger"]["displayName"]
    assert any("actionName" in step["settings"] for step in steps.values())


def test_the_graph_reaches_loop_bodies_and_router_branches():
    with FakeEngine(sample_runs()) as fake:
        graphs = [
            fetch(flow_url(fake, flow_id)).json()["version"]["trigger"]
            for flow_id in sorted({run["flowId"] for run in sample_runs()})
        ]
    types = Counter(step["type"] for graph in graphs for step in graph_steps(graph))
    assert types["LOOP_ON_ITEMS"] and types["ROUTER"], "the sample should hold loops and routers"
    loops = [step for graph in graphs for step in graph_steps(graph) if "firstLoopAction" in step]
    assert all(step["type"] == "LOOP_ON_ITEMS" for step in loops)


def test_without_version_id_the_newest_version_comes_and_the_published_one_is_named():
    flow_id = next(
        flow
        for flow in sorted({run["flowId"] for run in sample_runs()})
        if len({run["flowVersionId"] for run in runs_of_flow(flow)}) > 1
    )
    runs = runs_of_flow(flow_id)
    first_seen: dict[str, str] = {}
    for run in runs:
        first_seen[run["flowVersionId"]] = min(
            first_seen.get(run["flowVersionId"], run["created"]), run["created"]
        )
    newest = max(first_seen, key=first_seen.__getitem__)
    production = [run for run in runs if run["environment"] == "PRODUCTION"]
    published = max(production, key=lambda run: run["created"])["flowVersionId"]
    with FakeEngine(sample_runs()) as fake:
        flow = fetch(flow_url(fake, flow_id)).json()
    assert flow["version"]["id"] == newest
    assert flow["version"]["created"] == first_seen[newest]
    assert flow["publishedVersionId"] == published and flow["status"] == "ENABLED"
    assert flow["created"] == min(run["created"] for run in runs)


def test_a_version_only_test_runs_used_is_the_draft_and_the_newest():
    base = listable(sample_runs(), main_project())[0]
    draft = with_created(
        base,
        datetime(2026, 11, 6),
        id=OTHER_VALID_ID,
        environment="TESTING",
        flowVersionId=DRAFT_VERSION_ID,
        flowVersion={**base["flowVersion"], "id": DRAFT_VERSION_ID, "displayName": "Edited"},
    )
    with FakeEngine([base, draft]) as fake:
        latest = fetch(flow_url(fake, base["flowId"])).json()
        locked = fetch(flow_url(fake, base["flowId"], versionId=base["flowVersionId"])).json()
    assert latest["version"]["id"] == DRAFT_VERSION_ID
    assert latest["version"]["state"] == "DRAFT"
    assert latest["version"]["displayName"] == "Edited"
    assert locked["version"]["state"] == "LOCKED"
    assert latest["publishedVersionId"] == locked["publishedVersionId"] == base["flowVersionId"]


def test_an_unknown_flow_is_not_found_as_a_flow_even_without_credentials():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(flow_url(fake, OTHER_VALID_ID))
        anonymous = fetch(flow_url(fake, OTHER_VALID_ID), token=None)
    assert answer.status == anonymous.status == 404
    assert (
        answer.json()
        == anonymous.json()
        == {
            "code": "ENTITY_NOT_FOUND",
            "params": {"entityId": OTHER_VALID_ID, "entityType": "flow"},
        }
    )


def test_a_version_of_another_flow_or_an_unknown_one_is_not_found_as_a_flow_version():
    runs = listable(sample_runs(), main_project())
    flow_id = runs[0]["flowId"]
    other_version = next(run["flowVersionId"] for run in runs if run["flowId"] != flow_id)
    with FakeEngine(sample_runs()) as fake:
        foreign = fetch(flow_url(fake, flow_id, versionId=other_version))
        unknown = fetch(flow_url(fake, flow_id, versionId="not-an-id"))
    assert foreign.status == unknown.status == 404
    assert foreign.json() == {
        "code": "ENTITY_NOT_FOUND",
        "params": {
            "entityId": other_version,
            "entityType": "FlowVersion",
            "message": f"flowId={flow_id}",
        },
    }
    assert unknown.json()["params"]["entityId"] == "not-an-id"  # any string, no 400


def test_a_flow_whose_runs_carry_no_version_graph_has_no_version_to_serve():
    legacy = {**listable(sample_runs(), main_project())[0], "flowVersion": None}
    with FakeEngine([legacy]) as fake:
        answer = fetch(flow_url(fake, legacy["flowId"]))
    assert answer.status == 404
    assert answer.json() == {
        "code": "ENTITY_NOT_FOUND",
        "params": {"entityType": "FlowVersion", "message": f"flowId={legacy['flowId']}"},
    }


def test_a_bad_flow_id_or_a_repeated_version_id_is_a_validation_error():
    run = listable(sample_runs(), main_project())[0]
    with FakeEngine(sample_runs()) as fake:
        short = fetch(flow_url(fake, "short"))
        repeated = fetch(flow_url(fake, run["flowId"], versionId=["a", "b"]))
    assert short.status == repeated.status == 400
    assert short.json()["code"] == repeated.json()["code"] == "FST_ERR_VALIDATION"


def test_a_flow_follows_the_same_credential_and_project_rules_as_a_run():
    mine = listable(sample_runs(), main_project())[0]["flowId"]
    foreign = next(run for run in sample_runs() if run["projectId"] == other_project())["flowId"]
    with FakeEngine(sample_runs(), project_ids=[main_project()]) as fake:
        anonymous = fetch(flow_url(fake, mine), token=None)
        bad_key = fetch(flow_url(fake, mine), token="sk-wrong")
        other_platform = fetch(flow_url(fake, foreign))
        assert fake.refusals == 3
    assert anonymous.status == 403
    assert anonymous.json()["params"] == {"message": "principal is not allowed for this route"}
    assert bad_key.status == 401 and bad_key.json()["code"] == "AUTHENTICATION"
    assert other_platform.status == 403
    assert other_platform.json()["params"]["message"] == (
        "Service is not allowed to access this project"
    )
    user = "eyJ.user.jwt"
    with FakeEngine(sample_runs(), token=user, project_ids=[main_project()]) as fake:
        own = fetch(flow_url(fake, mine), token=user)
        no_role = fetch(flow_url(fake, foreign), token=user)
    assert own.status == 200
    assert no_role.status == 403
    assert no_role.json()["params"]["message"] == "No role found for the user"


def test_flow_requests_are_recorded_and_faults_apply_to_them():
    run = listable(sample_runs(), main_project())[0]
    with FakeEngine(sample_runs()) as fake:
        url = flow_url(fake, run["flowId"], versionId=run["flowVersionId"])
        fake.fail_next("/v1/flows", 503)
        failed = fetch(url)
        runs_page = fetch(list_url(fake))  # /v1/flow-runs is not under the /v1/flows prefix
        fake.reset_next("/v1/flows/")
        with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
            fetch(url)
        served = fetch(url)
        recorded = fake.requests
        assert fake.count("/v1/flows") == 3
    assert (failed.status, runs_page.status, served.status) == (503, 200, 200)
    assert recorded[0] == (
        "GET",
        f"/v1/flows/{run['flowId']}",
        {"versionId": [run["flowVersionId"]]},
    )


# ------------------------------------------------------------------ credentials and projects


def test_a_refused_api_key_gets_401_with_the_engine_body():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(list_url(fake), token="sk-wrong")
        assert fake.refusals == 1
        assert "sk-wrong" not in repr(fake.requests)
    assert answer.status == 401
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {"code": "AUTHENTICATION", "params": {"message": "invalid api key"}}


def test_a_refused_user_token_gets_401_invalid_bearer_token():
    with FakeEngine(sample_runs(), token="eyJ.user.jwt") as fake:
        answer = fetch(list_url(fake), token="eyJ.other.jwt")
    assert answer.status == 401
    assert answer.json() == {
        "code": "INVALID_BEARER_TOKEN",
        "params": {"message": "invalid access token or session expired"},
    }


def test_a_request_without_a_bearer_token_is_forbidden():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(list_url(fake), token=None)
    assert answer.status == 403
    assert answer.json() == {
        "code": "AUTHORIZATION",
        "params": {"message": "principal is not allowed for this route"},
    }


def test_an_api_key_gets_404_for_an_unknown_project_and_403_for_another_platforms():
    with FakeEngine(sample_runs(), project_ids=[main_project()]) as fake:
        unknown = fetch(list_url(fake, projectId=OTHER_VALID_ID))
        foreign = fetch(list_url(fake, projectId=other_project()))
        foreign_run = next(run for run in sample_runs() if run["projectId"] == other_project())
        by_id = fetch(run_url(fake, foreign_run["id"]))
    assert unknown.status == 404
    assert unknown.json()["params"] == {"entityId": OTHER_VALID_ID, "entityType": "project"}
    assert foreign.status == 403 and foreign.json()["code"] == "AUTHORIZATION"
    assert by_id.status == 403


def test_a_user_token_gets_403_for_a_project_it_has_no_role_in():
    with FakeEngine(sample_runs(), token="eyJ.user.jwt") as fake:
        answer = fetch(list_url(fake, projectId=OTHER_VALID_ID), token="eyJ.user.jwt")
    assert answer.status == 403
    assert answer.json()["params"]["message"] == "No role found for the user"


def test_an_unknown_path_is_a_route_not_found():
    with FakeEngine(sample_runs()) as fake:
        answer = fetch(f"{fake.base_url}/v1/no-such-thing")
    assert answer.status == 404
    assert answer.json() == {"statusCode": 404, "error": "Not Found", "message": "Route not found"}


# ------------------------------------------------------------------ faults


def test_a_429_carries_retry_after_and_the_next_request_succeeds():
    with FakeEngine(sample_runs()) as fake:
        fake.fail_next("/v1/flow-runs", 429, retry_after=1)
        limited = fetch(list_url(fake))
        after = fetch(list_url(fake))
    assert limited.status == 429 and limited.headers["Retry-After"] == "1"
    assert after.status == 200


def test_failures_repeat_as_many_times_as_asked_and_only_under_their_prefix():
    with FakeEngine(sample_runs()) as fake:
        fake.fail_next("/v1/flow-runs", 503, times=2)
        fake.fail_next("/v1/files", 500)
        statuses = [fetch(list_url(fake)).status for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_a_reset_closes_the_connection_without_an_answer():
    with FakeEngine(sample_runs()) as fake:
        fake.reset_next("/v1/flow-runs")
        with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
            fetch(list_url(fake))
        assert fetch(list_url(fake)).status == 200


def test_a_slow_answer_outlasts_a_client_timeout():
    with FakeEngine(sample_runs()) as fake:
        fake.slow_next("/v1/flow-runs", seconds=30)
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            fetch(list_url(fake), timeout=0.2)
        fake.release_slow()
        assert fetch(list_url(fake)).status == 200


def test_max_concurrent_counts_requests_served_at_once():
    with FakeEngine(sample_runs()) as fake:
        fake.slow_next("/v1/flow-runs", seconds=30, times=3)
        statuses = []
        clients = [
            threading.Thread(target=lambda: statuses.append(fetch(list_url(fake)).status))
            for _ in range(3)
        ]
        for client in clients:
            client.start()
        assert fake.wait_in_flight(3)
        fake.release_slow()
        for client in clients:
            client.join(timeout=5)
        assert statuses == [200, 200, 200]
        assert fake.max_concurrent == 3


def test_requests_are_recorded_in_order_with_read_tokens_redacted():
    run, step_name = run_with_a_big_step(2048)
    with FakeEngine(sample_runs(), slice_threshold=2048) as fake:
        fetch(list_url(fake, limit=5))
        ref = fake.slice_refs(run["id"])[step_name]
        fetch(ref["url"])
        recorded = fake.requests
        assert fake.count("/v1/flow-runs") == 1 and fake.count("/v1/files") == 1
    assert recorded[0] == ("GET", "/v1/flow-runs", {"limit": ["5"], "projectId": [main_project()]})
    assert recorded[1][2] == {"token": ["<redacted>"]}
    assert ref["url"].split("token=")[1] not in repr(recorded)


# ------------------------------------------------------------------ live changes


def test_a_running_run_that_finishes_is_seen_finished_with_a_later_update():
    running = {**listable(sample_runs(), main_project())[0], "status": "RUNNING"}
    steps = {"trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}}}
    with FakeEngine([running]) as fake:
        fake.update_run(running["id"], status="SUCCEEDED", steps=steps)
        answer = fetch(run_url(fake, running["id"])).json()
    assert answer["status"] == "SUCCEEDED" and answer["steps"] == steps
    assert answer["updated"] > running["updated"]


def test_added_and_archived_runs_show_in_the_next_list():
    runs = listable(sample_runs(), main_project())
    newest = max(runs, key=lambda run: run["created"])
    newer = with_created(runs[1], datetime(2026, 11, 6), id=OTHER_VALID_ID)
    with FakeEngine(runs) as fake:
        fake.archive_run(newest["id"])
        fake.add_runs([newer])
        page = ids_of(fetch(list_url(fake, limit=100)))
    assert page[0] == OTHER_VALID_ID
    assert newest["id"] not in page


# ------------------------------------------------------------------ not an engine


def test_a_url_that_is_not_an_engine_answers_html():
    with NotAnEngine() as site:
        answer = fetch(f"{site.base_url}/v1/flow-runs?projectId={main_project()}")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.body == b"<html>welcome</html>"
