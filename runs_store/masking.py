"""Hiding values that look like secrets before a step's input or output reaches the screen.

Run records carry whatever a step received: Authorization headers, api keys, OAuth tokens,
passwords, cookies. The run page masks them by default (RUNS_MASK_SECRETS=0 turns it off). Two
rules find them: a key that names a secret (`api_key`, `Authorization`, `client_secret`, ...)
masks its whole value, and a value shaped like a credential (`Bearer ...`, `sk-...`, a JWT, a
Slack or GitHub token, a secret in a URL's query string) is masked wherever it appears, even
inside a longer text, including JSON that a string holds (a request body) and form bodies.
Masking returns a copy and never changes the record; a MaskTally also counts what it hid, so the
page explains the •••••• only when a run has some. Error messages are masked the same way
wherever they are shown or exported (the Runs table, Insights' error signatures, exports).

Most payloads hold no secret, so a text is first checked, with plain substring searches, for what
either rule needs (a word a secret key contains, a credential's prefix, a `=`); one without is not
scanned or walked, which is what keeps a 256 KB preview or a step with big loops fast to show.
"""

from __future__ import annotations

import re
from functools import lru_cache

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
# Every credential _VALUE_PATTERNS finds contains one of these: a text with none holds none, and
# is not scanned (a 256 KB payload preview costs ~25 ms to scan, a 160-char error message 33 µs;
# looking for these costs about 1 µs).
_VALUE_MARKERS = ("Bearer", "Basic", "Token", "sk-", "eyJ", "xox", "ghp_", "gho_", "ghu_", "ghs_",
                  "ghr_", "AKIA")
# Chars searched either side of where a preview is cut, for a credential running across the cut.
CUT_LOOKAROUND = 4096
# A secret key inside JSON text: "api_key": "value" (for previews of payloads too big to parse).
_JSON_SECRET_PAIR = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*"')
# The same pair cut off by the end of a preview: "password": "hunt
_JSON_SECRET_TAIL = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*\\?\Z')
# The same pair inside JSON that a string holds, as it reads in its JSON text: \"api_key\": \"...\"
# (a request body recorded as a string). Its value ends at an unescaped inner quote, or where a
# preview is cut.
_ESCAPED_SECRET_PAIR = re.compile(
    r'\\"(?P<key>[^"\\]{1,64})\\"(?P<sep>\s*:\s*)\\"'
    r'(?:[^"\\]|\\[^"\\]|\\\\(?:\\.|[^\\]))*(?:\\"|\\?\Z)')
# A query or form parameter: ?api_key=...&sig=..., or a form body client_secret=...&code=...
_URL_PARAM = re.compile(r"(?P<head>(?:(?<=[?&;])|(?<![^\s\"']))"
                        r"(?P<key>[A-Za-z0-9_.\-]{1,64})=)(?P<value>[^&#\s\"'<>\\]+)")


def masking_enabled() -> bool:
    return settings.get_bool("RUNS_MASK_SECRETS")


def masking_on(mask: bool | None) -> bool:
    """A caller's choice, or the RUNS_MASK_SECRETS setting when it made none (None)."""
    return masking_enabled() if mask is None else mask


def is_secret_key(key) -> bool:
    """Whether a mapping key names a secret: api_key, X-Api-Key, clientSecret, set-cookie, ..."""
    if not isinstance(key, str):
        return False
    # keys repeat in every row of a payload; a long text (a "name" field's value) is not kept
    return _names_secret(key) if len(key) <= 64 else _names_secret.__wrapped__(key)


@lru_cache(maxsize=4096)
def _names_secret(key: str) -> bool:
    compact = re.sub(r"[^a-z0-9]", "", key.lower())
    return compact in _SECRET_KEYS or compact.endswith(_SECRET_SUFFIXES)


def _words_within_others(words) -> tuple[bytes, ...]:
    """The words no other word contains ("token" stands for "accesstoken" too), as bytes."""
    return tuple(sorted(word.encode() for word in words
                        if not any(other != word and other in word for other in words)))


# A key names a secret only if its letters and digits, lower-cased, contain one of these.
_SECRET_WORDS = _words_within_others(_SECRET_KEYS | set(_SECRET_SUFFIXES))
_NOT_ALNUM = bytes(code for code in range(128) if not chr(code).isalnum())


def may_name_secret(text: str) -> bool:
    """False when no key in this JSON text can name a secret (checked on the text's letters and
    digits, lower-cased, as is_secret_key checks a key), so its pairs need not be looked at."""
    compact = text.lower().encode("ascii", "ignore").translate(None, _NOT_ALNUM)
    return any(word in compact for word in _SECRET_WORDS)


def may_hold_secret(json_text: str) -> bool:
    """False when the value parsed from this JSON text has nothing to mask: the text has no
    escapes (so its keys and strings read as written), no key that can name a secret, nothing
    shaped like a credential and no query string."""
    return ("\\" in json_text or "=" in json_text
            or any(marker in json_text for marker in _VALUE_MARKERS) or may_name_secret(json_text))


def _cut_pair_start(text: str) -> int | None:
    """Where the one `"key": "value` cut short by the end of `text` can start, or None.

    Its value runs to the end without an unescaped quote, so unless the last quote is escaped
    that quote opens the value, the one before it closes the key, and the one before that opens
    it. With an escaped last quote the whole text is searched (0).
    """
    last = text.rfind('"')
    if last <= 0:
        return None
    if _backslashes_before(text, last) % 2:
        return 0
    key_end = text.rfind('"', 0, last)
    key_start = text.rfind('"', 0, key_end) if key_end > 0 else -1
    return key_start if key_start >= 0 else None


def _backslashes_before(text: str, index: int) -> int:
    count = 0
    while count < index and text[index - count - 1] == "\\":
        count += 1
    return count


def preview_end(text: str, end: int) -> int:
    """Where to cut `text` at or before `end` so that no credential-shaped value runs across the
    cut: the part of one left before the cut may be too short to be recognised and masked.

    Looks CUT_LOOKAROUND chars either side of `end`; the text should hold that many past it.
    """
    for match in _VALUE_PATTERNS.finditer(text, max(0, end - CUT_LOOKAROUND),
                                          end + CUT_LOOKAROUND):
        if match.start() >= end:
            break
        if match.end() > end:
            return match.start()
    return end


class MaskTally:
    """Masks like the functions below and counts the values it hid, so a page can say so.

    One tally per payload: `hits` is how many secret values (a key's value, a credential inside
    a text, a query parameter) were replaced by MASK.
    """

    def __init__(self) -> None:
        self.hits = 0

    def text(self, text: str) -> str:
        """Masks credential-shaped substrings, keeping an auth scheme word ("Bearer ••••••")."""
        if any(marker in text for marker in _VALUE_MARKERS):
            text = _VALUE_PATTERNS.sub(self._credential, text)
        return _URL_PARAM.sub(self._url_param, text) if "=" in text else text

    def json_text(self, text: str) -> str:
        """text() plus `"secret_key": "value"` pairs, for JSON text that is not parsed."""
        if may_name_secret(text):
            text = _JSON_SECRET_PAIR.sub(self._pair, text)
            if '\\"' in text:
                text = _ESCAPED_SECRET_PAIR.sub(self._escaped_pair, text)
        return self.text(text)

    def json_preview(self, text: str) -> str:
        """json_text() for the first part of a JSON text, whose last value may be cut short."""
        text = self.json_text(text)
        start = _cut_pair_start(text)
        found = None if start is None else _JSON_SECRET_TAIL.search(text, start)
        return text if found is None else text[:found.start()] + self._pair(found)

    def json_value(self, value, json_text: str):
        """value() of a value parsed from `json_text`, skipped when the text shows there is
        nothing to mask (most payloads: walking them costs more than reading the text)."""
        return self.value(value) if may_hold_secret(json_text) else value

    def value(self, value, depth: int = 0):
        """A copy of a JSON value with secret keys' values and credential-shaped strings masked."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return self._mapping(value, depth)
        if isinstance(value, list):
            return [self.value(item, depth + 1) for item in value]
        if isinstance(value, str):  # a string may hold JSON: a request body, an error body
            return self.json_text(value) if '"' in value else self.text(value)
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

    def _escaped_pair(self, match: re.Match) -> str:
        if not is_secret_key(match.group("key")):
            return match.group(0)
        return f'\\"{match.group("key")}\\"{match.group("sep")}\\"{self._hide()}\\"'


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


def messages_as_shown(messages, mask: bool | None = None) -> list:
    """Error messages (or their signatures) for a table or an export: masked like step payloads
    unless masking is off. Messages repeat across runs, so each distinct one is masked once."""
    if not masking_on(mask):
        return list(messages)
    return [_masked_message(message) if isinstance(message, str) and message else message
            for message in messages]


@lru_cache(maxsize=8192)
def _masked_message(message: str) -> str:
    return mask_json_text(message)
