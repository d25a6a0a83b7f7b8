"""Everything the Alerts page shows, in one call: each rule's state now per flow (judged on the
store as the page opens, with since when it has been so by the checks' record), the last
incidents and deliveries with their outcome, a drill-down to the runs behind each, and the
channels described without their secrets. Plus `send_test`, the page's "send a test message"
button. The page holds no SQL: it reads `alerts_status` and draws.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from runs_store import settings
from runs_store.queries.view_state import RunsView
from runs_store.services.alerts.check import shown_value
from runs_store.services.alerts.evaluate import (
    FIRING,
    NOT_ENOUGH_RUNS,
    OK,
    evaluate,
    known_flows,
    runs_link,
)
from runs_store.services.alerts.outbox import Sender, StoreOpener
from runs_store.services.alerts.rules import Rule, RulesFile, flow_warnings, load_rules
from runs_store.services.alerts.sending import send_test as _send_test
from runs_store.store import alert_state
from runs_store.store.alert_state import CheckRow, DeliveryRow, IncidentRow

NOT_CHECKED = "not checked"


@dataclass(frozen=True)
class FlowState:
    """A rule on one flow (a new error: one signature) now."""

    flow: str
    detail: str  # the new error's signature; ""
    state: str  # firing | ok | not enough runs
    measured: str  # as people read it: "34%", "8.2 s", "12 runs"
    threshold: str
    runs: int
    summary: str  # the one line a message would say
    since: datetime | None  # when it came to this state, as far as the checks know
    view: RunsView  # the Runs page's view of the runs behind it
    link: str  # RUNS_APP_URL's Runs page with that view


@dataclass(frozen=True)
class RuleStatus:
    rule: Rule
    description: str  # "failure rate above 20% in 1h, on 10 runs or more"
    channels: tuple[str, ...]
    flows: tuple[FlowState, ...]  # firing first

    @property
    def state(self) -> str:
        states = {flow.state for flow in self.flows}
        for state in (FIRING, OK, NOT_ENOUGH_RUNS):
            if state in states:
                return state
        return NOT_CHECKED


@dataclass(frozen=True)
class Delivery:
    """One message to one channel and how it went."""

    id: str
    channel: str
    kind: str  # firing | resolved | digest | test
    title: str
    state: str  # pending | sent | failed_config
    attempts: int
    outcome: str | None  # the last attempt's detail, no secret
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    incident_id: str | None


@dataclass(frozen=True)
class Firing:
    """One incident: a rule firing on a flow, from opened to resolved."""

    id: str
    rule: str
    flow: str
    detail: str
    kind: str
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    summary: str  # its last firing judgement
    measured: str
    threshold: str
    runs: int
    view: RunsView  # the drill-down to its runs
    link: str
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True)
class ChannelStatus:
    name: str
    type: str
    description: str  # where it goes, never a secret (transport.describe)
    pending: int
    last_outcome: str | None


@dataclass(frozen=True)
class AlertsStatus:
    rules_path: str
    checked_at: datetime  # when the rules were judged for this status
    last_check_at: datetime | None  # the last `alerts check` that recorded its judgements
    rules: tuple[RuleStatus, ...]
    firings: tuple[Firing, ...]  # newest first
    deliveries: tuple[Delivery, ...]  # newest first
    channels: tuple[ChannelStatus, ...]
    warnings: tuple[str, ...]  # a rule's flow that has no run in the store (rules.flow_warnings)


def configured_rules(path: str | None = None) -> RulesFile | None:
    """The rules file RUNS_ALERTS (or `path`) names, None when none is set; RulesError (its
    `lines`) when it has mistakes."""
    chosen = path or settings.current().alerts
    return load_rules(chosen) if chosen else None


def alerts_status(
    con,
    rules: RulesFile,
    limit: int = 20,
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
) -> AlertsStatus:
    """What the Alerts page shows; reads only (a read-only connection will do)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    recorded = alert_state.read_checks(con)
    deliveries = [_delivery(row) for row in alert_state.recent_deliveries(con, limit)]
    incidents = alert_state.recent_incidents(con, limit)
    flows = known_flows(con)
    return AlertsStatus(
        rules.path,
        now,
        max((row.checked_at for row in recorded), default=None),
        _rules_now(con, rules, now, recorded, flows),
        tuple(_firing(con, incident) for incident in incidents),
        tuple(deliveries),
        _channels(con, rules, environ),
        tuple(flow_warnings(rules, flows)),
    )


def send_test(
    open_store: StoreOpener, channel_name: str, rules: RulesFile, send: Sender | None = None
) -> Delivery:
    """The "send a test message" button: a test message to the channel through the outbox,
    delivered now (or kept for the next check, or a configuration error), and how it went.
    `open_store` opens the store for each step: it is not held while the message is sent."""
    return _delivery(_send_test(open_store, channel_name, rules, send).delivery)


# ---------------------------------------------------------------- rules now


def _rules_now(con, rules: RulesFile, now: datetime, recorded: list[CheckRow], known: list[str]):
    judged = evaluate(con, rules, now, known)
    since = {(row.rule, row.flow, row.detail): row for row in recorded}
    statuses = []
    for rule in rules.rules:
        flows = []
        for j in (j for j in judged if j.rule == rule.name):
            last = since.get(j.key)
            view, _ = RunsView.from_query(j.query)
            flows.append(
                FlowState(
                    j.flow,
                    j.detail,
                    j.state,
                    shown_value(j.kind, j.measured),
                    shown_value(j.kind, j.threshold),
                    j.runs,
                    j.summary,
                    last.since if last and last.state == j.state else None,
                    view,
                    j.link,
                )
            )
        order = {FIRING: 0, NOT_ENOUGH_RUNS: 2, OK: 1}
        flows.sort(key=lambda f: (order[f.state], f.flow, f.detail))
        statuses.append(RuleStatus(rule, describe_rule(rule), rule.channels, tuple(flows)))
    return tuple(statuses)


def describe_rule(rule: Rule) -> str:
    """A rule in one line: "failure rate above 20% in 1h, on 10 runs or more"."""
    span = f"in {rule.window_text}"
    above = shown_value(rule.kind, rule.above)
    where = f" of {', '.join(rule.flows)}" if rule.flows else " of every flow"
    text = {
        "failure_rate": f"failure rate above {above} {span}, on {rule.min_runs} runs or more",
        "failed_runs": f"more than {above} failed {span}",
        "quota_exceeded": f"more than {above} hit the quota {span}",
        "new_error": f"a new error signature in more than {above} {span}",
        "slow": f"p95 duration above {above} {span}, on {rule.min_runs} runs or more",
        "no_runs": f"no runs {span} after earlier runs",
    }[rule.kind]
    return text + where


# ---------------------------------------------------------------- firings and deliveries


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        row.id,
        row.channel,
        row.kind,
        row.title,
        row.state,
        row.attempts,
        row.detail or None,
        row.created_at,
        row.sent_at,
        row.next_attempt_at,
        row.incident_id,
    )


def _firing(con, incident: IncidentRow) -> Firing:
    query = json.loads(incident.query)
    view, _ = RunsView.from_query(query)
    return Firing(
        incident.id,
        incident.rule,
        incident.flow,
        incident.detail,
        incident.kind,
        incident.opened_at,
        incident.last_seen_at,
        incident.resolved_at,
        incident.resolution or None,
        incident.summary,
        shown_value(incident.kind, incident.measured),
        shown_value(incident.kind, incident.threshold),
        incident.runs,
        view,
        runs_link(query),
        tuple(_delivery(row) for row in alert_state.deliveries_of(con, incident.id)),
    )


def _channels(con, rules: RulesFile, environ) -> tuple[ChannelStatus, ...]:
    from runs_store.services.alerts.transport import describe

    pending = alert_state.pending_deliveries(con)
    last = {}
    for row in reversed(alert_state.recent_deliveries(con, 200)):
        last[row.channel] = row.detail
    env = os.environ if environ is None else environ
    return tuple(
        ChannelStatus(
            name,
            type(channel).__name__.removesuffix("Channel").lower(),
            describe(channel, env),
            sum(1 for row in pending if row.channel == name),
            last.get(name) or None,
        )
        for name, channel in rules.channels.items()
    )
