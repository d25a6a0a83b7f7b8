"""How to perform each timed interaction in each app through AppTest.

An interaction is a sequence of steps on one AppTest session; only the steps marked `timed`
count. Runs Explorer (app.py) and the baseline (benchmarks/baseline_app.py) get the same
interactions: the Runs page opened cold, a status filter set, a page turned; Insights for the last
7 days and for all time; and (Runs Explorer only: the baseline has no run page) the Run page of
the hand-made 20-step run and 5 MB-output run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import ROOT

APP = ROOT / "app.py"
BASELINE_APP = ROOT / "benchmarks" / "baseline_app.py"
FILTER_STATUS = "FAILED"
RUN_PAGE = "pages/run.py"
RUN_ID_PARAMS = ("id",)  # the run page's URL parameter (the Runs page links to run?id=)


@dataclass(frozen=True)
class Step:
    name: str
    act: Callable  # act(at, context) -> None; the next at.run() is what gets timed
    timed: bool = True


def set_status(at, _context) -> None:
    at.multiselect(key="status").set_value([FILTER_STATUS])


def turn_page(at, _context) -> None:
    """Goes to the next page of the list, by whatever pager the page shows."""
    if len(at.get("pagination")):
        at.get("pagination")[0].set_value(2)
        return
    for button in at.button:
        if "next" in (button.label or "").lower():
            button.click()
            return
    raise LookupError("no pager (st.pagination or a Next button) on the Runs page")


def set_range(preset: str):
    def act(at, _context) -> None:
        at.selectbox(key="range").set_value(preset)

    return act


def open_page(page: str, query: Callable[[dict], dict] | None = None):
    def act(at, context) -> None:
        at.switch_page(page)
        for key, value in (query(context) if query else {}).items():
            at.query_params[key] = value

    return act


def show_view(view: str):
    def act(at, _context) -> None:
        at.radio(key="view").set_value(view)

    return act


def nothing(_at, _context) -> None:
    """A rerun with nothing changed (every query answered from the cache)."""


def run_query(which: str) -> Callable[[dict], dict]:
    def query(context: dict) -> dict:
        return dict.fromkeys(RUN_ID_PARAMS, context["handmade"][which])

    return query


# Each interaction: (key, label, steps). The first step of every interaction runs on a fresh
# session with Streamlit's caches cleared.
OURS = {
    "runs_cold": ("Runs page, cold start", [Step("open", nothing)]),
    "runs_filter": (
        "Runs page, filter change (status)",
        [Step("open", nothing, timed=False), Step("filter", set_status)],
    ),
    "runs_page_turn": (
        "Runs page, page turn",
        [Step("open", nothing, timed=False), Step("page", turn_page)],
    ),
    "runs_all_time_filter": (
        "Runs page, All time, filter change (status)",
        [
            Step("open", nothing, timed=False),
            Step("all", set_range("all"), timed=False),
            Step("filter", set_status),
        ],
    ),
    "runs_cached": (
        "Runs page, rerun with nothing new (cached)",
        [Step("open", nothing, timed=False), Step("rerun", nothing)],
    ),
    "insights_7d": (
        "Insights, Last 7 days",
        [Step("open", nothing, timed=False), Step("insights", open_page("pages/insights.py"))],
    ),
    "insights_all": (
        "Insights, All time",
        [
            Step("open", nothing, timed=False),
            Step("insights", open_page("pages/insights.py"), timed=False),
            Step("all", set_range("all")),
        ],
    ),
    "run_20_steps": (
        "Run page, 20 steps",
        [
            Step("open", nothing, timed=False),
            Step("run", open_page(RUN_PAGE, run_query("run_20_steps"))),
        ],
    ),
    "run_5mb_output": (
        "Run page, 5 MB output",
        [
            Step("open", nothing, timed=False),
            Step("run", open_page(RUN_PAGE, run_query("run_5mb_output"))),
        ],
    ),
}

BASELINE = {
    "runs_cold": OURS["runs_cold"],
    "runs_filter": OURS["runs_filter"],
    "runs_page_turn": OURS["runs_page_turn"],
    "runs_all_time_filter": OURS["runs_all_time_filter"],
    "runs_cached": OURS["runs_cached"],
    "insights_7d": (
        "Insights, Last 7 days",
        [Step("open", nothing, timed=False), Step("insights", show_view("Insights"))],
    ),
    "insights_all": (
        "Insights, All time",
        [
            Step("open", nothing, timed=False),
            Step("insights", show_view("Insights"), timed=False),
            Step("all", set_range("all")),
        ],
    ),
}

APPS: dict[str, tuple[Path, dict]] = {"ours": (APP, OURS), "baseline": (BASELINE_APP, BASELINE)}
