"""What a channel is and what is sent to it, shared by the rules file's reader, the outbox and the
transports. A channel's secrets (a Slack URL, an HMAC key, an SMTP password) are kept as `Secret`s
read from the environment at the moment of sending, never stored, logged or shown."""

from __future__ import annotations

from dataclasses import dataclass, field

from runs_store.settings import Secret

CHANNEL_TYPES = ("slack", "webhook", "email")


@dataclass(frozen=True)
class SecretRef:
    """A value written `env:NAME` in the rules file: the variable's name, read when used."""

    env: str


# A URL or key written literally in the rules file, or a reference to an environment variable.
Value = str | SecretRef


@dataclass(frozen=True)
class SlackChannel:
    name: str
    url: Value  # an incoming-webhook URL; shown as its host only


@dataclass(frozen=True)
class WebhookChannel:
    name: str
    url: Value
    secret: Value | None = None  # signs the body: X-Runs-Signature: sha256=<hex HMAC-SHA256>


@dataclass(frozen=True)
class EmailChannel:
    name: str
    smtp: str  # smtp://host:port (STARTTLS when offered) or smtps://host:port (TLS)
    sender: str  # the file's `from`
    to: tuple[str, ...]
    user: SecretRef | None = None  # `user = "env:SMTP_USER"`
    password: SecretRef | None = None  # `password = "env:SMTP_PASSWORD"`: never a literal


Channel = SlackChannel | WebhookChannel | EmailChannel


@dataclass(frozen=True)
class Message:
    """One thing to tell a channel. Every transport renders the same fields its own way: Slack as
    blocks, a webhook as JSON of these fields, email as HTML and plain text."""

    kind: str  # "firing" | "resolved" | "digest" | "test"
    title: str  # one line, e.g. "Invoices failing: failure rate 34% (17 of 50 runs) > 20% in 1h"
    lines: tuple[str, ...] = ()  # plain-text lines with the numbers
    facts: tuple[tuple[str, str], ...] = ()  # (label, value): rule, flow, window, measured, limit
    link: str | None = None  # the matching runs: RUNS_APP_URL + the Runs page's URL state
    key: str = ""  # stable per incident and kind: receivers may deduplicate on it
    sections: tuple[Section, ...] = ()  # digest tables; empty for an alert
    data: dict = field(default_factory=dict)  # the raw numbers, sent as they are in a webhook


@dataclass(frozen=True)
class Section:
    """A small table of a digest: a heading, column names and rows of text (each row may link)."""

    heading: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    links: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """How one attempt to send went. `permanent` marks what retrying cannot fix (a 4xx answer, a
    refused login, a missing variable): reported as a configuration error, not retried."""

    ok: bool
    detail: str  # one line, no secret: "HTTP 204", "timed out after 10 s", "SMTP 550 ..."
    permanent: bool = False


def secret_value(value: Value | None, environ) -> Secret | None:
    """The text a `Value` stands for, wrapped so it never prints; None when not set."""
    if value is None:
        return None
    if isinstance(value, SecretRef):
        text = environ.get(value.env)
        return Secret(text) if text else None
    return Secret(value)
