"""In a real browser on the real server: the on-call engineer opens Alerts with a rules file that
tells a real HTTP receiver, sees what fires, follows a firing's drill-down to the Runs page
filtered on its runs, and sends a test message that arrives at the receiver."""

from __future__ import annotations

import re
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import duckdb
from playwright.sync_api import expect

from conftest import running_server, wait_for_app
from runs_store.queries.filters import day_window
from runs_store.services.alerts.rules import load_rules
from test_alerts_page import check_now, service_status

RULES = """
[channels.ops]
type = "slack"
url = "env:SLACK_WEBHOOK_URL"

[[rules]]
name = "Failing flows"
kind = "failure_rate"
window = "7d"
above = 0.2
min_runs = 10
channels = ["ops"]
"""


PARIS = ZoneInfo("Europe/Paris")  # the browser's timezone (conftest's page fixture)


def failed_runs_on_days(db, flow: str, view, tz) -> int:
    """The flow's runs in a failed state started on the view's days, in the browser's zone."""
    since, until = day_window(view.first_day, view.last_day, tz)
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(*) FROM runs WHERE flow_name = ? AND archived_at IS NULL AND status IN "
            "('FAILED', 'QUOTA_EXCEEDED', 'TIMEOUT', 'INTERNAL_ERROR', 'MEMORY_LIMIT_EXCEEDED', "
            "'LOG_SIZE_EXCEEDED') AND started_at >= ? AND started_at < ?",
            [flow, since, until],
        ).fetchall()[0][0]


def test_see_a_firing_rule_drill_down_to_its_runs_and_send_a_test_message(
    tmp_path, db_copy, page, http_receiver, monkeypatch
):
    path = tmp_path / "alerts.toml"
    path.write_text(RULES, encoding="utf-8")
    hook = f"{http_receiver.url}/slack"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", hook)
    rules = load_rules(path)
    check_now(db_copy, rules)  # the firings are told and recorded
    told = len(http_receiver.wait_for(1))
    (rule,) = service_status(db_copy, rules).rules
    firing = [flow for flow in rule.flows if flow.state == "firing"]
    assert firing

    environment = {"RUNS_ALERTS": str(path), "SLACK_WEBHOOK_URL": hook}
    with running_server(db_copy, environment) as url:
        page.goto(f"{url}/alerts")
        wait_for_app(page)
        expect(page.get_by_text(firing[0].summary).first).to_be_visible(timeout=30_000)
        links = page.get_by_role("link", name="Open the runs")  # one per firing flow, in order
        expect(links).to_have_count(len(firing))
        expect(page.get_by_text(f"Failing flows · {firing[0].flow}").first).to_be_visible()
        assert hook not in page.content()

        links.first.click()
        expect(page).to_have_url(re.compile(r"flow=" + re.escape(quote_plus(firing[0].flow))))
        wait_for_app(page)
        expect(page).to_have_url(re.compile(r"status=Failed"))
        expect(page).to_have_url(re.compile(r"range=Custom\+range"))
        toolbar = page.locator("[data-testid='stMultiSelect']").first
        expect(toolbar).to_contain_text(firing[0].flow)
        shown = page.locator("[data-testid='stMarkdownContainer']", has_text=" of ")
        expected = failed_runs_on_days(db_copy, firing[0].flow, firing[0].view, PARIS)
        expect(shown.first).to_contain_text(f"of {expected:,} run", timeout=30_000)

        page.goto(f"{url}/alerts")
        wait_for_app(page)
        page.get_by_role("button", name="Send a test message").click()
        expect(page.get_by_text("Test message sent to ops")).to_be_visible(timeout=30_000)
        arrived = http_receiver.wait_for(told + 1)[-1]
        assert arrived.path == "/slack"
        assert "Test message from Runs Explorer to ops" in arrived.json()["text"]
        assert hook not in page.content()
