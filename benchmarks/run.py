"""The benchmark's command line: build or reuse stores, measure everything, write the results.

`python -m benchmarks [--sizes 100k,1M,10M] [--repeat 5] [--out benchmarks/results/latest.json]
[--stores-dir benchmarks/stores]`. Stages run in order (stores, ingest, app timings, memory) and
the results file is rewritten after each, so an interrupted run still leaves what it measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.app_bench import bench_app_in_subprocess
from benchmarks.build import ensure_store, parse_size, spec_for
from benchmarks.ingest_bench import bench_ingest, time_floor
from benchmarks.machine import describe_machine
from benchmarks.memory_bench import measure_server_memory
from benchmarks.procs import ROOT
from benchmarks.report import write_results
from benchmarks.store_bench import time_store_calls

STAGES = ("ingest", "app", "baseline", "memory", "queries")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="100k,1M,10M", help="store sizes (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="samples per figure (median)")
    parser.add_argument("--out", default="benchmarks/results/latest.json")
    parser.add_argument("--stores-dir", default="benchmarks/stores")
    parser.add_argument(
        "--baseline-sizes",
        default="100k,1M",
        help="sizes to run the pandas baseline at (default %(default)s)",
    )
    parser.add_argument("--ingest-runs", default="50k", help="runs per ingested JSONL file")
    parser.add_argument("--ingest-repeat", type=int, default=3)
    parser.add_argument(
        "--max-store-age-days",
        type=float,
        default=3,
        help="rebuild stores older than this (their newest runs drift out of 'Last 7 days')",
    )
    parser.add_argument("--skip", default="", help=f"stages to skip: {', '.join(STAGES)}")
    parser.add_argument("--only", default="", help="interaction keys to time (default: all)")
    return parser


def _largest_steps_store(stores: dict) -> tuple[str, Path] | None:
    with_steps = [
        (s["runs"], label, path) for label, (path, s) in stores.items() if s["params"]["steps"]
    ]
    return max(with_steps)[1:] if with_steps else None


def measure_size(label: str, path: Path, sidecar: dict, args, skip: set, scratch: Path) -> dict:
    context = {"handmade": sidecar["handmade"]}
    only = [key for key in args.only.split(",") if key] or None
    found: dict = {"memory": {}, "load_average_before": os.getloadavg()}
    apps = ["ours"] + (
        ["baseline"] if "baseline" not in skip and label in args.baseline_sizes.split(",") else []
    )
    for app in apps:
        if "app" in skip:
            break
        log(f"{label}: timing {app} through AppTest ({args.repeat} samples each)")
        found[app] = bench_app_in_subprocess(
            app, path, args.repeat, context, scratch / f"app-{app}-{label}.json", only
        )
    for app in apps:
        if "memory" in skip:
            break
        log(f"{label}: server memory of {app} with a browser session")
        found["memory"][app] = measure_server_memory(app, path, sidecar["handmade"])
    if "queries" not in skip:
        log(f"{label}: store calls one by one")
        found["queries"] = time_store_calls(path, min(args.repeat, 3))
    found["load_average_after"] = os.getloadavg()
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    out, stores_dir = ROOT / args.out, ROOT / args.stores_dir
    skip = {stage.strip() for stage in args.skip.split(",") if stage.strip()}
    results = {"machine": describe_machine(), "args": vars(args), "stores": {}, "sizes": {}}
    specs = [spec_for(text) for text in args.sizes.split(",") if text.strip()]
    stores = {
        spec.label: ensure_store(spec, stores_dir, args.max_store_age_days, log) for spec in specs
    }
    results["stores"] = {label: sidecar for label, (_path, sidecar) in stores.items()}
    write_results(results, out)
    if "ingest" not in skip:
        into = _largest_steps_store(stores)
        results["ingest"] = bench_ingest(
            stores_dir,
            parse_size(args.ingest_runs),
            args.ingest_repeat,
            into[1] if into else None,
            into[0] if into else "",
            log,
        )
        results["ingest_floor"] = bench_ingest(
            stores_dir,
            parse_size(args.ingest_runs),
            args.ingest_repeat,
            into[1] if into else None,
            into[0] if into else "",
            log,
            timer=time_floor,
        )
        write_results(results, out)
    for label, (path, sidecar) in stores.items():
        results["sizes"][label] = measure_size(label, path, sidecar, args, skip, stores_dir)
        write_results(results, out)
    results["total_seconds"] = round(time.monotonic() - started)
    text = write_results(results, out)
    print(text)
    log(f"done in {results['total_seconds']} s; results in {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
