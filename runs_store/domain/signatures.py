"""Error signatures: one error message per kind of failure, so failures can be counted by cause.

Two messages that differ only in ids, numbers, URLs, e-mail addresses or quoting get the same
signature ("Cannot read properties of undefined (reading email)"). JSON error bodies, which the
engine often stores as a JSON-encoded string, are reduced to their HTTP status and error text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from runs_store.domain.bounded_json import loads_bounded

MAX_LENGTH = 160

_REPLACEMENTS = (
    (re.compile(r"https?://\S+|www\.\S+"), "<url>"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{8,}\b"), "<id>"),
    (re.compile(r"(?<![\w<])-?\d+(?:[.,]\d+)*"), "<n>"),
    (re.compile(r"[\"'`‘’“”]"), ""),
    (re.compile(r"\s+"), " "),
)
_ERROR_KEYS = ("error", "message", "errorMessage", "detail", "title", "code", "reason")
_STATUS_KEYS = ("status", "statusCode", "status_code")


def load_json_text(text: str) -> dict | list | None:
    """The JSON value inside text, unwrapping JSON-encoded strings; None if it is not JSON."""
    value: object = text
    for _ in range(3):
        if not isinstance(value, str) or value.strip()[:1] not in '{["':
            break
        try:
            value = loads_bounded(value)
        except ValueError:
            return None
    return value if isinstance(value, (dict, list)) else None


def _walk(value, depth: int = 0):
    if depth > 6:
        return
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _walk(child, depth + 1)
    elif isinstance(value, list):
        for child in value[:20]:
            yield from _walk(child, depth + 1)


def summarise_json_error(value) -> str | None:
    status, texts = None, []
    for obj in _walk(value):
        for key in _STATUS_KEYS:
            if status is None and isinstance(obj.get(key), int) and 100 <= obj[key] <= 599:
                status = obj[key]
        for key in _ERROR_KEYS:
            if isinstance(obj.get(key), str) and obj[key] not in texts:
                texts.append(obj[key])
    if status is None and not texts:
        return None
    prefix = f"HTTP {status}" if status is not None else ""
    return ": ".join(part for part in (prefix, texts[0] if texts else "") if part)


def _json_error_summary(text: str) -> str | None:
    """A JSON error body as its HTTP status and error text (HTTP 403: not_in_channel); None
    when the text is not one."""
    parsed = load_json_text(text)
    return summarise_json_error(parsed) if parsed is not None else None


def error_summary(message: str | None, limit: int = 300) -> str:
    """One readable line for an error: a JSON error body reduced to its HTTP status and error
    text ("HTTP 403: not_in_channel"), anything else its first line; "" for none."""
    if not isinstance(message, str) or not message.strip():
        return ""
    text = message.strip()
    line = _json_error_summary(text) or (text.splitlines() or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


@lru_cache(maxsize=8192)  # the same messages recur across thousands of runs
def error_signature(message: str | None) -> str | None:
    """The message with its variable parts replaced by placeholders."""
    if not message:
        return None
    stripped = str(message).strip()
    text = _json_error_summary(stripped) or stripped
    status_prefix = ""
    if text.startswith("HTTP ") and text[5:8].isdigit():
        status_prefix, text = text[:8], text[8:]
    for pattern, replacement in _REPLACEMENTS:
        text = pattern.sub(replacement, text)
    signature = (status_prefix + text).strip()
    return signature[:MAX_LENGTH] or None
