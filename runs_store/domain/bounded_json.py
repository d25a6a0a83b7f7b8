"""JSON from outside, parsed within a bound on how deep it nests.

Run records come from files anyone can write. Without a bound a record nested 10,000 levels deep
ends Python's parser (and any walk over it) in a RecursionError. Every reader and every page that
parses stored JSON goes through `loads_bounded`, so such input is rejected with a reason (or, when
already stored, shown as text). Pure: no settings, no database, so the record and error rules
(records, signatures, step_tree) can use it and stay pure too. The bounds that settings decide
(the size of a record and of a file) are in limits.py.
"""

from __future__ import annotations

import json
import re

# Real run records nest a few dozen levels (a step payload inside a loop's iterations inside a
# run), a flow version's trigger one more per step of the flow; this leaves room for flows of a
# couple of hundred steps and stays far from Python's recursion limit (1,000 frames).
MAX_JSON_DEPTH = 256

_OPENERS = ("{", "[")
# A \uD800-\uDFFF escape: half of a pair, or (lone) no character at all. JSON allows a lone one
# (JavaScript's JSON.stringify writes one for a string that holds it); UTF-8, Arrow and DuckDB do
# not, so a parsed lone half becomes U+FFFD, the replacement character, as decoders do.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """JSON text nested deeper than MAX_JSON_DEPTH."""


def too_deep_reason(limit: int = MAX_JSON_DEPTH) -> str:
    return f"nested deeper than {limit} levels of JSON objects and lists"


def exceeds_depth(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests deeper than `limit`, read from the text without parsing it.

    A text with fewer opening brackets than the limit cannot exceed it (almost every record: it
    costs two C-speed counts); only the others are scanned, brackets inside strings left out."""
    if sum(text.count(opener) for opener in _OPENERS) <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in _OPENERS else -1
        if depth > limit:
            return True
    return False


def loads_bounded(text: str, limit: int = MAX_JSON_DEPTH):
    """json.loads for text from outside: TooDeep past `limit` levels, never a RecursionError."""
    if exceeds_depth(text, limit):
        raise TooDeep(too_deep_reason(limit))
    try:
        value = json.loads(text)
    except RecursionError:  # only if the scan above missed a depth Python cannot parse
        raise TooDeep(too_deep_reason(limit)) from None
    return without_lone_surrogates(value) if has_surrogate_escape(text) else value


def has_surrogate_escape(text: str) -> bool:
    """Whether JSON text escapes a UTF-16 surrogate (a pair's half, or a lone one): such text is
    parsed in Python rather than handed to DuckDB, which refuses a lone one."""
    return _SURROGATE_ESCAPE.search(text) is not None


def without_lone_surrogates(value):
    """The parsed value with each lone surrogate (a pair was joined into one character by the
    parser) replaced by U+FFFD; the same objects when there was none."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            without_lone_surrogates(key): without_lone_surrogates(item)
            for key, item in value.items()
        }
    return value
