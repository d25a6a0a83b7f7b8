"""The test receivers answer as real servers do: plain SMTP, STARTTLS, implicit TLS and AUTH
through the standard library's smtplib, refusals for the next N messages, and HTTP answers in
the order they were queued (a held answer outlasting a client's timeout among them)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest
import urllib3

from receivers import Reply


def _mail(subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "runs@example.com"
    message["To"] = "ops@example.com"
    message["Subject"] = subject
    message.set_content("plain text")
    message.add_alternative("<p>html</p>", subtype="html")
    return message


def _trusting(tls_ca) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_ca.ca_file))


def test_plain_smtp_records_the_envelope_and_the_parsed_message(smtp_receiver):
    with smtplib.SMTP(smtp_receiver.host, smtp_receiver.port, timeout=5) as client:
        client.send_message(_mail("Hi"))
    (received,) = smtp_receiver.wait_for(1)
    assert received.mail_from == "runs@example.com"
    assert received.rcpt_tos == ("ops@example.com",)
    assert received.message["Subject"] == "Hi"
    assert received.part("text/html").strip() == "<p>html</p>"
    assert not received.tls


def test_starttls_with_the_test_ca_and_auth(smtp_factory, tls_ca):
    server = smtp_factory(tls="starttls", credentials=("runs", "s3cret"))
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=_trusting(tls_ca))
        client.login("runs", "s3cret")
        client.send_message(_mail())
    (received,) = server.wait_for(1)
    assert received.tls
    assert received.authenticated_as == "runs"


def test_mail_without_auth_is_refused_when_credentials_are_set(smtp_factory):
    server = smtp_factory(credentials=("runs", "s3cret"))
    with (
        smtplib.SMTP(server.host, server.port, timeout=5) as client,
        pytest.raises(smtplib.SMTPSenderRefused) as refused,
    ):
        client.send_message(_mail())
    assert refused.value.smtp_code == 530


def test_a_wrong_password_is_refused_with_535(smtp_factory):
    server = smtp_factory(credentials=("runs", "s3cret"))
    with (
        smtplib.SMTP(server.host, server.port, timeout=5) as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as refused,
    ):
        client.login("runs", "wrong")
    assert refused.value.smtp_code == 535


def test_implicit_tls(smtp_factory, tls_ca):
    server = smtp_factory(tls="smtps")
    assert server.url.startswith("smtps://")
    with smtplib.SMTP_SSL(server.host, server.port, timeout=5, context=_trusting(tls_ca)) as c:
        c.send_message(_mail())
    assert server.wait_for(1)[0].tls


def test_refusals_apply_to_the_next_messages_only(smtp_receiver):
    smtp_receiver.refuse_next(1, "550 5.7.1 Rejected")
    with smtplib.SMTP(smtp_receiver.host, smtp_receiver.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.send_message(_mail())
        client.send_message(_mail("second"))
    assert refused.value.smtp_code == 550
    assert [m.message["Subject"] for m in smtp_receiver.wait_for(1)] == ["second"]


def test_http_answers_in_the_queued_order_then_the_default(http_receiver):
    http_receiver.answer(500, Reply(404, "no_service"))
    pool = urllib3.PoolManager(retries=False)
    statuses = [
        pool.request("POST", http_receiver.url + "/hook?t=1", body=b"{}").status for _ in range(3)
    ]
    assert statuses == [500, 404, 200]
    requests = http_receiver.wait_for(3)
    assert [r.path for r in requests] == ["/hook?t=1"] * 3
    assert requests[0].body == b"{}"


def test_a_held_answer_outlasts_the_client_timeout(http_receiver):
    http_receiver.answer(Reply(hold=30))
    pool = urllib3.PoolManager(retries=False)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        pool.request("POST", http_receiver.url, body=b"x", timeout=0.3)
    assert http_receiver.wait_for(1)[0].body == b"x"
