"""Ingest throughput and memory: engine JSONL with steps through `python -m runs_store ingest`.

Each repeat ingests a different generated file (another seed, so other run ids) in a fresh
process, measured from outside: wall time including the interpreter's start, and the process's
peak resident memory. Files go into an empty store, and into a copy of a large store (the
realistic case: adding a day's export to months of history). The same files also go through
benchmarks/ingest_floor.py (DuckDB alone, nothing checked): the floor under the figure.
"""

from __future__ import annotations

import re
import shutil
import statistics
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.build import size_label
from benchmarks.procs import python_module, run_measured

_NEW = re.compile(r"Ingested .*?: ([\d,]+) new, ([\d,]+) updated")
_FLOOR = re.compile(r"Loaded without checks: ([\d,]+) runs")


def ingest_file_for(stores_dir: Path, runs: int, seed: int) -> Path:
    """A generated engine JSONL file (with steps), written once and reused."""
    from sample_data.generator import generate_runs, write_jsonl

    path = stores_dir / f"ingest-{size_label(runs)}-seed{seed}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        write_jsonl(partial, generate_runs(runs, days=1, seed=seed, end=end))
        partial.replace(path)
    return path


def time_ingest(jsonl: Path, db: Path) -> dict:
    """One `python -m runs_store ingest` of a file: runs/s and peak RSS."""
    measured = run_measured(
        python_module("runs_store", "ingest", str(jsonl), "--db", str(db), "--progress", "never")
    )
    match = _NEW.search(measured.output)
    if measured.returncode not in (0, 1) or not match:
        raise RuntimeError(f"ingest failed ({measured.returncode}):\n{measured.output[-3000:]}")
    loaded = int(match.group(1).replace(",", "")) + int(match.group(2).replace(",", ""))
    return {
        "seconds": measured.seconds,
        "runs": loaded,
        "runs_per_s": loaded / measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
    }


def time_floor(jsonl: Path, db: Path) -> dict:
    """The same file through benchmarks/ingest_floor.py: DuckDB alone, nothing judged."""
    measured = run_measured(python_module("benchmarks.ingest_floor", str(jsonl), str(db)))
    match = _FLOOR.search(measured.output)
    if measured.returncode != 0 or not match:
        raise RuntimeError(f"floor load failed ({measured.returncode}):\n{measured.output[-3000:]}")
    loaded = int(match.group(1).replace(",", ""))
    return {
        "seconds": measured.seconds,
        "runs": loaded,
        "runs_per_s": loaded / measured.seconds,
        "peak_rss_mb": measured.peak_rss_mb,
    }


def _summary(samples: list[dict], target: str) -> dict:
    return {
        "target": target,
        "samples": samples,
        "runs_per_s": statistics.median(s["runs_per_s"] for s in samples),
        "peak_rss_mb": max(s["peak_rss_mb"] or 0 for s in samples),
        "runs": samples[0]["runs"],
    }


def bench_ingest(
    stores_dir: Path,
    runs: int,
    repeat: int,
    into: Path | None = None,
    into_label: str = "",
    log=print,
    timer=time_ingest,
) -> list[dict]:
    """Medians over `repeat` files: into an empty store, and into a copy of `into` if given.
    `timer` is time_ingest (our ingest) or time_floor (DuckDB alone, nothing judged)."""
    what = "floor" if timer is time_floor else "ingest"
    files = [ingest_file_for(stores_dir, runs, seed=100 + n) for n in range(repeat)]
    scratch = stores_dir / f"{what}-scratch.duckdb"
    empty = []
    for jsonl in files:
        _remove(scratch)
        empty.append(timer(jsonl, scratch))
        log(f"{what} {size_label(runs)} into an empty store: {empty[-1]['runs_per_s']:,.0f} runs/s")
    results = [_summary(empty, "empty store")]
    if into is not None:
        _remove(scratch)
        shutil.copy(into, scratch)
        grown = []
        for jsonl in files:
            grown.append(timer(jsonl, scratch))
            log(
                f"{what} {size_label(runs)} into the {into_label} store: "
                f"{grown[-1]['runs_per_s']:,.0f} runs/s"
            )
        results.append(_summary(grown, f"{into_label} store"))
    _remove(scratch)
    return results


def _remove(db: Path) -> None:
    db.unlink(missing_ok=True)
    Path(f"{db}.wal").unlink(missing_ok=True)
