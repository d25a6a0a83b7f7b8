"""Messages sent on request rather than by a rule: a digest (`digest --period day --channel NAME`)
and a test message (the Alerts page's button). Both go through the outbox like an alert, so a
failure is retried by the next check instead of being lost, and a digest is sent once per key
(running the same day's digest twice sends it once)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from runs_store import settings
from runs_store.services.alerts.channels import Message
from runs_store.services.alerts.outbox import (
    Delivered,
    Sender,
    StoreOpener,
    deliver_due,
    message_text,
    new_deliveries,
    transport_sender,
)
from runs_store.services.alerts.rules import RulesFile
from runs_store.store import alert_state


@dataclass(frozen=True)
class SendResult:
    lines: list[str]  # what the CLI prints
    delivered: list[Delivered]
    exit_code: int  # 0 sent (or only shown), 1 pending or failed


def send_digest(
    open_store: StoreOpener,
    rules: RulesFile,
    channel: str,
    period: str,
    now: datetime,
    send: Sender | None,
) -> SendResult:
    """Builds the period's digest and delivers it to `channel`; `send=None` only shows it."""
    from runs_store.services.alerts.digest import build_digest

    app_url = settings.current().app_url
    with open_store() as con:
        message = build_digest(con, period, now, rules.timezone, app_url)
    if not message.key:
        message = replace(message, key=f"digest:{period}:{now:%Y-%m-%d}")
    if send is None:
        return SendResult([f"would send to {channel}:", *message_text(message)], [], 0)
    return send_once(open_store, rules, message, channel, now, send)


def send_once(
    open_store: StoreOpener,
    rules: RulesFile,
    message: Message,
    channel: str,
    now: datetime,
    send: Sender,
) -> SendResult:
    """Queues one message for one channel (once per message key) and delivers it now."""
    row = new_deliveries(message, [channel], now)[0]
    with open_store() as con:
        alert_state.ensure_tables(con)
        with alert_state.atomic(con):
            added = alert_state.add_deliveries(con, [row])
    if not added:
        return SendResult([f"already queued: {message.kind} {message.title!r} to {channel}"], [], 0)
    delivered = deliver_due(open_store, rules, now, send, only={row.id})
    failed = any(d.delivery.state != alert_state.SENT for d in delivered)
    return SendResult([d.line for d in delivered], delivered, 1 if failed or not delivered else 0)


def send_test(
    open_store: StoreOpener, channel_name: str, rules: RulesFile, send: Sender | None = None
) -> Delivered:
    """A test message to one channel, through the outbox: how it went (sent, a configuration
    error, or kept pending for the next check). The store is opened for each step and never
    held while the message is sent, as for an alert."""
    from runs_store.services.alerts.digest import test_message

    now = datetime.now(UTC).replace(tzinfo=None)
    message = replace(test_message(channel_name), key=f"test:{channel_name}:{now.isoformat()}")
    result = send_once(open_store, rules, message, channel_name, now, send or transport_sender())
    return result.delivered[0]
