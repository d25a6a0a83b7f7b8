"""What one page of the Runs list costs, by where the page is: first, 1,000th, middle, last.

The Runs page counts its view once (cached until the data or the filters change: `count_runs`
before keyset paging, `count_days` since, which also says where each day's runs are in the list)
and then asks the store for one page (`runs_list.list_runs`) with that count, so a page turn costs
exactly that call. This times it on a benchmark store (10M runs by default, built by
benchmarks/build.py) for the default view (Last 7 days) and for All time, warm, and writes the
medians to benchmarks/results/paging.json and paging.md, keeping earlier labels (e.g. "before"
and "after" a change) side by side. It runs against whichever runs_store is imported, so the
"before" figures come from running this file in a checkout of the earlier commit.

    python -m benchmarks.paging_bench --size 10M --label after [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.build import ensure_store, spec_for
from benchmarks.machine import describe_machine, machine_line
from benchmarks.procs import ROOT
from runs_store.queries import filters
from runs_store.queries.filters import RunFilter, preset_window
from runs_store.services import runs_list
from runs_store.store.database import open_db

PAGE_ROWS = filters.DEFAULT_PAGE_SIZE
OUT = ROOT / "benchmarks" / "results" / "paging.json"
CASES = ("page 1", "page 2", "page 1,000", "middle page", "last page")


def _median_ms(call, repeat: int) -> tuple[float, list[float]]:
    call()  # warm: the first call also reads the file's pages into DuckDB's buffer
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), samples


def page_numbers(total: int, rows: int = PAGE_ROWS) -> dict[str, int]:
    last = runs_list.page_count(total, rows)
    return {
        "page 1": 1,
        "page 2": min(2, last),
        "page 1,000": min(1_000, last),
        "middle page": max(1, last // 2),
        "last page": last,
    }


def _views(now: datetime) -> dict[str, RunFilter]:
    since, until = preset_window("7d", now)
    return {"Last 7 days": RunFilter(since=since, until=until), "All time": RunFilter()}


def _count_and_page(con, run_filter: RunFilter):
    """(what the page counts once, a page call as the page makes it) for this runs_store."""
    if hasattr(runs_list, "count_days"):  # keyset paging: the day counts ride along

        def page(counts, offset):
            return runs_list.list_runs(con, run_filter, PAGE_ROWS, offset, counts.total, counts)

        return (lambda: runs_list.count_days(con, run_filter)), page, "count_days"

    def page_before(total, offset):
        return runs_list.list_runs(con, run_filter, PAGE_ROWS, offset, total)

    return (lambda: runs_list.count_runs(con, run_filter)), page_before, "count_runs"


def time_pages(db: Path, repeat: int) -> dict:
    """{view: {"total", "pages": {case: page number}, "median_ms": {case: ms}, "samples_ms",
    "count_ms", "count"}}."""
    found: dict = {}
    with open_db(db, read_only=True) as con:
        for name, run_filter in _views(datetime.now(UTC).replace(tzinfo=None)).items():
            count, page_call, counted_by = _count_and_page(con, run_filter)
            counted = count()
            total = getattr(counted, "total", counted)
            pages = page_numbers(total)
            view = {
                "total": total,
                "pages": pages,
                "median_ms": {},
                "samples_ms": {},
                "count": counted_by,
            }
            for case, page in pages.items():
                offset = runs_list.page_offset(page, PAGE_ROWS)
                shown = page_call(counted, offset)
                assert len(shown.rows) == min(PAGE_ROWS, total - offset), (name, case)
                median, samples = _median_ms(
                    lambda o=offset, c=counted, call=page_call: call(c, o), repeat
                )
                view["median_ms"][case] = round(median, 1)
                view["samples_ms"][case] = [round(sample, 1) for sample in samples]
            view["count_ms"] = round(_median_ms(count, repeat)[0], 1)
            found[name] = view
    return found


APP_CASES = ("page 1", "page 1,000", "last page")
APP_HEADING = (
    "Opening a link to a page of All time: the Runs page in AppTest, the whole script, "
    "Streamlit's caches cleared before each sample (so the view is counted again too):"
)


def time_app_links(db: Path, repeat: int) -> dict:
    """{case: median ms} of opening the Runs page by a link to that page of All time (AppTest,
    the whole script, Streamlit's caches cleared before each sample: a link opened cold)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update({"RUNS_DB": str(db), "RUNS_LOAD_SAMPLE": "0"})
    os.chdir(ROOT)
    with open_db(db, read_only=True) as con:
        pages = page_numbers(runs_list.count_runs(con, RunFilter()))
    found = {}
    for case in APP_CASES:
        samples = []
        for _ in range(repeat + 1):  # the first sample warms the process and is dropped
            st.cache_data.clear()
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
            at.query_params.update({"range": "All time", "page": str(pages[case])})
            started = time.perf_counter()
            at.run()
            samples.append((time.perf_counter() - started) * 1000)
            assert not at.exception and at.pagination[0].value == pages[case], case
        found[case] = {
            "page": pages[case],
            "median_ms": round(statistics.median(samples[1:]), 1),
            "samples_ms": [round(sample, 1) for sample in samples[1:]],
        }
    return found


def markdown(results: dict) -> str:
    lines = [
        f"Machine: {machine_line(results['machine'])}; {results.get('cpu_note', '')}",
        "",
        (
            f"`runs_list.list_runs` for one page of {PAGE_ROWS} rows as the Runs page calls it "
            f"(with its cached count), warm, median of {results['repeat']} calls; store: "
            f"{results['store']}."
        ),
        "",
    ]
    labels = list(results["runs"])
    header = "| View | Page | " + " | ".join(labels) + " |"
    lines += [header, "|" + "---|" * (len(labels) + 2)]
    views = results["runs"][labels[-1]]["views"]
    for view, measured in views.items():
        for case in CASES:
            page = measured["pages"][case]
            cells = []
            for label in labels:
                ms = results["runs"][label]["views"].get(view, {}).get("median_ms", {}).get(case)
                cells.append("–" if ms is None else f"{ms:,.1f} ms")
            lines.append(
                f"| {view} ({measured['total']:,} runs) | {case} ({page:,}) | "
                + " | ".join(cells)
                + " |"
            )
    lines += ["", "Counting the view (once per change of data or filters, then cached):", ""]
    for label in labels:
        counted = results["runs"][label]["views"]
        lines.append(
            f"- {label}: "
            + "; ".join(
                f"{view} {measured['count_ms']:,.1f} ms (`{measured.get('count', 'count_runs')}`)"
                for view, measured in counted.items()
            )
        )
    lines.append("")
    with_app = [label for label in labels if results["runs"][label].get("app")]
    if with_app:
        lines += [
            APP_HEADING,
            "",
            "| Link | " + " | ".join(with_app) + " |",
            "|" + "---|" * (len(with_app) + 1),
        ]
        first = results["runs"][with_app[-1]]["app"]
        for case in APP_CASES:
            cells = [
                f"{results['runs'][label]['app'][case]['median_ms']:,.0f} ms" for label in with_app
            ]
            lines.append(f"| {case} ({first[case]['page']:,}) | " + " | ".join(cells) + " |")
        lines.append("")
    for label in labels:
        run = results["runs"][label]
        lines.append(f"- {label}: {run['note']} (measured {run['date']})")
    return "\n".join(lines) + "\n"


def _load_note() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) when last run."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.paging_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", default="10M")
    parser.add_argument("--label", required=True, help='e.g. "before" or "after"')
    parser.add_argument("--note", default="", help="what the label measured")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--stores-dir", default="benchmarks/stores")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--app",
        action="store_true",
        help="also time opening the Runs page by links to those pages (AppTest)",
    )
    args = parser.parse_args(argv)
    db, _sidecar = ensure_store(spec_for(args.size), ROOT / args.stores_dir)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    results.update(
        {
            "machine": describe_machine(),
            "store": f"{args.size} ({db.name})",
            "repeat": args.repeat,
            "cpu_note": _load_note(),
        }
    )
    results["runs"][args.label] = {
        "note": args.note or args.label,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "views": time_pages(db, args.repeat),
    }
    if args.app:
        results["runs"][args.label]["app"] = time_app_links(db, max(3, args.repeat // 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    text = markdown(results)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
