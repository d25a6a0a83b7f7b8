"""What the agents' facts and the alerts cost on a large store: opening a store made before the
facts existed (its one-time backfill), ingest with the facts against the release before them, the
Agents view's reads, and one `alerts check` of the example rules.

    python -m benchmarks.agents_alerts_bench [--store benchmarks/stores/runs-1M.duckdb]
        [--ingest-file benchmarks/stores/ingest-50k-seed100.jsonl] [--before COMMIT] [--repeat 3]

The store and the ingest file are the full benchmark's (`python -m benchmarks` builds them). The
store is copied first, so it stays as the other benchmarks expect it. `--before` names a commit
to ingest the same file with (checked out in a temporary worktree), beside this tree's figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.machine import describe_machine, machine_line
from benchmarks.procs import ROOT, Measured, python_module, run_measured

EXAMPLE_RULES = ROOT / "docs" / "alerts.example.toml"
BEFORE_AGENT_FACTS = "c038cba"  # the last commit whose ingest wrote no agent facts


def median_seconds(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:,.0f} ms"


def checked(measured: Measured, what: str) -> Measured:
    if measured.returncode not in (0, 1):
        raise SystemExit(f"{what} failed ({measured.returncode}):\n{measured.output[-2000:]}")
    return measured


def open_once(db: Path) -> Measured:
    """A command that only opens the store: its schema brought up to date on the way."""
    return checked(run_measured(python_module("runs_store", "rejects", "--db", str(db))), "open")


def backfill(store: Path, work: Path) -> str:
    copy = work / f"backfill-{store.name}"
    shutil.copyfile(store, copy)
    measured = open_once(copy)
    again = open_once(copy)
    return (
        f"first open of a copy of {store.name} (its agent facts backfilled): "
        f"{measured.seconds:,.1f} s, peak {measured.peak_rss_mb:,.0f} MB; "
        f"the next open: {again.seconds:,.2f} s"
    )


def ingest_rate(tree: Path, jsonl: Path, work: Path, repeat: int) -> tuple[float, float]:
    """Median runs/s and peak MB of `ingest` of the file into an empty store, from `tree`."""
    rates, peaks = [], []
    runs = sum(1 for _ in jsonl.open("rb"))
    for attempt in range(repeat):
        db = work / f"ingest-{tree.name}-{attempt}.duckdb"
        command = python_module("runs_store", "ingest", str(jsonl), "--db", str(db))
        measured = checked(run_measured(command, cwd=tree), "ingest")
        rates.append(runs / measured.seconds)
        peaks.append(measured.peak_rss_mb or 0.0)
        db.unlink(missing_ok=True)
    return statistics.median(rates), statistics.median(peaks)


def ingest_before_after(jsonl: Path, before: str, work: Path, repeat: int) -> str:
    tree = work / "before"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), before],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        old_rate, old_peak = ingest_rate(tree, jsonl, work, repeat)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    new_rate, new_peak = ingest_rate(ROOT, jsonl, work, repeat)
    return (
        f"ingest of {jsonl.name} into an empty store, whole process, median of {repeat}: "
        f"{new_rate:,.0f} runs/s, peak {new_peak:,.0f} MB "
        f"(before the agent facts, {before}: {old_rate:,.0f} runs/s, peak {old_peak:,.0f} MB)"
    )


def agents_view_reads(db: Path, repeat: int) -> list[str]:
    """Every read the Agents view makes, over the last 7 days and all time, in this process."""
    from runs_store.queries.filters import RunFilter
    from runs_store.services import agents
    from runs_store.store.backend import open_location
    from runs_store.store.location import DuckDBLocation

    lines = []
    with open_location(DuckDBLocation(db), read_only=True) as con:
        newest = con.execute("SELECT max(started_at) FROM runs").fetchone()[0]
        for label, run_filter in (
            ("last 7 days", RunFilter(since=newest - timedelta(days=7))),
            ("all time", RunFilter()),
        ):
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                agents.tools(con, run_filter)
                agents.failure_over_time(con, run_filter, "day", "UTC", "tool")
                agents.failure_over_time(con, run_filter, "day", "UTC", "model")
                agents.slowest_tools(con, run_filter)
                agents.calls_per_run(con, run_filter)
                agents.max_steps_runs(con, run_filter)
                agents.status_by_flow(con, run_filter)
                agents.models(con, run_filter)
                agents.tokens_and_cost(con, run_filter, {})
                samples.append(time.perf_counter() - started)
            lines.append(f"Agents view, every read, {label}: {median_seconds(samples)}")
    return lines


def alerts_check(db: Path, repeat: int) -> list[str]:
    """`alerts check --dry-run` of the example rules (six kinds), whole process, and the rules'
    judgement alone in this process."""
    from runs_store.services.alerts.evaluate import evaluate
    from runs_store.services.alerts.rules import load_rules
    from runs_store.store.backend import open_location
    from runs_store.store.location import DuckDBLocation

    command = python_module(
        "runs_store", "alerts", "check", "--dry-run", "--rules", str(EXAMPLE_RULES), "--db", str(db)
    )
    env = {"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/unused"}
    whole = [checked(run_measured(command, env=env), "alerts").seconds for _ in range(repeat)]
    rules = load_rules(EXAMPLE_RULES)
    judged = []
    with open_location(DuckDBLocation(db), read_only=True) as con:
        newest = con.execute("SELECT max(started_at) FROM runs").fetchone()[0]
        for _ in range(repeat):
            started = time.perf_counter()
            evaluate(con, rules, newest + timedelta(minutes=1))
            judged.append(time.perf_counter() - started)
    return [
        f"alerts check --dry-run, {len(rules.rules)} rules, whole process: {median_seconds(whole)}",
        f"the rules judged (evaluate), in process: {median_seconds(judged)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="benchmarks/stores/runs-1M.duckdb")
    parser.add_argument("--ingest-file", default="benchmarks/stores/ingest-50k-seed100.jsonl")
    parser.add_argument("--before", default=BEFORE_AGENT_FACTS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store, jsonl = ROOT / args.store, ROOT / args.ingest_file
    print(machine_line(describe_machine()), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    with tempfile.TemporaryDirectory(prefix="agents-alerts-bench-", dir=store.parent) as folder:
        work = Path(folder)
        print(backfill(store, work))
        migrated = work / f"backfill-{store.name}"
        for line in agents_view_reads(migrated, args.repeat) + alerts_check(migrated, args.repeat):
            print(line)
        print(ingest_before_after(jsonl, args.before, work, args.repeat))


if __name__ == "__main__":
    main()
