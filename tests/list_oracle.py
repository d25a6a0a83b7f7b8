"""An independent model of the runs list, in plain Python, for the list, filter and page tests.

It reads every run of a database file and decides with its own code which runs a `RunFilter`
keeps and in which order they come, so a test compares the store's SQL (and the page built on
it) with a second implementation instead of with numbers the store produced.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from factories import rows
from runs_store.queries.filters import RunFilter

FIELDS = (
    "id",
    "flow_name",
    "status",
    "started_at",
    "duration_ms",
    "failed_step",
    "failed_step_display",
    "error_message",
    "error_signature",
    "flow_version_id",
    "archived_at",
    "finish_time",
)
SEARCHED = ("id", "failed_step", "failed_step_display", "error_message")
PRESET_SPANS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "all": None,
}


def load_runs(db) -> list[dict]:
    """Every run of the database file as a dict (opened read-only, closed again)."""
    found = rows(db, f"SELECT {', '.join(FIELDS)} FROM runs")
    return [dict(zip(FIELDS, row, strict=True)) for row in found]


def keeps(run: dict, run_filter: RunFilter) -> bool:
    """Whether the filter keeps this run, decided field by field in Python."""
    f = run_filter
    checks = (
        f.include_archived or run["archived_at"] is None,
        not f.flows or run["flow_name"] in f.flows,
        not f.statuses or run["status"] in f.statuses,
        f.since is None or run["started_at"] >= f.since,
        f.until is None or run["started_at"] < f.until,
        not f.failed_steps or run["failed_step"] in f.failed_steps,
        not f.signature or run["error_signature"] == f.signature,
        not f.flow_version_ids or run["flow_version_id"] in f.flow_version_ids,
        _found_by_search(run, f.search),
    )
    return all(checks)


def _found_by_search(run: dict, search: str) -> bool:
    needle = search.strip().lower()
    return not needle or any(needle in (run[name] or "").lower() for name in SEARCHED)


def newest_first(runs: list[dict]) -> list[dict]:
    return sorted(runs, key=lambda run: (run["started_at"], run["id"]), reverse=True)


def matching(runs: list[dict], run_filter: RunFilter) -> list[dict]:
    """The runs the filter keeps, most recent first, ties by id (descending)."""
    return newest_first([run for run in runs if keeps(run, run_filter)])


def ids(runs: list[dict]) -> list[str]:
    return [run["id"] for run in runs]


def page_slice(runs: list, per_page: int, page: int) -> list:
    return runs[(page - 1) * per_page : page * per_page]


def utc_minute() -> datetime:
    """Now, naive UTC, cut to the minute (the date presets count back from this)."""
    return datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


def preset_since(preset: str, minute: datetime) -> datetime | None:
    span = PRESET_SPANS[preset]
    return None if span is None else minute - span
