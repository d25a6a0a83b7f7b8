"""DuckDB and ClickHouse (chdb) side by side in one run: the same runs, the same app, each size.

    python -m benchmarks.backends_bench [--sizes 1M,10M] [--repeat 3] [--ingest 50k]

For each size the DuckDB store the other benchmarks use (benchmarks/build.py: the generator's
runs, with steps up to 1M, replicated past it) is the reference, and a chdb store beside it holds
the very same rows: its runs, steps (each stamped with its run's version) and rejects copied as
Arrow, a batch at a time, as tests/backends.py copies the test store. Then, per backend:
- the app through AppTest (benchmarks/app_bench, a process of its own per backend and size): the
  Runs page warm rerun (a filter change and a page turn, the slower of the two), Insights for all
  time; medians of `--repeat`, and the process's peak RSS (the app's memory);
- ingest: the same JSONL file of `--ingest` runs loaded into a fresh store by the real command
  (`python -m runs_store ingest FILE --db ...`), whole process, runs/s;
- the store's size on disk (the DuckDB file; the chdb directory).
Then how each figure grows from the smaller size to the larger, and 100M estimated from that
growth (the ratio applied once more per tenfold, a straight line on a log-log plot: a guess,
said as one). About 15 minutes at 1M; 10M adds the copy (several minutes) and its app runs.

Results: benchmarks/results/backends.json and backends.md (also printed).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.app_bench import bench_app_in_subprocess
from benchmarks.build import ensure_store, parse_size, size_label, spec_for
from benchmarks.ingest_bench import ingest_file_for
from benchmarks.machine import describe_machine, machine_line
from benchmarks.procs import ROOT, python_module

STORES = ROOT / "benchmarks" / "stores"
RESULTS = ROOT / "benchmarks" / "results"
COPY_BATCH_ROWS = 100_000
INTERACTIONS = ("runs_filter", "runs_page_turn", "insights_all")
INGEST_SEED = 100
# What each chdb table takes from the DuckDB store (steps get their run's version).
COPIED = {
    "runs": "SELECT * FROM runs",
    "run_steps": "SELECT s.*, r.updated_at AS run_updated_at FROM run_steps s "
    "JOIN runs r ON r.id = s.run_id",
    "rejects": "SELECT * FROM rejects",
}


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def copy_to_chdb(duckdb_path: Path, chdb_dir: Path) -> dict:
    """The DuckDB store's rows into a new chdb store at `chdb_dir`; rows and seconds per table.
    In a process of its own: chdb holds one store per process."""
    shutil.rmtree(chdb_dir, ignore_errors=True)
    done = subprocess.run(
        python_module("benchmarks.backends_bench", "--copy", str(duckdb_path), str(chdb_dir)),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"copy to chdb failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _copy(duckdb_path: Path, chdb_dir: Path) -> int:
    import duckdb
    import pyarrow as pa

    from runs_store.store.clickhouse import open_store
    from runs_store.store.location import ChdbLocation

    copied = {}
    source = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        with open_store(ChdbLocation(chdb_dir)) as con:
            for table, select in COPIED.items():
                started, rows = time.perf_counter(), 0
                for batch in source.sql(select).to_arrow_reader(COPY_BATCH_ROWS):
                    con.insert_arrow(table, pa.Table.from_batches([batch]))
                    rows += batch.num_rows
                copied[table] = {"rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        source.close()
    print(json.dumps(copied))
    return 0


def size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    wal = Path(f"{path}.wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def app_figures(db: str, context: dict, repeat: int, scratch: Path, label: str) -> dict:
    out = scratch / f"app-{label}.json"
    measured = bench_app_in_subprocess("ours", db, repeat, context, out, list(INTERACTIONS))
    medians = {key: value["median_ms"] for key, value in measured["interactions"].items()}
    problems = [p for value in measured["interactions"].values() for p in value["problems"]]
    return {
        "runs_warm_rerun_ms": max(medians["runs_filter"], medians["runs_page_turn"]),
        "insights_all_ms": medians["insights_all"],
        "medians_ms": medians,
        "app_peak_rss_mb": measured["process"]["peak_rss_mb"],
        "problems": problems,
    }


def ingest_figures(jsonl: Path, db: str, runs: int, cleanup: Path) -> dict:
    if cleanup.is_dir():
        shutil.rmtree(cleanup, ignore_errors=True)
    else:
        cleanup.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        python_module("runs_store", "ingest", str(jsonl), "--db", db, "--progress", "never"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ingest into {db} failed:\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 1), "runs_per_s": round(runs / seconds)}


def measure_size(label: str, repeat: int, jsonl: Path, ingest_runs: int, scratch: Path) -> dict:
    duckdb_path, sidecar = ensure_store(spec_for(label), STORES, log=log)
    chdb_dir = STORES / f"runs-{label}.chdb"
    log(f"{label}: copying the DuckDB store into chdb")
    copied = copy_to_chdb(duckdb_path, chdb_dir)
    context = {"handmade": sidecar.get("handmade", {})}
    result: dict = {"runs": sidecar["runs"], "copy": copied, "backends": {}}
    for backend, db, disk in (
        ("duckdb", str(duckdb_path), duckdb_path),
        ("chdb", f"chdb:{chdb_dir}", chdb_dir),
    ):
        log(f"{label} {backend}: the app, {repeat} passes")
        figures = app_figures(db, context, repeat, scratch, f"{backend}-{label}")
        figures["size_mb"] = round(size_on_disk(disk) / 1e6, 1)
        result["backends"][backend] = figures
    for backend, target in (
        ("duckdb", scratch / "ingest.duckdb"),
        ("chdb", scratch / "ingest.chdb"),
    ):
        db = str(target) if backend == "duckdb" else f"chdb:{target}"
        log(f"{label} {backend}: ingest of {ingest_runs:,} runs")
        samples = [ingest_figures(jsonl, db, ingest_runs, target) for _ in range(repeat)]
        result["backends"][backend]["ingest"] = {
            "runs_per_s": statistics.median(s["runs_per_s"] for s in samples),
            "samples": samples,
        }
    return result


def growth(results: dict) -> dict:
    """Per backend and figure: larger / smaller, and 100M estimated from it."""
    labels = sorted(results, key=parse_size)
    if len(labels) < 2:
        return {}
    small, large = labels[0], labels[-1]
    tenfolds = math.log10(parse_size(large) / parse_size(small))
    to_100m = math.log10(100_000_000 / parse_size(large))
    found: dict = {}
    for backend in ("duckdb", "chdb"):
        a, b = results[small]["backends"][backend], results[large]["backends"][backend]
        for key in ("runs_warm_rerun_ms", "insights_all_ms", "size_mb", "app_peak_rss_mb"):
            ratio = b[key] / a[key] if a[key] else float("nan")
            per_tenfold = ratio ** (1 / tenfolds) if tenfolds else float("nan")
            found.setdefault(backend, {})[key] = {
                "ratio": round(ratio, 2),
                "estimate_100M": round(b[key] * per_tenfold**to_100m, 1),
            }
    return found


def report(results: dict, grown: dict, machine: dict, ingest_runs: int) -> str:
    labels = sorted(results, key=parse_size)
    rows = [
        ("Runs page warm rerun (ms)", "runs_warm_rerun_ms"),
        ("Insights, all time (ms)", "insights_all_ms"),
        ("Store size on disk (MB)", "size_mb"),
        ("App memory, peak RSS (MB)", "app_peak_rss_mb"),
    ]
    head = ["Figure"] + [f"{b} {label}" for label in labels for b in ("DuckDB", "chdb")]
    lines = [
        "# DuckDB and ClickHouse (chdb) side by side",
        "",
        machine_line(machine),
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for name, key in rows:
        cells = [
            f"{results[label]['backends'][b][key]:,.0f}"
            for label in labels
            for b in ("duckdb", "chdb")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [
        f"{results[label]['backends'][b]['ingest']['runs_per_s']:,.0f}"
        for label in labels
        for b in ("duckdb", "chdb")
    ]
    ingest_row = f"| Ingest of {ingest_runs:,} runs (runs/s, whole process) | "
    lines.append(ingest_row + " | ".join(cells) + " |")
    if grown:
        lines += [
            "",
            f"Growth {labels[0]} -> {labels[-1]} (larger / smaller) and 100M estimated from it:",
            "",
            "| Figure | DuckDB growth | DuckDB 100M (est.) | chdb growth | chdb 100M (est.) |",
            "|---|---|---|---|---|",
        ]
        for name, key in rows:
            d, c = grown["duckdb"][key], grown["chdb"][key]
            lines.append(
                f"| {name} | {d['ratio']}x | {d['estimate_100M']:,.0f} | "
                f"{c['ratio']}x | {c['estimate_100M']:,.0f} |"
            )
    problems = [
        f"{label} {b}: {p}"
        for label in labels
        for b in ("duckdb", "chdb")
        for p in results[label]["backends"][b]["problems"]
    ]
    if problems:
        lines += ["", "Problems the app showed:", *(f"- {p}" for p in problems)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backends_bench")
    parser.add_argument("--sizes", default="1M,10M")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ingest", default="50k", help="runs in the ingest file")
    parser.add_argument("--copy", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.copy:
        return _copy(Path(args.copy[0]), Path(args.copy[1]))
    ingest_runs = parse_size(args.ingest)
    jsonl = ingest_file_for(STORES, ingest_runs, INGEST_SEED)
    results = {}
    with tempfile.TemporaryDirectory(dir=STORES) as folder:
        for text in args.sizes.split(","):
            label = size_label(parse_size(text))
            results[label] = measure_size(label, args.repeat, jsonl, ingest_runs, Path(folder))
    grown = growth(results)
    machine = describe_machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "sizes": results, "growth": grown, "ingest_runs": ingest_runs}
    (RESULTS / "backends.json").write_text(json.dumps(payload, indent=2))
    text = report(results, grown, machine, ingest_runs)
    (RESULTS / "backends.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
