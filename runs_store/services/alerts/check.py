"""One alerts check: judge every rule, open an incident for each judgement newly firing and
queue its message, resolve each open incident whose rule and flow are judged ok again and queue
the "resolved" message, then deliver what is due.

An incident is a rule firing on a flow (and, for new_error, one signature), from its first
firing until a check judges that flow ok; it is told once when it opens and once when it
resolves, whatever happens in between. While a flow has too few runs to judge, its incident
stays open. An incident whose rule left the rules file, or whose flow the rule no longer
watches, is closed without a message.

`plan_check` only reads, so `--dry-run` shows exactly what a check would do; `apply_plan`
writes the plan in one transaction (on ClickHouse: the outbox rows before the incident that
sends them, each incident numbered per rule, flow and detail, so a check cut short and run again
writes the same rows).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from runs_store.domain.formatting import short_duration
from runs_store.services.alerts.channels import Message
from runs_store.services.alerts.evaluate import (
    FIRING,
    NOT_ENOUGH_RUNS,
    OK,
    Judgement,
    evaluate,
    known_flows,
    percent,
    runs_link,
)
from runs_store.services.alerts.outbox import (
    QUICK_RETRY_SECONDS,
    Delivered,
    Sender,
    StoreOpener,
    deliver_due,
    new_deliveries,
)
from runs_store.services.alerts.rules import RulesFile, flow_warnings
from runs_store.store import alert_state
from runs_store.store.alert_state import CheckRow, DeliveryRow, IncidentRow


@dataclass(frozen=True)
class Telling:
    """A message a check queues (or, in a dry run, would queue) for the rule's channels."""

    message: Message
    channels: tuple[str, ...]
    incident_id: str


@dataclass
class Plan:
    """What one check found and what it will write."""

    now: datetime
    judgements: list[Judgement]
    checks: list[CheckRow]
    previous_checks: list[CheckRow]
    incidents: list[IncidentRow] = field(default_factory=list)  # opened, updated or closed
    tellings: list[Telling] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # one line per state change
    warnings: list[str] = field(default_factory=list)

    @property
    def firing(self) -> int:
        return sum(1 for j in self.judgements if j.state == FIRING)


@dataclass(frozen=True)
class CheckResult:
    plan: Plan
    delivered: list[Delivered]
    pending: int  # deliveries still pending after this check

    @property
    def exit_code(self) -> int:
        failed = any(d.delivery.state != alert_state.SENT for d in self.delivered)
        return 1 if failed or self.pending else 0

    @property
    def line(self) -> str:
        plan = self.plan
        opened = sum(1 for t in plan.tellings if t.message.kind == FIRING)
        resolved = sum(1 for t in plan.tellings if t.message.kind == "resolved")
        sent = sum(1 for d in self.delivered if d.delivery.state == alert_state.SENT)
        failed = sum(1 for d in self.delivered if d.delivery.state == alert_state.FAILED_CONFIG)
        rules = len({j.rule for j in plan.judgements})
        return (
            f"Checked {rules} rule{'' if rules == 1 else 's'}: {plan.firing} firing, "
            f"{opened} opened, {resolved} resolved; {sent} messages sent, {self.pending} "
            f"pending, {failed} configuration errors"
        )


def run_check(
    open_store: StoreOpener,
    rules: RulesFile,
    now: datetime,
    send: Sender,
    sleep: Callable[[float], None] | None = None,
    quick_retries: Sequence[float] | None = None,
) -> CheckResult:
    """Judges, records and delivers: the store is held while judging and writing, not while
    messages are on their way."""
    with open_store() as con:
        alert_state.ensure_tables(con)
        plan = plan_check(con, rules, now)
        apply_plan(con, plan)
    delivered = deliver_due(
        open_store,
        rules,
        now,
        send,
        sleep or time.sleep,
        QUICK_RETRY_SECONDS if quick_retries is None else quick_retries,
    )
    with open_store() as con:
        pending = len(alert_state.pending_deliveries(con))
    return CheckResult(plan, delivered, pending)


# ---------------------------------------------------------------- planning


def plan_check(con, rules: RulesFile, now: datetime) -> Plan:
    """What a check at `now` finds and would write; reads only."""
    flows = known_flows(con)
    judgements = evaluate(con, rules, now, flows)
    previous = alert_state.read_checks(con)
    plan = Plan(now, judgements, _check_rows(judgements, previous, now), previous)
    plan.warnings = flow_warnings(rules, flows)
    plan.changes = _changes(judgements, previous)
    open_now = alert_state.open_incidents(con) if alert_state.has_tables(con) else []
    _plan_firings(con, plan, rules, open_now)
    _plan_resolutions(plan, rules, open_now)
    return plan


def _check_rows(judgements: list[Judgement], previous: list[CheckRow], now) -> list[CheckRow]:
    before = {(row.rule, row.flow, row.detail): row for row in previous}
    rows = []
    for j in judgements:
        last = before.get(j.key)
        since = last.since if last and last.state == j.state else now
        rows.append(
            CheckRow(
                j.rule,
                j.flow,
                j.detail,
                j.kind,
                j.state,
                j.measured,
                j.threshold,
                j.runs,
                j.window_start,
                j.window_end,
                j.summary,
                json.dumps(j.query),
                since,
                now,
            )
        )
    return rows


def _changes(judgements: list[Judgement], previous: list[CheckRow]) -> list[str]:
    """A line per rule and flow whose state is not what the last check found (never checked
    before: only what fires)."""
    before = {(row.rule, row.flow, row.detail): row.state for row in previous}
    lines = []
    for j in judgements:
        was = before.get(j.key)
        if was != j.state and (was is not None or j.state == FIRING):
            what = f"{j.rule} · {j.flow}" + (f" · {j.detail}" if j.detail else "")
            lines.append(f"{what}: {was or 'new'} -> {j.state}: {j.summary}")
    return lines


def _plan_firings(con, plan: Plan, rules: RulesFile, open_now: list[IncidentRow]) -> None:
    by_key = {(i.rule, i.flow, i.detail): i for i in open_now}
    for j in plan.judgements:
        if j.state != FIRING:
            continue
        known = by_key.get(j.key)
        if known is not None:
            plan.incidents.append(_seen(known, j))
            continue
        number = _incidents_so_far(con, j) + 1
        opened = _opened(j, incident_id(j.rule, j.flow, j.detail, number))
        rule = rules.rule(j.rule)
        plan.incidents.append(opened)
        plan.tellings.append(
            Telling(firing_message(opened), rule.channels if rule else (), opened.id)
        )


def _incidents_so_far(con, judgement: Judgement) -> int:
    if not alert_state.has_tables(con):
        return 0
    return alert_state.incidents_of(con, judgement.rule, judgement.flow, judgement.detail)


def _plan_resolutions(plan: Plan, rules: RulesFile, open_now: list[IncidentRow]) -> None:
    firing = {j.key for j in plan.judgements if j.state == FIRING}
    judged = {(j.rule, j.flow): j for j in plan.judgements if j.state != NOT_ENOUGH_RUNS}
    watched = {(j.rule, j.flow) for j in plan.judgements}
    for known in open_now:
        if (known.rule, known.flow, known.detail) in firing:
            continue
        rule = rules.rule(known.rule)
        if rule is None:
            plan.incidents.append(_closed(known, plan.now, "the rule left the rules file"))
        elif (known.rule, known.flow) not in watched:
            plan.incidents.append(_closed(known, plan.now, "the rule no longer watches the flow"))
        elif (known.rule, known.flow) in judged:
            cleared = _closed(known, plan.now, "cleared")
            now_judged = _judged_for(known, judged[(known.rule, known.flow)], rule.window_text)
            plan.incidents.append(cleared)
            plan.tellings.append(
                Telling(resolved_message(cleared, now_judged), rule.channels, cleared.id)
            )


def _judged_for(known: IncidentRow, judged: Judgement, window_text: str) -> Judgement:
    """The flow's judgement as it bears on this incident: for a new error, about its own
    signature (the flow's judgement may be about another one)."""
    if not known.detail:
        return judged
    summary = f"error {known.detail!r} is no longer a new error in the last {window_text}"
    return replace(judged, detail=known.detail, state=OK, measured=None, runs=0, summary=summary)


def incident_id(rule: str, flow: str, detail: str, number: int) -> str:
    """The n-th incident of a rule, flow and detail: the same id whoever computes it."""
    text = "\0".join((rule, flow, detail, str(number)))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _opened(j: Judgement, new_id: str) -> IncidentRow:
    return IncidentRow(
        new_id,
        j.rule,
        j.flow,
        j.detail,
        j.kind,
        j.window_end,
        j.window_end,
        None,
        None,
        j.measured,
        j.threshold,
        j.runs,
        j.window_start,
        j.window_end,
        j.summary,
        json.dumps(j.query),
    )


def _seen(known: IncidentRow, j: Judgement) -> IncidentRow:
    return replace(
        known,
        last_seen_at=j.window_end,
        measured=j.measured,
        threshold=j.threshold,
        runs=j.runs,
        window_start=j.window_start,
        window_end=j.window_end,
        summary=j.summary,
        query=json.dumps(j.query),
    )


def _closed(known: IncidentRow, now: datetime, why: str) -> IncidentRow:
    return replace(known, resolved_at=now, resolution=why)


# ---------------------------------------------------------------- messages


def _facts(incident: IncidentRow, judged: Judgement | None = None) -> tuple[tuple[str, str], ...]:
    measured = judged.measured if judged else incident.measured
    facts = [
        ("Rule", incident.rule),
        ("Kind", incident.kind),
        ("Flow", incident.flow),
    ]
    if incident.detail:
        facts.append(("Error signature", incident.detail))
    start = judged.window_start if judged else incident.window_start
    end = judged.window_end if judged else incident.window_end
    facts += [
        ("Window", f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"),
        ("Measured", shown_value(incident.kind, measured)),
        (
            "Threshold",
            shown_value(incident.kind, judged.threshold if judged else incident.threshold),
        ),
        ("Runs counted", f"{(judged.runs if judged else incident.runs):,}"),
    ]
    return tuple(facts)


def shown_value(kind: str, value: float | None) -> str:
    """A measure or a threshold as people read it: a rate in percent, a duration, a count."""
    if value is None:
        return "-"
    if kind == "failure_rate":
        return percent(value)
    if kind == "slow":
        return short_duration(value)
    return f"{value:,.0f} runs"


def _data(incident: IncidentRow, state: str, judged: Judgement | None = None) -> dict:
    return {
        "incident": incident.id,
        "state": state,
        "rule": incident.rule,
        "kind": incident.kind,
        "flow": incident.flow,
        "signature": incident.detail or None,
        "measured": judged.measured if judged else incident.measured,
        "threshold": judged.threshold if judged else incident.threshold,
        "runs": judged.runs if judged else incident.runs,
        "window_start": (judged.window_start if judged else incident.window_start).isoformat(),
        "window_end": (judged.window_end if judged else incident.window_end).isoformat(),
        "opened_at": incident.opened_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
    }


def firing_message(incident: IncidentRow) -> Message:
    where = f"{incident.rule} · {incident.flow}"
    return Message(
        kind=FIRING,
        title=f"{where}: {incident.summary}",
        lines=(
            f"Rule {incident.rule!r} fires for flow {incident.flow!r}: {incident.summary}.",
            "You will get one more message when it clears.",
        ),
        facts=_facts(incident),
        link=runs_link(json.loads(incident.query)),
        key=f"{incident.id}:firing",
        data=_data(incident, FIRING),
    )


def resolved_message(incident: IncidentRow, judged: Judgement) -> Message:
    where = f"{incident.rule} · {incident.flow}"
    since = f"{incident.opened_at:%Y-%m-%d %H:%M} UTC"
    return Message(
        kind="resolved",
        title=f"Resolved: {where}: {judged.summary}",
        lines=(
            f"Rule {incident.rule!r} no longer fires for flow {incident.flow!r}: {judged.summary}.",
            f"It fired from {since}: {incident.summary}.",
        ),
        facts=_facts(incident, judged),
        link=runs_link(json.loads(incident.query)),
        key=f"{incident.id}:resolved",
        data=_data(incident, "resolved", judged),
    )


# ---------------------------------------------------------------- writing


def apply_plan(con, plan: Plan) -> list[DeliveryRow]:
    """Writes the plan: the checks, the outbox rows, then the incidents (see the module's
    docstring); returns the deliveries it queued."""
    queued: list[DeliveryRow] = []
    with alert_state.atomic(con):
        alert_state.replace_checks(con, plan.checks, plan.previous_checks)
        for telling in plan.tellings:
            rows = new_deliveries(telling.message, telling.channels, plan.now, telling.incident_id)
            queued += alert_state.add_deliveries(con, rows)
        alert_state.save_incidents(con, plan.incidents)
    return queued


def dry_run_lines(plan: Plan, pending: list[DeliveryRow]) -> list[str]:
    """What a check would send, per channel, as text: nothing is written or sent."""
    lines = []
    for telling in plan.tellings:
        for channel in telling.channels:
            lines.append(
                f"would send to {channel}: [{telling.message.kind}] {telling.message.title}"
            )
            lines += [f"    {line}" for line in telling.message.lines]
            lines += [f"    {label}: {value}" for label, value in telling.message.facts]
            if telling.message.link:
                lines.append(f"    {telling.message.link}")
    for row in pending:
        lines.append(f"would retry to {row.channel}: [{row.kind}] {row.title}")
    return lines
