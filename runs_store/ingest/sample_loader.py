"""Sample data for newcomers and for tests: generated runs, and the bundled sample file.

The bundled sample (`sample_data/`) was generated on some past day. On first start with an empty
database the app loads it shifted in time so that its newest run is now: a newcomer on any date
sees the default "Last 7 days" view populated.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runs_store.domain.run_fields import RecordRejected, parse_time
from runs_store.ingest.pipeline import IngestSummary, ingest_file, ingest_items
from runs_store.ingest.readers import SourceFile
from runs_store.store.backend import open_store
from runs_store.store.location import DuckDBLocation, current_location
from runs_store.store.sources import SAMPLE_SOURCE

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLE_FILE = SAMPLE_DIR / "sample-runs.jsonl.gz"
SAMPLE_CHUNK_RUNS = 50_000

_TIME_KEYS = frozenset(
    {"created", "updated", "startTime", "finishTime", "archivedAt", "resumeDateTime", "endTime"}
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def shift_times(value, shift: timedelta, depth: int = 0):
    """A copy of a record with every ISO timestamp under a time key moved by `shift`."""
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {
            key: (
                _shift_one(child, shift)
                if key in _TIME_KEYS and isinstance(child, str)
                else shift_times(child, shift, depth + 1)
            )
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [shift_times(child, shift, depth + 1) for child in value]
    return value


def _shift_one(text: str, shift: timedelta) -> str:
    try:
        return _iso(parse_time(text, "time", required=True) + shift)
    except RecordRejected:  # not a timestamp after all (or empty): leave the value as it was
        return text


def _newest_created(items: Iterable) -> datetime | None:
    newest = None
    for item in items:
        if isinstance(item.value, dict) and item.value.get("created"):
            created = parse_time(item.value["created"], "created", required=True)
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


def load_bundled_sample(
    db: str | Path | None,
    now: datetime | None = None,
    path: Path = SAMPLE_FILE,
    connection=None,
) -> IngestSummary:
    """Loads sample_data/ into the store (`connection`, else the one `db` names, a RUNS_DB value),
    moved in time so its newest run starts `now`."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if connection is not None:
        return ingest_items(connection, shifted_sample_items(path, now), SAMPLE_SOURCE)
    with open_store(db) as con:
        return ingest_items(con, shifted_sample_items(path, now), SAMPLE_SOURCE)


def load_generated_sample(
    db: str | Path | None,
    runs: int,
    days: float,
    seed: int,
    end: datetime,
    progress: Callable[[str, int, int], None] | None = None,
    cluster: str | None = None,
) -> IngestSummary:
    """Generated runs, loaded into the store `db` names (a RUNS_DB value; None: RUNS_DB) as JSONL
    chunks of SAMPLE_CHUNK_RUNS runs through the same ingest as a user's file. A second process
    generates chunk n+1 while this one loads chunk n, so the two halves of the work overlap on two
    cores; each chunk is one transaction."""
    source = f"sample(seed={seed}, runs={runs}, days={days:g})"
    location = current_location(None if db is None else str(db))
    beside = location.path.resolve().parent if isinstance(location, DuckDBLocation) else None
    folder = Path(tempfile.mkdtemp(prefix=".sample-", dir=beside))
    context = multiprocessing.get_context("spawn")  # the parent may hold DuckDB threads
    chunks = context.Queue(maxsize=1)  # at most one chunk waits on disk
    writer = context.Process(
        target=write_sample_chunks, daemon=True, args=(chunks, folder, runs, days, seed, end)
    )
    writer.start()
    summary = IngestSummary()
    loaded = 0
    try:
        with open_store(db, cluster=cluster) as con:
            for path, count in _ready_chunks(chunks, writer):
                part = ingest_file(con, SourceFile(path, display_name=source, format="jsonl"))
                path.unlink()
                summary.add(part)
                loaded += count
                if progress:
                    progress(source, loaded, runs)
    finally:
        writer.kill()
        writer.join()
        shutil.rmtree(folder, ignore_errors=True)
    summary.files = 1
    return summary


def _ready_chunks(chunks, writer) -> Iterator[tuple[Path, int]]:
    while True:
        try:
            message = chunks.get(timeout=1)
        except queue.Empty:
            if not writer.is_alive():
                raise RuntimeError(
                    f"generating the sample failed: the writer process ended "
                    f"(exit code {writer.exitcode})"
                ) from None
            continue
        if message is None:
            return
        if isinstance(message, str):
            raise RuntimeError(f"generating the sample failed: {message}")
        yield message


def write_sample_chunks(
    chunks, folder: Path, runs: int, days: float, seed: int, end: datetime
) -> None:
    """The writer process: the generator's runs, in order, as numbered JSONL files."""
    from sample_data.generator import generate_runs, write_jsonl

    try:
        records = iter(generate_runs(runs, days=days, seed=seed, end=end))
        for number in range(len(range(0, runs, SAMPLE_CHUNK_RUNS))):
            path = folder / f"chunk-{number:05d}.jsonl"
            count = write_jsonl(path, itertools.islice(records, SAMPLE_CHUNK_RUNS))
            chunks.put((path, count))
        chunks.put(None)
    except Exception as error:  # reported to the loading process, which raises it
        chunks.put(f"{type(error).__name__}: {error}")
