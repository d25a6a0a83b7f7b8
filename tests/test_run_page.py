"""The Run page in Streamlit's AppTest, opened as a link opens it (/run?id=...&step=...).

The banner, each step's badge and time, the details tabs, the agent Timeline, which step is
selected, purged and unknown runs, secret masking, a multi-megabyte payload, record text that
looks like HTML or markdown, the Back to runs and Edit flow links and the comparison with the last
successful run. Expected values come from the hand-made records in tests/run_records.py."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import pytest

from conftest import ROOT
from factories import AGENT_OUTPUT, FLOW_VERSION, SLACK_ERROR, engine_run, example_steps
from markdown_text import as_read
from run_records import (
    BIG_SECRET,
    FAILED_RUN,
    SECRETS,
    XSS_NAME,
    XSS_OUTPUT_TEXT,
    XSS_STEP_TITLE,
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
    timed_run,
    xss_run,
)
from runs_store.services.run_detail import payload_download
from runs_store.store.database import open_db

PAGE = "pages/run.py"
MASK = "••••••"  # what a masked value reads as on screen
BADGES = {
    "SUCCEEDED": ":green-badge[Succeeded]",
    "FAILED": ":red-badge[Failed]",
    "PAUSED": ":gray-badge[Paused]",
}
STEP_TIMES = {0: "0 ms", 41: "41 ms", 5120: "5.1 s", 312: "312 ms"}  # the seed's "263 ms" form
# status: (box, took ms, the words for it, who to contact, the seed's meaning in part)
BANNERS = {
    "SUCCEEDED": ("success", 832, "832 milliseconds", None, None),
    "FAILED": ("error", 7_400, "7.4 seconds", None, None),
    "CANCELED": ("warning", 185_000, "3 minutes 5 seconds", None, None),
    "QUOTA_EXCEEDED": (
        "error",
        1_000,
        "1 second",
        "contact Sales",
        "no AI Workflow Runs available in the current period",
    ),
    "TIMEOUT": (
        "error",
        3_600_000,
        "1 hour",
        "contact Support",
        "exceeded the maximum allowed execution time",
    ),
    "INTERNAL_ERROR": (
        "error",
        45,
        "45 milliseconds",
        "contact Support",
        "unexpected system error",
    ),
    "MEMORY_LIMIT_EXCEEDED": (
        "error",
        2_500,
        "2.5 seconds",
        "contact Support",
        "used more memory than the allowed limit",
    ),
    "LOG_SIZE_EXCEEDED": (
        "error",
        61_000,
        "1 minute 1 second",
        "contact Support",
        "produced more log data than the allowed limit",
    ),
    "QUEUED": ("info", None, "queued for", "contact Support", "waiting in the queue to start"),
    "RUNNING": ("info", None, "running for", None, None),
}
LABELS = {
    "SUCCEEDED": "Succeeded",
    "FAILED": "Failed",
    "CANCELED": "Canceled",
    "QUOTA_EXCEEDED": "Quota Exceeded",
    "TIMEOUT": "Timeout",
    "INTERNAL_ERROR": "Internal Error",
    "MEMORY_LIMIT_EXCEEDED": "Memory Limit Exceeded",
    "LOG_SIZE_EXCEEDED": "Log Size Exceeded",
    "QUEUED": "Queued",
    "RUNNING": "Running",
}


def all_records() -> list[dict]:
    records = [
        *comparison_runs(),
        loop_run(),
        agent_failure_run(),
        secrets_run(),
        huge_run(),
        purged_run(),
        xss_run(),
        multiline_error_run(),
    ]
    return records + [
        timed_run(
            f"banner-{status}", status, took, **({"startTime": None} if status == "QUEUED" else {})
        )
        for status, (_, took, _, _, _) in BANNERS.items()
    ]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_run_db(tmp_path_factory.mktemp("run_page") / "runs.duckdb", all_records())


@pytest.fixture(autouse=True)
def page_db(app_env, db, monkeypatch):
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    monkeypatch.delenv("RUNS_EDIT_FLOW_URL", raising=False)
    monkeypatch.delenv("RUNS_PAYLOAD_PREVIEW_KB", raising=False)
    return app_env(db)


def open_run(query: dict, timeout: float = 60):
    """The app opened straight on /run with these URL parameters, as a link opens it."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.switch_page(PAGE)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def rerun(at):
    at.run()
    assert not at.exception, at.exception
    return at


# ------------------------------------------------------------------ reading the page


def unescape(body: str) -> str:
    """Markdown as a reader sees it: backslash escapes removed, hard breaks as newlines, and
    addresses shown as code (pages/common/text.py) as their text (see markdown_text)."""
    return as_read(body)


def nodes(at):
    return list(at._tree)


RUNS_PAGE_URL = ""  # the Runs page is the default page: Streamlit serves it at /

MARKDOWN_TYPES = (
    "markdown",
    "caption",
    "error",
    "warning",
    "info",
    "success",
    "subheader",
    "header",
    "title",
)
TEXT_TYPES = ("text", "code", "json")  # shown verbatim, never read as markdown or HTML


def bodies(at, types=MARKDOWN_TYPES + TEXT_TYPES) -> list[str]:
    """Every text the page sends of these element types."""
    return [str(node.value) for node in nodes(at) if node.type in types]


def shown(at) -> str:
    return "\n".join(unescape(body) for body in bodies(at))


def step_list(at):
    """The left half under the waterfall (the first column; each step row's columns are inside)."""
    return at.columns[0]


def details(at):
    """The right half: the first column holding the selected step's "#### " title."""
    return next(
        column for column in at.columns if any(m.value.startswith("#### ") for m in column.markdown)
    )


def step_rows(at) -> list[list]:
    """The step list's rows: each row's four columns (name, kind, badge, time)."""
    columns = list(step_list(at).get("column"))
    assert len(columns) % 4 == 0, "every step row should have four columns"
    return [columns[i : i + 4] for i in range(0, len(columns), 4)]


def masked_notes(at) -> list[str]:
    return [c.value for c in at.caption if "RUNS_MASK_SECRETS=0" in c.value]


def heading(at) -> str:
    """The details panel's title (the selected step)."""
    return next(unescape(m.value)[5:] for m in details(at).markdown if m.value.startswith("#### "))


def tab_labels(at) -> list[str]:
    return [tab.label for tab in at.tabs]


def open_tab(at, position: int, label: str):
    at.session_state[f"tab_{position}"] = label
    return rerun(at)


def json_values(at) -> list:
    return [json.loads(element.value) for element in details(at).json]


def catalog_titles() -> dict[str, str]:
    titles, step = {}, FLOW_VERSION["trigger"]
    while step:
        titles[step["name"]] = step["displayName"]
        step = step.get("nextAction")
    return titles


def query_of(link) -> dict[str, list[str]]:
    return parse_qs(link.proto.query_string, keep_blank_values=True)


def page_link(at, label: str):
    return next(link for link in at.page_link if link.value == label)


# ------------------------------------------------------------------ banner


@pytest.mark.parametrize("status", list(BANNERS))
def test_the_banner_says_status_start_and_time_taken_in_its_status_colour(status):
    box, took, words, *_ = BANNERS[status]
    at = open_run({"id": f"banner-{status}"})
    banner = getattr(at, box)
    assert len(banner) == 1, f"expected one {box} banner"
    first_line = banner[0].value.split("\n")[0]
    start = f"Run {LABELS[status]} - Started: Jun 12, 2026, 3:23 AM"
    if took is None:
        assert first_line.startswith(f"{start}, {words} ")
    else:
        assert first_line == f"{start}, Took: {words}"
    others = {"success", "error", "warning", "info"} - {box}
    assert not any(first_line in element.value for kind in others for element in getattr(at, kind))


@pytest.mark.parametrize("status", [s for s, value in BANNERS.items() if value[3]])
def test_statuses_with_a_hint_say_what_they_mean_and_whom_to_contact(status):
    box, _, _, contact, meaning = BANNERS[status]
    body = getattr(at := open_run({"id": f"banner-{status}"}), box)[0].value
    assert meaning in body and contact in body, at


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "CANCELED", "RUNNING"])
def test_statuses_without_a_hint_name_no_contact(status):
    box = BANNERS[status][0]
    assert "contact" not in getattr(open_run({"id": f"banner-{status}"}), box)[0].value


def test_the_banner_names_the_run_its_flow_and_its_version():
    at = open_run({"id": FAILED_RUN})
    record = engine_run(FAILED_RUN)
    assert [header.value for header in at.subheader] == [record["flowVersion"]["displayName"]]
    facts = unescape(at.markdown[0].value)
    assert record["id"] in facts and record["flowVersionId"] in facts and record["flowId"] in facts


# ------------------------------------------------------------------ steps


def test_every_step_is_listed_in_order_with_its_badge_and_time():
    at = open_run({"id": FAILED_RUN})
    recorded, titles = example_steps(), catalog_titles()
    buttons = [unescape(button.label) for button in step_list(at).button]
    assert buttons == [f"{number}. {titles[name]}" for number, name in enumerate(recorded, 1)]
    badges = [m.value for m in step_list(at).markdown if "-badge[" in m.value]
    assert badges == [BADGES[step["status"]] for step in recorded.values()]
    captions = [c.value for c in step_list(at).caption]
    times = [c for c in captions if c in STEP_TIMES.values()]
    assert times == [STEP_TIMES[step["duration"]] for step in recorded.values()]
    assert [c for c in captions if c not in times] == ["Trigger", "Code", "Run Agent", "Action"]


def test_each_step_row_is_a_table_row_of_name_kind_badge_and_time():
    at = open_run({"id": FAILED_RUN})
    recorded, titles = example_steps(), catalog_titles()
    rows = step_rows(at)
    assert len(rows) == len(recorded)
    weights = {tuple(round(column.weight, 3) for column in row) for row in rows}
    assert len(weights) == 1, "every row should split its width the same way"
    for row, (name, step) in zip(rows, recorded.items(), strict=True):
        button, kind, badge, took = row
        assert [unescape(b.label) for b in button.button] == [
            f"{list(recorded).index(name) + 1}. {titles[name]}"
        ]
        assert len(kind.caption) == 1 and not kind.button
        assert [m.value for m in badge.markdown] == [BADGES[step["status"]]]
        assert [c.value for c in took.caption] == [STEP_TIMES[step["duration"]]]


def test_the_selected_step_is_the_one_bordered_button():
    at = open_run({"id": FAILED_RUN, "step": "step_1"})
    kinds = [button.proto.type for button in step_list(at).button]
    assert kinds == ["tertiary", "secondary", "tertiary", "tertiary"]


def test_other_step_states_get_their_own_neutral_badge():
    at = open_run({"id": "loop-run"})
    badges = [m.value for m in step_list(at).markdown if m.value.startswith(":")]
    assert badges[-1] == BADGES[loop_steps()["step_4"]["status"]]


def test_a_loop_shows_its_iterations_and_a_router_its_branch():
    at = open_run({"id": "loop-run"})
    iterations = loop_steps()["step_1"]["output"]["iterations"]
    failed = [n for n, it in enumerate(iterations, 1) if it["step_2"]["status"] == "FAILED"]
    loop = next(e for e in at.expander if "iteration" in e.label)
    assert loop.label == f"{len(iterations)} iterations · failed: #{failed[0]}"
    lines = [unescape(line) for m in loop.markdown for line in m.value.split("\n\n")]
    assert [line.split(" · ")[0] for line in lines] == [f"**#{n}**" for n in range(1, 4)]
    assert ":red-badge[Failed]" in lines[failed[0] - 1]
    taken = [
        b["branchName"] for b in loop_steps()["step_3"]["output"]["branches"] if b["evaluation"]
    ]
    assert f"Branch taken: {', '.join(taken)}" in [unescape(c.value) for c in at.caption]


def test_the_waterfall_draws_each_step_from_where_the_steps_before_it_ended():
    at = open_run({"id": FAILED_RUN})
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = figure["data"][0]
    durations = [step["duration"] for step in example_steps().values()]
    assert len(bar["y"]) == len(durations)
    assert bar["base"] == [sum(durations[:i]) for i in range(len(durations))]
    assert bar["x"] == [max(ms, 1) for ms in durations]


# ------------------------------------------------------------------ selected step and tabs


def test_a_failed_run_opens_on_its_failed_step_with_the_error_up_front():
    at = open_run({"id": FAILED_RUN})
    failed = engine_run()["failedStep"]
    assert heading(at) == failed["displayName"] and "step" not in at.query_params
    assert tab_labels(at) == ["Input", "Output"]
    body = json.loads(SLACK_ERROR)
    error = unescape(details(at).error[0].value)
    assert str(body["response"]["status"]) in error and body["response"]["body"]["error"] in error
    assert json_values(at) == [body]


def test_the_details_panel_shows_the_step_status_once():
    at = open_run({"id": FAILED_RUN})
    panel = [m.value for m in details(at).markdown]
    badges = [value for value in panel if "-badge[" in value]
    assert len(badges) == 1 and badges[0].count("-badge[") == 1
    assert f"**Status** {BADGES['FAILED']}" in badges[0]


def test_a_json_error_opens_deep_enough_to_read_its_message():
    at = open_run({"id": FAILED_RUN})
    body = json.loads(SLACK_ERROR)
    error_json = details(at).json[0]
    assert json.loads(error_json.value) == body
    assert error_json.proto.max_expand_depth >= 3  # response > body > error


def test_a_one_line_error_is_shown_once():
    at = open_tab(open_run({"id": "agent-failed"}), 2, "Output")
    message = agent_failure_run()["steps"]["step_2"]["errorMessage"]
    assert [unescape(e.value) for e in details(at).error] == [message]
    assert message not in [code.value for code in details(at).code]
    assert message not in [json.loads(element.value) for element in details(at).json]


def test_a_multi_line_error_shows_its_first_line_then_the_whole_text():
    at = open_run({"id": "multiline-error"})
    message = multiline_error_run()["steps"]["step_1"]["errorMessage"]
    first_line = message.splitlines()[0]
    assert [unescape(e.value) for e in details(at).error] == [first_line]
    assert [code.value for code in details(at).code] == [message]


def test_the_input_tab_shows_what_the_step_received():
    at = open_tab(open_run({"id": FAILED_RUN}), 3, "Input")
    assert json_values(at) == [example_steps()["step_3"]["input"]]
    assert not details(at).error


def test_step_in_the_url_selects_that_step_and_its_properties():
    at = open_run({"id": FAILED_RUN, "step": "step_1"})
    recorded = example_steps()["step_1"]
    assert heading(at) == catalog_titles()["step_1"]
    properties = unescape(next(m.value for m in details(at).markdown if "**Name**" in m.value))
    assert properties.split("\n") == [
        "**Name** step_1",
        "**Display name** Extract order id",
        "**Type** Code (CODE)",
        f"**Status** {BADGES['SUCCEEDED']}",
        f"**Duration** {STEP_TIMES[recorded['duration']]}",
    ]
    assert json_values(at) == [recorded["input"]]  # Input is the tab a succeeded step opens on
    assert json_values(open_tab(at, 1, "Output")) == [recorded["output"]]


def test_clicking_a_step_selects_it_and_puts_it_in_the_url():
    at = open_run({"id": FAILED_RUN})
    at.button(key="pick_0").click()
    rerun(at)
    assert at.query_params["step"] == "trigger"
    assert heading(at) == catalog_titles()["trigger"]


def test_an_unknown_step_in_the_url_falls_back_with_a_notice():
    at = open_run({"id": FAILED_RUN, "step": "step_99"})
    notice = unescape(at.info[0].value)
    assert "step_99" in notice and engine_run()["failedStep"]["displayName"] in notice
    assert heading(at) == engine_run()["failedStep"]["displayName"]
    assert "step" not in at.query_params


def test_a_step_inside_a_loop_opens_its_loop():
    at = open_run({"id": "loop-run", "step": "step_2"})
    assert heading(at) == "step_1"
    assert any("ran inside the loop" in unescape(c.value) for c in at.caption)


def test_a_run_agent_step_has_a_timeline_of_its_prompt_thoughts_and_tool_calls():
    at = open_run({"id": FAILED_RUN, "step": "step_2"})
    assert tab_labels(at) == ["Input", "Output", "Timeline"]
    thoughts = [block["markdown"] for block in AGENT_OUTPUT["steps"] if block["type"] == "MARKDOWN"]
    assert [text.value for text in details(at).text] == [AGENT_OUTPUT["prompt"], *thoughts]
    call = AGENT_OUTPUT["steps"][1]
    titles = [unescape(m.value) for m in details(at).markdown if re.match(r"\*\*\d+\. ", m.value)]
    assert titles == [
        "**1. Thought**",
        f"**2. Tool call** {call['toolName']} · PIECE",
        "**3. Thought**",
    ]
    assert json_values(at) == [
        call["input"],
        call["output"]["resolvedInput"],
        call["output"]["output"],
        AGENT_OUTPUT["structuredOutput"],
    ]
    assert ":green-badge[Succeeded]" in [m.value for m in details(at).markdown][-6:]
    assert "1.2 s" in [c.value for c in details(at).caption]  # 09:14:03.010 to 09:14:04.220
    facts = unescape(next(m.value for m in details(at).markdown if m.value.startswith("**Model")))
    assert f"**Agent status** {AGENT_OUTPUT['status']}" in facts and "openai/gpt-4.1" in facts


def test_a_failed_tool_call_shows_its_error_in_the_timeline():
    at = open_tab(open_run({"id": "agent-failed", "step": "step_2"}), 2, "Timeline")
    last = failed_tool_agent_output()["steps"][-1]
    assert ":red-badge[Failed]" in [m.value for m in details(at).markdown]
    assert last["output"]["errorMessage"] in [unescape(e.value) for e in details(at).error]
    assert "450 ms" in [c.value for c in details(at).caption]


def test_only_run_agent_steps_have_a_timeline_tab():
    for step in ("trigger", "step_1", "step_3"):
        assert "Timeline" not in tab_labels(open_run({"id": FAILED_RUN, "step": step}))


# ------------------------------------------------------------------ purged, unknown


def test_a_run_without_step_data_says_so_under_its_banner():
    at = open_run({"id": "purged-run"})
    assert at.error[0].value.startswith("Run Failed - Started: ")
    assert "no step data was kept for this run" in at.info[0].value.lower()
    assert not at.tabs and not at.get("plotly_chart")
    failure = unescape(at.error[1].value)
    assert purged_run()["failedStep"]["displayName"] in failure
    assert SECRETS["bearer"] not in failure and MASK in failure


@pytest.mark.parametrize("query", [{"id": "no-such-run"}, {}])
def test_an_unknown_run_says_run_not_found_with_a_way_back(query):
    at = open_run(query)
    assert "Run not found" in at.warning[0].value
    assert page_link(at, "Back to runs").proto.page == RUNS_PAGE_URL
    assert not at.error and not at.success and not at.subheader


# ------------------------------------------------------------------ masking


def test_secrets_are_masked_by_default():
    at = open_run({"id": "secrets-run"})
    everything = shown(at) + shown(open_tab(at, 1, "Input"))
    assert [name for name, secret in SECRETS.items() if secret in everything] == []
    assert MASK in everything


def test_the_masking_note_counts_what_was_masked_and_says_how_to_turn_it_off():
    at = open_run({"id": "secrets-run"})
    step = secrets_run()["steps"]["step_1"]
    recorded = json.dumps([step["input"], step["output"], step["errorMessage"]])
    hidden = sum(recorded.count(secret) for secret in SECRETS.values())
    assert masked_notes(at) == [
        (
            f"{hidden} values that look like secrets are masked in this run "
            "(shown as ••••••). To see the recorded values, start the app "
            "with `RUNS_MASK_SECRETS=0`."
        )
    ]


@pytest.mark.parametrize("run_id", [FAILED_RUN, "loop-run", "multiline-error"])
def test_no_masking_note_when_nothing_was_masked(run_id):
    at = open_run({"id": run_id, "step": "trigger"})
    assert MASK not in shown(at)
    assert masked_notes(at) == [] and not any("masked" in c.value for c in at.caption)


def test_a_purged_run_notes_its_masked_error_message():
    at = open_run({"id": "purged-run"})
    assert [note.split(" masked")[0] for note in masked_notes(at)] == [
        "1 value that looks like a secret is"
    ]


def test_masking_off_shows_the_payload_as_recorded(monkeypatch):
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    at = open_run({"id": "secrets-run"})
    assert secret_output() in json_values(at)
    assert SECRETS["bearer"] in unescape(details(at).error[0].value)
    assert json_values(open_tab(at, 1, "Input")) == [secret_input()]
    assert MASK not in shown(at) and masked_notes(at) == []


# ------------------------------------------------------------------ a huge payload


def test_a_multi_megabyte_output_is_cut_with_its_size_and_a_download():
    at = open_tab(open_run({"id": "huge-run", "step": "step_1"}), 1, "Output")
    size = compact_size(huge_run()["steps"]["step_1"]["output"])
    words = f"{size / (1024 * 1024):.1f} MB"
    assert size > 5_000_000 and any(words in c.value for c in details(at).caption)
    download = details(at).get("download_button")
    assert len(download) == 1 and words in download[0].proto.label
    preview = details(at).code[0].value
    assert len(preview.encode("utf-8")) <= 256 * 1024
    assert preview.startswith('{"api_key":"' + MASK + '","rows":["000000xxx')
    assert BIG_SECRET not in shown(at)
    assert not details(at).json and max(len(body) for body in bodies(at)) <= 256 * 1024 + 1000


def test_a_download_reads_the_whole_payload_after_the_page_closed_the_database(db):
    from pages.common.data import PageStore
    from runs_store.store.location import parse_location

    with open_db(db) as con:  # as the page opens it, for one script run
        store = PageStore(con, parse_location(str(db)))
        download = store.later(payload_download, "huge-run", 1, "output", True)
    whole = json.loads(download())  # on click: the page's connection is long closed
    assert whole["api_key"] == MASK and whole["rows"] == huge_output()["rows"]


# ------------------------------------------------------------------ record text stays text


def test_html_and_markdown_in_records_are_shown_as_text_only():
    at = open_run({"id": "xss-run"})
    assert not at.get("html")
    unsafe = [
        node for node in nodes(at) if getattr(getattr(node, "proto", None), "allow_html", False)
    ]
    assert unsafe == []
    for body in bodies(at, MARKDOWN_TYPES) + [button.label for button in at.button]:
        assert not re.search(r"(?<!\\)<(img|script|b)\b", body), body
        assert not re.search(r"(?<!\\)\]\(javascript", body), body
    assert [unescape(header.value) for header in at.subheader] == [XSS_NAME]
    assert unescape(step_list(at).button[1].label) == f"2. {XSS_STEP_TITLE}"
    assert f"{XSS_NAME} failed **badly**" in unescape(details(at).error[0].value)
    assert XSS_NAME in unescape(at.markdown[0].value)  # its tag, in the facts line


def test_record_html_in_a_payload_is_json_text():
    at = open_tab(open_run({"id": "xss-run", "step": "step_1"}), 1, "Output")
    assert json_values(at) == [{"html": XSS_OUTPUT_TEXT}]


def test_the_waterfall_escapes_step_names():
    spec = open_run({"id": "xss-run"}).get("plotly_chart")[0].proto.spec
    assert "<script>" not in spec and "&lt;script&gt;" in spec


# ------------------------------------------------------------------ links

VIEW = {
    "status": ["FAILED", "TIMEOUT"],
    "flow": "Triage support email",
    "range": "Last 30 days",
    "q": "refund",
    "page": "3",
    "rows": "50",
    "archived": "true",
}


def test_back_to_runs_carries_the_runs_view():
    at = open_run({"id": FAILED_RUN, "step": "step_1", **VIEW})
    link = page_link(at, "Back to runs")
    assert link.proto.page == RUNS_PAGE_URL
    assert query_of(link) == {
        key: value if isinstance(value, list) else [value] for key, value in VIEW.items()
    }


def test_edit_flow_without_a_template_says_how_to_configure_it():
    at = open_run({"id": FAILED_RUN})
    button = at.button(key="edit_flow_off")
    assert button.label == "Edit flow" and button.disabled
    assert "RUNS_EDIT_FLOW_URL" in button.help
    assert any("RUNS_EDIT_FLOW_URL" in caption.value for caption in at.caption)
    assert not at.get("link_button")


def test_edit_flow_opens_the_editor_on_this_flow_version(monkeypatch):
    template = "https://cloud.example.com/projects/{project_id}/flows/{flow_id}/{flow_version_id}"
    monkeypatch.setenv("RUNS_EDIT_FLOW_URL", template)
    record = engine_run(FAILED_RUN)
    link = open_run({"id": FAILED_RUN}).get("link_button")
    assert [(button.proto.label, button.proto.url) for button in link] == [
        (
            "Edit flow",
            template.format(
                project_id=record["projectId"],
                flow_id=record["flowId"],
                flow_version_id=record["flowVersionId"],
            ),
        )
    ]


def test_a_bad_edit_flow_template_says_why(monkeypatch):
    monkeypatch.setenv("RUNS_EDIT_FLOW_URL", "ftp://editor.example/{flow_id}")
    at = open_run({"id": FAILED_RUN})  # a setting not allowed stops the page, named in one line
    assert not at.get("link_button")
    assert at.error[0].value.startswith(
        "RUNS_EDIT_FLOW_URL='ftp://editor.example/{flow_id}' is "
        "not allowed: use an http:// or https:// URL"
    )


# ------------------------------------------------------------------ compare


def open_compare(query: dict):
    at = open_run(query)
    at.session_state["compare"] = True
    return rerun(at)


def test_compare_shows_what_changed_since_the_last_successful_run():
    at = open_compare({"id": FAILED_RUN, **VIEW})
    then = next(record for record in comparison_runs() if record["id"] == "ok-near")
    now, titles = example_steps(), catalog_titles()
    assert any(
        "Compared with the successful run started Nov 2, 2026, 9:00 AM, before this one" in m.value
        for m in at.markdown
    )
    summary = unescape(next(m.value for m in at.markdown if m.value.startswith("**Status changed")))
    changed_status = [titles[n] for n in now if now[n]["status"] != then["steps"][n]["status"]]
    changed_output = [
        titles[n]
        for n in now
        if (now[n].get("output"), now[n].get("errorMessage"))
        != (then["steps"][n].get("output"), then["steps"][n].get("errorMessage"))
    ]
    assert summary == (
        f"**Status changed** {', '.join(changed_status)}\n"
        f"**Output changed** {', '.join(changed_output)}"
    )
    table = at.dataframe[0].value
    assert list(table["Step"]) == [titles[name] for name in now]
    label = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}
    assert list(table["Status then"]) == [label[then["steps"][n]["status"]] for n in now]
    assert list(table["Status now"]) == [label[now[n]["status"]] for n in now]
    assert list(table["Output changed"]) == [
        "yes" if titles[n] in changed_output else "no" for n in now
    ]
    assert query_of(page_link(at, "Open that run")) == {
        "id": [then["id"]],
        **{k: v if isinstance(v, list) else [v] for k, v in VIEW.items()},
    }


def test_compare_says_when_the_flow_has_no_successful_run():
    at = open_compare({"id": "never-succeeded"})
    assert any("no other successful run" in caption.value for caption in at.caption)
    assert not at.dataframe
