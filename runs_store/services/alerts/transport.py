"""One attempt to deliver a message to a channel, and how a channel is shown without its secrets.

`send` never raises for a network or protocol fault: it returns an `Outcome` whose detail is one
line naming the host (never a URL's path or query, where a Slack webhook keeps its token) and
whose `permanent` flag tells the outbox whether retrying can help. It does not retry itself (the
outbox retries with backoff) and follows no redirect to another host.

- HTTP (Slack, webhooks): 2xx is delivered; 408, 429 and 5xx, timeouts, refused connections and
  unresolved hosts are worth retrying; any other answer (400, 403, 404, a redirect elsewhere) is
  permanent: a configuration to fix.
- SMTP: a 4xx reply, a timeout or a lost connection is worth retrying; a 5xx reply, a refused
  login or an untrusted certificate is permanent.
- A secret whose variable is not set is permanent, and the detail names the variable.

A webhook with a secret is signed: `X-Runs-Signature: sha256=<hex>` is the HMAC-SHA256, keyed by
the secret, of `<X-Runs-Timestamp>.<body>` (docs/alerts.md shows a receiver's check).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.message import EmailMessage
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from runs_store.services.alerts.channels import (
    Channel,
    EmailChannel,
    Message,
    Outcome,
    SecretRef,
    SlackChannel,
    Value,
    WebhookChannel,
)
from runs_store.services.alerts.render import email_message, slack_payload, webhook_body

SIGNATURE_HEADER = "X-Runs-Signature"
TIMESTAMP_HEADER = "X-Runs-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "runs-explorer-alerts/1"
MAX_REDIRECTS = 2
RETRYABLE_STATUSES = frozenset({408, 429})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SMTP_PORTS = {"smtp": 25, "smtps": 465}


class _Refused(Exception):
    """A reason to stop before sending, as the Outcome it becomes."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.detail)
        self.outcome = outcome


def send(
    channel: Channel,
    message: Message,
    environ: Mapping[str, str] = os.environ,
    timeout: float = 10.0,
) -> Outcome:
    """Deliver `message` to `channel` once; never raises for a network or protocol fault."""
    secrets: list[str] = []
    try:
        if isinstance(channel, SlackChannel):
            outcome = _send_slack(channel, message, environ, timeout, secrets)
        elif isinstance(channel, WebhookChannel):
            outcome = _send_webhook(channel, message, environ, timeout, secrets)
        else:
            outcome = _send_email(channel, message, environ, timeout, secrets)
    except _Refused as refused:
        outcome = refused.outcome
    return _scrubbed(outcome, secrets)


def _scrubbed(outcome: Outcome, secrets: list[str]) -> Outcome:
    """The outcome with any secret text that slipped into its detail replaced."""
    detail = outcome.detail.replace("\n", " ").replace("\r", " ")
    for secret in sorted(secrets, key=len, reverse=True):
        detail = detail.replace(secret, "***")
    return Outcome(outcome.ok, detail[:500], outcome.permanent)


def _needed(value: Value | None, environ: Mapping[str, str], what: str, secrets: list) -> str:
    """The text of a setting, or a permanent refusal naming the variable that is not set."""
    if isinstance(value, SecretRef):
        text = environ.get(value.env) or ""
        if not text:
            raise _Refused(Outcome(False, f"{value.env} is not set ({what})", permanent=True))
    else:
        text = value or ""
    secrets.extend(_secret_parts(text))
    return text


def _secret_parts(text: str) -> list[str]:
    """The text and, for a URL, its parts that may hold a token on their own (a Slack URL's
    path segments, a query): scrubbed from any detail, should an answer echo them."""
    parts = [text]
    try:
        url = urlsplit(text)
    except ValueError:
        return parts
    if url.scheme and url.netloc:
        parts += [url.path, url.query, url.password or ""]
        parts += [segment for segment in url.path.split("/") if len(segment) >= 8]
    return [part for part in parts if len(part) >= 4 and part != "/"]


# ------------------------------------------------------------------ HTTP: Slack and webhooks


def _send_slack(
    channel: SlackChannel, message: Message, environ, timeout: float, secrets: list
) -> Outcome:
    url = _needed(channel.url, environ, "the Slack webhook URL", secrets)
    body = _json_bytes(slack_payload(message))
    return post(url, body, {"Content-Type": "application/json"}, timeout)


def _json_bytes(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _send_webhook(
    channel: WebhookChannel, message: Message, environ, timeout: float, secrets: list
) -> Outcome:
    url = _needed(channel.url, environ, "the webhook URL", secrets)
    key = _needed(channel.secret, environ, "the webhook secret", secrets) if channel.secret else ""
    sent_at = datetime.now(UTC)
    body = webhook_body(message, sent_at)
    return post(url, body, webhook_headers(body, message.key, key, sent_at), timeout)


def webhook_headers(body: bytes, message_key: str, secret: str, sent_at: datetime) -> dict:
    """The webhook's headers: JSON, the message key to deduplicate on, and the signature when a
    secret is set."""
    headers = {"Content-Type": "application/json"}
    if message_key:
        headers[IDEMPOTENCY_HEADER] = _header_safe(message_key)
    if secret:
        timestamp = str(int(sent_at.timestamp()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` keyed by the secret."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    given: str,
    now: float | None = None,
    tolerance_seconds: float = 300,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within the tolerance."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(
        signature(secret, timestamp, body), given
    )


def _header_safe(text: str) -> str:
    return re.sub(r"[^\x20-\x7e]", "_", text)[:200]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """POST `body` once; follow a redirect only to the same host (never downgrading https)."""
    try:
        host = _http_host(url)
    except ValueError as error:
        return Outcome(False, str(error), permanent=True)
    http = urllib3.PoolManager(
        retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout)
    )
    headers = {"User-Agent": USER_AGENT, **headers}
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = http.request("POST", url, body=body, headers=headers, redirect=False)
            if response.status not in REDIRECT_STATUSES:
                return http_outcome(response.status, host, response.data)
            url, refusal = _redirect_target(url, response.headers.get("Location"), response.status)
            if refusal:
                return refusal
        return Outcome(False, f"more than {MAX_REDIRECTS} redirects from {host}", permanent=True)
    except HTTPError as error:
        return _http_fault(error, host, timeout)
    finally:
        http.clear()


def _http_host(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL is not an http:// or https:// URL with a host")
    return parts.hostname


def _redirect_target(url: str, location: str | None, status: int) -> tuple[str, Outcome | None]:
    here = urlsplit(url)
    target = urljoin(url, location or "")
    there = urlsplit(target)
    same_host = there.hostname == here.hostname and bool(location)
    downgrade = here.scheme == "https" and there.scheme != "https"
    if same_host and not downgrade and there.scheme in ("http", "https"):
        return target, None
    elsewhere = there.hostname or "nowhere"
    detail = f"HTTP {status} from {here.hostname}: a redirect to {elsewhere} is not followed"
    return url, Outcome(False, detail, permanent=True)


def http_outcome(status: int, host: str, body: bytes) -> Outcome:
    """2xx delivered; 408, 429 and 5xx worth retrying; any other status permanent."""
    if 200 <= status < 300:
        return Outcome(True, f"HTTP {status} from {host}")
    reason = _answer_text(body)
    detail = f"HTTP {status} from {host}" + (f": {reason}" if reason else "")
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return Outcome(False, detail, permanent=not retryable)


def _answer_text(body: bytes) -> str:
    """The start of an error answer (Slack's "no_service"), as one short printable line."""
    text = body[:300].decode("utf-8", "replace")
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s.,:;!?'\"()/@#%+=_-]", "", text)).strip()[:120]


def _http_fault(error: HTTPError, host: str, timeout: float) -> Outcome:
    # NameResolutionError is a NewConnectionError, which is a ConnectTimeoutError: most
    # specific first.
    if isinstance(error, NameResolutionError):
        return Outcome(False, f"could not resolve {host}")
    if isinstance(error, NewConnectionError) and not _timed_out(error):
        return Outcome(False, f"could not connect to {host}: {_os_reason(error)}")
    if isinstance(error, Urllib3Timeout):
        return Outcome(False, f"timed out after {timeout:g} s waiting for {host}")
    if isinstance(error, SSLError):
        return _tls_fault(error, host)
    if isinstance(error, LocationParseError):
        return Outcome(False, "the URL cannot be read", permanent=True)
    if isinstance(error, ProtocolError):
        return Outcome(False, f"the connection to {host} broke: {_os_reason(error)}")
    return Outcome(False, f"HTTP error talking to {host}: {type(error).__name__}")


def _timed_out(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, socket.timeout | TimeoutError) and not isinstance(seen, HTTPError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _os_reason(error: BaseException) -> str:
    """The operating system's words for a network fault ("Connection refused"), never a URL."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return "connection failed"


def _tls_fault(error: BaseException, host: str) -> Outcome:
    """An untrusted certificate is a configuration to fix; another TLS fault may pass."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            reason = seen.verify_message or "verification failed"
            return Outcome(False, f"TLS certificate of {host} not trusted: {reason}", True)
        seen = seen.__cause__ or seen.__context__
    return Outcome(False, f"TLS handshake with {host} failed")


# ------------------------------------------------------------------ email


def _send_email(
    channel: EmailChannel, message: Message, environ, timeout: float, secrets: list
) -> Outcome:
    scheme, host, port = smtp_address(channel.smtp)
    login = _smtp_login(channel, environ, secrets)
    mail = _made_email(channel, message)
    try:
        with _smtp_connection(scheme, host, port, timeout) as smtp:
            _secure_and_login(smtp, scheme, host, login)
            refused = smtp.send_message(mail, from_addr=channel.sender, to_addrs=list(channel.to))
    except _Refused:
        raise
    except Exception as error:  # every fault of smtplib, ssl and the socket becomes an Outcome
        return smtp_fault(error, host, timeout)
    return _delivered(host, channel.to, refused)


def _made_email(channel: EmailChannel, message: Message) -> EmailMessage:
    """The email to send, or a permanent refusal when the channel's addresses cannot make one."""
    if not channel.to or not channel.sender.strip():
        raise _Refused(Outcome(False, "the email channel needs a from address and a to", True))
    try:
        return email_message(channel, message, datetime.now(UTC))
    except (ValueError, TypeError, HeaderParseError) as error:
        raise _Refused(
            Outcome(False, f"the email cannot be made: {type(error).__name__}", True)
        ) from error


def smtp_address(url: str) -> tuple[str, str, int]:
    """smtp://host:port or smtps://host:port as (scheme, host, port); a bad one is permanent."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or SMTP_PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    if parts.scheme not in SMTP_PORTS or not parts.hostname or not port:
        raise _Refused(
            Outcome(False, "the smtp setting is not smtp://host:port or smtps://host:port", True)
        )
    return parts.scheme, parts.hostname, port


def _smtp_login(channel: EmailChannel, environ, secrets: list) -> tuple[str, str] | None:
    if channel.user is None and channel.password is None:
        return None
    user = _needed(channel.user, environ, "the SMTP user", secrets)
    password = _needed(channel.password, environ, "the SMTP password", secrets)
    if not user or not password:
        raise _Refused(Outcome(False, "an SMTP login needs both user and password", True))
    return user, password


def _smtp_connection(scheme: str, host: str, port: int, timeout: float) -> smtplib.SMTP:
    if scheme == "smtps":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    return smtplib.SMTP(host, port, timeout=timeout)


def _secure_and_login(
    smtp: smtplib.SMTP, scheme: str, host: str, login: tuple[str, str] | None
) -> None:
    """STARTTLS when the server offers it, then the login; a password is never sent in clear
    except to this machine (a local relay)."""
    smtp.ehlo()
    secured = scheme == "smtps"
    if not secured and smtp.has_extn("starttls"):
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
        secured = True
    if login is None:
        return
    if not secured and not _is_loopback(host):
        raise _Refused(
            Outcome(
                False,
                f"{host} offers no STARTTLS: the password is not sent in clear (use smtps://)",
                permanent=True,
            )
        )
    smtp.login(*login)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _delivered(host: str, to: tuple[str, ...], refused: dict) -> Outcome:
    if not refused:
        return Outcome(True, f"SMTP accepted by {host} for {len(to)} recipient(s)")
    named = ", ".join(f"{address} ({reply[0]})" for address, reply in refused.items())
    return Outcome(True, f"SMTP accepted by {host}; refused: {named}")


def smtp_fault(error: BaseException, host: str, timeout: float) -> Outcome:
    """An SMTP reply or a fault as an Outcome: 4xx and lost connections retryable, 5xx and a
    refused login permanent."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(error, host)
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return Outcome(False, f"SMTP login refused by {host}: {_smtp_reply(error)}", True)
    if isinstance(error, smtplib.SMTPResponseException):
        return _smtp_reply_outcome(error.smtp_code, _smtp_reply(error), host)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return Outcome(False, f"{host} does not support what was asked: {error}", True)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return Outcome(False, f"{host} closed the SMTP connection")
    if isinstance(error, ssl.SSLError):
        return _tls_fault(error, host)
    return _socket_fault(error, host, timeout)


def _recipients_refused(error: smtplib.SMTPRecipientsRefused, host: str) -> Outcome:
    codes = [reply[0] for reply in error.recipients.values()]
    addresses = ", ".join(error.recipients)
    first = next(iter(error.recipients.values()), (0, b""))
    detail = f"every recipient refused ({addresses}): {_reply_text(first[1])}"
    return _smtp_reply_outcome(max(codes, default=0), detail, host, all_permanent=codes)


def _smtp_reply_outcome(
    code: int, text: str, host: str, all_permanent: list[int] | None = None
) -> Outcome:
    permanent = all(c >= 500 for c in all_permanent) if all_permanent else code >= 500
    return Outcome(False, f"SMTP {code} from {host}: {text}", permanent=permanent)


def _smtp_reply(error: smtplib.SMTPResponseException) -> str:
    return _reply_text(error.smtp_error)


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]


def _socket_fault(error: BaseException, host: str, timeout: float) -> Outcome:
    if isinstance(error, socket.timeout | TimeoutError):
        return Outcome(False, f"timed out after {timeout:g} s waiting for {host}")
    if isinstance(error, socket.gaierror):
        return Outcome(False, f"could not resolve {host}")
    if isinstance(error, OSError):
        return Outcome(False, f"could not talk to {host}: {_os_reason(error)}")
    return Outcome(False, f"SMTP error talking to {host}: {type(error).__name__}")


# ------------------------------------------------------------------ shown without secrets


def describe(channel: Channel, environ: Mapping[str, str] | None = None) -> str:
    """A channel as the page and the CLI show it: where it goes, never a secret. A URL from the
    environment shows its variable's name (and, given `environ`, whether it is set)."""
    if isinstance(channel, SlackChannel):
        return "Slack " + _describe_url(channel.url, environ, _host_only)
    if isinstance(channel, WebhookChannel):
        signed = " (signed)" if channel.secret else ""
        return "Webhook " + _describe_url(channel.url, environ, _without_query) + signed
    return _describe_email(channel)


def _describe_url(
    value: Value, environ: Mapping[str, str] | None, shown: Callable[[str], str]
) -> str:
    if not isinstance(value, SecretRef):
        return shown(value)
    if environ is None:
        return f"from ${value.env}"
    text = environ.get(value.env)
    return f"{shown(text)} (from ${value.env})" if text else f"from ${value.env} (not set)"


def _host_only(url: str) -> str:
    host = _safe_host(url)
    return f"via {host}" if host else "via an unreadable URL"


def _without_query(url: str) -> str:
    """scheme://host[:port]/path: no user info, query or fragment (where tokens hide)."""
    parts = urlsplit(url)
    host = _safe_host(url)
    if not host:
        return "to an unreadable URL"
    port = f":{parts.port}" if _safe_port(url) else ""
    return f"to {parts.scheme}://{host}{port}{parts.path}"


def _safe_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _safe_port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _describe_email(channel: EmailChannel) -> str:
    parts = urlsplit(channel.smtp)
    host = _safe_host(channel.smtp) or "an unreadable address"
    port = f":{_safe_port(channel.smtp)}" if _safe_port(channel.smtp) else ""
    return f"Email via {parts.scheme}://{host}{port} to {', '.join(channel.to)}"
