"""Reading run records out of the files users really have, one record at a time.

Formats: `.jsonl`/`.ndjson` (one run per line), `.json` (one run, a list of runs, or a list page
`{"data": [...], "next": ..., "previous": ...}`), `.csv` and `.parquet` (flat export columns), each
optionally gzipped. Every record comes with where it was found (line, item or row) and its text,
so a record that is rejected later can be kept verbatim. Line-based formats stream: memory does
not grow with the file.

Nothing read may cost more than the bounds in `limits`: a gzip is unpacked as it streams and
stops at RUNS_MAX_FILE_GB, a line or document larger than RUNS_MAX_RECORD_MB is rejected with its
first 64 KB kept, and JSON nested past MAX_JSON_DEPTH is rejected with that reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from runs_store.domain.bounded_json import TooDeep, loads_bounded
from runs_store.domain.errors import InputPathError
from runs_store.ingest.limits import (
    REJECTED_HEAD_CHARS,
    FileTooLarge,
    file_too_large_message,
    max_file_bytes,
    max_record_chars,
    record_too_large_reason,
)

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
SUPPORTED = ", ".join(sorted(FORMATS)) + " (each optionally .gz)"
_NEWLINES = ("\n", "\r")


@dataclass
class Item:
    unit: str  # "line", "item" or "row": what `position` counts
    position: int  # 1-based
    raw: str | None  # the record's text, kept verbatim if it is rejected; None in memory
    value: object  # the parsed record; None when `error` is set
    error: str | None = None
    flat: bool = False  # a flat export row rather than an engine run object


def detect_format(name: str) -> str | None:
    """The format named by a file's extension, ignoring a trailing .gz."""
    lowered = name.lower()
    if lowered.endswith(".gz"):
        lowered = lowered[:-3]
    return FORMATS.get(os.path.splitext(lowered)[1])


def expand_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus every recognised file under a named directory."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and detect_format(p.name))
            if not inside:
                raise InputPathError(
                    f"{path}: no run files in this directory; expected {SUPPORTED}"
                )
            found.extend(inside)
        elif path.is_file():
            if detect_format(path.name) is None:
                raise InputPathError(f"{path}: not a recognised format; expected {SUPPORTED}")
            found.append(path)
        elif path.exists():
            raise InputPathError(f"{path}: not a regular file or directory")
        else:
            raise InputPathError(f"{path}: no such file or directory")
    return found


class CountingReader(io.RawIOBase):
    """Wraps a binary stream and counts the bytes taken from it, for progress bars."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


class _ByteSource(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class BoundedReader(io.RawIOBase):
    """Wraps an unpacking stream and raises FileTooLarge once it has given more than `limit`
    bytes: a gzip bomb is stopped after the bound, never inflated whole."""

    def __init__(self, stream: _ByteSource, limit: int, name: str):
        self.stream, self.limit, self.name = stream, limit, name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise FileTooLarge(file_too_large_message(self.name))
        buffer[: len(data)] = data
        return len(data)


def _maybe_gunzip(stream: io.BufferedReader, name: str) -> BinaryIO:
    if stream.peek(2)[:2] != b"\x1f\x8b":
        return stream
    return io.BufferedReader(BoundedReader(gzip.GzipFile(fileobj=stream), max_file_bytes(), name))


def bounded_lines(text: io.TextIOBase, max_chars: int) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, too large) for each line; a line longer than `max_chars` is read past
    in pieces and only its head is kept, so one huge line never sits in memory."""
    number = 0
    while line := text.readline(max_chars + 1):
        number += 1
        if len(line) <= max_chars or line.endswith(_NEWLINES):
            yield number, line, False
            continue
        head = line[:REJECTED_HEAD_CHARS]
        while line and not line.endswith(_NEWLINES):
            line = text.readline(1 << 20)
        yield number, head, True


def too_large_item(unit: str, position: int, head: str) -> Item:
    return Item(unit, position, head, None, record_too_large_reason())


def too_deep_item(unit: str, position: int, text: str, error: TooDeep) -> Item:
    """A record nested past the depth bound, kept by its head like one too large."""
    return Item(unit, position, text[:REJECTED_HEAD_CHARS], None, str(error))


def json_items(unit: str, position: int, text: str) -> Iterator[Item]:
    try:
        value = loads_bounded(text)
    except TooDeep as error:
        yield too_deep_item(unit, position, text, error)
        return
    except ValueError as error:
        yield Item(unit, position, text, None, f"not valid JSON: {error}")
        return
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        for record in value["data"]:
            yield Item(unit, position, json.dumps(record, ensure_ascii=False), record)
    else:
        yield Item(unit, position, text, value)


def read_jsonl(text: io.TextIOBase) -> Iterator[Item]:
    for number, line, too_large in bounded_lines(text, max_record_chars()):
        if too_large:
            yield too_large_item("line", number, line)
            continue
        stripped = line.strip()
        if stripped:
            yield from json_items("line", number, stripped)


def read_json(text: io.TextIOBase) -> Iterator[Item]:
    limit = max_record_chars()
    content = text.read(limit + 1)
    if len(content) > limit:  # read whole to be parsed: bounded like one record
        yield too_large_item("item", 1, content[:REJECTED_HEAD_CHARS])
        return
    try:
        value = loads_bounded(content)
    except TooDeep as error:  # a list keeps its other items; anything else is one record
        if content.lstrip().startswith("["):
            for number, item_text in enumerate(array_items(content), 1):
                yield from json_items("item", number, item_text)
        else:
            yield too_deep_item("item", 1, content, error)
        return
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several JSON documents: treat as one per line
            yield from read_jsonl(io.StringIO(content))
            return
        yield Item("line", error.lineno, content[:10_000], None, f"not valid JSON: {error}")
        return
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    records = value if isinstance(value, list) else [value]
    for number, record in enumerate(records, 1):
        yield Item("item", number, json.dumps(record, ensure_ascii=False, default=str), record)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.S)


def array_items(text: str) -> Iterator[str]:
    """The texts of a JSON array's items, found without parsing them (so each can be judged on
    its own even when one nests too deep to parse)."""
    depth, start = 0, None
    for token in _TOKEN.finditer(text):
        mark = token.group()
        if mark in ("[", "{"):
            depth += 1
            if depth == 1:
                start = token.end()
        elif mark in ("]", "}"):
            depth -= 1
            if depth == 0 and start is not None:
                if text[start : token.start()].strip():
                    yield text[start : token.start()].strip()
                return
        elif mark == "," and depth == 1:
            yield text[start : token.start()].strip()
            start = token.end()


# The ' that export puts before a text cell a spreadsheet would run as a formula (see export).
_ESCAPED_FORMULA = re.compile(r"'+[=+\-@\t\r]")


def _formula_unescaped(value: str | None) -> str | None:
    """A cell without the ' export put before it (None: a short row's missing cell)."""
    if isinstance(value, str) and value[:1] == "'" and _ESCAPED_FORMULA.match(value):
        return value[1:]
    return value


def read_csv(text: io.TextIOBase) -> Iterator[Item]:
    # Exports carry long error messages: allow fields up to the record bound (csv's default is
    # 128 KB); a larger one ends the file with csv.Error, which names the setting.
    csv.field_size_limit(max_record_chars())
    reader = csv.DictReader(text)
    for row in reader:
        if None in row:
            extra = row.pop(None)
            yield Item(
                "line",
                reader.line_num,
                json.dumps(row | {"": extra}),
                None,
                f"{len(extra)} more values than the header has columns",
                flat=True,
            )
            continue
        row = {key: _formula_unescaped(value) for key, value in row.items()}
        yield Item("line", reader.line_num, json.dumps(row, ensure_ascii=False), row, flat=True)


def read_parquet(stream) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise InputPathError(f"not a readable Parquet file ({error})") from None
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                number += 1
                raw = json.dumps(row, ensure_ascii=False, default=str)
                if len(raw) > max_record_chars():
                    yield too_large_item("row", number, raw[:REJECTED_HEAD_CHARS])
                    continue
                yield Item("row", number, raw, row, flat=True)
    except pa.ArrowException as error:
        raise InputPathError(f"not a readable Parquet file after row {number} ({error})") from None


class SourceFile:
    """One input file: its records, and how far through it reading has got."""

    def __init__(self, path: Path, display_name: str | None = None, format: str | None = None):
        self.path = path
        # One name per file however it was spelled, so ingesting it again replaces its rejects.
        self.name = display_name or str(Path(path).resolve())
        found = format or detect_format(display_name or path.name)
        if found is None:
            raise InputPathError(f"{self.name}: not a recognised format; expected {SUPPORTED}")
        self.format: str = found
        try:
            self.total_bytes = path.stat().st_size
        except OSError as error:
            raise InputPathError(f"{self.name}: cannot read it ({error.strerror})") from None
        self._counter: CountingReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._counter.count if self._counter else 0

    @property
    def gzipped(self) -> bool:
        try:
            with open(self.path, "rb") as stream:
                return stream.read(2) == b"\x1f\x8b"
        except OSError as error:
            raise InputPathError(f"{self.name}: cannot read it ({error.strerror})") from None

    def items(self) -> Iterator[Item]:
        self.check_size()
        with self._read_errors_named():
            if self.format == "parquet":
                with self.open_binary() as stream:
                    yield from self._parquet_items(stream)
            else:
                with self.open_text() as text:
                    reader = {"jsonl": read_jsonl, "json": read_json, "csv": read_csv}[self.format]
                    yield from reader(text)

    def copy_unpacked(self, out: BinaryIO) -> None:
        """Writes the file's bytes, gunzipped (bounded by RUNS_MAX_FILE_GB), to `out`."""
        with self._read_errors_named(), self.open_binary() as stream:
            shutil.copyfileobj(stream, out, 1 << 20)

    @contextmanager
    def _read_errors_named(self) -> Iterator[None]:
        """A file that cannot be read (damaged gzip, bad bytes, ...) as an InputPathError."""
        try:
            yield
        except csv.Error as error:
            raise InputPathError(
                f"{self.name}: cannot read it ({error}; fields are read up to RUNS_MAX_RECORD_MB)"
            ) from None
        except (OSError, EOFError, UnicodeError, zlib.error) as error:
            raise InputPathError(f"{self.name}: cannot read it ({error})") from None

    def check_size(self) -> None:
        """FileTooLarge when the file itself is past RUNS_MAX_FILE_GB (a .gz is checked as it
        unpacks)."""
        if self.total_bytes > max_file_bytes():
            raise FileTooLarge(file_too_large_message(self.name))

    @contextmanager
    def open_text(self) -> Iterator[io.TextIOBase]:
        """The file's text (gunzipped, BOM dropped), counting the bytes read for progress."""
        with self.open_binary() as stream:
            yield io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")

    @contextmanager
    def open_binary(self) -> Iterator[BinaryIO]:
        try:
            # The try covers the open alone (errors while reading are named by the caller's
            # _read_errors_named); `with raw:` below closes the file.
            raw = open(self.path, "rb")  # noqa: SIM115 - a `with` here would wrap the reads too
        except OSError as error:
            raise InputPathError(f"{self.name}: cannot read it ({error.strerror})") from None
        with raw:
            self._counter = CountingReader(raw)
            yield _maybe_gunzip(io.BufferedReader(self._counter), self.name)

    def _parquet_items(self, stream: BinaryIO) -> Iterator[Item]:
        # Parquet needs to seek: read it from the file itself, or unpacked into a temporary file.
        try:
            if self.gzipped:
                with tempfile.TemporaryFile() as unpacked:
                    shutil.copyfileobj(stream, unpacked, 1 << 20)
                    unpacked.seek(0)
                    yield from read_parquet(unpacked)
            else:
                yield from read_parquet(self.path)
        except InputPathError as error:  # a damaged Parquet file: say which one
            raise InputPathError(f"{self.name}: {error}") from None
        assert self._counter is not None, "open_binary counts the bytes of the stream read here"
        self._counter.count = self.total_bytes
