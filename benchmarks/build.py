"""The benchmark's stores: built once with the sample generator, then reused.

Stores with steps (100k, 1M) are built by the real CLI, `python -m runs_store sample`, which
generates engine-shaped runs and loads them through the real ingest. Larger stores are flat (no
step rows): generating and ingesting 10M runs with steps in Python would take most of an hour, so
they are made in DuckDB SQL from the 1M store's runs, replicated with new ids and shifted back in
time by one generated span per copy (10M = ten copies of the 1M store's 30 days, about 10 months at
the same 33k runs a day). The rows keep the `runs` schema (created by runs_store.store.database)
and are
inserted oldest first, as an ingest inserts them. Every store then gets the two hand-made runs of
handmade.py through the real ingest (`python -m runs_store ingest`).

A store is reused when its sidecar JSON records the same parameters and it is younger than the
maximum age (its newest runs should stay in the default "Last 7 days" view).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from benchmarks.handmade import write_handmade
from benchmarks.procs import python_module, run_measured
from runs_store.store.database import bump_generation, ensure_schema

BUILD_VERSION = 5  # 2: sample loads through the JSONL fast path; 3: step payloads in zstd;
#                   4: large files keep row groups of their own; 5: steps read straight from
#                   the file
DAYS = 30
SEED = 7
STEPS_UP_TO = 1_000_000  # stores up to this size have steps for every run
REPLICA_BASE = 1_000_000  # larger stores replicate the store of this size
BUILD_MEMORY_LIMIT = "8GB"


@dataclass(frozen=True)
class StoreSpec:
    label: str
    runs: int
    days: float = DAYS
    seed: int = SEED

    @property
    def steps(self) -> bool:
        return self.runs <= STEPS_UP_TO

    def params(self) -> dict:
        return {**asdict(self), "steps": self.steps, "build_version": BUILD_VERSION}


def parse_size(text: str) -> int:
    """'100k' -> 100000, '1M' -> 1000000, '2.5M', '5000'."""
    cleaned = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if factor != 1 else cleaned
    try:
        return int(float(number) * factor)
    except ValueError:
        raise ValueError(f"not a size: {text!r}; use e.g. 100k, 1M, 10M") from None


def size_label(runs: int) -> str:
    if runs % 1_000_000 == 0:
        return f"{runs // 1_000_000}M"
    if runs % 1_000 == 0:
        return f"{runs // 1_000}k"
    return str(runs)


def spec_for(text: str) -> StoreSpec:
    runs = parse_size(text)
    return StoreSpec(size_label(runs), runs)


def store_path(stores_dir: Path, spec: StoreSpec) -> Path:
    return stores_dir / f"runs-{spec.label}.duckdb"


def _sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(_sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def _reusable(path: Path, spec: StoreSpec, max_age_days: float) -> dict | None:
    sidecar = read_sidecar(path)
    if not path.exists() or not sidecar or sidecar.get("params") != spec.params():
        return None
    built = datetime.fromisoformat(sidecar["built_at"])
    if datetime.now(UTC) - built > timedelta(days=max_age_days):
        return None
    return sidecar


def _remove_db(path: Path) -> None:
    for candidate in (path, Path(f"{path}.wal")):
        candidate.unlink(missing_ok=True)
    shutil.rmtree(Path(f"{path}.tmp"), ignore_errors=True)


def _checked(measured, what: str):
    if measured.returncode != 0:
        raise RuntimeError(f"{what} failed ({measured.returncode}):\n{measured.output[-3000:]}")
    return measured


def _generate_with_steps(target: Path, spec: StoreSpec) -> dict:
    measured = _checked(
        run_measured(
            python_module(
                "runs_store",
                "sample",
                "--runs",
                str(spec.runs),
                "--days",
                str(spec.days),
                "--seed",
                str(spec.seed),
                "--db",
                str(target),
                "--progress",
                "never",
            )
        ),
        f"building the {spec.label} store",
    )
    return {
        "method": "python -m runs_store sample (generator + real ingest)",
        "seconds": round(measured.seconds, 1),
        "peak_rss_mb": round(measured.peak_rss_mb or 0),
    }


_REPLICA_SELECT = """
SELECT * REPLACE (
    CASE WHEN $copy = 0 THEN id ELSE id || '-' || $copy END AS id,
    started_at - $shift AS started_at, start_time - $shift AS start_time,
    finish_time - $shift AS finish_time, archived_at - $shift AS archived_at,
    updated_at - $shift AS updated_at, false AS has_steps,
    'benchmark replica ' || $copy AS source)
FROM base.runs WHERE source LIKE 'sample(%'
"""


def _insert_replica(con, copy: int, shift: timedelta, limit: int) -> None:
    """One copy of the base runs, the newest `limit` of them, inserted oldest first."""
    con.execute(
        f"""INSERT INTO runs SELECT * FROM (
        SELECT * FROM ({_REPLICA_SELECT}) ORDER BY started_at DESC, id DESC LIMIT $limit)
        ORDER BY started_at, id""",
        {"copy": copy, "shift": shift, "limit": limit},
    )


def _replicate(target: Path, base: Path, spec: StoreSpec, base_spec: StoreSpec) -> dict:
    started = datetime.now(UTC)
    con = duckdb.connect(str(target), config={"memory_limit": BUILD_MEMORY_LIMIT})
    try:
        ensure_schema(con)
        con.execute(f"ATTACH '{base}' AS base (READ_ONLY)")
        per_copy = con.execute(
            "SELECT count(*) FROM base.runs WHERE source LIKE 'sample(%'"
        ).fetchall()[0][0]
        copies = math.ceil(spec.runs / per_copy)
        for copy in reversed(range(copies)):
            limit = min(per_copy, spec.runs - copy * per_copy)
            _insert_replica(con, copy, timedelta(days=copy * base_spec.days), limit)
        bump_generation(con)
        con.execute("DETACH base")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    seconds = (datetime.now(UTC) - started).total_seconds()
    return {
        "method": f"{copies} copies of the {base_spec.label} store's runs in DuckDB SQL "
        f"(new ids, shifted {base_spec.days:g} days per copy, no steps)",
        "seconds": round(seconds, 1),
        "copies": copies,
    }


def _add_handmade(target: Path, stores_dir: Path) -> dict:
    jsonl = stores_dir / "handmade-runs.jsonl"
    ids = write_handmade(jsonl, datetime.now(UTC).replace(tzinfo=None))
    _checked(
        run_measured(
            python_module(
                "runs_store", "ingest", str(jsonl), "--db", str(target), "--progress", "never"
            )
        ),
        "ingesting the hand-made runs",
    )
    return ids


def _counts(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        runs, steps = con.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM run_steps)"
        ).fetchall()[0]
    finally:
        con.close()
    return {"runs": runs, "run_steps": steps, "file_mb": round(path.stat().st_size / 2**20)}


def ensure_store(
    spec: StoreSpec, stores_dir: Path, max_age_days: float = 3, log=print
) -> tuple[Path, dict]:
    """The store for `spec`, built now unless a matching one exists; (path, sidecar)."""
    stores_dir.mkdir(parents=True, exist_ok=True)
    path = store_path(stores_dir, spec)
    sidecar = _reusable(path, spec, max_age_days)
    if sidecar:
        log(f"store {spec.label}: reusing {path} (built {sidecar['built_at'][:16]})")
        return path, sidecar
    log(f"store {spec.label}: building {path} ...")
    target = path.with_name(path.stem + ".building.duckdb")
    _remove_db(target)
    if spec.steps:
        build = _generate_with_steps(target, spec)
    else:
        base_spec = StoreSpec(size_label(REPLICA_BASE), REPLICA_BASE, spec.days, spec.seed)
        base_path, _ = ensure_store(base_spec, stores_dir, max_age_days, log)
        build = _replicate(target, base_path, spec, base_spec)
    handmade = _add_handmade(target, stores_dir)
    _remove_db(path)
    os.replace(target, path)
    sidecar = {
        "params": spec.params(),
        "built_at": datetime.now(UTC).isoformat(),
        "build": build,
        "handmade": handmade,
        **_counts(path),
    }
    _sidecar_path(path).write_text(json.dumps(sidecar, indent=2))
    log(f"store {spec.label}: built in {build['seconds']} s ({sidecar['runs']:,} runs)")
    return path, sidecar
