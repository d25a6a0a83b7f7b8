"""The alert transports against real receivers: Slack and webhooks over HTTP to a real server,
email over SMTP to aiosmtpd (plain, STARTTLS and implicit TLS with a test CA, AUTH). Every outcome
class is reached for real (answers, refusals, a held answer, a closed port), and no secret ever
appears in an outcome's detail or in how a channel is described."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest

from conftest import refused_port
from factories import ROOT
from receivers import SLACK_INVALID_PAYLOAD, SLACK_NO_SERVICE, Reply
from runs_store.services.alerts.channels import (
    EmailChannel,
    Message,
    Outcome,
    SecretRef,
    Section,
    SlackChannel,
    WebhookChannel,
)
from runs_store.services.alerts.transport import describe, send, verify_signature

HOSTILE = "<!channel> <http://evil.example/x|click> & <script>alert(1)</script>"
SLACK_TOKEN = "XXXXslacktokenXXXX"
HMAC_SECRET = "hmac-s3cret-value"
SMTP_PASSWORD = "smtp-pa55word"
LINK = "http://localhost:8501/?flow=Invoice+sync&status=Failed&range=Last+24+hours"


def message(title: str = "Invoices failing: failure rate 34% (17 of 50 runs) > 20% in 1h"):
    return Message(
        kind="firing",
        title=title,
        lines=("17 of the last 50 runs failed.", f"Last error: {HOSTILE}"),
        facts=(("Rule", "Invoices failing"), ("Flow", HOSTILE), ("Measured", "34%")),
        link=LINK,
        key="invoices-failing/flow-1/firing",
        sections=(
            Section(
                "Top failing flows",
                ("Flow", "Failed", "Runs", "Rate"),
                ((HOSTILE, "17", "50", "34%"), ("Plain flow", "1", "10", "10%")),
                ("http://localhost:8501/?flow=a&status=Failed", None),
            ),
        ),
        data={"runs": 50, "failed": 17, "rate": 0.34, "at": datetime(2026, 12, 1, tzinfo=UTC)},
    )


def slack_url(receiver) -> str:
    return f"{receiver.url}/services/T000/B000/{SLACK_TOKEN}"


def all_texts(node) -> list[str]:
    """Every `text` string in a Block Kit payload, with the type of the object holding it."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("text"), str):
            found.append((node.get("type"), node["text"]))
        for value in node.values():
            found += all_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += all_texts(value)
    return found


# ------------------------------------------------------------------ Slack


def test_slack_gets_blocks_with_the_title_facts_lines_table_and_a_button(http_receiver):
    outcome = send(SlackChannel("ops", slack_url(http_receiver)), message())
    assert outcome == Outcome(True, "HTTP 200 from 127.0.0.1")
    (request,) = http_receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == f"/services/T000/B000/{SLACK_TOKEN}"
    assert request.header("Content-Type") == "application/json"
    payload = request.json()
    assert payload["text"].startswith("Invoices failing: failure rate 34%")
    types = [block["type"] for block in payload["blocks"]]
    assert types == ["header", "section", "section", "section", "actions"]
    assert payload["blocks"][0]["text"]["text"] == message().title.replace(">", "&gt;")
    fields = payload["blocks"][1]["fields"]
    assert fields[0]["text"] == "*Rule*\nInvoices failing"
    table = payload["blocks"][3]["text"]["text"]
    assert table.splitlines()[:2] == ["*Top failing flows*", "_Flow · Failed · Runs · Rate_"]
    assert "• Plain flow · 1 · 10 · 10%" in table
    assert "<http://localhost:8501/?flow=a&amp;status=Failed|" in table
    (button,) = payload["blocks"][4]["elements"]
    assert button["url"] == LINK
    assert button["text"]["text"] == "Open the runs"


def test_slack_shows_hostile_record_text_as_text(http_receiver):
    send(SlackChannel("ops", slack_url(http_receiver)), message(title=f"Flow {HOSTILE} failing"))
    payload = http_receiver.wait_for(1)[0].json()
    texts = all_texts(payload)
    assert texts
    for kind, text in texts:
        assert "<!channel>" not in text and "<http://evil" not in text, (kind, text)
        assert "<script>" not in text
    assert "&lt;!channel&gt; &lt;http://evil.example/x|click&gt; &amp;" in payload["text"]
    mrkdwn = [n for n in _objects(payload) if n.get("type") == "mrkdwn"]
    assert mrkdwn and all(n["verbatim"] is True for n in mrkdwn)
    assert payload["unfurl_links"] is False


def _objects(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


@pytest.mark.parametrize(
    "reply, detail",
    [
        (SLACK_NO_SERVICE, "HTTP 404 from 127.0.0.1: no_service"),
        (SLACK_INVALID_PAYLOAD, "HTTP 400 from 127.0.0.1: invalid_payload"),
        (Reply(403, "invalid_token"), "HTTP 403 from 127.0.0.1: invalid_token"),
    ],
)
def test_slack_4xx_is_permanent_and_names_the_host_not_the_token(http_receiver, reply, detail):
    http_receiver.answer(reply)
    outcome = send(SlackChannel("ops", slack_url(http_receiver)), message())
    assert outcome == Outcome(False, detail, permanent=True)
    assert SLACK_TOKEN not in outcome.detail and "/services/" not in outcome.detail


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_5xx_429_and_408_are_retryable(http_receiver, status):
    http_receiver.answer(status)
    outcome = send(SlackChannel("ops", slack_url(http_receiver)), message())
    assert not outcome.ok and not outcome.permanent
    assert outcome.detail.startswith(f"HTTP {status} from 127.0.0.1")


def test_500_500_then_200_is_two_retryable_failures_then_delivered(http_receiver):
    http_receiver.answer(500, 500, 200)
    channel = SlackChannel("ops", slack_url(http_receiver))
    outcomes = [send(channel, message()) for _ in range(3)]
    assert [(o.ok, o.permanent) for o in outcomes] == [
        (False, False),
        (False, False),
        (True, False),
    ]
    assert len(http_receiver.wait_for(3)) == 3


def test_an_answer_held_past_the_timeout_is_retryable(http_receiver):
    http_receiver.answer(Reply(hold=30))
    started = time.monotonic()
    outcome = send(SlackChannel("ops", slack_url(http_receiver)), message(), timeout=0.5)
    assert time.monotonic() - started < 5
    assert outcome == Outcome(False, "timed out after 0.5 s waiting for 127.0.0.1")


def test_a_refused_connection_is_retryable():
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/services/T/B/{SLACK_TOKEN}"
        outcome = send(SlackChannel("ops", url), message(), timeout=2)
    assert not outcome.ok and not outcome.permanent
    assert outcome.detail == "could not connect to 127.0.0.1: Connection refused"


def test_a_host_that_does_not_resolve_is_retryable():
    outcome = send(SlackChannel("ops", "https://hooks.invalid/services/x"), message(), timeout=5)
    assert outcome == Outcome(False, "could not resolve hooks.invalid")


def test_a_url_from_an_unset_variable_is_permanent_and_named(http_receiver):
    channel = SlackChannel("ops", SecretRef("SLACK_WEBHOOK_URL"))
    outcome = send(channel, message(), environ={})
    assert outcome == Outcome(
        False, "SLACK_WEBHOOK_URL is not set (the Slack webhook URL)", permanent=True
    )
    environ = {"SLACK_WEBHOOK_URL": slack_url(http_receiver)}
    assert send(channel, message(), environ=environ).ok


def test_an_answer_echoing_the_url_does_not_leak_the_token(http_receiver):
    http_receiver.answer(Reply(404, f"no hook at /services/T000/B000/{SLACK_TOKEN}"))
    outcome = send(SlackChannel("ops", slack_url(http_receiver)), message())
    assert outcome.permanent and SLACK_TOKEN not in outcome.detail


def test_a_redirect_to_another_host_is_not_followed(http_receiver, http_factory):
    elsewhere = http_factory()
    target = elsewhere.url.replace("127.0.0.1", "localhost") + "/stolen"
    http_receiver.answer(Reply(307, b"", (("Location", target),)))
    outcome = send(WebhookChannel("hook", http_receiver.url + "/hook", HMAC_SECRET), message())
    assert outcome == Outcome(
        False, "HTTP 307 from 127.0.0.1: a redirect to localhost is not followed", True
    )
    assert elsewhere.requests == []


def test_a_redirect_on_the_same_host_is_followed_with_the_body(http_receiver):
    http_receiver.answer(Reply(308, b"", (("Location", "/moved"),)), 204)
    outcome = send(WebhookChannel("hook", http_receiver.url + "/hook"), message())
    assert outcome == Outcome(True, "HTTP 204 from 127.0.0.1")
    first, second = http_receiver.wait_for(2)
    assert second.path == "/moved" and second.body == first.body


# ------------------------------------------------------------------ webhook


def documented_verify():
    """The receiver's check exactly as docs/alerts.md prints it."""
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    (code,) = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify" in block
    ]
    namespace: dict = {}
    exec(compile(code, "docs/alerts.md", "exec"), namespace)
    return namespace["verify"]


def test_the_webhook_body_carries_every_field_of_the_message(http_receiver):
    outcome = send(WebhookChannel("hook", http_receiver.url + "/runs-alerts"), message())
    assert outcome.ok
    (request,) = http_receiver.wait_for(1)
    assert request.header("Content-Type") == "application/json"
    assert request.header("Idempotency-Key") == "invoices-failing/flow-1/firing"
    assert request.header("X-Runs-Signature") is None
    body = request.json()
    assert set(body) == {
        "kind", "title", "lines", "facts", "link", "key", "sections", "data", "sent_at",
    }  # fmt: skip
    assert body["kind"] == "firing" and body["title"] == message().title
    assert body["lines"] == list(message().lines)
    assert body["facts"] == {"Rule": "Invoices failing", "Flow": HOSTILE, "Measured": "34%"}
    assert body["link"] == LINK and body["key"] == "invoices-failing/flow-1/firing"
    assert body["sections"][0]["rows"][0] == [HOSTILE, "17", "50", "34%"]
    assert body["sections"][0]["links"] == ["http://localhost:8501/?flow=a&status=Failed", None]
    assert body["data"] == {
        "runs": 50,
        "failed": 17,
        "rate": 0.34,
        "at": "2026-12-01T00:00:00+00:00",
    }
    sent_at = datetime.strptime(body["sent_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60


def test_a_signed_webhook_verifies_on_the_receivers_side(http_receiver):
    channel = WebhookChannel("hook", http_receiver.url + "/h", SecretRef("ALERTS_HMAC_SECRET"))
    assert send(channel, message(), environ={"ALERTS_HMAC_SECRET": HMAC_SECRET}).ok
    (request,) = http_receiver.wait_for(1)
    timestamp = request.header("X-Runs-Timestamp")
    signature = request.header("X-Runs-Signature")
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature)
    assert abs(int(timestamp) - time.time()) < 60
    verify = documented_verify()
    assert verify(HMAC_SECRET, request.body, timestamp, signature)
    assert verify_signature(HMAC_SECRET, request.body, timestamp, signature)
    assert not verify("another secret", request.body, timestamp, signature)
    assert not verify(HMAC_SECRET, request.body + b" ", timestamp, signature)
    assert not verify(HMAC_SECRET, request.body, str(int(timestamp) + 1), signature)
    stale = str(int(timestamp) - 600)
    assert not verify_signature(HMAC_SECRET, request.body, stale, signature)


def test_an_unset_webhook_secret_is_permanent_and_sends_nothing(http_receiver):
    channel = WebhookChannel("hook", http_receiver.url, SecretRef("ALERTS_HMAC_SECRET"))
    outcome = send(channel, message(), environ={})
    assert outcome == Outcome(False, "ALERTS_HMAC_SECRET is not set (the webhook secret)", True)
    assert http_receiver.requests == []


def test_a_webhook_500_is_retryable_and_404_permanent(http_receiver):
    http_receiver.answer(500, 404)
    channel = WebhookChannel("hook", http_receiver.url + "/h?token=abc", HMAC_SECRET)
    retry, permanent = send(channel, message()), send(channel, message())
    assert (retry.ok, retry.permanent) == (False, False)
    assert (permanent.ok, permanent.permanent) == (False, True)
    for outcome in (retry, permanent):
        assert "token" not in outcome.detail and HMAC_SECRET not in outcome.detail


# ------------------------------------------------------------------ email


def mail_channel(receiver, **options) -> EmailChannel:
    return EmailChannel(
        "mail",
        receiver.url,
        "runs@example.com",
        ("ops@example.com", "oncall@example.com"),
        **options,
    )


def test_email_is_plain_text_and_html_with_its_headers(smtp_receiver):
    outcome = send(mail_channel(smtp_receiver), message())
    assert outcome == Outcome(True, "SMTP accepted by 127.0.0.1 for 2 recipient(s)")
    (mail,) = smtp_receiver.wait_for(1)
    assert mail.mail_from == "runs@example.com"
    assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")
    headers = mail.message
    assert headers.get_content_type() == "multipart/alternative"
    assert headers["Subject"] == message().title
    assert headers["From"] == "runs@example.com"
    assert headers["To"] == "ops@example.com, oncall@example.com"
    assert headers["Date"] and headers["Message-ID"].endswith("@example.com>")
    assert headers["X-Runs-Key"] == "invoices-failing/flow-1/firing"
    assert headers["Auto-Submitted"] == "auto-generated"
    text = mail.part("text/plain")
    assert text.startswith(message().title + "\n")
    assert "Measured: 34%" in text and f"Open the runs: {LINK}" in text
    assert "Plain flow" in text and "http://localhost:8501/?flow=a&status=Failed" in text
    page = mail.part("text/html")
    assert "<h1" in page and "Open the runs</a>" in page
    assert 'href="http://localhost:8501/?flow=Invoice+sync&amp;status=Failed' in page
    assert "<th" in page and "Top failing flows" in page


def test_email_escapes_hostile_record_text_and_loads_nothing_remote(smtp_receiver):
    send(mail_channel(smtp_receiver), message(title=f"Flow {HOSTILE} failing"))
    page = smtp_receiver.wait_for(1)[0].part("text/html")
    assert "<script" not in page and "<!channel>" not in page and "<http://evil" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "<link" not in page and "<style" not in page
    assert "src=" not in page


def test_a_title_with_line_breaks_cannot_add_a_header_or_a_recipient(smtp_receiver):
    title = "Failing\r\nBcc: thief@evil.example\nX-Injected: yes"
    send(mail_channel(smtp_receiver), message(title=title))
    (mail,) = smtp_receiver.wait_for(1)
    assert mail.message["Subject"] == "Failing Bcc: thief@evil.example X-Injected: yes"
    assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None
    assert mail.rcpt_tos == ("ops@example.com", "oncall@example.com")


def test_starttls_with_a_trusted_ca_and_a_login(smtp_factory, tls_ca, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))
    server = smtp_factory(tls="starttls", credentials=("runs", SMTP_PASSWORD))
    channel = mail_channel(server, user=SecretRef("SMTP_USER"), password=SecretRef("SMTP_PASS"))
    outcome = send(channel, message(), environ={"SMTP_USER": "runs", "SMTP_PASS": SMTP_PASSWORD})
    assert outcome.ok, outcome
    (mail,) = server.wait_for(1)
    assert mail.tls and mail.authenticated_as == "runs"


def test_smtps_speaks_tls_from_the_first_byte(smtp_factory, tls_ca, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_ca.ca_file))
    server = smtp_factory(tls="smtps")
    assert server.url.startswith("smtps://")
    assert send(mail_channel(server), message()).ok
    assert server.wait_for(1)[0].tls


@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_an_untrusted_certificate_is_permanent(smtp_factory, tls, tmp_path, monkeypatch):
    from receivers import make_tls_ca

    other_ca = make_tls_ca(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca_file))
    server = smtp_factory(tls=tls)
    outcome = send(mail_channel(server), message(), timeout=5)
    assert not outcome.ok and outcome.permanent
    assert outcome.detail.startswith("TLS certificate of 127.0.0.1 not trusted")
    assert server.messages == []


def test_a_refused_login_is_permanent_and_hides_the_password(smtp_factory):
    server = smtp_factory(credentials=("runs", SMTP_PASSWORD))
    channel = mail_channel(server, user=SecretRef("SMTP_USER"), password=SecretRef("SMTP_PASS"))
    outcome = send(channel, message(), environ={"SMTP_USER": "runs", "SMTP_PASS": "wrong-one"})
    assert not outcome.ok and outcome.permanent
    assert outcome.detail.startswith("SMTP login refused by 127.0.0.1: ")
    assert "wrong-one" not in outcome.detail and SMTP_PASSWORD not in outcome.detail


def test_an_unset_password_is_permanent_and_named(smtp_factory):
    server = smtp_factory(credentials=("runs", SMTP_PASSWORD))
    channel = mail_channel(server, user=SecretRef("SMTP_USER"), password=SecretRef("SMTP_PASS"))
    outcome = send(channel, message(), environ={"SMTP_USER": "runs"})
    assert outcome == Outcome(False, "SMTP_PASS is not set (the SMTP password)", permanent=True)


def test_smtp_451_is_retryable_and_550_permanent(smtp_receiver):
    smtp_receiver.refuse_next(1, "451 4.3.0 Try again later")
    smtp_receiver.refuse_next(1, "550 5.7.1 Message rejected")
    channel = mail_channel(smtp_receiver)
    later, rejected, delivered = (send(channel, message()) for _ in range(3))
    assert later == Outcome(False, "SMTP 451 from 127.0.0.1: 4.3.0 Try again later", False)
    assert rejected == Outcome(False, "SMTP 550 from 127.0.0.1: 5.7.1 Message rejected", True)
    assert delivered.ok
    assert len(smtp_receiver.wait_for(1)) == 1


def test_a_closed_smtp_port_is_retryable():
    with refused_port() as port:
        channel = EmailChannel("mail", f"smtp://127.0.0.1:{port}", "a@example.com", ("b@x",))
        outcome = send(channel, message(), timeout=2)
    assert outcome == Outcome(False, "could not talk to 127.0.0.1: Connection refused")


def test_a_bad_smtp_address_is_permanent():
    channel = EmailChannel("mail", "http://mail.example.com", "a@example.com", ("b@x",))
    outcome = send(channel, message())
    assert not outcome.ok and outcome.permanent and "smtp://host:port" in outcome.detail


# ------------------------------------------------------------------ shown without secrets


@pytest.mark.parametrize(
    "channel, environ, shown",
    [
        (
            SlackChannel("ops", f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}"),
            None,
            "Slack via hooks.slack.com",
        ),
        (SlackChannel("ops", SecretRef("SLACK_URL")), None, "Slack from $SLACK_URL"),
        (
            SlackChannel("ops", SecretRef("SLACK_URL")),
            {"SLACK_URL": f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}"},
            "Slack via hooks.slack.com (from $SLACK_URL)",
        ),
        (SlackChannel("ops", SecretRef("SLACK_URL")), {}, "Slack from $SLACK_URL (not set)"),
        (
            WebhookChannel(
                "hook", f"https://user:{HMAC_SECRET}@example.com:8443/runs?token={SLACK_TOKEN}"
            ),
            None,
            "Webhook to https://example.com:8443/runs",
        ),
        (
            WebhookChannel("hook", "https://example.com/runs", SecretRef("HMAC")),
            None,
            "Webhook to https://example.com/runs (signed)",
        ),
        (
            WebhookChannel("hook", SecretRef("HOOK_URL"), HMAC_SECRET),
            None,
            "Webhook from $HOOK_URL (signed)",
        ),
        (
            EmailChannel(
                "mail",
                f"smtps://runs:{SMTP_PASSWORD}@mail.example.com:465",
                "runs@example.com",
                ("a@x.com", "b@y.com"),
                SecretRef("SMTP_USER"),
                SecretRef("SMTP_PASS"),
            ),
            None,
            "Email via smtps://mail.example.com:465 to a@x.com, b@y.com",
        ),
    ],
)
def test_describe_shows_where_a_channel_goes_without_secrets(channel, environ, shown):
    text = describe(channel, environ)
    assert text == shown
    for secret in (SLACK_TOKEN, HMAC_SECRET, SMTP_PASSWORD):
        assert secret not in text


def test_the_slack_payload_is_json_a_receiver_can_read_back(http_receiver):
    send(SlackChannel("ops", slack_url(http_receiver)), message())
    raw = http_receiver.wait_for(1)[0].body
    assert json.loads(raw.decode("utf-8"))["blocks"]


def test_a_long_subject_arrives_whole_on_one_line(smtp_receiver):
    title = "Weekly digest: 444 runs, 22.6% failed (+11.2 points vs the week before) " + "x" * 40
    send(mail_channel(smtp_receiver), message(title=title))
    assert smtp_receiver.wait_for(1)[0].message["Subject"] == title


def test_an_email_channel_without_recipients_is_permanent(smtp_receiver):
    channel = EmailChannel("mail", smtp_receiver.url, "runs@example.com", ())
    outcome = send(channel, message())
    assert not outcome.ok and outcome.permanent
    assert smtp_receiver.messages == []
