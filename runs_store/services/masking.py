"""Hiding values that look like secrets before a step's input or output reaches the screen.

Run records carry whatever a step received: Authorization headers, api keys, OAuth tokens,
passwords, cookies, database URLs, private keys. The run page masks them by default
(RUNS_MASK_SECRETS=0 turns it off). Three rules find them:
  - a key that names a secret (`api_key`, `Authorization`, `client_secret`, ...) masks its whole
    value: a mapping's key, a `[name, value]` pair's name, a header line's name
    (`Cookie: ...` at the start of a line; the well-known secret headers after any space too);
  - a value shaped like a credential is masked wherever it appears, even inside a longer text:
    the shapes of runs_store.services.secret_patterns (`Bearer ...`, API keys and tokens, a
    password in a
    URL, a PEM private key, a Slack webhook, an .npmrc token);
  - a query or form parameter that names a secret (`?api_key=...`, `client_secret=...&`).
They apply inside JSON that a string holds (a request body) and in JSON text that is not parsed
(a preview, an error message), where a value may be written escaped (`\\n`, `\\"`).
Masking returns a copy and never changes the record; a MaskTally also counts what it hid, so the
page explains the •••••• only when a run has some. Error messages are masked the same way
wherever they are shown or exported (the Runs table, Insights' error signatures, exports).

Most payloads hold no secret, so a text is first checked, with plain substring searches, for what
each rule needs (a word a secret key contains, a credential's prefix, a `=`); one without is not
scanned or walked, which is what keeps a 256 KB preview or a step with big loops fast to show.
"""

from __future__ import annotations

import re
from functools import lru_cache

from runs_store import settings
from runs_store.services.secret_patterns import VALUE_PATTERNS

MASK = "••••••"
# How deep a parsed value is walked (far from Python's recursion limit). Ingest rejects records
# nested deeper, so only a record stored before that limit can go deeper: what lies below is
# masked whole, unread.
MAX_DEPTH = 128

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxyauthorization",
        "apikey",
        "xapikey",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "authtoken",
        "bearertoken",
        "secret",
        "clientsecret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "cookie",
        "setcookie",
        "privatekey",
        "secretkey",
        "accesskey",
        "sessionid",
        "signingsecret",
        "webhooksecret",
        "cookies",
        "credential",
        "credentials",
    }
)
_SECRET_SUFFIXES = ("token", "secret", "password", "apikey", "privatekey", "secretkey", "accesskey")
_URL_SECRET_NAMES = frozenset({"key", "sig", "signature"})  # also secret in a query string
_NAME_FIELDS = ("name", "key", "header")

# Well-known headers that carry a credential, recognised anywhere after a space.
_SECRET_HEADER_NAMES = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
)
# One character of a header's value: not a line break, real or JSON-escaped (\r \n), nor a quote
# (a JSON string's end, or, escaped, the end of a string that JSON text holds). A run of
# backslashes is taken whole, so that a value never ends inside an escape.
_LINE_CHAR = r'(?:[^\r\n"\\]|\\+(?![\\rn"]))'
# After an auth scheme only its credentials are masked ("Bearer ••••••, retrying"): a token68
# (RFC 7235) followed by a space, a comma, a semicolon, a quote, an escape or the end; else the
# rest of the line.
_HEADER_VALUE = (
    r"""[ \t]*(?:(?:Bearer|Basic|Token)[ \t]+"""
    rf"""(?P<token>[A-Za-z0-9._~+/\-]+=*|{MASK})(?=[\s,;"'\\]|\Z)"""
    rf"|(?P<secret>{_LINE_CHAR}+))"
)
# `Name: value` at the start of a text, a line or a quoted string ("x-api-key: abc\r\n"); its value
# is masked when the name is a secret key. Header names have no spaces: "cookie policy: x" is kept.
_HEADER_LINE = re.compile(
    r'(?:\A|[\r\n"]|\\[rn])[ \t]*(?P<name>[A-Za-z0-9_.\-]{1,64}):' + _HEADER_VALUE
)
# The well-known ones after a space or a tab too: "401 for Authorization: Bearer ...".
_SECRET_HEADER = re.compile(rf"[ \t](?i:{'|'.join(_SECRET_HEADER_NAMES)}):" + _HEADER_VALUE)
# Every credential a pattern finds contains one of its markers: a text is scanned only with the
# patterns whose markers it holds (scanning with all costs ~50 ms for a 256 KB payload preview,
# 25 µs for a 160-char error message; looking for the markers 3 ms and 2 µs).
_VALUE_MARKERS = tuple(
    (marker, pattern) for pattern in VALUE_PATTERNS for marker in pattern.markers
)

# Chars searched either side of where a preview is cut, for a credential running across the cut.
CUT_LOOKAROUND = 4096
# A secret key inside JSON text: "api_key": "value" (for previews of payloads too big to parse),
# or a header as a [name, value] pair: ["X-Api-Key", "abc"]. (?(open)...) picks the pair's form.
_PAIR_HEAD = r'(?P<open>\[\s*)?{q}(?P<key>[^"\\]{{1,64}}){q}(?P<sep>(?(open)\s*,\s*|\s*:\s*)){q}'
_JSON_SECRET_PAIR = re.compile(_PAIR_HEAD.format(q='"') + r'(?:[^"\\]|\\.)*"(?(open)(?=\s*\]))')
# The same pair cut off by the end of a preview: "password": "hunt
_JSON_SECRET_TAIL = re.compile(_PAIR_HEAD.format(q='"') + r'(?:[^"\\]|\\.)*\\?\Z')
# The same pair inside JSON that a string holds, as it reads in its JSON text: \"api_key\": \"...\"
# (a request body recorded as a string). Its value ends at an unescaped inner quote, or where a
# preview is cut.
_ESCAPED_SECRET_PAIR = re.compile(
    _PAIR_HEAD.format(q=r'\\"')
    + r'(?:[^"\\]|\\[^"\\]|\\\\(?:\\.|[^\\]))*(?:\\"|\\?\Z)(?(open)(?=\s*\]|\Z))'
)
# A query or form parameter: ?api_key=...&sig=..., or a form body client_secret=...&code=...
_URL_PARAM = re.compile(
    r"(?P<head>(?:(?<=[?&;])|(?<![^\s\"']))"
    r"(?P<key>[A-Za-z0-9_.\-]{1,64})=)(?P<value>[^&#\s\"'<>\\]+)"
)


def masking_enabled() -> bool:
    return settings.current().mask_secrets


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
    return tuple(
        sorted(
            word.encode()
            for word in words
            if not any(other != word and other in word for other in words)
        )
    )


# A key names a secret only if its letters and digits, lower-cased, contain one of these.
_SECRET_WORDS = _words_within_others(_SECRET_KEYS | set(_SECRET_SUFFIXES))
_SECRET_WORD = re.compile(b"|".join(_SECRET_WORDS))
_NOT_ALNUM = bytes(code for code in range(128) if not chr(code).isalnum())


def may_name_secret(text: str) -> bool:
    """False when no key or header name in this text can name a secret (checked on the text's
    letters and digits, lower-cased, as is_secret_key checks a key), so its pairs and header
    lines need not be looked at."""
    compact = text.lower().encode("ascii", "ignore").translate(None, _NOT_ALNUM)
    if len(compact) < 256:  # an error message: one regex search beats a dozen substring searches
        return _SECRET_WORD.search(compact) is not None
    return any(word in compact for word in _SECRET_WORDS)


def may_hold_secret(json_text: str) -> bool:
    """False when the value parsed from this JSON text has nothing to mask: the text has no
    escapes (so its keys and strings read as written), no key or header that can name a secret,
    nothing shaped like a credential and no query string."""
    return (
        "\\" in json_text
        or "=" in json_text
        or any(
            not pattern.search_to_confirm or pattern.regex.search(json_text)
            for pattern in _patterns_marked_in(json_text)
        )
        or may_name_secret(json_text)
    )


def _patterns_marked_in(text: str) -> list:
    """The value patterns whose markers `text` holds, in their order, each once."""
    found = [pattern for marker, pattern in _VALUE_MARKERS if marker in text]
    if len(found) < 2:
        return found
    return [pattern for at, pattern in enumerate(found) if at == 0 or found[at - 1] is not pattern]


def _cut_pair_start(text: str) -> int | None:
    """Where the one `"key": "value` (or `["name", "value`) cut short by the end of `text` can
    start, or None.

    Its value runs to the end without an unescaped quote, so unless the last quote is escaped
    that quote opens the value, the one before it closes the key, and the one before that opens
    it (a `[` before it opens a pair). With an escaped last quote the whole text is searched (0).
    """
    last = text.rfind('"')
    if last <= 0:
        return None
    if _backslashes_before(text, last) % 2:
        return 0
    key_end = text.rfind('"', 0, last)
    key_start = text.rfind('"', 0, key_end) if key_end > 0 else -1
    return _pair_open_before(text, key_start) if key_start >= 0 else None


def _pair_open_before(text: str, key_start: int) -> int:
    """Where the `[` that opens a [name, value] pair is, if one opens right before the name."""
    start = key_start
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return start - 1 if start > 0 and text[start - 1] == "[" else key_start


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
    while (start := _credential_across(text, end)) is not None:
        end = start  # a shape found before the new cut may in turn run across it
    return end


def _credential_across(text: str, cut: int) -> int | None:
    """Where the first credential-shaped value that runs across `cut` starts, or None."""
    low, high = max(0, cut - CUT_LOOKAROUND), cut + CUT_LOOKAROUND
    starts = []
    for pattern in _patterns_marked_in(text[low:high]):
        for match in pattern.regex.finditer(text, low, high):
            if match.start() >= cut:
                break
            if match.end() > cut:
                starts.append(match.start())
                break
    return min(starts, default=None)


class MaskTally:
    """Masks like the functions below and counts the values it hid, so a page can say so.

    One tally per payload: `hits` is how many secret values (a key's value, a credential inside
    a text, a header's value, a query parameter) were replaced by MASK.
    """

    def __init__(self) -> None:
        self.hits = 0

    def text(self, text: str) -> str:
        """Masks credential-shaped substrings and secret headers' values, keeping an auth scheme
        word ("Bearer ••••••"), a URL's user and host, a PEM block's BEGIN and END lines."""
        return self._text(text, None)

    def json_text(self, text: str) -> str:
        """text() plus `"secret_key": "value"` pairs and `["Secret-Name", "value"]` pairs, for
        JSON text that is not parsed."""
        names_secret = may_name_secret(text)
        if names_secret:
            text = _JSON_SECRET_PAIR.sub(self._pair, text)
            if '\\"' in text:
                text = _ESCAPED_SECRET_PAIR.sub(self._escaped_pair, text)
        return self._text(text, names_secret)

    def json_preview(self, text: str) -> str:
        """json_text() for the first part of a JSON text, whose last value may be cut short."""
        text = self.json_text(text)
        start = _cut_pair_start(text)
        found = None if start is None else _JSON_SECRET_TAIL.search(text, start)
        return text if found is None else text[: found.start()] + self._pair(found)

    def json_value(self, value, json_text: str):
        """value() of a value parsed from `json_text`, skipped when the text shows there is
        nothing to mask (most payloads: walking them costs more than reading the text); such a
        value is returned as it is, however deep it nests."""
        return self.value(value) if may_hold_secret(json_text) else value

    def value(self, value, depth: int = 0):
        """A copy of a JSON value with secret keys' values and credential-shaped strings masked;
        what lies deeper than MAX_DEPTH is masked whole."""
        if depth > MAX_DEPTH:
            return self._hide()
        if isinstance(value, dict):
            return self._mapping(value, depth)
        if isinstance(value, list):
            if _is_secret_pair(value):
                return [value[0], self._hide()]
            return [self.value(item, depth + 1) for item in value]
        if isinstance(value, str):  # a string may hold JSON: a request body, an error body
            return self.json_text(value) if '"' in value else self._text(value, None)
        return value

    def _text(self, text: str, names_secret: bool | None) -> str:
        """text(), told whether may_name_secret(text) holds when the caller knows (else None)."""
        if ":" in text and (may_name_secret(text) if names_secret is None else names_secret):
            text = _HEADER_LINE.sub(self._header_line, text)
            text = _SECRET_HEADER.sub(self._header_value, text)
        # masking only takes markers away: those found first stand for the whole loop
        for pattern in _patterns_marked_in(text):
            text = pattern.regex.sub(self._credential, text)
        return _URL_PARAM.sub(self._url_param, text) if "=" in text else text

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

    def _hide(self, hidden: str = "") -> str:
        """MASK, counted unless what it hides holds a value masked (and counted) before."""
        if MASK not in hidden:
            self.hits += 1
        return MASK

    def _masked_group(self, match: re.Match, group: str) -> str:
        """The match with only its `group` masked (a value masked already stays as it is)."""
        hidden = match.group(group)
        if hidden == MASK:
            return match.group(0)
        start, end = match.span(group)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + self._hide(hidden) + whole[end - offset :]

    def _credential(self, match: re.Match) -> str:
        return self._masked_group(match, "secret")

    def _header_line(self, match: re.Match) -> str:
        return self._header_value(match) if is_secret_key(match.group("name")) else match.group(0)

    def _header_value(self, match: re.Match) -> str:
        return self._masked_group(match, "secret" if match.group("token") is None else "token")

    def _url_param(self, match: re.Match) -> str:
        key, value = match.group("key"), match.group("value")
        if value != MASK and (is_secret_key(key) or key.lower() in _URL_SECRET_NAMES):
            return match.group("head") + self._hide(value)
        return match.group(0)

    def _pair(self, match: re.Match) -> str:
        if not is_secret_key(match.group("key")):
            return match.group(0)
        return (
            f'{match.group("open") or ""}"{match.group("key")}"{match.group("sep")}"{self._hide()}"'
        )

    def _escaped_pair(self, match: re.Match) -> str:
        if not is_secret_key(match.group("key")):
            return match.group(0)
        return (
            f'{match.group("open") or ""}\\"{match.group("key")}\\"{match.group("sep")}'
            f'\\"{self._hide()}\\"'
        )


def _is_secret_pair(items: list) -> bool:
    """A header given as a [name, value] pair whose name names a secret: ["X-Api-Key", "abc"]."""
    return len(items) == 2 and is_secret_key(items[0]) and items[1] not in (None, "")


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
    return [
        _masked_message(message) if isinstance(message, str) and message else message
        for message in messages
    ]


@lru_cache(maxsize=8192)
def _masked_message(message: str) -> str:
    return mask_json_text(message)
