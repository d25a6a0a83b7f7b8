"""The alerts' promises against real parts: a real store, `python -m runs_store alerts check` run
as separate processes (cron's way), a real HTTP receiver for Slack and webhooks and a real SMTP
server. An incident is told once however many checks see it, and once more when it clears; a
message a receiver failed to take is kept and delivered by a later check, once; a 4xx is a
configuration error, reported and not retried; a dry run sends and records nothing."""

from __future__ import annotations

import html
import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import clickhouse_http
from conftest import now_utc
from factories import ROOT, run_cli, simple_run, store_with, write_jsonl
from receivers import Reply
from runs_store.services.alerts.check import run_check
from runs_store.services.alerts.outbox import transport_sender
from runs_store.services.alerts.rules import load_rules
from runs_store.store import alert_state
from runs_store.store.backend import open_location
from runs_store.store.location import DuckDBLocation

FLOW = "Invoice reconciliation"


def spike_records(now: datetime) -> list[dict]:
    """In the last hour: 8 of 20 runs of one flow failed (40%); another flow ran fine."""
    records = []
    for number in range(20):
        created = (now - timedelta(minutes=50) + timedelta(minutes=2 * number)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        status = "FAILED" if number % 5 in (0, 2) else "SUCCEEDED"
        records.append(simple_run(f"inv-{number}", created, status, flow=FLOW))
        records.append(simple_run(f"ok-{number}", created, "SUCCEEDED", flow="Daily digest"))
    return records


def rules_text(slack_url: str | None, smtp_url: str | None = None, above: float = 0.2) -> str:
    """The rules file: one failure-rate rule telling a Slack channel, an email one, or both."""
    text, channels = "", []
    if slack_url:
        text += f'[channels.ops]\ntype = "slack"\nurl = "{slack_url}"\n'
        channels.append("ops")
    if smtp_url:
        text += (
            f'[channels.mail]\ntype = "email"\nsmtp = "{smtp_url}"\nfrom = "runs@example.com"\n'
            'to = ["ops@example.com"]\n'
        )
        channels.append("mail")
    return (
        text
        + f"""
[[rules]]
name = "Invoices failing"
kind = "failure_rate"
window = "1h"
above = {above}
min_runs = 10
flows = ["{FLOW}"]
channels = {json.dumps(channels)}
"""
    )


@pytest.fixture
def spike_db(tmp_path) -> Path:
    return store_with(tmp_path / "runs.duckdb", spike_records(now_utc()))


def write_rules(tmp_path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def check(rules: Path, db: str, *more: str, env: dict | None = None):
    return run_cli("alerts", "check", "--rules", str(rules), "--db", db, *more, env=env)


def slack_text(request) -> str:
    """A Slack message's text as Slack shows it (it arrives with &, < and > escaped)."""
    return html.unescape(request.json()["text"])


def deliveries(db: Path) -> list[alert_state.DeliveryRow]:
    with open_location(DuckDBLocation(db), read_only=True) as con:
        return alert_state.recent_deliveries(con)


def test_a_spike_is_told_once_across_processes_then_resolved_once(
    tmp_path, spike_db, http_receiver, smtp_receiver
):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook", smtp_receiver.url))
    first = check(rules, str(spike_db))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Invoices failing · Invoice reconciliation: new -> firing: failure rate 40%" in (
        first.stdout
    )
    (slack,) = http_receiver.wait_for(1)
    (mail,) = smtp_receiver.wait_for(1)
    assert slack_text(slack).startswith(
        "Invoices failing · Invoice reconciliation: failure rate 40% (8 of 20 finished runs) > "
        "20% in the last 1h"
    )
    assert "failure rate 40%" in mail.message["Subject"]

    again = check(rules, str(spike_db))
    assert again.returncode == 0, again.stderr
    assert "0 opened" in again.stdout
    assert len(http_receiver.requests) == 1 and len(smtp_receiver.messages) == 1

    write_rules(tmp_path, rules_text(http_receiver.url + "/hook", smtp_receiver.url, above=0.5))
    resolved = check(rules, str(spike_db))
    assert resolved.returncode == 0, resolved.stderr
    assert "firing -> ok" in resolved.stdout
    assert (
        http_receiver.wait_for(2)[1]
        .json()["text"]
        .startswith("Resolved: Invoices failing · Invoice reconciliation: failure rate 40%")
    )
    assert smtp_receiver.wait_for(2)[1].message["Subject"].startswith("Resolved")

    check(rules, str(spike_db))
    assert len(http_receiver.requests) == 2 and len(smtp_receiver.messages) == 2
    kinds = sorted((row.kind, row.channel, row.state) for row in deliveries(spike_db))
    assert kinds == [
        ("firing", "mail", "sent"),
        ("firing", "ops", "sent"),
        ("resolved", "mail", "sent"),
        ("resolved", "ops", "sent"),
    ]


def test_a_5xx_is_kept_and_delivered_once_by_a_later_check(tmp_path, spike_db, http_receiver):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    http_receiver.answer(500, 503, 502)  # every quick retry of the first check fails
    first = check(rules, str(spike_db))
    assert first.returncode == 1
    assert "not sent: firing" in first.stdout and "HTTP 502" in first.stdout
    assert len(http_receiver.requests) == 3
    (row,) = deliveries(spike_db)
    assert (row.state, row.attempts) == ("pending", 3)

    later = check(rules, str(spike_db))
    assert later.returncode == 0, later.stdout
    assert "sent: firing" in later.stdout
    assert len(http_receiver.wait_for(4)) == 4
    bodies = {request.body for request in http_receiver.requests}
    assert len(bodies) == 1, "the same message, not a new one"

    check(rules, str(spike_db))
    assert len(http_receiver.requests) == 4
    (row,) = deliveries(spike_db)
    assert (row.state, row.attempts) == ("sent", 4)


def test_a_4xx_is_a_configuration_error_reported_and_not_retried(tmp_path, spike_db, http_receiver):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    http_receiver.answer(Reply(404, b"no_service"))
    first = check(rules, str(spike_db))
    assert first.returncode == 1
    assert "configuration error: firing" in first.stdout
    assert "HTTP 404" in first.stdout and "(not retried)" in first.stdout
    assert len(http_receiver.requests) == 1
    check(rules, str(spike_db))
    assert len(http_receiver.requests) == 1
    (row,) = deliveries(spike_db)
    assert (row.state, row.attempts) == ("failed_config", 1)


def test_an_unset_variable_is_a_configuration_error_of_that_channel_only(
    tmp_path, spike_db, http_receiver
):
    text = rules_text(http_receiver.url + "/hook").replace(
        "[[rules]]", '[channels.team]\ntype = "slack"\nurl = "env:RUNS_TEST_UNSET_HOOK"\n[[rules]]'
    )
    rules = write_rules(tmp_path, text.replace('channels = ["ops"]', 'channels = ["ops", "team"]'))
    done = check(rules, str(spike_db))
    assert done.returncode == 1
    assert "sent: firing" in done.stdout
    assert "configuration error: firing" in done.stdout and "RUNS_TEST_UNSET_HOOK" in done.stdout
    assert len(http_receiver.requests) == 1


def test_smtp_451_is_retried_and_the_mail_arrives_once(tmp_path, spike_db, smtp_receiver):
    rules = load_rules(write_rules(tmp_path, rules_text(None, smtp_receiver.url)))
    smtp_receiver.refuse_next(3)
    slept: list[float] = []
    location = DuckDBLocation(spike_db)
    first = run_check(
        lambda: open_location(location), rules, now_utc(), transport_sender(), slept.append
    )
    assert slept == [1.0, 2.0]
    (outcome,) = first.delivered
    assert outcome.delivery.state == "pending" and "SMTP 451" in outcome.outcome.detail
    assert first.exit_code == 1 and smtp_receiver.messages == []

    second = run_check(
        lambda: open_location(location), rules, now_utc(), transport_sender(), slept.append
    )
    (outcome,) = second.delivered
    assert outcome.delivery.state == "sent" and second.exit_code == 0
    assert len(smtp_receiver.wait_for(1)) == 1
    third = run_check(lambda: open_location(location), rules, now_utc(), transport_sender())
    assert third.delivered == [] and len(smtp_receiver.messages) == 1


def test_a_dry_run_prints_what_would_be_sent_and_changes_nothing(tmp_path, spike_db, http_receiver):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    before = spike_db.read_bytes()
    dry = check(rules, str(spike_db), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would send to ops:" in dry.stdout
    assert "[firing] Invoices failing · Invoice reconciliation: failure rate 40%" in dry.stdout
    assert "http://localhost:8501/?flow=Invoice+reconciliation" in dry.stdout
    assert http_receiver.requests == []
    assert spike_db.read_bytes() == before
    real = check(rules, str(spike_db))
    assert real.returncode == 0 and len(http_receiver.wait_for(1)) == 1


@pytest.fixture(params=["chdb", "clickhouse"])
def clickhouse_store(request, tmp_path):
    """A ClickHouse store the CLI reaches: chdb in a directory, or a server over HTTP (the
    chdb-backed test server, in a process of its own), with the environment it needs."""
    if request.param == "chdb":
        yield f"chdb:{tmp_path / 'store'}", {}
        return
    with clickhouse_http.running(tmp_path / "server", "alerts-pass") as port:
        yield (
            f"clickhouse://default@127.0.0.1:{port}/alerts",
            {"RUNS_CLICKHOUSE_PASSWORD": "alerts-pass"},
        )


def test_clickhouse_once_across_processes_then_resolved(tmp_path, http_receiver, clickhouse_store):
    """The same promises on ClickHouse (chdb, and a server over HTTP), each check its own
    process."""
    store, env = clickhouse_store
    runs = write_jsonl(tmp_path / "runs.jsonl", spike_records(now_utc()))
    loaded = run_cli("ingest", str(runs), "--db", store, "--progress", "never", env=env)
    assert loaded.returncode == 0, loaded.stderr
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    assert check(rules, store, env=env).returncode == 0
    assert check(rules, store, env=env).returncode == 0
    assert len(http_receiver.wait_for(1)) == 1
    write_rules(tmp_path, rules_text(http_receiver.url + "/hook", above=0.5))
    assert check(rules, store, env=env).returncode == 0
    assert check(rules, store, env=env).returncode == 0
    texts = [slack_text(request) for request in http_receiver.wait_for(2)]
    assert len(http_receiver.requests) == 2
    assert texts[1].startswith("Resolved: ")
    quiet = check(rules, store, env=env)
    assert "0 opened, 0 resolved; 0 messages sent, 0 pending" in quiet.stdout


def test_a_delivery_being_sent_is_not_sent_by_a_check_beside_it(tmp_path, spike_db, http_receiver):
    """A second check that starts while the first is sending finds its deliveries claimed."""
    rules = load_rules(write_rules(tmp_path, rules_text(http_receiver.url + "/hook")))
    location = DuckDBLocation(spike_db)
    now = now_utc()
    beside: list = []

    def send_and_check_beside(channel, message):
        beside.extend(
            run_check(lambda: open_location(location), rules, now, transport_sender()).delivered
        )
        return transport_sender()(channel, message)

    first = run_check(lambda: open_location(location), rules, now, send_and_check_beside)
    assert [d.delivery.state for d in first.delivered] == ["sent"]
    assert beside == []
    assert len(http_receiver.wait_for(1)) == 1


WATCH = ("-m", "runs_store", "alerts", "watch", "--every", "1")


def test_watch_ends_cleanly_on_ctrl_c(tmp_path, spike_db, http_receiver):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    child = subprocess.Popen(
        [sys.executable, *WATCH, "--rules", str(rules), "--db", str(spike_db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed = []
    for line in child.stdout:  # the first check's lines, up to its summary
        printed.append(line)
        if "Checked 1 rule:" in line:
            break
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "Traceback" not in err and "stopped: every check so far is recorded" in err
    assert any("sent: firing" in line for line in printed)
    assert len(http_receiver.requests) == 1


def test_digest_is_delivered_through_the_outbox_once_per_day(tmp_path, spike_db, http_receiver):
    rules = write_rules(tmp_path, rules_text(http_receiver.url + "/hook"))
    args = ("digest", "--period", "day", "--channel", "ops", "--rules", str(rules))
    shown = run_cli(*args, "--db", str(spike_db), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "would send to ops:" in shown.stdout and "[digest] Daily digest: 40 runs" in shown.stdout
    assert http_receiver.requests == []
    sent = run_cli(*args, "--db", str(spike_db))
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent: digest 'Daily digest: 40 runs")
    assert "Daily digest" in slack_text(http_receiver.wait_for(1)[0])
    again = run_cli(*args, "--db", str(spike_db))
    assert again.returncode == 0 and again.stdout.startswith("already queued: digest")
    assert len(http_receiver.requests) == 1
    unknown = run_cli("digest", "--channel", "sms", "--rules", str(rules), "--db", str(spike_db))
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"error: no channel 'sms' in {rules} (its channels: ops)"


def test_a_new_error_clears_on_its_own_when_its_first_run_leaves_the_window(
    tmp_path, http_receiver
):
    now = now_utc()

    def failed(run_id: str, minutes_ago: int, error: str) -> dict:
        created = (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        step = {"name": "step_1", "displayName": "Call", "message": error}
        return simple_run(run_id, created, "FAILED", flow=FLOW, failedStep=step)

    db = store_with(
        tmp_path / "runs.duckdb",
        [
            failed("a", 50, "Sheet not found"),
            failed("b", 10, "Invalid token"),
            failed("c", 300, "Old"),
        ],
    )
    rules = load_rules(
        write_rules(
            tmp_path,
            f'[channels.ops]\ntype = "slack"\nurl = "{http_receiver.url}/hook"\n'
            '[[rules]]\nname = "New"\nkind = "new_error"\nwindow = "1h"\nchannels = ["ops"]\n',
        )
    )
    location = DuckDBLocation(db)
    first = run_check(lambda: open_location(location), rules, now, transport_sender())
    assert sorted(d.delivery.kind for d in first.delivered) == ["firing", "firing"]
    later = run_check(
        lambda: open_location(location), rules, now + timedelta(minutes=15), transport_sender()
    )
    (resolved,) = later.delivered
    assert resolved.delivery.title == (
        f"Resolved: New · {FLOW}: error 'Sheet not found' is no longer a new error in the last 1h"
    )
    texts = [slack_text(request) for request in http_receiver.wait_for(3)]
    assert sum("Invalid token" in text for text in texts) == 1
