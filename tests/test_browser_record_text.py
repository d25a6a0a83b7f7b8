"""Record text stays text in a real browser: a flow name, a step title, an error, an agent's
thought and tool call written as markdown links and bare addresses show as the characters they are
on the Runs page, the Run page and Insights, and not one of them becomes a link.

Streamlit's markdown links bare addresses (https://…, www.…, name@host.tld) in text even when
every markdown character around them is escaped, so each page is searched whole, hidden elements
and the tables' accessible copies included, for anything linking to the records' host; and each
test also finds the text on screen, so a page that stopped showing it cannot pass.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from conftest import running_server, wait_for_app
from run_records import (
    LINK_ERROR,
    LINK_FLOW,
    LINK_HOST,
    LINK_IN_URL,
    LINK_RUN,
    LINK_RUNS,
    LINK_STEP_TITLE,
    LINK_THOUGHT,
    LINK_TOOL,
    LINK_TOOL_ERROR,
    build_run_db,
    link_runs,
)
from runs_store.domain.signatures import error_signature
from test_browser_insights import cell_text, open_insights
from test_browser_run import alert_text, open_run, selected_tab
from test_browser_runs import cell

INSIGHTS_TABS = ("Trends", "Failed steps", "Errors", "Quota", "Durations")
# The Runs table's columns as the DOM counts them (pages/runs.py: Open, Flow, Status, Started At,
# Duration, Failed Step, Error).
FLOW_COLUMN, FAILED_STEP_COLUMN, ERROR_COLUMN = 2, 6, 7

LINKS_TO_HOST = """host => {
  const found = [];
  const visit = root => {
    if (!root) return;
    for (const element of root.querySelectorAll('*')) {
      const href = element.getAttribute('href')
        || element.getAttributeNS('http://www.w3.org/1999/xlink', 'href') || '';
      const link = ['a', 'area'].includes(element.localName);
      if (href.includes(host) || (link && element.textContent.includes(host)))
        found.push(element.outerHTML.slice(0, 300));
      if (element.shadowRoot) visit(element.shadowRoot);
      if (element.localName === 'iframe') {
        try { visit(element.contentDocument); } catch (error) { /* another origin */ }
      }
    }
  };
  visit(document);
  return found;
}"""


@pytest.fixture(scope="module")
def links_server(tmp_path_factory):
    """A server of its own on a database holding only run_records.link_runs (from 5 and 3 days
    ago, so Insights' default Last 7 days holds them all)."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    db = build_run_db(tmp_path_factory.mktemp("links") / "links.duckdb", link_runs(now))
    with running_server(db) as url:
        yield url


def assert_no_links(page) -> None:
    """Nothing in the whole DOM links to the records' host, hidden elements included."""
    assert page.locator(f'a[href*="{LINK_HOST}"]').count() == 0
    assert page.evaluate(LINKS_TO_HOST, LINK_HOST) == []


def assert_shown(locator, text: str) -> None:
    """The element is on screen and reads exactly `text` (no escapes, nothing dropped)."""
    locator.wait_for()
    assert locator.is_visible()
    assert locator.text_content().strip() == text


# ------------------------------------------------------------------ tests


def test_the_runs_page_shows_links_in_records_as_text(page, links_server):
    """The table, the Flow filter and the drill-down chips; the link also names a flow that is
    not loaded and a failed step holding links (a step's name is record text too), which its
    notice and its chip quote."""
    signature = error_signature(LINK_ERROR)
    query = urlencode(
        [
            ("range", "all"),
            ("flow", LINK_FLOW),
            ("flow", LINK_IN_URL),
            ("failed_step", "step_3"),
            ("failed_step", LINK_IN_URL),
            ("signature", signature),
        ]
    )
    page.goto(f"{links_server}/")
    wait_for_app(page)
    page.goto(f"{links_server}/?{query}")
    wait_for_app(page)
    page.get_by_text(f"1-{LINK_RUNS} of {LINK_RUNS} runs", exact=True).first.wait_for()

    chosen = page.locator(".st-key-flow [data-tag]")  # the Flow filter's chosen flow
    expect(chosen).to_have_count(1)
    expect(chosen).to_be_visible()
    expect(chosen).to_have_attribute("aria-label", LINK_FLOW)
    notice = page.locator("[data-testid='stAlert']").filter(has_text="Ignored flow").first
    notice.wait_for()
    assert notice.is_visible() and alert_text(notice) == (
        f'Ignored flow "{LINK_IN_URL}" from the link: no runs of a flow by that name are loaded.'
    )
    for key, text in (
        ("clear_failed_step", f"Failed step: step_3, {LINK_IN_URL}"),
        ("clear_signature", f"Error: {signature}"),
    ):
        chip = page.locator(f".st-key-{key} [data-testid='stMarkdownContainer']").first
        assert_shown(chip, text)
    assert cell(page, FLOW_COLUMN, 0).text_content() == LINK_FLOW
    assert cell(page, FAILED_STEP_COLUMN, 0).text_content() == LINK_STEP_TITLE
    assert cell(page, ERROR_COLUMN, 0).text_content() == LINK_ERROR
    assert_no_links(page)


def test_the_run_page_shows_links_in_records_as_text(page, links_server):
    open_run(page, links_server, LINK_RUN)
    assert_shown(page.get_by_role("heading", name=LINK_FLOW, exact=True), LINK_FLOW)
    title = f"4. {LINK_STEP_TITLE}"
    step = page.get_by_role("button", name=title, exact=True)
    step.wait_for()
    assert step.is_visible() and step.text_content().strip() == title
    assert_shown(page.locator(".st-key-step_details h4"), LINK_STEP_TITLE)
    error_box = page.get_by_role("tabpanel").locator("[data-testid='stAlertContentError']").first
    error_box.wait_for()
    assert error_box.is_visible() and alert_text(error_box) == LINK_ERROR
    step.hover()  # its tooltip, markdown too, is drawn only now
    tooltip = page.locator("[data-testid='stTooltipContent']").first
    tooltip.wait_for()
    assert LINK_STEP_TITLE in tooltip.text_content()
    assert_no_links(page)

    page.get_by_text("Compare with the last successful run of this flow").click()
    changed = (
        page.locator("[data-testid='stExpanderDetails'] p").filter(has_text="Status changed").first
    )  # its summary names the steps that changed
    changed.wait_for()
    wait_for_app(page)
    assert changed.text_content().startswith(f"Status changed {LINK_STEP_TITLE}")
    assert_no_links(page)


def test_an_agents_thoughts_and_tool_calls_with_links_stay_text(page, links_server):
    open_run(page, links_server, f"{LINK_RUN}&step=step_2")
    timeline = selected_tab(page, "Timeline")
    assert timeline.get_attribute("aria-selected") == "true"
    panel = page.get_by_role("tabpanel")
    thought = panel.locator("[data-testid='stText']").filter(has_text=LINK_THOUGHT)
    assert_shown(thought.first, LINK_THOUGHT)
    call = panel.get_by_text(re.compile(r"^\d+\. Tool call ")).filter(has_text=LINK_TOOL)
    call.first.wait_for()
    assert call.first.is_visible()
    tool_error = panel.locator("[data-testid='stAlertContentError']").filter(
        has_text=LINK_TOOL_ERROR
    )
    assert tool_error.first.is_visible() and alert_text(tool_error.first) == LINK_TOOL_ERROR
    assert_no_links(page)


@pytest.mark.parametrize("tab", INSIGHTS_TABS)
def test_insights_shows_links_in_records_as_text(page, links_server, tab):
    open_insights(page, links_server, tab)
    if tab == "Trends":
        sentence = page.locator("[data-testid='stAlert']").filter(has_text="since version").first
        sentence.wait_for()
        assert sentence.is_visible()
        assert alert_text(sentence).startswith(
            f"{LINK_FLOW}: failure rate 0% → 100% since version fV-links "
        )
    elif tab == "Failed steps":
        assert cell_text(page, "failed_steps", 1, 0) == LINK_FLOW
        assert cell_text(page, "failed_steps", 2, 0) == LINK_STEP_TITLE
    elif tab == "Errors":
        assert cell_text(page, "error_signatures", 2, 0) == error_signature(LINK_ERROR)
    elif tab == "Durations":
        assert cell_text(page, "duration_percentiles", 1, 0) == LINK_FLOW
    assert_no_links(page)
