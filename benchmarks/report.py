"""The results: a JSON file for machines, a markdown table for the README, and the targets.

Figures are medians; each of Runs Explorer's timings has the baseline's beside it with the ratio
baseline / ours (how many times faster or smaller Runs Explorer is).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.machine import machine_line

RUN_PAGE_KEYS = ("run_20_steps", "run_5mb_output")
COMPARED_KEYS = ("runs_cold", "runs_filter", "runs_page_turn", "insights_7d", "insights_all")
GB = 1024  # MB


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    unit: str  # "ms", "MB", "runs/s" or "x"
    at_least: bool = False

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        ok = self.measured >= self.limit if self.at_least else self.measured <= self.limit
        return "pass" if ok else "FAIL"


def ms_text(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:,.2f} s"


def mb_text(mb: float | None) -> str:
    if mb is None:
        return "–"
    return f"{mb:,.0f} MB" if mb < GB else f"{mb / GB:,.2f} GB"


def value_text(value: float | None, unit: str) -> str:
    if unit == "ms":
        return ms_text(value)
    if unit == "MB":
        return mb_text(value)
    if value is None:
        return "–"
    return f"{value:,.1f}x" if unit == "x" else f"{value:,.0f} {unit}"


def _interaction(results: dict, size: str, app: str, key: str) -> float | None:
    found = results.get("sizes", {}).get(size, {}).get(app, {}).get("interactions", {}).get(key)
    return found["median_ms"] if found and found.get("samples") else None


def _memory(results: dict, size: str, app: str) -> float | None:
    found = results.get("sizes", {}).get(size, {}).get("memory", {}).get(app)
    return found["peak_rss_mb"] if found else None


def _ratio(base: float | None, ours: float | None) -> float | None:
    return base / ours if base and ours else None


def _cell(ours: float | None, base: float | None, text) -> str:
    if ours is None:
        return "–"
    ratio = _ratio(base, ours)
    if ratio is None:
        return text(ours)
    return f"{text(ours)} · baseline {text(base)} (**{ratio:,.1f}x**)"


def _labels(results: dict) -> dict[str, str]:
    labels = {}
    for size in results.get("sizes", {}).values():
        for key, found in size.get("ours", {}).get("interactions", {}).items():
            labels.setdefault(key, found["label"])
    return labels


def _ingest_rows(results: dict) -> list[str]:
    rows = []
    for found in results.get("ingest", []):
        runs = f"{found['runs']:,}"
        rows.append(
            f"| Ingest JSONL with steps ({runs} runs into the {found['target']}) | "
            f"{found['runs_per_s']:,.0f} runs/s, peak {mb_text(found['peak_rss_mb'])} |"
        )
    for floor in results.get("ingest_floor", []):
        rows.append(
            f"| The floor: the same files' runs and steps written by DuckDB alone, nothing "
            f"checked or judged (benchmarks/ingest_floor.py, {floor['runs']:,} runs into "
            f"the {floor['target']}) | {floor['runs_per_s']:,.0f} runs/s, "
            f"peak {mb_text(floor['peak_rss_mb'])} |"
        )
    return rows


def _build_rows(results: dict) -> list[str]:
    rows = []
    for size, store in results.get("stores", {}).items():
        build = store["build"]
        rss = f", peak {mb_text(build['peak_rss_mb'])}" if build.get("peak_rss_mb") else ""
        rows.append(
            f"| Build the {size} store ({store['runs']:,} runs, "
            f"{store['run_steps']:,} step rows, {mb_text(store['file_mb'])} file): "
            f"{build['method']} | {build['seconds']:,.0f} s{rss} |"
        )
    return rows


def markdown(results: dict) -> str:
    sizes = list(results.get("sizes", {}))
    repeat = results.get("args", {}).get("repeat", "?")
    lines = [
        f"Machine: {machine_line(results['machine'])}.",
        "",
        (
            f"Medians of {repeat} runs; baseline = all runs in one pandas DataFrame "
            f"(benchmarks/baseline_app.py); ratio = baseline / Runs Explorer."
        ),
        "",
        "| Interaction (AppTest, whole script) | " + " | ".join(sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for key, label in _labels(results).items():
        cells = [
            _cell(
                _interaction(results, s, "ours", key),
                _interaction(results, s, "baseline", key),
                ms_text,
            )
            for s in sizes
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [
        _cell(_memory(results, s, "ours"), _memory(results, s, "baseline"), mb_text) for s in sizes
    ]
    lines.append(
        "| App server peak memory (VmHWM, browser session over every view) | "
        + " | ".join(cells)
        + " |"
    )
    lines += ["", "| Ingest and store building | Median |", "|---|---|"]
    lines += _ingest_rows(results) + _build_rows(results)
    lines += ["", "| Target | Measured | Result |", "|---|---|---|"]
    for target in results.get("targets", []):
        lines.append(
            f"| {target['name']} | {value_text(target['measured'], target['unit'])} | "
            f"{target['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def _min_ratio(results: dict, size: str) -> float | None:
    ratios = [
        _ratio(
            _interaction(results, size, "baseline", key), _interaction(results, size, "ours", key)
        )
        for key in COMPARED_KEYS
    ]
    ratios = [r for r in ratios if r is not None]
    return min(ratios) if ratios else None


def _ingest_rate(results: dict) -> float | None:
    rates = [found["runs_per_s"] for found in results.get("ingest", [])]
    return min(rates) if rates else None


def _slowest(results: dict, size: str, keys) -> float | None:
    found = [_interaction(results, size, "ours", key) for key in keys]
    found = [value for value in found if value is not None]
    return max(found) if found else None


def evaluate_targets(results: dict) -> list[dict]:
    """The issue's targets, each with its measured value and pass / FAIL."""
    targets = [
        Target(
            "10M: Runs page warm rerun (filter change and page turn, slower of the two)",
            _slowest(results, "10M", ("runs_filter", "runs_page_turn")),
            200,
            "ms",
        ),
        Target(
            "10M: Insights, All time",
            _interaction(results, "10M", "ours", "insights_all"),
            1500,
            "ms",
        ),
        Target("10M: app memory", _memory(results, "10M", "ours"), 1.5 * GB, "MB"),
        Target(
            "1M: Run page (20 steps and 5 MB output, slower of the two)",
            _slowest(results, "1M", RUN_PAGE_KEYS),
            200,
            "ms",
        ),
        Target(
            "Ingest with steps (slower of empty and large store)",
            _ingest_rate(results),
            20_000,
            "runs/s",
            at_least=True,
        ),
        Target(
            "1M: faster than the baseline, every interaction (smallest ratio)",
            _min_ratio(results, "1M"),
            5,
            "x",
            at_least=True,
        ),
        Target(
            "1M: less memory than the baseline",
            _ratio(_memory(results, "1M", "baseline"), _memory(results, "1M", "ours")),
            5,
            "x",
            at_least=True,
        ),
    ]
    return [{**asdict(t), "verdict": t.verdict} for t in targets]


def write_results(results: dict, out: Path) -> str:
    """Writes the JSON and the markdown beside it (same name, .md); returns the markdown."""
    results["targets"] = evaluate_targets(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    out.with_suffix(".md").write_text(text)
    return text
