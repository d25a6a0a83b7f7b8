"""Bounds on what one input may cost: how deep a record nests, how large one record and one file
may grow once unpacked.

Run records come from files anyone can write. Without bounds a record nested 10,000 levels deep
ends Python's parser (and any walk over it) in a RecursionError, and a 2 MB gzip that unpacks to
2 GB holds gigabytes in memory. Every reader and every page that parses stored JSON checks these
bounds, so such input is rejected with a reason (or, when already stored, shown as text) and
memory stays bounded whatever arrives.
"""

from __future__ import annotations

import json
import re

from runs_store import settings
from runs_store.errors import StoreError

# Real run records nest a few dozen levels (a step payload inside a loop's iterations inside a
# run), a flow version's trigger one more per step of the flow; this leaves room for flows of a
# couple of hundred steps and stays far from Python's recursion limit (1,000 frames).
MAX_JSON_DEPTH = 256
# Kept of a record too large to load, so `rejects` still shows what it was.
REJECTED_HEAD_CHARS = 64 * 1024

_OPENERS = ("{", "[")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """JSON text nested deeper than MAX_JSON_DEPTH."""


class FileTooLarge(StoreError):
    """A file that unpacks to more than RUNS_MAX_FILE_GB."""


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
        return json.loads(text)
    except RecursionError:  # only if the scan above missed a depth Python cannot parse
        raise TooDeep(too_deep_reason(limit)) from None


def max_record_chars() -> int:
    """The largest record (a line, an item, a row, a whole .json document) read, in characters."""
    return int(settings.current().max_record_mb * 1024 * 1024)


def max_file_bytes() -> int:
    """The most bytes one file may unpack to."""
    return int(settings.current().max_file_gb * 1024 ** 3)


def check_settings() -> None:
    """SettingError, naming the variable, when a setting (these bounds among them) is set to
    something not allowed: said before a file is read, whichever reader would have needed it."""
    settings.current()


def record_too_large_reason(size_hint: str = "") -> str:
    megabytes = settings.current().max_record_mb
    return (f"record larger than RUNS_MAX_RECORD_MB ({megabytes:g} MB){size_hint}; the first "
            f"{REJECTED_HEAD_CHARS // 1024} KB are kept here. Raise the setting to load it")


def file_too_large_message(name: str) -> str:
    gigabytes = settings.current().max_file_gb
    return (f"{name}: unpacks to more than RUNS_MAX_FILE_GB ({gigabytes:g} GB); nothing of it "
            f"was loaded. Raise the setting to load it")
