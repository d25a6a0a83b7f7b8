"""The Alerts page in Streamlit's AppTest, on a generated store: the rules with the states the
service computes, each firing's drill-down to exactly its runs, a test message that really
arrives at an HTTP receiver, no secret anywhere on the page, and one error per mistake of a bad
rules file."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode

import duckdb
import pytest

from conftest import app_test, now_utc
from runs_store.queries.view_state import RunsView
from runs_store.services.alerts.check import run_check
from runs_store.services.alerts.outbox import transport_sender
from runs_store.services.alerts.rules import RulesError, load_rules
from runs_store.services.alerts.status import alerts_status
from runs_store.store.database import open_db

PAGE = "pages/alerts.py"
WEBHOOK_SECRET = "whsec-literal-7f3a9c"
SLACK_TOKEN_PATH = "/services/T0SECRET/B0SECRET/xoxSlackTokenPath42"
SMTP_PASSWORD = "smtp-pass-from-env-91"


def rules_text(http_url: str, smtp_url: str) -> str:
    return f"""
[channels.ops]
type = "slack"
url = "{http_url}{SLACK_TOKEN_PATH}"

[channels.hook]
type = "webhook"
url = "{http_url}/hooks/runs?token=query-secret-55"
secret = "{WEBHOOK_SECRET}"

[channels.mail]
type = "email"
smtp = "{smtp_url}"
from = "runs@example.com"
to = ["ops@example.com"]
user = "env:ALERTS_TEST_SMTP_USER"
password = "env:ALERTS_TEST_SMTP_PASSWORD"

[[rules]]
name = "Failing flows"
kind = "failure_rate"
window = "7d"
above = 0.2
min_runs = 10
channels = ["ops", "hook"]

[[rules]]
name = "Very slow"
kind = "slow"
window = "7d"
above = 86400000
min_runs = 10
flows = ["Triage support email"]
channels = ["mail"]

[[rules]]
name = "Ghost went quiet"
kind = "no_runs"
window = "2d"
flows = ["A flow that never ran"]
channels = ["mail"]
"""


@pytest.fixture
def alerts_env(app_env, db_copy, tmp_path, monkeypatch, http_receiver, smtp_receiver):
    """The app on a copy of the generated store with a rules file telling the real receivers."""
    app_env(db_copy)
    path = tmp_path / "alerts.toml"
    path.write_text(rules_text(http_receiver.url, smtp_receiver.url), encoding="utf-8")
    monkeypatch.setenv("RUNS_ALERTS", str(path))
    monkeypatch.setenv("ALERTS_TEST_SMTP_USER", "runs-bot")
    monkeypatch.setenv("ALERTS_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    return db_copy, load_rules(path)


def service_status(db, rules):
    with open_db(db, read_only=True) as con:
        return alerts_status(con, rules)


def check_now(db, rules):
    """One `alerts check` on the store, delivering to the receivers."""
    return run_check(lambda: open_db(db), rules, now_utc(), transport_sender(), quick_retries=())


def open_alerts():
    at = app_test(PAGE)
    assert not at.exception, at.exception
    return at


def every_text(at) -> str:
    """Every element's text on the page (markdown, captions, alerts, labels, code, tables)."""
    texts = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            texts.append(str(proto))
        value = getattr(node, "value", None)
        if hasattr(value, "to_csv"):
            texts.append(value.to_csv())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(texts)


def expander_labels(at) -> list[str]:
    return [expander.label for expander in at.expander]


def flow_table(at, rule_name: str):
    index = next(i for i, label in enumerate(expander_labels(at)) if rule_name in label)
    return at.expander[index].dataframe[0].value


# ---------------------------------------------------------------- the rules and their state


def test_the_page_lists_every_rule_with_the_states_the_service_computes(alerts_env):
    db, rules = alerts_env
    at = open_alerts()
    status = service_status(db, rules)
    for rule in status.rules:
        table = flow_table(at, rule.rule.name)
        assert list(table["Flow"]) == [flow.flow for flow in rule.flows]
        assert list(table["State"]) == [flow.state for flow in rule.flows]
        assert list(table["Measured"]) == [flow.measured for flow in rule.flows]
        assert list(table["Threshold"]) == [flow.threshold for flow in rule.flows]
    states = {rule.rule.name: rule.state for rule in status.rules}
    assert states == {
        "Failing flows": "firing",
        "Very slow": "ok",
        "Ghost went quiet": "not enough runs",
    }
    firing = [f for rule in status.rules for f in rule.flows if f.state == "firing"]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Firing"] == str(len(firing))
    assert len(at.get("page_link")) == len(firing)  # one drill-down per firing flow
    assert any("A flow that never ran" in warning.value for warning in at.warning)
    assert any("no `alerts check` has run yet" in caption.value for caption in at.caption)


def test_a_firing_drill_down_opens_the_runs_page_on_exactly_its_runs(alerts_env):
    db, rules = alerts_env
    at = open_alerts()
    status = service_status(db, rules)
    firing = next(f for rule in status.rules for f in rule.flows if f.state == "firing")
    link = at.get("page_link")[0].proto
    query = parse_qs(link.query_string, keep_blank_values=True)
    view, notices = RunsView.from_query(query)
    assert notices == [] and view == firing.view
    assert query["flow"] == [firing.flow]
    assert {"Failed", "Timeout", "Quota Exceeded"} <= set(query["status"])

    at.switch_page("pages/runs.py")
    for key, values in query.items():
        at.query_params[key] = values
    at.run()
    assert not at.exception, at.exception
    first, last = view.first_day, view.last_day
    with duckdb.connect(str(db), read_only=True) as con:
        expected = con.execute(
            "SELECT count(*) FROM runs WHERE flow_name = ? AND archived_at IS NULL "
            "AND status IN ('FAILED', 'QUOTA_EXCEEDED', 'TIMEOUT', 'INTERNAL_ERROR', "
            "'MEMORY_LIMIT_EXCEEDED', 'LOG_SIZE_EXCEEDED') AND started_at >= ? AND started_at < ?",
            [
                firing.flow,
                datetime.combine(first, datetime.min.time()),
                datetime.combine(last + timedelta(days=1), datetime.min.time()),
            ],
        ).fetchall()[0][0]
    shown = " ".join(str(e.value) for e in list(at.markdown) + list(at.caption))
    assert f"of {expected:,} runs" in shown or f"of {expected:,} run" in shown


def test_after_a_check_the_firings_and_deliveries_show_with_their_outcome(
    alerts_env, http_receiver
):
    db, rules = alerts_env
    http_receiver.answer(200, 200, 503)  # every other message: kept pending, due again later
    result = check_now(db, rules)
    firings = [t for t in result.plan.tellings if t.message.kind == "firing"]
    assert firings
    at = open_alerts()
    status = service_status(db, rules)
    table = next(df.value for df in at.dataframe if "Deliveries" in df.value.columns)
    assert len(table) == len(status.firings)
    assert list(table["Runs page"]) == [
        "./?" + urlencode(f.view.to_query(), doseq=True) for f in status.firings
    ]
    deliveries = next(df.value for df in at.dataframe if "Attempts" in df.value.columns)
    outcomes = set(deliveries["Outcome"])
    assert "sent" in outcomes
    assert any(outcome.startswith("pending, next attempt ") for outcome in outcomes)
    assert "HTTP 503 from 127.0.0.1: error" in set(deliveries["Detail"])
    assert any("last `alerts check`" in caption.value for caption in at.caption)


def test_send_a_test_message_delivers_to_the_receiver_and_shows_the_outcome(
    alerts_env, http_receiver
):
    at = open_alerts()
    buttons = [b for b in at.button if b.label == "Send a test message"]
    assert len(buttons) == 3  # ops, hook, mail
    next(b for b in buttons if b.key == "test_hook").click()
    at.run()
    assert not at.exception, at.exception
    (request,) = http_receiver.wait_for(1)
    assert request.path == "/hooks/runs?token=query-secret-55"
    body = request.json()
    assert body["kind"] == "test" and "hook" in body["title"]
    assert request.header("X-Runs-Signature").startswith("sha256=")
    assert any("Test message sent to hook" in s.value for s in at.success)
    assert "HTTP 200 from 127.0.0.1" in " ".join(s.value.replace("\\", "") for s in at.success)


def test_a_configuration_error_of_a_test_message_is_one_error_line(alerts_env, monkeypatch):
    monkeypatch.delenv("ALERTS_TEST_SMTP_PASSWORD")
    at = open_alerts()
    next(b for b in at.button if b.key == "test_mail").click()
    at.run()
    expected = "configuration error: ALERTS_TEST_SMTP_PASSWORD is not set (the SMTP password)"
    assert [e.value.replace("\\", "") for e in at.error] == [f"Test message to mail: {expected}"]


def test_no_secret_is_anywhere_on_the_page(alerts_env, http_receiver):
    db, rules = alerts_env
    check_now(db, rules)
    at = open_alerts()
    for key in ("test_ops", "test_hook", "test_mail"):
        next(b for b in at.button if b.key == key).click()
        at.run()
        assert not at.exception, at.exception
    text = every_text(at)
    assert "Slack via 127.0.0.1" in text.replace("\\", "")
    for secret in (
        WEBHOOK_SECRET,
        SLACK_TOKEN_PATH,
        "xoxSlackTokenPath42",
        "T0SECRET",
        SMTP_PASSWORD,
        "query-secret-55",
    ):
        assert secret not in text, secret


# ---------------------------------------------------------------- without rules, or bad ones


def test_without_a_rules_file_the_page_says_how_to_set_one_up(app_env, shared_db, monkeypatch):
    app_env(shared_db)
    monkeypatch.delenv("RUNS_ALERTS", raising=False)
    at = open_alerts()
    assert any("No rules file is set" in info.value for info in at.info)
    assert expander_labels(at) == ["Set up alerts"]
    commands = " ".join(code.value for code in at.code)
    assert "python -m runs_store alerts check" in commands
    assert "[[rules]]" in commands
    assert not at.dataframe and not at.error


def test_a_bad_rules_file_shows_one_error_per_mistake(app_env, shared_db, tmp_path, monkeypatch):
    app_env(shared_db)
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[channels.ops]\ntype = "slack"\nurl = "env:SLACK_URL"\n'
        '[[rules]]\nname = "A"\nkind = "failure_rate"\nwindow = "1h"\nabove = 1.5\n'
        'channels = ["sms"]\n'
        '[[rules]]\nname = "B"\nkind = "explode"\nwindow = "1h"\nchannels = ["ops"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RUNS_ALERTS", str(path))
    with pytest.raises(RulesError) as raised:
        load_rules(path)
    assert len(raised.value.lines) == 3
    at = open_alerts()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert errors == list(raised.value.lines)
    assert not at.dataframe and not at.button


def test_the_page_draws_on_a_store_without_alert_tables(app_env, empty_db, tmp_path, monkeypatch):
    app_env(empty_db)
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[channels.ops]\ntype = "slack"\nurl = "env:SLACK_URL"\n'
        '[[rules]]\nname = "Quiet"\nkind = "no_runs"\nwindow = "1d"\nchannels = ["ops"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RUNS_ALERTS", str(path))
    at = open_alerts()
    assert any("Nothing is firing" in s.value for s in at.success)
    assert any("from $SLACK_URL (not set)" in m.value.replace("\\", "") for m in at.markdown)
