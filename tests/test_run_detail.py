"""One run as the Run page reads it from the store: steps in order, their payloads (masked, or cut
past the preview size), errors, loops, routers, agent timelines, the banner's wording, the Edit
flow link and the comparison with the last successful run of the same flow.

Every run here is a hand-made engine-shaped record ingested into a real DuckDB file; expected
values are read from those records."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from backends import BACKENDS, opened
from factories import AGENT_OUTPUT, FLOW_VERSION, SLACK_ERROR, engine_run, example_steps, older_run
from run_records import (
    BIG_SECRET,
    FAILED_RUN,
    HUGE_ROWS,
    KEPT,
    MULTILINE_ERROR,
    SECRETS,
    STARTED,
    agent_failure_run,
    build_run_db,
    compact_size,
    comparison_runs,
    failed_tool_agent_output,
    huge_output,
    huge_run,
    loop_run,
    loop_steps,
    multiline_error_run,
    purged_run,
    secret_input,
    secret_output,
    secrets_run,
    succeeded_steps,
    timed_run,
)
from runs_store.domain.formatting import zone
from runs_store.services import masking
from runs_store.services.masking import (
    MASK,
    MaskTally,
    is_secret_key,
    mask_json_preview,
    mask_json_text,
    mask_secrets,
    mask_text,
)
from runs_store.services.run_detail import (
    EditLinkError,
    PayloadGone,
    banner_line,
    compare_with_last_success,
    edit_flow_url,
    head_chars,
    load_run,
    payload_download,
    preview_bytes,
    read_step_rows,
)
from runs_store.services.secret_patterns import VALUE_PATTERNS
from runs_store.store.backend import latest
from runs_store.store.backend import rows as backend_rows

UTC = zone("UTC")

BANNER_CASES = [  # status, took ms, the banner the seed's wording gives
    ("SUCCEEDED", 832, "Run Succeeded - Started: Jun 12, 2026, 3:23 AM, Took: 832 milliseconds"),
    ("FAILED", 7_400, "Run Failed - Started: Jun 12, 2026, 3:23 AM, Took: 7.4 seconds"),
    ("TIMEOUT", 185_000, "Run Timeout - Started: Jun 12, 2026, 3:23 AM, Took: 3 minutes 5 seconds"),
    (
        "QUOTA_EXCEEDED",
        1,
        "Run Quota Exceeded - Started: Jun 12, 2026, 3:23 AM, Took: 1 millisecond",
    ),
    (
        "MEMORY_LIMIT_EXCEEDED",
        60_000,
        "Run Memory Limit Exceeded - Started: Jun 12, 2026, 3:23 AM, Took: 1 minute",
    ),
    (
        "CANCELED",
        7_440_000,
        "Run Canceled - Started: Jun 12, 2026, 3:23 AM, Took: 2 hours 4 minutes",
    ),
]
UNFINISHED_CASES = [  # id, status, extra fields, now, the banner's tail
    ("running", "RUNNING", {}, STARTED + timedelta(minutes=5), "running for 5 minutes"),
    (
        "queued",
        "QUEUED",
        {"startTime": None},
        STARTED + timedelta(seconds=150),
        "queued for 2 minutes 30 seconds",
    ),
    (
        "paused-delay",
        "PAUSED",
        {"pauseMetadata": {"type": "DELAY", "resumeDateTime": "2026-06-12T04:00:00.000Z"}},
        STARTED + timedelta(minutes=1),
        "resumes: Jun 12, 2026, 4:00 AM",
    ),
    (
        "paused-webhook",
        "PAUSED",
        {"pauseMetadata": {"type": "WEBHOOK"}},
        STARTED + timedelta(minutes=1),
        "waiting for a webhook call",
    ),
]


def agent_secret_steps() -> dict:
    steps = example_steps()
    blocks = steps["step_2"]["output"]["steps"]
    blocks[0]["markdown"] = f"I'll call the API with Bearer {SECRETS['bearer']}."
    blocks[1]["input"] = {"api_key": SECRETS["api_key"], "order": "1042"}
    return steps


def all_records() -> list[dict]:
    records = [
        *comparison_runs(),
        loop_run(),
        agent_failure_run(),
        secrets_run(),
        huge_run(),
        purged_run(),
        purged_run("never-recorded", steps={}),
        older_run("old-1"),
        loop_run(
            "many-iterations",
            steps=loop_steps(iterations=130, failed_iteration=None),
            status="SUCCEEDED",
            failedStep=None,
        ),
        engine_run("agent-secret", flowId="fL0w-agent-secret", steps=agent_secret_steps()),
        engine_run(
            "no-catalog", flowId="fL0w-nocat", flowVersion={"id": "fV-nocat", "displayName": "Bare"}
        ),
    ]
    records += [timed_run(f"banner-{status}", status, took) for status, took, _ in BANNER_CASES]
    records += [
        timed_run(f"banner-{name}", status, None, **fields)
        for name, status, fields, _, _ in UNFINISHED_CASES
    ]
    records.append(timed_run("banner-running-late", "RUNNING", None, startTime=None))
    records += [
        multiline_error_run(),
        engine_run(
            "timed-out",
            status="TIMEOUT",
            failedStep=None,
            flowId="fL0w-timeout",
            steps=succeeded_steps(),
        ),
    ]
    return records


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_run_db(tmp_path_factory.mktemp("run_detail") / "runs.duckdb", all_records())


@pytest.fixture(scope="module")
def chdb_copies():
    """The chdb copy of each database file this module reads on ClickHouse, made once."""
    return {}


@pytest.fixture(params=BACKENDS)
def open_store(request, chdb_copies):
    """Opens a database file on each backend: DuckDB (read-only), or its chdb copy."""

    def opening(path):
        return opened(request.param, path, request, chdb_copies)

    return opening


@pytest.fixture
def con(db, open_store):
    with open_store(db) as connection:
        yield connection


def load(con, run_id: str, mask: bool = True):
    run = load_run(con, run_id, mask=mask)
    assert run is not None, f"run {run_id} was not loaded"
    return run


# ------------------------------------------------------------------ steps in order


def test_a_run_has_every_step_in_execution_order_with_its_type_status_and_time(con):
    run = load(con, FAILED_RUN)
    recorded = example_steps()
    assert [step.name for step in run.steps] == list(recorded)
    assert [step.position for step in run.steps] == list(range(len(recorded)))
    assert [(step.type, step.status, step.duration_ms) for step in run.steps] == [
        (value["type"], value["status"], value["duration"]) for value in recorded.values()
    ]
    assert [step.kind for step in run.steps] == ["Trigger", "Code", "Run Agent", "Action"]


def test_step_titles_and_apps_come_from_the_flow_version(con):
    run = load(con, FAILED_RUN)
    slack = run.find_step("step_3")
    settings = FLOW_VERSION["trigger"]["nextAction"]["nextAction"]["nextAction"]
    assert slack.title == settings["displayName"]
    assert slack.app_action == (
        f"{settings['settings']['pieceName']} / {settings['settings']['actionName']}"
    )


def test_the_run_row_is_read_whole(con):
    run = load(con, FAILED_RUN)
    record = engine_run(FAILED_RUN)
    assert (
        run.id,
        run.flow_name,
        run.flow_id,
        run.flow_version_id,
        run.project_id,
        run.status,
    ) == (
        record["id"],
        record["flowVersion"]["displayName"],
        record["flowId"],
        record["flowVersionId"],
        record["projectId"],
        record["status"],
    )
    assert run.started_at == datetime.fromisoformat(record["created"][:-1])
    assert run.failed_step == record["failedStep"]["name"] and run.has_steps


def test_waterfall_bars_start_where_the_steps_before_them_ended(con):
    run = load(con, FAILED_RUN)
    durations = [value["duration"] for value in example_steps().values()]
    assert [step.offset_ms for step in run.steps] == [
        sum(durations[:i]) for i in range(len(durations))
    ]


def test_an_unknown_id_is_no_run(con):
    assert load_run(con, "no-such-run", mask=True) is None
    assert load_run(con, "' OR 1=1 --", mask=True) is None


# ------------------------------------------------------------------ inputs, outputs, errors


def test_small_payloads_are_parsed_whole(con):
    step = load(con, FAILED_RUN, mask=False).find_step("step_1")
    recorded = example_steps()["step_1"]
    assert step.input.value == recorded["input"] and step.output.value == recorded["output"]
    assert not step.input.cut and step.output.size == compact_size(recorded["output"])


def test_a_step_without_output_has_no_output_payload(con):
    step = load(con, FAILED_RUN).find_step("step_3")
    assert not step.output.present and step.input.present


def test_a_json_error_body_gives_a_headline_and_the_whole_body(con):
    step = load(con, FAILED_RUN).find_step("step_3")
    body = json.loads(SLACK_ERROR)
    assert step.failed and step.error is not None
    assert str(body["response"]["status"]) in step.error.headline
    assert body["response"]["body"]["error"] in step.error.headline
    assert step.error.detail.value == body


def test_a_plain_error_message_is_its_own_headline(con):
    step = load(con, "old-1").find_step("step_2")
    assert step.error.headline == older_run()["steps"]["step_2"]["errorMessage"]
    assert step.error.detail.value == older_run()["steps"]["step_2"]["errorMessage"]


def test_a_one_line_error_adds_nothing_below_its_headline(con):
    error = load(con, "old-1").find_step("step_2").error
    assert not error.adds_detail


def test_a_multi_line_error_adds_its_other_lines(con):
    error = load(con, "multiline-error").find_step("step_1").error
    assert error.headline == MULTILINE_ERROR.splitlines()[0]
    assert error.detail.value == MULTILINE_ERROR and error.adds_detail


def test_a_json_error_adds_its_whole_body(con):
    assert load(con, FAILED_RUN).find_step("step_3").error.adds_detail


def test_a_cut_error_adds_its_download(db, open_store, monkeypatch):
    monkeypatch.setenv("RUNS_PAYLOAD_PREVIEW_KB", "0.01")  # 10 bytes: any message is cut
    with open_store(db) as connection:
        step = load(connection, "old-1").find_step("step_2")
        whole = payload_download(connection, "old-1", step.position, "error", mask=False)
    assert step.error.detail.cut and step.error.adds_detail
    assert json.loads(whole) == older_run()["steps"]["step_2"]["errorMessage"]


def test_a_succeeded_step_has_no_error(con):
    assert all(step.error is None for step in load(con, FAILED_RUN).steps if not step.failed)


# ------------------------------------------------------------------ which step opens


def test_a_failed_run_opens_on_its_failed_step(con):
    assert load(con, FAILED_RUN).default_step().name == engine_run()["failedStep"]["name"]


def test_a_successful_run_opens_on_its_first_step(con):
    assert load(con, "ok-near").default_step().name == "trigger"


def test_a_run_that_stopped_without_a_failed_step_opens_on_its_last_step(con):
    run = load(con, "timed-out")
    assert run.status == "TIMEOUT" and not any(step.failed for step in run.steps)
    assert run.default_step().name == list(succeeded_steps())[-1]


def test_a_step_failed_inside_a_loop_opens_its_loop(con):
    run = load(con, "loop-run")
    assert run.failed_step == "step_2" and run.find_step("step_2") is None
    assert run.step_containing("step_2").name == "step_1"
    assert run.default_step().name == "step_1"


# ------------------------------------------------------------------ loops and routers


def test_a_loop_shows_its_iterations_and_which_failed(con):
    loop_step = load(con, "loop-run").find_step("step_1")
    recorded = loop_steps()["step_1"]["output"]["iterations"]
    assert loop_step.kind == "Loop" and loop_step.loop.count == len(recorded)
    assert [iteration.number for iteration in loop_step.loop.shown] == [1, 2, 3]
    assert loop_step.loop.failed_iterations == tuple(
        number
        for number, iteration in enumerate(recorded, 1)
        if iteration["step_2"]["status"] == "FAILED"
    )
    assert [iteration.duration_ms for iteration in loop_step.loop.shown] == [
        iteration["step_2"]["duration"] for iteration in recorded
    ]
    assert loop_step.children == frozenset({"step_2"})


def test_a_long_loop_counts_every_iteration_but_shows_the_first_hundred(con):
    loop_step = load(con, "many-iterations").find_step("step_1")
    assert loop_step.loop.count == 130 and len(loop_step.loop.shown) == 100
    assert loop_step.loop.failed_iterations == ()


def test_a_router_marks_the_branch_it_took(con):
    router = load(con, "loop-run").find_step("step_3")
    recorded = loop_steps()["step_3"]["output"]["branches"]
    assert router.kind == "Router"
    assert [(branch.name, branch.taken) for branch in router.branches] == [
        (branch["branchName"], branch["evaluation"]) for branch in recorded
    ]


def test_other_step_states_are_kept_as_recorded(con):
    assert load(con, "loop-run").find_step("step_4").status == loop_steps()["step_4"]["status"]


# ------------------------------------------------------------------ Run Agent timeline


def test_an_agent_timeline_lists_thoughts_and_tool_calls_in_order(con):
    step = load(con, FAILED_RUN).find_step("step_2")
    timeline = step.timeline
    blocks = AGENT_OUTPUT["steps"]
    assert timeline.prompt == AGENT_OUTPUT["prompt"] and timeline.status == AGENT_OUTPUT["status"]
    model = example_steps()["step_2"]["input"]["aiProviderModel"]
    assert timeline.model == f"{model['provider']} / {model['model']}"
    assert [entry.kind for entry in timeline.entries] == [
        "thought" if block["type"] == "MARKDOWN" else "tool_call" for block in blocks
    ]
    assert [entry.text for entry in timeline.entries if entry.kind == "thought"] == [
        block["markdown"] for block in blocks if block["type"] == "MARKDOWN"
    ]
    assert timeline.structured_output == AGENT_OUTPUT["structuredOutput"]


def test_a_tool_call_has_its_parameters_result_status_and_time(con):
    call = next(
        entry
        for entry in load(con, FAILED_RUN).find_step("step_2").timeline.entries
        if entry.kind == "tool_call"
    )
    block = AGENT_OUTPUT["steps"][1]
    took = datetime.fromisoformat(block["endTime"][:-1]) - datetime.fromisoformat(
        block["startTime"][:-1]
    )
    assert (call.tool_name, call.tool_type) == (block["toolName"], block["toolCallType"])
    assert call.params == block["input"] and call.resolved == block["output"]["resolvedInput"]
    assert call.output == block["output"]["output"] and call.error is None
    assert call.status == block["output"]["status"]
    assert call.duration_ms == took.total_seconds() * 1000


def test_a_failed_tool_call_keeps_its_error(con):
    step = load(con, "agent-failed").find_step("step_2")
    last = failed_tool_agent_output()["steps"][-1]
    call = step.timeline.entries[-1]
    assert step.timeline.status == "FAILED"
    assert (call.status, call.error) == (last["output"]["status"], last["output"]["errorMessage"])


def test_only_agent_steps_have_a_timeline(con):
    run = load(con, FAILED_RUN)
    assert [step.name for step in run.steps if step.timeline is not None] == ["step_2"]


def test_agent_output_without_the_flow_version_still_gives_a_timeline(con):
    step = load(con, "no-catalog").find_step("step_2")
    assert step.piece_name is None and step.kind == "Action"
    assert len(step.timeline.entries) == len(AGENT_OUTPUT["steps"])


# ------------------------------------------------------------------ masking


def shown_text(step) -> str:
    return json.dumps(
        [step.input.value, step.output.value, step.error.headline, step.error.detail.value],
        ensure_ascii=False,
    )


def test_secrets_are_masked_by_default(con, monkeypatch):
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    run = load_run(con, "secrets-run")
    step = run.find_step("step_1")
    text = shown_text(step)
    assert run.masked and MASK in text
    assert [name for name, secret in SECRETS.items() if secret in text] == []
    assert step.input.value["headers"]["Authorization"] == MASK
    assert step.input.value["header_list"][0]["value"] == MASK


def recorded_secrets(*values) -> int:
    """How many times the records' secret values occur in these recorded values."""
    text = json.dumps(values)
    return sum(text.count(secret) for secret in SECRETS.values())


def test_the_run_counts_the_values_masking_hid(con):
    run = load(con, "secrets-run")
    recorded = secrets_run()["steps"]["step_1"]
    step = run.find_step("step_1")
    assert step.input.masked_count == recorded_secrets(recorded["input"]) == 9
    assert step.output.masked_count == recorded_secrets(recorded["output"]) == 1
    assert step.error.detail.masked_count == recorded_secrets(recorded["errorMessage"]) == 1
    assert step.masked_count == run.masked_count == 11


def test_nothing_is_counted_when_nothing_looks_secret_or_masking_is_off(con):
    assert load(con, FAILED_RUN).masked_count == 0
    assert load(con, "loop-run").masked_count == 0
    assert load(con, "secrets-run", mask=False).masked_count == 0


def test_a_purged_run_counts_its_masked_error_message(con):
    assert load(con, "purged-run").masked_count == 1
    assert load(con, "purged-run", mask=False).masked_count == 0


def test_a_cut_payload_counts_what_its_preview_hid(con):
    assert load(con, "huge-run").find_step("step_1").output.masked_count == 1  # its api_key


def test_agent_timeline_masks_are_counted_once(con):
    step = load(con, "agent-secret").find_step("step_2")
    blocks = agent_secret_steps()["step_2"]["output"]["steps"]
    assert step.masked_count == recorded_secrets(blocks) == 2


def test_a_tally_counts_each_value_it_hides():
    tally = MaskTally()
    masked = tally.value(
        {
            "api_key": "k-1",
            "url": "https://x.example/?sig=abc&page=2",
            "note": "Bearer abc123XYZ789def and sk-proj-ABCDEFGHIJKLMNOP1234",
            "token_type": "Bearer",
            "empty_password": "",
            "user": "ana",
        }
    )
    assert tally.hits == 4 and masked["user"] == "ana" and masked["empty_password"] == ""
    quiet = MaskTally()
    assert quiet.text("Token expired for this user") == "Token expired for this user"
    assert quiet.hits == 0


def test_masking_keeps_what_is_not_secret(con):
    step = load(con, "secrets-run").find_step("step_1")
    assert step.input.value["auth"]["username"] == KEPT["username"]
    assert step.input.value["headers"]["Content-Type"] == KEPT["content_type"]
    assert step.output.value["expires_in"] == KEPT["expires_in"]
    assert step.input.value["url"].endswith("&page=2")


def test_masking_off_shows_every_value_as_recorded(con, monkeypatch):
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    run = load_run(con, "secrets-run")
    step = run.find_step("step_1")
    assert not run.masked
    assert step.input.value == secret_input() and step.output.value == secret_output()
    assert SECRETS["bearer"] in step.error.headline


def test_agent_timelines_are_masked_too(con):
    timeline = load(con, "agent-secret").find_step("step_2").timeline
    shown = json.dumps(
        [[entry.text, entry.params, entry.resolved] for entry in timeline.entries],
        ensure_ascii=False,
    )
    assert SECRETS["api_key"] not in shown and SECRETS["bearer"] not in shown and MASK in shown
    plain = load(con, "agent-secret", mask=False).find_step("step_2").timeline
    assert plain.entries[1].params == agent_secret_steps()["step_2"]["output"]["steps"][1]["input"]


def test_a_purged_runs_error_message_is_masked(con):
    assert SECRETS["bearer"] not in load(con, "purged-run").error_message
    assert SECRETS["bearer"] in load(con, "purged-run", mask=False).error_message


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "X-Api-Key",
        "api_key",
        "clientSecret",
        "refresh_token",
        "password",
        "Set-Cookie",
        "cookies",
        "aws_secret_access_key",
        "credentials",
    ],
)
def test_keys_that_name_secrets(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["name", "max_tokens", "token_type", "username", "keywords", "expires_in"]
)
def test_keys_that_do_not_name_secrets(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Authorization: Bearer abc123XYZ789def", "abc123XYZ789def"),
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("GET https://x.example/v1?api_key=QK7x9sLm2Yp&page=2", "QK7x9sLm2Yp"),
        ("key sk-proj-ABCDEFGHIJKLMNOP1234", "sk-proj-ABCDEFGHIJKLMNOP1234"),
        ("slack xoxb-1234567890-abcdef", "xoxb-1234567890-abcdef"),
    ],
)
def test_credential_shaped_text_is_masked_anywhere(text, secret):
    assert secret not in mask_text(text) and MASK in mask_text(text)


def test_secrets_in_json_a_string_holds_are_masked_and_the_rest_kept():
    body = json.dumps(
        {
            "client_id": "app-1",
            "api_key": "k-77",
            "inner": json.dumps({"password": 'p"w\\d', "user": "ana"}),
        }
    )
    masked = mask_secrets({"body": body, "plain": '{"name": "x", "note": "say \\"hi\\""}'})
    outer = json.loads(masked["body"])
    assert outer["api_key"] == MASK and outer["client_id"] == "app-1"
    assert json.loads(outer["inner"]) == {"password": MASK, "user": "ana"}
    assert masked["plain"] == '{"name": "x", "note": "say \\"hi\\""}'


def test_secrets_in_json_a_string_holds_are_masked_in_json_text_which_stays_json():
    recorded = {"body": json.dumps({"api_key": 'k"7\\7', "n": 1, "token": "tk-1234", "id": 5})}
    tally = MaskTally()
    masked = json.loads(tally.json_text(json.dumps(recorded)))
    assert json.loads(masked["body"]) == {"api_key": MASK, "n": 1, "token": MASK, "id": 5}
    assert tally.hits == 2


@pytest.mark.parametrize("cut", range(16))
def test_an_escaped_secret_cut_by_the_end_of_a_preview_is_masked(cut):
    text = json.dumps({"body": json.dumps({"client_secret": "cs_live_Zq81wPx", "n": 1})})
    start = text.index("cs_live")
    assert mask_json_preview(text[: start + cut]) == text[:start] + MASK + '\\"'
    assert mask_json_preview(text[: start + cut] + "\\") == text[:start] + MASK + '\\"'


@pytest.mark.parametrize(
    "text, secret",
    [
        ("refresh_token=rt-77aa-kk&grant_type=refresh_token", "rt-77aa-kk"),
        ("grant_type=client_credentials&client_secret=cs_live_Zq81", "cs_live_Zq81"),
        ("retrying with password=hunter2-Pa55 in the body", "hunter2-Pa55"),
    ],
)
def test_form_encoded_secrets_are_masked(text, secret):
    shown = mask_text(text)
    assert secret not in shown and MASK in shown
    assert shown.replace(MASK, secret) == text


@pytest.mark.parametrize(
    "text", ["Token expired for this user", "Basic information is missing", "page=2&sort=asc"]
)
def test_ordinary_words_after_auth_scheme_names_are_kept(text):
    assert mask_text(text) == text


# ------------------------------------------------------------------ huge payloads


def stored(con, run_id: str, position: int, column: str) -> str:
    sql = (
        f"SELECT {column} FROM {latest(con, 'run_steps')} "
        "WHERE run_id = $run_id AND position = $position"
    )
    return backend_rows(con, sql, {"run_id": run_id, "position": position})[0][0]


def test_a_multi_megabyte_output_is_cut_with_its_size_and_read_whole_for_download(con):
    step = load(con, "huge-run", mask=False).find_step("step_1")
    payload = step.output
    assert payload.size == compact_size(huge_output()) > 5_000_000
    assert payload.cut and payload.value is None
    assert len(payload.preview.encode("utf-8")) <= preview_bytes()
    assert huge_output()["rows"][0] in payload.preview
    assert stored(con, "huge-run", step.position, "output").startswith(payload.preview)
    whole = payload_download(con, "huge-run", step.position, "output", mask=False)
    assert whole == stored(con, "huge-run", step.position, "output")
    assert json.loads(whole) == huge_output()


def test_only_the_start_of_a_huge_payload_leaves_the_database(con):
    limit = preview_bytes()
    rows = {row["name"]: row for row in read_step_rows(con, "huge-run", limit)}
    huge, small = rows["step_1"], rows["trigger"]
    assert huge["output_size"] == compact_size(huge_output())
    assert len(huge["output"]) == head_chars(limit) < huge["output_size"]
    assert stored(con, "huge-run", 1, "output").startswith(huge["output"])
    assert small["output"] == stored(con, "huge-run", 0, "output")  # a small one whole


def test_a_cut_payload_is_masked_in_its_preview_and_its_download(con):
    payload = load(con, "huge-run").find_step("step_1").output
    assert BIG_SECRET not in payload.preview and MASK in payload.preview
    whole = json.loads(payload_download(con, "huge-run", 1, "output", mask=True))
    assert whole["api_key"] == MASK and len(whole["rows"]) == HUGE_ROWS
    assert whole["rows"] == huge_output()["rows"]


def test_a_download_reads_input_and_error_too_and_only_payload_columns(con):
    recorded = engine_run()["steps"]["step_3"]
    step = load(con, FAILED_RUN).find_step("step_3")
    assert (
        json.loads(payload_download(con, FAILED_RUN, step.position, "input", mask=False))
        == recorded["input"]
    )
    assert json.loads(
        payload_download(con, FAILED_RUN, step.position, "error", mask=False)
    ) == json.loads(SLACK_ERROR)
    with pytest.raises(ValueError, match="no payload column 'name'"):
        payload_download(con, FAILED_RUN, step.position, "name", mask=False)


def test_a_download_of_a_step_no_longer_stored_says_so(con):
    with pytest.raises(PayloadGone, match="reload the page"):
        payload_download(con, "huge-run", 99, "output", mask=True)


def test_a_secret_cut_by_the_end_of_the_preview_is_still_masked(db, open_store, monkeypatch):
    monkeypatch.setenv("RUNS_PAYLOAD_PREVIEW_KB", "1")
    output = {"filler": "a" * 900, "password": "p" * 400 + "TAIL"}
    run = engine_run(
        "cut-secret",
        flowId="fL0w-cut",
        steps={
            "step_1": {
                "type": "CODE",
                "status": "SUCCEEDED",
                "duration": 1,
                "input": {},
                "output": output,
            }
        },
    )
    path = build_run_db(db.parent / "cut.duckdb", [run])
    with open_store(path) as connection:
        payload = load(connection, "cut-secret").find_step("step_1").output
    assert payload.cut and '"password"' in payload.preview
    assert "ppppp" not in payload.preview
    assert mask_json_preview('{"a": 1, "token": "abc') == '{"a": 1, "token": "' + MASK + '"'


# ------------------------------------------------------------------ masking where a preview is cut

CUT_KB = 1  # every run below is read with previews of 1,024 bytes
TOKEN = "Zq81TokenBodyQw7" + "k" * 40  # a credential's characters, found nowhere else
CREDENTIALS = {
    "bearer": "Bearer " + TOKEN,
    "sk": "sk-proj-" + TOKEN,
    "github": "ghp_" + TOKEN,
    "jwt": "eyJhbGciOi.eyJzdWIiOi." + TOKEN,
}
CUT_OFFSETS = [-3, 0, 1, 3, 5, 6, 12, 30]  # where the cut falls, from the credential's start


def stored_text(output: dict) -> str:
    return json.dumps(output, separators=(",", ":"), ensure_ascii=False)


def output_cut_at(key: str, value: str, offset: int) -> dict:
    """An output whose `value` (under `key`, after a filler) the 1 KB preview cuts `offset`
    characters into (before it, when negative)."""
    empty = stored_text({"filler": "", key: ""})
    value_start = len(empty) - 2  # the value begins before its closing quote and brace
    return {"filler": "f" * (CUT_KB * 1024 - value_start - offset), key: value}


def cut_records() -> list[dict]:
    records = []
    for name, credential in CREDENTIALS.items():
        for offset in CUT_OFFSETS:
            records.append(
                one_step_run(f"cut-{name}-{offset}", output_cut_at("note", credential, offset))
            )
    for offset in CUT_OFFSETS[1:]:
        records.append(
            one_step_run(f"cut-password-{offset}", output_cut_at("password", TOKEN, offset))
        )
        # an escaped quote inside the value: the end of the preview is not where a string opens
        escaped = 'say \\"' + TOKEN + '\\" now'
        records.append(
            one_step_run(f"cut-escaped-{offset}", output_cut_at("password", escaped, offset + 6))
        )
    return records


def one_step_run(run_id: str, output: dict) -> dict:
    return engine_run(
        run_id,
        flowId="fL0w-cut",
        status="SUCCEEDED",
        failedStep=None,
        steps={
            "step_1": {
                "type": "CODE",
                "status": "SUCCEEDED",
                "duration": 1,
                "input": {},
                "output": output,
            }
        },
    )


@pytest.fixture(scope="module")
def cut_db(db):
    return build_run_db(db.parent / "cuts.duckdb", cut_records())


def cut_preview_of(cut_db, open_store, monkeypatch, run_id: str):
    monkeypatch.setenv("RUNS_PAYLOAD_PREVIEW_KB", str(CUT_KB))
    with open_store(cut_db) as connection:
        payload = load(connection, run_id).find_step("step_1").output
        whole = stored(connection, run_id, 0, "output")
    assert payload.cut
    return payload, whole


@pytest.mark.parametrize("offset", CUT_OFFSETS)
@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_a_credential_cut_by_the_preview_shows_none_of_itself(
    cut_db, open_store, monkeypatch, name, offset
):
    payload, whole = cut_preview_of(cut_db, open_store, monkeypatch, f"cut-{name}-{offset}")
    assert whole.startswith(payload.preview), "only cut, nothing else changed"
    assert len(payload.preview) <= whole.index(CREDENTIALS[name]), "no part of it shown"
    assert len(payload.preview.encode("utf-8")) <= CUT_KB * 1024
    assert payload.masked_count == payload.preview.count(MASK) == 0


@pytest.mark.parametrize("offset", CUT_OFFSETS[1:])
@pytest.mark.parametrize("kind", ["password", "escaped"])
def test_a_secret_keys_value_cut_by_the_preview_is_masked(
    cut_db, open_store, monkeypatch, kind, offset
):
    payload, whole = cut_preview_of(cut_db, open_store, monkeypatch, f"cut-{kind}-{offset}")
    assert TOKEN[:4] not in payload.preview
    assert payload.preview.endswith('"password":"' + MASK + '"')
    assert payload.masked_count == 1
    assert whole.startswith(payload.preview.removesuffix(MASK + '"'))


def plain_json_preview(text: str) -> tuple[str, int]:
    """MaskTally.json_preview's rules as plain whole-text scans, without its shortcuts."""
    tally = MaskTally()
    text = masking._JSON_SECRET_PAIR.sub(tally._pair, text)
    text = masking._ESCAPED_SECRET_PAIR.sub(tally._escaped_pair, text)
    text = masking._HEADER_LINE.sub(tally._header_line, text)
    text = masking._SECRET_HEADER.sub(tally._header_value, text)
    for pattern in VALUE_PATTERNS:
        text = pattern.regex.sub(tally._credential, text)
    text = masking._URL_PARAM.sub(tally._url_param, text) if "=" in text else text
    return masking._JSON_SECRET_TAIL.sub(tally._pair, text), tally.hits


PIECES = [
    '"',
    "\\",
    ":",
    " ",
    "\n",
    "a",
    "K",
    '"password"',
    '"api_key"',
    '"name"',
    ': "',
    '"token": "',
    "Bearer ",
    "abcdefgh12",
    "sk-",
    "ABCDEFGHIJKLMNOPQRST",
    "eyJabcdef.eyJabcdef.xyz",
    "?sig=",
    "&x=1",
    "xoxb-1234567890",
    "ghp_" + "a" * 20,
    "AKIA" + "B" * 16,
    "Token",
    '\\"',
    "pass",
    "word",
    "_",
    "-",
    "{",
    "}",
    ",",
    "é",
    '\\"api_key\\": \\"',
    '\\"token\\":\\"',
    "\\\\",
    "client_secret=",
    "=abc",
    "&",
    # the shapes of runs_store.services.secret_patterns and header lines
    "sk_live_",
    "rk_test_",
    "AIza" + "x" * 35,
    "npm_" + "n" * 36,
    "postgres://u:",
    "pw@h",
    ":\\/\\/",
    "@",
    "/",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "\\n",
    "\\r\\n",
    "\r\n",
    "hooks.slack.com/services/",
    "/:_authToken=",
    "Cookie: ",
    "x-api-key:",
    "Authorization: ",
    '["X-Api-Key", "',
    'abc"]',
    '[\\"token\\", \\"',
    "]",
    "[",
]


def test_masking_shortcuts_hide_exactly_what_whole_text_scans_hide():
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14)))
        tally = MaskTally()
        assert (tally.json_preview(text), tally.hits) == plain_json_preview(text), text
    long_text = '{"rows":[' + ",".join(['{"id":1,"note":"' + "x" * 900 + '"}'] * 300)
    for text in (long_text, long_text + ',"nextPageToken":"Bearer abcdefgh12"', long_text[:-7]):
        tally = MaskTally()
        assert (tally.json_preview(text), tally.hits) == plain_json_preview(text)
    assert mask_json_text('{"api_key": "k-1", "n": "x"}') == '{"api_key": "' + MASK + '", "n": "x"}'


KEYS = [
    "id",
    "name",
    "value",
    "url",
    "note",
    "api_key",
    "Api-Key",
    "pass\nword",
    "max_tokens",
    "header",
    "K",
]
TEXTS = [
    "ana",
    "Authorization",
    "Bearer abc123XYZ789def",
    "https://x.example/?sig=abc&page=2",
    "line\nbreak",
    'quote " inside',
    "é",
    "sk-proj-ABCDEFGHIJKLMNOP1234",
    "",
    "X-Api-Key",
    '{"api_key": "k-2", "n": 1}',
    "client_secret=abc&x=1",
    '{"name": "token"}',
    "postgres://app:pw@db/shop",
    "GET /\r\nCookie: sid=1",
    "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
    "rk_live_" + "r" * 24,
    "AIza" + "g" * 35,
    "npm_" + "n" * 36,
    "https://hooks.slack.com/services/T1/B2/xyz",
    "//r.example/:_authToken=abc",
]


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and roll < 0.45:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([*TEXTS, 1, None, True])


def test_masking_a_parsed_payload_skips_only_payloads_with_nothing_to_mask():
    rng = random.Random(11)
    for _ in range(5_000):
        value = random_value(rng)
        compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        for text in (json.dumps(value), compact):
            shortcut, walk = MaskTally(), MaskTally()
            assert shortcut.json_value(value, text) == walk.value(value), text
            assert shortcut.hits == walk.hits, text
    plain = {"rows": [{"id": 1, "title": "Crew Socks", "price": "14.00"}]}
    assert MaskTally().json_value(plain, json.dumps(plain)) is plain  # not walked at all


def test_loops_and_agents_are_read_even_when_their_output_is_cut(db, open_store, monkeypatch):
    monkeypatch.setenv("RUNS_PAYLOAD_PREVIEW_KB", "0.1")
    with open_store(db) as connection:
        run = load(connection, FAILED_RUN)
        loop_step = load(connection, "loop-run").find_step("step_1")
        agent = load(connection, "agent-secret").find_step("step_2")
    assert run.find_step("step_2").output.cut and run.find_step("step_2").timeline is not None
    assert loop_step.output.cut and loop_step.loop.count == 3
    # the timeline's masks count though the output's preview is too short to hold them
    assert agent.output.cut and agent.output.masked_count == 0 and agent.masked_count == 2


# ------------------------------------------------------------------ purged step data


@pytest.mark.parametrize("run_id", ["purged-run", "never-recorded"])
def test_a_run_without_step_data_still_loads_its_run(con, run_id):
    run = load(con, run_id)
    assert not run.has_steps and run.steps == () and run.default_step() is None
    assert run.failed_step == purged_run()["failedStep"]["name"]
    assert run.failed_step_display == purged_run()["failedStep"]["displayName"]
    assert "was refused" in run.error_message


# ------------------------------------------------------------------ the banner


@pytest.mark.parametrize("status, took_ms, expected", BANNER_CASES)
def test_the_banner_says_status_start_and_time_taken(con, status, took_ms, expected):
    run = load(con, f"banner-{status}")
    assert run.duration_ms == took_ms
    assert banner_line(run, UTC, datetime(2026, 7, 1)) == expected


def test_the_banner_start_is_in_the_users_timezone(con):
    run = load(con, "banner-SUCCEEDED")
    assert banner_line(run, zone("Europe/Paris"), datetime(2026, 7, 1)).startswith(
        "Run Succeeded - Started: Jun 12, 2026, 5:23 AM, Took: "
    )
    assert "Jun 11, 2026, 11:23 PM" in banner_line(
        run, zone("America/New_York"), datetime(2026, 7, 1)
    )


@pytest.mark.parametrize("name, status, fields, now, tail", UNFINISHED_CASES)
def test_an_unfinished_run_says_how_long_it_has_waited_or_when_it_resumes(
    con, name, status, fields, now, tail
):
    run = load(con, f"banner-{name}")
    label = {"RUNNING": "Running", "QUEUED": "Queued", "PAUSED": "Paused"}[status]
    assert banner_line(run, UTC, now) == f"Run {label} - Started: Jun 12, 2026, 3:23 AM, {tail}"


def test_a_running_run_without_a_start_time_counts_from_its_creation(con):
    run = load(con, "banner-running-late")
    assert banner_line(run, UTC, STARTED + timedelta(seconds=90)).endswith(
        "running for 1 minute 30 seconds"
    )


def test_a_clock_behind_the_start_says_only_running(con):
    run = load(con, "banner-running")
    assert banner_line(run, UTC, STARTED - timedelta(minutes=1)).endswith(", running")


def test_a_finished_run_without_a_duration_says_no_time(con):
    run = replace(load(con, "banner-SUCCEEDED"), duration_ms=None)
    assert banner_line(run, UTC, datetime(2026, 7, 1)) == (
        "Run Succeeded - Started: Jun 12, 2026, 3:23 AM"
    )


# ------------------------------------------------------------------ Edit flow


def test_the_edit_flow_link_fills_in_the_flow_and_its_version(con):
    run = load(con, FAILED_RUN)
    url = edit_flow_url("https://cloud.example.com/flows/{flow_id}?version={flow_version_id}", run)
    assert url == (
        f"https://cloud.example.com/flows/{engine_run()['flowId']}"
        f"?version={engine_run()['flowVersionId']}"
    )


def test_edit_flow_link_values_are_url_encoded(con):
    run = replace(load(con, FAILED_RUN), flow_id="a/b?c=d&e")
    url = edit_flow_url("https://x.example/f/{flow_id}", run)
    assert url == "https://x.example/f/a%2Fb%3Fc%3Dd%26e"


@pytest.mark.parametrize(
    "template, reason",
    [
        ("https://x.example/{flow}", "{flow}"),
        ("https://x.example/{flow_id", "not a valid template"),
        ("javascript:alert({flow_id})", "http"),
        ("/flows/{flow_id}", "http"),
    ],
)
def test_a_bad_edit_flow_template_says_why(con, template, reason):
    with pytest.raises(EditLinkError, match=reason.replace("{", r"\{").replace("}", r"\}")):
        edit_flow_url(template, load(con, FAILED_RUN))


def test_edit_flow_needs_the_ids_the_template_uses(con):
    run = replace(load(con, FAILED_RUN), flow_version_id=None)
    assert edit_flow_url("https://x.example/{flow_id}", run).endswith(engine_run()["flowId"])
    with pytest.raises(EditLinkError, match="flow version id"):
        edit_flow_url("https://x.example/{flow_id}/{flow_version_id}", run)


# ------------------------------------------------------------------ compare with last success


def test_compare_picks_the_nearest_earlier_successful_run_of_the_same_flow_with_steps(con):
    comparison = compare_with_last_success(con, FAILED_RUN)
    assert comparison.other_id == "ok-near" and comparison.before
    assert comparison.other_started_at == datetime(2026, 11, 2, 9, 0)


def test_compare_lists_each_step_with_its_status_and_duration_then_and_now(con):
    comparison = compare_with_last_success(con, FAILED_RUN)
    now, then = example_steps(), next(r for r in comparison_runs() if r["id"] == "ok-near")["steps"]
    assert [change.name for change in comparison.steps] == list(now)
    assert [
        (c.status_then, c.status_now, c.duration_then, c.duration_now) for c in comparison.steps
    ] == [
        (then[name]["status"], now[name]["status"], then[name]["duration"], now[name]["duration"])
        for name in now
    ]


def test_compare_says_which_steps_changed_status_and_output(con):
    comparison = compare_with_last_success(con, FAILED_RUN)
    now, then = example_steps(), next(r for r in comparison_runs() if r["id"] == "ok-near")["steps"]
    assert [c.name for c in comparison.status_changes] == [
        name for name in now if now[name]["status"] != then[name]["status"]
    ]
    assert [c.name for c in comparison.output_changes] == [
        name
        for name in now
        if (now[name].get("output"), now[name].get("errorMessage"))
        != (then[name].get("output"), then[name].get("errorMessage"))
    ]
    step_1 = next(c for c in comparison.steps if c.name == "step_1")
    assert step_1.duration_change_ms == now["step_1"]["duration"] - then["step_1"]["duration"]


def test_compare_uses_a_later_success_when_none_came_before(con):
    comparison = compare_with_last_success(con, "lonely-failed")
    assert comparison.other_id == "later-ok" and not comparison.before


def test_compare_has_nothing_when_the_flow_never_succeeded(con):
    assert compare_with_last_success(con, "never-succeeded") is None
    assert compare_with_last_success(con, "no-such-run") is None


def test_a_step_missing_from_the_other_run_shows_as_not_run(db, open_store):
    failed = engine_run("cmp-now", flowId="fL0w-cmp")
    steps = example_steps()
    del steps["step_3"]
    path = build_run_db(
        db.parent / "cmp.duckdb",
        [
            failed,
            engine_run(
                "cmp-then",
                created="2026-11-01T00:00:00.000Z",
                status="SUCCEEDED",
                flowId="fL0w-cmp",
                failedStep=None,
                steps=steps,
            ),
        ],
    )
    with open_store(path) as connection:
        comparison = compare_with_last_success(connection, "cmp-now")
    step_3 = next(c for c in comparison.steps if c.name == "step_3")
    assert (step_3.status_then, step_3.status_now, step_3.output_changed) == (None, "FAILED", None)
    assert step_3 in comparison.status_changes
