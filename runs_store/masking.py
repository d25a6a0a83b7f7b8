"""Hiding values that look like secrets before a step's input or output reaches the screen.

Run records carry whatever a step received: Authorization headers, api keys, OAuth tokens,
passwords, cookies. The run page masks them by default (RUNS_MASK_SECRETS=0 turns it off). Two
rules find them: a key that names a secret (`api_key`, `Authorization`, `client_secret`, ...)
masks its whole value, and a value shaped like a credential (`Bearer ...`, `sk-...`, a JWT, a
Slack or GitHub token, a secret in a URL's query string) is masked wherever it appears, even
inside a longer text. Masking returns a copy and never changes the record; a MaskTally also
counts what it hid, so the page explains the •••••• only when a run has some.
"""

from __future__ import annotations

import re

from runs_store import settings

MASK = "••••••"
MAX_DEPTH = 64

_SECRET_KEYS = frozenset({
    "authorization", "proxyauthorization", "apikey", "xapikey", "token", "accesstoken",
    "refreshtoken", "idtoken", "authtoken", "bearertoken", "secret", "clientsecret",
    "password", "passwd", "pwd", "passphrase", "cookie", "setcookie", "privatekey",
    "secretkey", "accesskey", "sessionid", "signingsecret", "webhooksecret", "cookies",
    "credential", "credentials",
})
_SECRET_SUFFIXES = ("token", "secret", "password", "apikey", "privatekey", "secretkey",
                    "accesskey")
_URL_SECRET_NAMES = frozenset({"key", "sig", "signature"})  # also secret in a query string
_NAME_FIELDS = ("name", "key", "header")

_VALUE_PATTERNS = re.compile(
    # after an auth scheme, anything but a plain word ("Token expired", "Basic information")
    r"(?P<scheme>\b(?:Bearer|Basic|Token)\s+)(?![A-Za-z][a-z]*(?![A-Za-z0-9._~+/=\-]))"
    r"[A-Za-z0-9._~+/=\-]{6,}"
    r"|\bsk-(?:[A-Za-z]+-)?[A-Za-z0-9_\-]{16,}"
    r"|\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b",
)
# A secret key inside JSON text: "api_key": "value" (for previews of payloads too big to parse).
_JSON_SECRET_PAIR = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*"')
# The same pair cut off by the end of a preview: "password": "hunt
_JSON_SECRET_TAIL = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*\\?\Z')
# A URL query parameter: ?api_key=...&sig=...
_URL_PARAM = re.compile(r"(?P<head>[?&](?P<key>[A-Za-z0-9_.\-]{1,64})=)(?P<value>[^&#\s\"'<>]+)")


def masking_enabled() -> bool:
    return settings.get_bool("RUNS_MASK_SECRETS")


def is_secret_key(key) -> bool:
    """Whether a mapping key names a secret: api_key, X-Api-Key, clientSecret, set-cookie, ..."""
    if not isinstance(key, str):
        return False
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    return compact in _SECRET_KEYS or compact.endswith(_SECRET_SUFFIXES)


class MaskTally:
    """Masks like the functions below and counts the values it hid, so a page can say so.

    One tally per payload: `hits` is how many secret values (a key's value, a credential inside
    a text, a query parameter) were replaced by MASK.
    """

    def __init__(self) -> None:
        self.hits = 0

    def text(self, text: str) -> str:
        """Masks credential-shaped substrings, keeping an auth scheme word ("Bearer ••••••")."""
        text = _VALUE_PATTERNS.sub(self._credential, text)
        return _URL_PARAM.sub(self._url_param, text) if "=" in text else text

    def json_text(self, text: str) -> str:
        """text() plus `"secret_key": "value"` pairs, for JSON text that is not parsed."""
        return self.text(_JSON_SECRET_PAIR.sub(self._pair, text))

    def json_preview(self, text: str) -> str:
        """json_text() for the first part of a JSON text, whose last value may be cut short."""
        return _JSON_SECRET_TAIL.sub(self._pair, self.json_text(text))

    def value(self, value, depth: int = 0):
        """A copy of a JSON value with secret keys' values and credential-shaped strings masked."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return self._mapping(value, depth)
        if isinstance(value, list):
            return [self.value(item, depth + 1) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def _mapping(self, mapping: dict, depth: int) -> dict:
        named_secret = any(is_secret_key(mapping.get(field)) for field in _NAME_FIELDS)
        masked = {}
        for key, item in mapping.items():
            # a secret key's value, or a header list entry {"name": "Authorization", "value": ...}
            if item not in (None, "") and (is_secret_key(key) or (named_secret and key == "value")):
                masked[key] = self._hide()
            else:
                masked[key] = self.value(item, depth + 1)
        return masked

    def _hide(self) -> str:
        self.hits += 1
        return MASK

    def _credential(self, match: re.Match) -> str:
        return (match.group("scheme") or "") + self._hide()

    def _url_param(self, match: re.Match) -> str:
        key = match.group("key")
        if is_secret_key(key) or key.lower() in _URL_SECRET_NAMES:
            return match.group("head") + self._hide()
        return match.group(0)

    def _pair(self, match: re.Match) -> str:
        if not is_secret_key(match.group("key")):
            return match.group(0)
        return f'"{match.group("key")}"{match.group("sep")}"{self._hide()}"'


def mask_text(text: str) -> str:
    """Masks credential-shaped substrings, keeping an auth scheme word ("Bearer ••••••")."""
    return MaskTally().text(text)


def mask_json_text(text: str) -> str:
    """mask_text plus `"secret_key": "value"` pairs, for JSON text that is not parsed."""
    return MaskTally().json_text(text)


def mask_json_preview(text: str) -> str:
    """mask_json_text for the first part of a JSON text, whose last value may be cut short."""
    return MaskTally().json_preview(text)


def mask_secrets(value):
    """A copy of a JSON value with secret keys' values and credential-shaped strings masked."""
    return MaskTally().value(value)
