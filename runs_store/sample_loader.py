"""Sample data for newcomers and for tests: generated runs, and the bundled sample file.

The bundled sample (`sample_data/`) was generated on some past day. On first start with an empty
database the app loads it shifted in time so that its newest run is now: a newcomer on any date
sees the default "Last 7 days" view populated.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from runs_store.db import open_db
from runs_store.ingest import IngestSummary, ingest_items, records_as_items
from runs_store.readers import SourceFile
from runs_store.records import RecordRejected, parse_time

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_FILE = SAMPLE_DIR / "sample-runs.jsonl.gz"
SAMPLE_SOURCE = "sample_data/sample-runs.jsonl.gz"
SAMPLE_CHUNK_RUNS = 100_000

_TIME_KEYS = frozenset({"created", "updated", "startTime", "finishTime", "archivedAt",
                        "resumeDateTime", "endTime"})


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def shift_times(value, shift: timedelta, depth: int = 0):
    """A copy of a record with every ISO timestamp under a time key moved by `shift`."""
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {key: (_shift_one(child, shift) if key in _TIME_KEYS and isinstance(child, str)
                      else shift_times(child, shift, depth + 1)) for key, child in value.items()}
    if isinstance(value, list):
        return [shift_times(child, shift, depth + 1) for child in value]
    return value


def _shift_one(text: str, shift: timedelta) -> str:
    try:
        return _iso(parse_time(text, "time") + shift)
    except RecordRejected:  # not a timestamp after all: leave the value as it was
        return text


def _newest_created(items: Iterable) -> datetime | None:
    newest = None
    for item in items:
        if isinstance(item.value, dict) and item.value.get("created"):
            created = parse_time(item.value["created"], "created")
            newest = created if newest is None or created > newest else newest
    return newest


def shifted_sample_items(path: Path, now: datetime) -> Iterator:
    newest = _newest_created(SourceFile(path).items())
    shift = (now - newest) if newest else timedelta(0)
    for item in SourceFile(path).items():
        if isinstance(item.value, dict):
            item.value = shift_times(item.value, shift)
            item.raw = None
        yield item


def load_bundled_sample(db_path: Path, now: datetime | None = None, path: Path = SAMPLE_FILE,
                        connection=None) -> IngestSummary:
    """Loads sample_data/ into the database, moved in time so its newest run starts `now`."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    if connection is not None:
        return ingest_items(connection, shifted_sample_items(path, now), SAMPLE_SOURCE)
    with open_db(db_path) as con:
        return ingest_items(con, shifted_sample_items(path, now), SAMPLE_SOURCE)


def load_generated_sample(db_path: Path, runs: int, days: float, seed: int, end: datetime,
                          progress: Callable[[str, int, int], None] | None = None
                          ) -> IngestSummary:
    """Generated runs, loaded in transactions of SAMPLE_CHUNK_RUNS runs: a generated sample has
    no file to keep whole, and smaller transactions keep a million runs within the memory limit."""
    from runs_store.sample import generate_runs

    records = iter(generate_runs(runs, days=days, seed=seed, end=end))
    source = f"sample(seed={seed}, runs={runs}, days={days:g})"
    summary = IngestSummary()
    with open_db(db_path) as con:
        for first in range(0, runs, SAMPLE_CHUNK_RUNS):
            def report(records_read: int, first=first) -> None:
                if progress:
                    progress(source, first + records_read, runs)

            chunk = itertools.islice(records, SAMPLE_CHUNK_RUNS)
            part = ingest_items(con, records_as_items(chunk), source, on_batch=report)
            summary.add(part)
    summary.files = 1
    if progress:
        progress(source, runs, runs)
    return summary
