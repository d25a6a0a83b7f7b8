"""The store calls behind each page, timed one by one without Streamlit, to find what dominates.

The app timings say how long a page takes; this says which query inside it costs what, for the
default range (Last 7 days) and All time. Every call gets the connection the pages get
(runs_store.store.database.open_db) and the same filter object the toolbar builds.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from runs_store.queries import filters
from runs_store.queries.filters import RunFilter, preset_window
from runs_store.services import insights, runs_list
from runs_store.store.database import generation, open_db

TZ = "Europe/Paris"
PAGE_ROWS = filters.DEFAULT_PAGE_SIZE


def _median_ms(call, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _open_and_close(db: Path) -> None:
    with open_db(db) as con:
        generation(con)


def _calls(con, run_filter: RunFilter, unit: str) -> dict:
    failed = run_filter.with_(statuses=("FAILED",))
    calls = {
        "runs_list.count_runs": lambda: runs_list.count_runs(con, run_filter),
        "runs_list.list_runs (page 1)": lambda: runs_list.list_runs(con, run_filter, PAGE_ROWS, 0),
        "runs_list.list_runs (page 2)": lambda: runs_list.list_runs(
            con, run_filter, PAGE_ROWS, PAGE_ROWS
        ),
        "runs_list.list_runs (status FAILED)": lambda: runs_list.list_runs(
            con, failed, PAGE_ROWS, 0
        ),
        "runs_list.flow_names": lambda: runs_list.flow_names(con),
    }
    for name, args in (
        ("headline", ()),
        ("time_unit", ()),
        ("trends", (unit, TZ)),
        ("failed_steps", ()),
        ("other_failed_states", ()),
        ("error_signatures", (unit, TZ)),
        ("quota_per_day", (TZ,)),
        ("quota_per_flow", ()),
        ("duration_percentiles", ()),
        ("slowest_steps", ()),
    ):
        function = getattr(insights, name, None)
        if function is not None:
            calls[f"insights.{name}"] = lambda f=function, a=args: f(con, run_filter, *a)
    return calls


def time_store_calls(db: Path, repeat: int = 3, presets=("7d", "all")) -> dict:
    """{preset: {call: median ms}} plus the cost of opening the database for one script run."""
    now = datetime.now(UTC).replace(tzinfo=None)
    results: dict = {
        "open_db (read-write, as pages do)": _median_ms(lambda: _open_and_close(db), repeat)
    }
    with open_db(db, read_only=True) as con:
        for preset in presets:
            since, until = preset_window(preset, now)
            run_filter = RunFilter(since=since, until=until)
            unit = insights.time_unit(con, run_filter)
            results[preset] = {
                name: round(_median_ms(call, repeat), 1)
                for name, call in _calls(con, run_filter, unit).items()
            }
    return results
