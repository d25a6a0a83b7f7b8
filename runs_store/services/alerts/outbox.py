"""The outbox: every message to a channel is a row in the store before it is sent, and stays
there until it is delivered or known undeliverable, so no message is dropped or sent twice by
a new process.

A delivery is tried a few times within one check (after 1 s, then 2 s); a temporary failure
(a timeout, 5xx, an SMTP 4xx) then keeps it pending for a later check, due again after as long
as it has been failing (so the waits double, up to 15 minutes). A permanent failure (an HTTP
4xx, a refused login, an unset variable, a channel no longer in the rules file) marks it a
configuration error, reported and not retried.

The store is held only while rows are read and written, never while a message is on its way
(a DuckDB file is the app's too): `deliver_due` takes a way to open the store, not a connection.
It claims the deliveries it is about to send (not due for five minutes), so a check started
meanwhile does not send them too; a check that dies mid-way leaves them to a later one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from runs_store.services.alerts.channels import Channel, Message, Outcome, Section
from runs_store.services.alerts.rules import RulesFile
from runs_store.store import alert_state
from runs_store.store.alert_state import FAILED_CONFIG, PENDING, SENT, DeliveryRow

QUICK_RETRY_SECONDS = (1.0, 2.0)  # within one check, after the first attempt
MAX_BACKOFF = timedelta(minutes=15)
CLAIM_FOR = timedelta(minutes=5)  # longer than a check's attempts at one delivery take

Sender = Callable[[Channel, Message], Outcome]
StoreOpener = Callable[[], AbstractContextManager]


@dataclass(frozen=True)
class Delivered:
    """How one delivery went in this check."""

    delivery: DeliveryRow  # as saved after the attempts
    outcome: Outcome
    attempts: int  # in this check

    @property
    def line(self) -> str:
        row = self.delivery
        what = f"{row.kind} {row.title!r} to {row.channel}"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if row.state == SENT:
            return f"sent: {what} ({self.outcome.detail})"
        if row.state == FAILED_CONFIG:
            return f"configuration error: {what}: {self.outcome.detail} (not retried)"
        due = f"{row.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if row.next_attempt_at else "now"
        return f"not sent: {what}: {self.outcome.detail} ({tries}); kept, due again {due}"


# ---------------------------------------------------------------- messages as stored


def message_json(message: Message) -> str:
    return json.dumps(asdict(message), default=str, ensure_ascii=False)


def message_from_json(text: str) -> Message:
    data = json.loads(text)
    sections = tuple(
        Section(
            s["heading"],
            tuple(s["columns"]),
            tuple(tuple(row) for row in s["rows"]),
            tuple(s.get("links") or ()),
        )
        for s in data.get("sections") or ()
    )
    return Message(
        kind=data["kind"],
        title=data["title"],
        lines=tuple(data.get("lines") or ()),
        facts=tuple(tuple(fact) for fact in data.get("facts") or ()),
        link=data.get("link"),
        key=data.get("key") or "",
        sections=sections,
        data=data.get("data") or {},
    )


def message_text(message: Message) -> list[str]:
    """A message as plain lines, as a dry run shows it."""
    lines = [f"  [{message.kind}] {message.title}"]
    lines += [f"    {line}" for line in message.lines]
    lines += [f"    {label}: {value}" for label, value in message.facts]
    for section in message.sections:
        lines.append(f"    {section.heading}")
        lines.append("      " + " | ".join(section.columns))
        lines += ["      " + " | ".join(row) for row in section.rows]
    if message.link:
        lines.append(f"    {message.link}")
    return lines


def new_deliveries(
    message: Message, channels: Sequence[str], now: datetime, incident_id: str | None = None
) -> list[DeliveryRow]:
    """The outbox rows of one message to each channel (one row per message key and channel)."""
    text = message_json(message)
    return [
        DeliveryRow(
            id=f"{message.key}|{channel}",
            incident_id=incident_id,
            channel=channel,
            kind=message.kind,
            title=message.title,
            message=text,
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            detail=None,
            created_at=now,
            sent_at=None,
        )
        for channel in channels
    ]


# ---------------------------------------------------------------- delivering


def transport_sender(environ: Mapping[str, str] | None = None, timeout: float = 10.0) -> Sender:
    """The transports' `send`, reading secrets from `environ` (os.environ by default)."""
    from runs_store.services.alerts import transport

    env = os.environ if environ is None else environ

    def send(channel: Channel, message: Message) -> Outcome:
        return transport.send(channel, message, environ=env, timeout=timeout)

    return send


def deliver_due(
    open_store: StoreOpener,
    rules: RulesFile,
    now: datetime,
    send: Sender,
    sleep: Callable[[float], None] = time.sleep,
    quick_retries: Sequence[float] = QUICK_RETRY_SECONDS,
    only: set[str] | None = None,
) -> list[Delivered]:
    """Sends every pending delivery that is due (of `only`'s ids, when given), each outcome saved
    as soon as it is known."""
    with open_store() as con:
        due = _claim_due(con, now, only)
    results = []
    for row in due:
        outcome, attempts = _attempt(row, rules, send, sleep, quick_retries)
        saved = settled(row, outcome, attempts, now)
        with open_store() as con:
            alert_state.save_deliveries(con, [saved])
        results.append(Delivered(saved, outcome, attempts))
    return results


def _claim_due(con, now: datetime, only: set[str] | None) -> list[DeliveryRow]:
    """The due deliveries, each marked not due for CLAIM_FOR while this check sends it: a check
    running beside it (cron's next one) does not send it too; if this one dies, the claim runs
    out and a later check sends it."""
    if not alert_state.has_tables(con):
        return []
    due = [row for row in alert_state.due_deliveries(con, now) if only is None or row.id in only]
    with alert_state.atomic(con):
        alert_state.save_deliveries(
            con, [replace(row, next_attempt_at=now + CLAIM_FOR) for row in due]
        )
    return due


def _attempt(
    row: DeliveryRow,
    rules: RulesFile,
    send: Sender,
    sleep: Callable[[float], None],
    quick_retries: Sequence[float],
) -> tuple[Outcome, int]:
    channel = rules.channels.get(row.channel)
    if channel is None:
        detail = f"no channel {row.channel!r} in {rules.path} any more"
        return Outcome(False, detail, permanent=True), 0
    message = message_from_json(row.message)
    attempts = 0
    for delay in (None, *quick_retries):
        if delay is not None:
            sleep(delay)
        attempts += 1
        outcome = _safe_send(send, channel, message)
        if outcome.ok or outcome.permanent:
            break
    return outcome, attempts


def _safe_send(send: Sender, channel: Channel, message: Message) -> Outcome:
    """The transport promises not to raise; should it, the delivery is kept, not lost."""
    try:
        return send(channel, message)
    except Exception as error:
        return Outcome(False, f"could not send: {type(error).__name__}")


def settled(row: DeliveryRow, outcome: Outcome, attempts: int, now: datetime) -> DeliveryRow:
    """The delivery after this check's attempts: sent, a configuration error, or pending with
    the time it is due again."""
    done = replace(row, attempts=row.attempts + attempts, detail=outcome.detail)
    if outcome.ok:
        return replace(done, state=SENT, sent_at=now, next_attempt_at=None)
    if outcome.permanent:
        return replace(done, state=FAILED_CONFIG, next_attempt_at=None)
    waited = max(now - row.created_at, timedelta(0))
    return replace(done, state=PENDING, next_attempt_at=now + min(waited, MAX_BACKOFF))
