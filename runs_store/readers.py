"""Reading run records out of the files users really have, one record at a time.

Formats: `.jsonl`/`.ndjson` (one run per line), `.json` (one run, a list of runs, or a list page
`{"data": [...], "next": ..., "previous": ...}`), `.csv` and `.parquet` (flat export columns), each
optionally gzipped. Every record comes with where it was found (line, item or row) and its text,
so a record that is rejected later can be kept verbatim. Line-based formats stream: memory does
not grow with the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from runs_store.errors import InputPathError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".parquet": "parquet"}
SUPPORTED = ", ".join(sorted(FORMATS)) + " (each optionally .gz)"
# Exports carry long error messages and payloads: allow big CSV fields (the default is 128 KB).
csv.field_size_limit(2**31 - 1)


@dataclass
class Item:
    unit: str            # "line", "item" or "row": what `position` counts
    position: int        # 1-based
    raw: str             # the record's text, kept verbatim if it is rejected
    value: object        # the parsed record; None when `error` is set
    error: str | None = None
    flat: bool = False   # a flat export row rather than an engine run object


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
                raise InputPathError(f"{path}: no run files in this directory; expected "
                                     f"{SUPPORTED}")
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


def _maybe_gunzip(stream: io.BufferedReader) -> BinaryIO:
    return gzip.GzipFile(fileobj=stream) if stream.peek(2)[:2] == b"\x1f\x8b" else stream


def json_items(unit: str, position: int, text: str) -> Iterator[Item]:
    try:
        value = json.loads(text)
    except ValueError as error:
        yield Item(unit, position, text, None, f"not valid JSON: {error}")
        return
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        for record in value["data"]:
            yield Item(unit, position, json.dumps(record, ensure_ascii=False), record)
    else:
        yield Item(unit, position, text, value)


def read_jsonl(text: io.TextIOBase) -> Iterator[Item]:
    for number, line in enumerate(text, 1):
        stripped = line.strip()
        if stripped:
            yield from json_items("line", number, stripped)


def read_json(text: io.TextIOBase) -> Iterator[Item]:
    content = text.read()
    try:
        value = json.loads(content)
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


def read_csv(text: io.TextIOBase) -> Iterator[Item]:
    reader = csv.DictReader(text)
    for row in reader:
        if None in row:
            extra = row.pop(None)
            yield Item("line", reader.line_num, json.dumps(row | {"": extra}), None,
                       f"{len(extra)} more values than the header has columns", flat=True)
            continue
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
                yield Item("row", number, json.dumps(row, ensure_ascii=False, default=str), row,
                           flat=True)
    except pa.ArrowException as error:
        raise InputPathError(f"not a readable Parquet file after row {number} ({error})") from None


class SourceFile:
    """One input file: its records, and how far through it reading has got."""

    def __init__(self, path: Path, display_name: str | None = None, format: str | None = None):
        self.path = path
        # One name per file however it was spelled, so ingesting it again replaces its rejects.
        self.name = display_name or str(Path(path).resolve())
        self.format = format or detect_format(display_name or path.name)
        if self.format is None:
            raise InputPathError(f"{self.name}: not a recognised format; expected {SUPPORTED}")
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
        try:
            if self.format == "parquet":
                with self._open_binary() as stream:
                    yield from self._parquet_items(stream)
            else:
                with self.open_text() as text:
                    reader = {"jsonl": read_jsonl, "json": read_json, "csv": read_csv}[self.format]
                    yield from reader(text)
        except (OSError, EOFError, UnicodeError, zlib.error, csv.Error) as error:
            raise InputPathError(f"{self.name}: cannot read it ({error})") from None

    @contextmanager
    def open_text(self) -> Iterator[io.TextIOBase]:
        """The file's text (gunzipped, BOM dropped), counting the bytes read for progress."""
        with self._open_binary() as stream:
            yield io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")

    @contextmanager
    def _open_binary(self) -> Iterator[BinaryIO]:
        try:
            raw = open(self.path, "rb")
        except OSError as error:
            raise InputPathError(f"{self.name}: cannot read it ({error.strerror})") from None
        with raw:
            self._counter = CountingReader(raw)
            yield _maybe_gunzip(io.BufferedReader(self._counter))

    def _parquet_items(self, stream: BinaryIO) -> Iterator[Item]:
        # Parquet needs to seek: read it from the file itself, or from memory when gzipped.
        try:
            if isinstance(stream, gzip.GzipFile):
                yield from read_parquet(io.BytesIO(stream.read()))
            else:
                yield from read_parquet(self.path)
        except InputPathError as error:  # a damaged Parquet file: say which one
            raise InputPathError(f"{self.name}: {error}") from None
        self._counter.count = self.total_bytes
