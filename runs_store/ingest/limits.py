"""Bounds on what one input may cost, as the settings set them: how large one record and one
file may grow once unpacked.

Run records come from files anyone can write. Without bounds a 2 MB gzip that unpacks to 2 GB
holds gigabytes in memory. Every reader checks these bounds, so such input is rejected with a
reason and memory stays bounded whatever arrives. How deep JSON may nest is bounded in
bounded_json.py (it needs no setting).
"""

from __future__ import annotations

from runs_store import settings
from runs_store.domain.errors import StoreError

# Kept of a record too large to load, so `rejects` still shows what it was.
REJECTED_HEAD_CHARS = 64 * 1024


class FileTooLarge(StoreError):
    """A file that unpacks to more than RUNS_MAX_FILE_GB."""


def max_record_chars() -> int:
    """The largest record (a line, an item, a row, a whole .json document) read, in characters."""
    return int(settings.current().max_record_mb * 1024 * 1024)


def max_file_bytes() -> int:
    """The most bytes one file may unpack to."""
    return int(settings.current().max_file_gb * 1024**3)


def check_settings() -> None:
    """SettingError, naming the variable, when a setting (these bounds among them) is set to
    something not allowed: said before a file is read, whichever reader would have needed it."""
    settings.current()


def record_too_large_reason(size_hint: str = "") -> str:
    megabytes = settings.current().max_record_mb
    return (
        f"record larger than RUNS_MAX_RECORD_MB ({megabytes:g} MB){size_hint}; the first "
        f"{REJECTED_HEAD_CHARS // 1024} KB are kept here. Raise the setting to load it"
    )


def file_too_large_message(name: str) -> str:
    gigabytes = settings.current().max_file_gb
    return (
        f"{name}: unpacks to more than RUNS_MAX_FILE_GB ({gigabytes:g} GB); nothing of it "
        f"was loaded. Raise the setting to load it"
    )
