"""Timing the apps' interactions through AppTest: the whole script, as Streamlit runs it.

Runs in its own process per (app, store) so that caches and memory do not leak between them:
`python -m benchmarks.app_bench --app ours --db STORE --repeat 5 --out FILE`. The wall time of
`at.run()` is measured. Every sample starts a fresh AppTest session with Streamlit's caches
cleared, so "filter change" pays for its new queries as a user's first visit to that view does;
only the app's process is warm (imports done, as in a running server). One pass over all
interactions runs first and is discarded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from benchmarks.drivers import APPS
from benchmarks.procs import ROOT, python_module, run_measured

TIMEOUT = 900


def _problems(at) -> list[str]:
    found = [f"exception: {e.value}" for e in at.exception]
    found += [f"error: {e.value}" for e in at.error]
    # a page that finds nothing to show would be timed as if it had worked
    found += [f"warning: {w.value}" for w in at.warning if "not found" in str(w.value)]
    return found


def run_interaction(app_path: Path, steps, context: dict) -> tuple[float, list[str]]:
    """One sample: a fresh session with cold caches; the sum of its timed steps' at.run()."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    gc.collect()
    at = AppTest.from_file(str(app_path), default_timeout=TIMEOUT)
    total, problems = 0.0, []
    for step in steps:
        step.act(at, context)
        started = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - started
        problems += [f"{step.name}: {p}" for p in _problems(at)]
        if step.timed:
            total += elapsed
    return total, problems


def measure_app(
    app: str, repeat: int, context: dict, only: list[str] | None = None, log=print
) -> dict:
    """{interaction: {label, samples (s), median_ms, problems}} for one app on one store."""
    app_path, interactions = APPS[app]
    chosen = {k: v for k, v in interactions.items() if not only or k in only}
    results = {
        key: {"label": label, "samples": [], "problems": []}
        for key, (label, _steps) in chosen.items()
    }
    for number in range(repeat + 1):
        for key, (_label, steps) in chosen.items():
            seconds, problems = run_interaction(app_path, steps, context)
            if number:  # pass 0 warms the process up
                results[key]["samples"].append(seconds)
            results[key]["problems"] = sorted(set(results[key]["problems"] + problems))
        log(f"  {app}: pass {number}/{repeat} done")
    for result in results.values():
        result["median_ms"] = statistics.median(result["samples"]) * 1000
    return results


def bench_app_in_subprocess(
    app: str, db: Path | str, repeat: int, context: dict, out: Path, only: list[str] | None = None
) -> dict:
    """Runs `measure_app` in a fresh process pointed at `db`; its results and peak memory."""
    args = python_module(
        "benchmarks.app_bench",
        "--app",
        app,
        "--db",
        str(db),
        "--repeat",
        str(repeat),
        "--context",
        json.dumps(context),
        "--out",
        str(out),
    )
    if only:
        args += ["--only", ",".join(only)]
    measured = run_measured(args, env={"RUNS_DB": str(db), "RUNS_LOAD_SAMPLE": "0"})
    if measured.returncode != 0:
        raise RuntimeError(f"app benchmark ({app}, {db}) failed:\n{measured.output[-4000:]}")
    results = json.loads(out.read_text())
    results["process"] = {
        "seconds": round(measured.seconds, 1),
        "peak_rss_mb": round(measured.peak_rss_mb or 0),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_bench")
    parser.add_argument("--app", choices=sorted(APPS), required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--context", default="{}", help="JSON: {handmade: {...run ids}}")
    parser.add_argument("--only", help="comma-separated interaction keys")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    is_location = args.db.startswith(("chdb:", "clickhouse://", "clickhouses://"))
    os.environ["RUNS_DB"] = args.db if is_location else str(Path(args.db).resolve())
    os.environ["RUNS_LOAD_SAMPLE"] = "0"
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    only = args.only.split(",") if args.only else None
    results = {
        "interactions": measure_app(
            args.app,
            args.repeat,
            json.loads(args.context),
            only,
            log=lambda text: print(text, file=sys.stderr),
        ),
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
