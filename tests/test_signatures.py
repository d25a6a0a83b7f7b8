"""Error signatures: one text per kind of failure, so failures can be counted by cause."""

from __future__ import annotations

import json

import pytest

from runs_store.domain.signatures import MAX_LENGTH, error_signature, error_summary

SLACK_403 = json.dumps(
    {"response": {"status": 403, "body": {"ok": False, "error": "not_in_channel"}}}
)


@pytest.mark.parametrize(
    "first, second",
    [
        (
            "Request failed with status code 429 for https://api.openai.com/v1/chat?id=1",
            "Request failed with status code 503 for https://hooks.slack.com/services/T0/B1",
        ),
        ("User ana@example.com not found", "User bob.smith+crm@corp.example.org not found"),
        (
            "Record 7f3c9e1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b is locked",
            "Record 00000000-1111-2222-3333-444444444444 is locked",
        ),
        ("Order 1042 total 59.00 does not match", "Order 77 total 3,100.50 does not match"),
        ("token abc123DEF456 expired", "token ZZ99yy88xx77 expired"),
        (
            "Cannot read properties of undefined (reading 'email')",
            'Cannot read properties of undefined (reading "email")',
        ),
        ("  timeout   after\n 30s ", "timeout after 5s"),
    ],
)
def test_messages_that_differ_only_in_variable_parts_share_a_signature(first, second):
    assert error_signature(first) == error_signature(second)


@pytest.mark.parametrize(
    "first, second",
    [
        ("TypeError: Invalid URL", "TypeError: Cannot read properties of undefined"),
        (SLACK_403, SLACK_403.replace("not_in_channel", "channel_not_found")),
        (SLACK_403, SLACK_403.replace("403", "404")),
    ],
)
def test_different_causes_get_different_signatures(first, second):
    assert error_signature(first) != error_signature(second)


@pytest.mark.parametrize(
    "message, signature",
    [
        (SLACK_403, "HTTP 403: not_in_channel"),
        (json.dumps(SLACK_403), "HTTP 403: not_in_channel"),  # a JSON-encoded JSON string
        (
            json.dumps({"error": {"message": "Rate limit reached", "statusCode": 429}}),
            "HTTP 429: Rate limit reached",
        ),
        ('{"error":"not_in_channel"}', "not_in_channel"),
        ("TypeError: Invalid URL", "TypeError: Invalid URL"),
    ],
)
def test_json_error_bodies_reduce_to_status_and_error_text(message, signature):
    assert error_signature(message) == signature


@pytest.mark.parametrize("message", [None, "", "   "])
def test_no_message_has_no_signature(message):
    assert error_signature(message) is None


def test_a_signature_is_never_longer_than_the_limit():
    assert len(error_signature("word " * 500)) <= MAX_LENGTH


def test_text_that_only_looks_like_json_is_kept_as_text():
    assert error_signature("{not json at all") == "{not json at all"


@pytest.mark.parametrize(
    "message, summary",
    [
        (
            '{"response":{"status":403,"body":{"ok":false,"error":"not_in_channel"}}}',
            "HTTP 403: not_in_channel",
        ),
        ('"{\\"error\\":\\"invalid_auth\\"}"', "invalid_auth"),
        (
            "TypeError: Invalid URL\n    at new URL (node:internal/url:775:36)",
            "TypeError: Invalid URL",
        ),
        (None, ""),
        (float("nan"), ""),  # how pandas hands over a missing message
        ("", ""),
    ],
)
def test_an_error_summary_is_one_readable_line(message, summary):
    assert error_summary(message) == summary


def test_a_long_error_summary_is_cut_with_an_ellipsis():
    summary = error_summary("x" * 1_000, limit=50)
    assert len(summary) == 50 and summary.endswith("…")
