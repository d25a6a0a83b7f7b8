"""The Alerts page's read service: each rule's state now per flow with since when, the firings and
their deliveries with a drill-down to the runs, channels without secrets, and the test button;
on DuckDB and chdb."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import pytest

from backends import BACKENDS, opened
from conftest import now_utc
from factories import store_with
from receivers import Reply
from runs_store.queries.view_state import RunsView
from runs_store.services.alerts.check import run_check
from runs_store.services.alerts.outbox import transport_sender
from runs_store.services.alerts.rules import load_rules
from runs_store.services.alerts.status import alerts_status, send_test
from runs_store.services.runs_list import count_runs
from runs_store.store import alert_state
from runs_store.store.backend import open_location
from runs_store.store.location import DuckDBLocation
from test_alert_delivery import FLOW, rules_text, spike_records, write_rules

SECRET_URL_PATH = "/services/T0/B0/s3cr3t-token"


@pytest.fixture(params=BACKENDS)
def spike_con(request, tmp_path):
    path = store_with(tmp_path / "runs.duckdb", spike_records(now_utc()))
    with opened(request.param, path, request, read_only=False) as con:
        yield con


def test_a_store_never_checked_shows_the_rules_judged_now(tmp_path, http_receiver):
    path = store_with(tmp_path / "runs.duckdb", spike_records(now_utc()))
    rules = load_rules(write_rules(tmp_path, rules_text(http_receiver.url + "/hook")))
    with opened("duckdb", path, None) as con:  # read-only, and no alert tables yet
        status = alerts_status(con, rules)
    (rule,) = status.rules
    assert rule.state == "firing" and status.last_check_at is None
    (flow,) = rule.flows
    assert (flow.flow, flow.measured, flow.threshold, flow.runs) == (FLOW, "40%", "20%", 20)
    assert flow.since is None
    assert status.firings == () and status.deliveries == ()
    assert rule.description == (f"failure rate above 20% in 1h, on 10 runs or more of {FLOW}")


def test_after_a_check_firings_deliveries_and_the_drill_down(
    tmp_path, spike_con, http_receiver, monkeypatch
):
    monkeypatch.setenv("RUNS_TEST_SLACK", http_receiver.url + SECRET_URL_PATH)
    rules = load_rules(write_rules(tmp_path, rules_text("env:RUNS_TEST_SLACK")))
    now = now_utc()
    run_check(lambda: nullcontext(spike_con), rules, now, transport_sender())
    status = alerts_status(spike_con, rules)
    (flow,) = status.rules[0].flows
    assert (flow.state, flow.since) == ("firing", now)
    assert status.last_check_at == now
    (firing,) = status.firings
    assert (firing.flow, firing.opened_at, firing.resolved_at) == (FLOW, now, None)
    assert [(d.kind, d.channel, d.state) for d in firing.deliveries] == [("firing", "ops", "sent")]
    assert status.deliveries == firing.deliveries
    days = firing.view.run_filter(now, now.date(), UTC)
    assert count_runs(spike_con, days.with_(since=now - rules.rules[0].window, until=now)) == 8
    assert RunsView.from_query(parse_qs(urlsplit(firing.link).query))[0] == firing.view
    (channel,) = status.channels
    assert channel.name == "ops" and channel.pending == 0
    assert "s3cr3t" not in repr(status) and "RUNS_TEST_SLACK" in channel.description


def test_send_test_delivers_through_the_outbox(tmp_path, spike_con, http_receiver):
    rules = load_rules(write_rules(tmp_path, rules_text(http_receiver.url + "/hook")))
    sent = send_test(lambda: nullcontext(spike_con), "ops", rules)
    assert (sent.kind, sent.state, sent.attempts) == ("test", "sent", 1)
    (request,) = http_receiver.wait_for(1)
    assert "Test message" in request.json()["text"]
    http_receiver.answer(Reply(404, b"no_service"))
    refused = send_test(lambda: nullcontext(spike_con), "ops", rules)
    assert refused.state == "failed_config" and "HTTP 404" in refused.outcome
    kinds = [row.state for row in alert_state.recent_deliveries(spike_con)]
    assert sorted(kinds) == ["failed_config", "sent"]


def test_a_test_message_is_sent_with_the_store_closed(tmp_path, http_receiver):
    path = store_with(tmp_path / "runs.duckdb", spike_records(now_utc()))
    rules = load_rules(write_rules(tmp_path, rules_text(http_receiver.url + "/hook")))
    held = []

    @contextmanager
    def open_store():
        held.append(True)
        with open_location(DuckDBLocation(path)) as con:
            yield con
        held.pop()

    def send(channel, message):
        assert not held, "the store is open while the message is sent"
        return transport_sender()(channel, message)

    sent = send_test(open_store, "ops", rules, send)
    assert sent.state == "sent" and http_receiver.wait_for(1)
