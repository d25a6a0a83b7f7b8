"""Where an interaction's time goes: py-spy over the AppTest benchmark of that one interaction.

`python -m benchmarks.profile --size 10M --interaction insights_all [--app ours] [--repeat 5]`
samples every thread of `python -m benchmarks.app_bench --only INTERACTION` with py-spy, keeps
the samples of the page script it is about (the script thread's stacks through that file), and
writes the functions with the most inclusive and self time to
benchmarks/results/profile-APP-SIZE-INTERACTION.txt. DuckDB and pandas work shows as the self
time of the Python line that called them (py-spy samples Python stacks).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.build import read_sidecar, spec_for, store_path
from benchmarks.drivers import APPS
from benchmarks.procs import ROOT, python_module

# py-spy names a page script by its base name, a module by its path from sys.path.
FOCUS = {"runs": " (runs.py:", "insights": " (insights.py:", "run": " (run.py:"}
PROJECT = (
    "(runs_store/",
    "(pages/",
    "(benchmarks/",
    " (runs.py:",
    " (insights.py:",
    " (run.py:",
    " (baseline_app.py:",
    " (app.py:",
)


def focus_file(app: str, interaction: str) -> str:
    if app == "baseline":
        return " (baseline_app.py:"
    return FOCUS[interaction.split("_")[0]]


def record(args: list[str], raw: Path, rate: int = 200) -> None:
    if not shutil.which("py-spy"):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    subprocess.run(
        [
            "py-spy",
            "record",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--",
            *args,
        ],
        cwd=ROOT,
        check=True,
    )


def summarise(raw: Path, focus: str, top: int = 40) -> str:
    """Inclusive and self sample shares of the frames in stacks that pass through `focus`."""
    inclusive, own, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if focus not in stack:
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"no samples through {focus}\n"
    interesting = [
        (frame, n) for frame, n in inclusive.most_common() if any(mark in frame for mark in PROJECT)
    ][:top]
    lines = [f"{total} samples through {focus}", "", "inclusive (project code):"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in interesting]
    lines += ["", "self (where the time is spent):"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--size", required=True)
    parser.add_argument("--interaction", required=True)
    parser.add_argument("--app", choices=sorted(APPS), default="ours")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stores-dir", default="benchmarks/stores")
    parser.add_argument("--results-dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    db = store_path(ROOT / args.stores_dir, spec_for(args.size))
    sidecar = read_sidecar(db)
    if sidecar is None:
        raise SystemExit(f"no store at {db}: run `python -m benchmarks --sizes {args.size}` first")
    name = f"profile-{args.app}-{spec_for(args.size).label}-{args.interaction}"
    results = ROOT / args.results_dir
    results.mkdir(parents=True, exist_ok=True)
    raw = results / f"{name}.raw"
    record(
        python_module(
            "benchmarks.app_bench",
            "--app",
            args.app,
            "--db",
            str(db),
            "--repeat",
            str(args.repeat),
            "--only",
            args.interaction,
            "--context",
            json.dumps({"handmade": sidecar["handmade"]}),
            "--out",
            str(results / f"{name}.json"),
        ),
        raw,
    )
    text = summarise(raw, focus_file(args.app, args.interaction))
    (results / f"{name}.txt").write_text(text)
    raw.unlink()
    (results / f"{name}.json").unlink(missing_ok=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
