"""The Run page in a real browser: a failed run's banner, badge and error, an agent's timeline, and
record text that looks like HTML shown as text, never run.

Runs are picked from the session's generated database (read-only); every expected text comes from
their stored rows.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import running_server, wait_for_app
from factories import FLOW_VERSION, engine_run, example_steps, rows
from run_records import build_run_db, huge_output, huge_run
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.services.masking import MASK
from runs_store.store.database import open_db

BROWSER_ZONE = ZoneInfo("Europe/Paris")  # the `page` fixture's timezone_id
AGENT_PIECE = "@activepieces/piece-ai"


# ------------------------------------------------------------------ picking runs


def plain_text_error(stored: str | None) -> str | None:
    """A step's stored error (JSON text) when it is a one-line message rather than JSON."""
    if not stored:
        return None
    message = json.loads(stored) if stored.startswith('"') else stored
    if not isinstance(message, str) or message.lstrip()[:1] in ("{", "[") or "\n" in message:
        return None
    return message


def a_failed_run(db) -> dict:
    """The newest FAILED run (not archived, under a minute) whose failed step, not the first,
    holds a plain-text error that its run-level error message repeats."""
    found = rows(
        db,
        """
        SELECT r.id, r.started_at, r.duration_ms, r.error_message, s.display_name, s.error
        FROM runs r JOIN run_steps s
          ON s.run_id = r.id AND s.name = r.failed_step AND s.status = 'FAILED'
        WHERE r.status = 'FAILED' AND r.archived_at IS NULL AND s.position > 0
          AND r.duration_ms BETWEEN 0 AND 59999
        ORDER BY r.started_at DESC, r.id""",
    )
    for run_id, started_at, duration_ms, run_error, step_title, step_error in found:
        message = plain_text_error(step_error)
        if message and message == run_error:
            return {
                "id": run_id,
                "started_at": started_at,
                "duration_ms": duration_ms,
                "error": message,
                "step_title": step_title,
            }
    pytest.fail("the sample has no failed run with a plain-text step error")


def an_agent_step(db) -> dict:
    """The newest succeeded Run Agent step (not the trigger) with both thoughts and tool calls."""
    found = rows(
        db,
        """
        SELECT s.run_id, s.position, s.name, s.display_name, s.output
        FROM run_steps s JOIN runs r ON r.id = s.run_id
        WHERE s.piece_name = ? AND s.action_name = 'run_agent' AND s.status = 'SUCCEEDED'
          AND r.status = 'SUCCEEDED' AND r.archived_at IS NULL AND s.position > 0
          AND s.output LIKE '%"TOOL_CALL"%' AND s.output LIKE '%"MARKDOWN"%'
        ORDER BY r.started_at DESC, r.id LIMIT 1""",
        [AGENT_PIECE],
    )
    assert found, "the sample has no Run Agent step with thoughts and tool calls"
    run_id, position, name, display_name, output = found[0]
    blocks = json.loads(output)["steps"]
    return {
        "run_id": run_id,
        "position": position,
        "name": name,
        "title": display_name or name,
        "thoughts": [block["markdown"] for block in blocks if block["type"] == "MARKDOWN"],
        "tools": [block["toolName"] for block in blocks if block["type"] == "TOOL_CALL"],
    }


# ------------------------------------------------------------------ expected wording


def clock(moment: datetime) -> str:
    """ "Nov 3, 2026, 9:14 AM" in the browser's timezone, as the engine's banner writes it."""
    local = moment.replace(tzinfo=UTC).astimezone(BROWSER_ZONE)
    hour = local.hour % 12 or 12
    return f"{local:%b} {local.day}, {local.year}, {hour}:{local:%M} {local:%p}"


def took(ms: int) -> str:
    """ "106 milliseconds", "7.4 seconds" (tenths cut, not rounded); runs under a minute only."""
    if ms < 1000:
        return f"{ms} millisecond" + ("" if ms == 1 else "s")
    seconds = f"{ms // 1000}.{ms % 1000 // 100}".removesuffix(".0")
    return f"{seconds} second" + ("" if seconds == "1" else "s")


def rgb(css: str) -> tuple[int, int, int]:
    red, green, blue = (int(part) for part in re.findall(r"\d+", css)[:3])
    return red, green, blue


# ------------------------------------------------------------------ the page


def open_run(page, server_url: str, run_id: str) -> None:
    page.goto(f"{server_url}/")  # a fresh server resolves /run only once app.py has run
    wait_for_app(page)
    page.goto(f"{server_url}/run?id={run_id}")
    wait_for_app(page)


def alert_text(alert) -> str:
    """An st.error / st.success box's message, without its icon's ligature name."""
    return alert.locator("[data-testid='stMarkdownContainer']").first.text_content().strip()


def selected_tab(page, name: str):
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.wait_for()
    return tab


# ------------------------------------------------------------------ tests


def test_a_failed_run_shows_its_banner_badge_and_the_failed_steps_error(
    page, server_url, shared_db
):
    run = a_failed_run(shared_db)
    open_run(page, server_url, run["id"])

    banner = page.locator("[data-testid='stAlert']").filter(has_text="Run Failed - Started:").first
    banner.wait_for()
    assert alert_text(banner) == (
        f"Run Failed - Started: {clock(run['started_at'])}, Took: {took(run['duration_ms'])}"
    )
    assert banner.locator("[data-testid='stAlertContentError']").count() == 1

    failed = page.locator(".stMarkdownBadge").filter(has_text=re.compile(r"^Failed$"))
    assert failed.count() >= 1
    assert failed.first.is_visible()
    red, green, blue = rgb(failed.first.evaluate("badge => getComputedStyle(badge).color"))
    assert red > 2 * green and red > 2 * blue, "the Failed badge should be red"
    succeeded = page.locator(".stMarkdownBadge").filter(has_text=re.compile(r"^Succeeded$")).first
    red, green, blue = rgb(succeeded.evaluate("badge => getComputedStyle(badge).color"))
    assert green > red and green > blue, "steps before the failed one should be green"

    heading = page.locator("h4").filter(has_text=run["step_title"])
    assert heading.first.is_visible(), "the failed step's details should be open"
    output = selected_tab(page, "Output")
    assert output.get_attribute("aria-selected") == "true"
    panel = page.get_by_role("tabpanel")
    error_box = panel.locator("[data-testid='stAlertContentError']").first
    error_box.wait_for()
    assert alert_text(error_box) == run["error"]
    assert panel.locator("[data-testid='stCode']").filter(has_text=run["error"]).count() == 0, (
        "a one-line error should not be repeated below its red box"
    )
    details = page.locator(".st-key-step_details")
    assert details.locator(".stMarkdownBadge").filter(has_text=re.compile(r"^Failed$")).count() == 1


TIME = re.compile(r"^(\d[\d.,]* (ms|s|min|h)|–)$")


def box(locator) -> dict:
    found = locator.bounding_box()
    assert found is not None, "expected a visible element"
    return found


def middle(found: dict) -> float:
    return found["y"] + found["height"] / 2


def test_step_rows_line_up_like_a_table(page, server_url, shared_db):
    step = an_agent_step(shared_db)  # a run of several steps, with loops or routers
    open_run(page, server_url, step["run_id"])
    steps = page.locator(".st-key-step_list")
    steps.wait_for()
    buttons = steps.get_by_role("button", name=re.compile(r"^\d+\. "))
    buttons.first.wait_for()
    badges = steps.locator(".stMarkdownBadge")
    times = steps.locator("[data-testid='stCaptionContainer']").filter(has_text=TIME)
    count = buttons.count()
    assert count >= 3 and badges.count() == count and times.count() == count
    rows = [
        (box(buttons.nth(i)), box(badges.nth(i)), box(times.nth(i).locator("p").first))
        for i in range(count)
    ]
    line = float(
        times.first.locator("p").first.evaluate(
            "text => parseFloat(getComputedStyle(text).lineHeight)"
        )
    )
    for button, badge, took in rows:
        assert abs(middle(badge) - middle(button)) < button["height"] / 2, "badge off its row"
        assert abs(middle(took) - middle(button)) < button["height"] / 2, "time off its row"
        assert took["height"] < 1.5 * line, "the time should fit on one line"
    assert max(badge["x"] for _, badge, _ in rows) - min(badge["x"] for _, badge, _ in rows) < 2
    right_edges = [took["x"] + took["width"] for _, _, took in rows]
    assert max(right_edges) - min(right_edges) < 2


def test_an_agent_steps_timeline_shows_its_thoughts_and_tool_calls(page, server_url, shared_db):
    step = an_agent_step(shared_db)
    open_run(page, server_url, step["run_id"])

    page.get_by_role("button", name=f"{step['position'] + 1}. {step['title']}", exact=True).click()
    page.wait_for_url(lambda url: f"step={step['name']}" in url)
    wait_for_app(page)
    timeline = selected_tab(page, "Timeline")
    timeline.click()
    wait_for_app(page)
    assert timeline.get_attribute("aria-selected") == "true"
    panel = page.get_by_role("tabpanel")

    thoughts = panel.get_by_text(re.compile(r"^\d+\. Thought$"))
    thoughts.first.wait_for()
    assert thoughts.count() == len(step["thoughts"])
    shown = [text.strip() for text in panel.locator("[data-testid='stText']").all_text_contents()]
    for thought in step["thoughts"]:
        assert thought in shown
    calls = panel.get_by_text(re.compile(r"^\d+\. Tool call "))
    assert calls.count() == len(step["tools"])
    for number, tool in enumerate(calls.all_text_contents()):
        assert step["tools"][number] in tool
    assert panel.get_by_text(step["thoughts"][0], exact=True).first.is_visible()


IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>window.__xss=1</script>"


@pytest.fixture
def xss_server(tmp_path):
    """A server of its own on a database holding one run whose texts are HTML."""
    steps = example_steps()
    steps["step_1"]["output"] = {"note": SCRIPT, "orderId": "1042"}
    steps["step_3"]["errorMessage"] = SCRIPT
    record = engine_run(
        "xss-run-1",
        flowVersion={**FLOW_VERSION, "displayName": IMG},
        steps=steps,
        failedStep={
            "name": "step_3",
            "displayName": "Send Message To A Channel",
            "message": SCRIPT,
        },
    )
    db = tmp_path / "xss.duckdb"
    with open_db(db) as con:
        ingest_items(con, records_as_items([record]), "xss-test")
    with running_server(db) as url:
        yield url


def assert_nothing_ran(page, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img[src='x']").count() == 0
    assert (
        page.evaluate("[...document.scripts].some(script => script.textContent.includes('__xss'))")
        is False
    )


def test_html_in_a_run_is_shown_as_text_and_never_runs(page, xss_server):
    dialogs: list[str] = []

    def record(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    page.goto(f"{xss_server}/")
    wait_for_app(page)
    page.goto(f"{xss_server}/?range=all")
    wait_for_app(page)
    page.get_by_text("1-1 of 1 run", exact=True).first.wait_for()
    flow_cell = page.locator("[data-testid='stDataFrame'] td[data-testid='glide-cell-2-0']")
    flow_cell.wait_for(state="attached")
    assert flow_cell.text_content() == IMG
    assert_nothing_ran(page, dialogs)

    page.goto(f"{xss_server}/run?id=xss-run-1&range=all")
    wait_for_app(page)
    title = page.get_by_role("heading", name=IMG, exact=True)
    title.wait_for()
    assert title.is_visible()
    error_box = page.get_by_role("tabpanel").locator("[data-testid='stAlertContentError']").first
    error_box.wait_for()
    assert alert_text(error_box) == SCRIPT
    assert error_box.is_visible()
    assert_nothing_ran(page, dialogs)

    page.get_by_role("button", name="2. Extract order id", exact=True).click()
    page.wait_for_url(lambda url: "step=step_1" in url)
    wait_for_app(page)
    selected_tab(page, "Output").click()
    wait_for_app(page)
    payload = page.get_by_role("tabpanel").locator("[data-testid='stJson']")
    payload.wait_for()
    assert SCRIPT in payload.text_content()
    assert payload.get_by_text(SCRIPT).first.is_visible()
    assert_nothing_ran(page, dialogs)


@pytest.fixture
def huge_server(tmp_path):
    """A server of its own on a database holding one run with a 5 MB step output."""
    with running_server(build_run_db(tmp_path / "huge.duckdb", [huge_run()])) as url:
        yield url


def test_a_huge_payloads_download_is_read_from_the_store_when_clicked(page, huge_server):
    page.goto(f"{huge_server}/")
    wait_for_app(page)
    page.goto(f"{huge_server}/run?id=huge-run&step=step_1")
    wait_for_app(page)
    selected_tab(page, "Output").click()
    wait_for_app(page)
    button = page.get_by_role("tabpanel").get_by_role(
        "button", name=re.compile(r"Download the whole payload \(5\.\d MB\)")
    )
    button.wait_for()
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == "step_1-output.json"
    whole = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert whole["api_key"] == MASK, "the download is masked like the preview"
    assert whole["rows"] == huge_output()["rows"]
