"""A pull: a live engine's runs into the store, incrementally, a committed page at a time.

For each project the pull first reads again the runs an earlier pull saw unfinished, then walks
the source's pages from the marker the last committed page left. Each page goes through the same
ingest as a file (the one normaliser, the newer-`updated`-wins and test-run rules) in its own
transaction, and only then is its marker saved: a pull killed at any point resumes after the last
page it committed, and a page read twice finds its runs unchanged, never doubled.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runs_store.ingest.engine.source import EngineSource, PullError, RunPage
from runs_store.ingest.pipeline import IngestSummary, ingest_records
from runs_store.store.database import transaction

# Pages are committed together up to this many runs, or after this long.
BATCH_RUNS = 2_000
BATCH_SECONDS = 2.0

# (runs listed, runs fetched, requests, share of the walk done or None) so far, called after each
# committed page.
PullProgress = Callable[[int, int, int, float | None], None]


@dataclass
class PullSummary:
    source: str
    projects: list[str] = field(default_factory=list)
    listed: int = 0
    fetched: int = 0
    requests: int = 0
    without_steps: int = 0
    seconds: float = 0.0
    ingest: IngestSummary = field(default_factory=IngestSummary)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.ingest.exit_code

    def line(self) -> str:
        rate = self.fetched / self.seconds if self.seconds else 0.0
        steps = f", {self.without_steps:,} without steps" if self.without_steps else ""
        return (
            f"{self.source}, project{'s' if len(self.projects) != 1 else ''} "
            f"{', '.join(self.projects)}: {self.listed:,} runs listed, {self.fetched:,} fetched"
            f"{steps}: {self.ingest.outcomes()}; "
            f"{self.requests:,} requests in {self.seconds:,.1f} s ({rate:,.0f} runs/s)"
        )


@dataclass
class PullState:
    marker: dict | None
    unfinished: list[str]
    last_pull_at: datetime | None = None
    last_ok_at: datetime | None = None
    runs_pulled: int = 0
    last_error: str | None = None


def load_state(con, source: str, project: str) -> PullState:
    rows = con.execute(
        "SELECT marker, last_pull_at, last_ok_at, runs_pulled, last_error FROM pull_state "
        "WHERE source = $source AND project_id = $project",
        {"source": source, "project": project},
    ).fetchall()
    unfinished = [
        row[0]
        for row in con.execute(
            "SELECT run_id FROM pull_unfinished WHERE source = $source AND project_id = $project "
            "ORDER BY run_id",
            {"source": source, "project": project},
        ).fetchall()
    ]
    if not rows:
        return PullState(None, unfinished)
    marker, last_pull_at, last_ok_at, runs_pulled, last_error = rows[0]
    return PullState(
        json.loads(marker) if marker else None,
        unfinished,
        last_pull_at,
        last_ok_at,
        runs_pulled,
        last_error,
    )


def pull_states(con) -> list[dict]:
    """Every (engine, project) pulled so far, for the Sources page."""
    result = con.execute(
        "SELECT source, project_id, last_pull_at, last_ok_at, runs_pulled, last_error, "
        "(SELECT count(*) FROM pull_unfinished u WHERE u.source = s.source "
        " AND u.project_id = s.project_id) AS unfinished "
        "FROM pull_state s ORDER BY source, project_id"
    )
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _save_page(con, source: str, project: str, page: RunPage, pulled: int) -> None:
    """After the page's runs are committed: its marker, and which of its runs are unfinished."""
    params = {"source": source, "project": project}
    with transaction(con):
        _ensure_state_row(con, source, project)
        if page.marker is not None:
            con.execute(
                "UPDATE pull_state SET marker = $marker WHERE source = $source "
                "AND project_id = $project",
                {**params, "marker": json.dumps(page.marker)},
            )
        con.execute(
            "UPDATE pull_state SET runs_pulled = runs_pulled + $pulled WHERE source = $source "
            "AND project_id = $project",
            {**params, "pulled": pulled},
        )
        seen = [run["id"] for run in page.runs if isinstance(run.get("id"), str)]
        con.execute(
            "DELETE FROM pull_unfinished WHERE source = $source AND project_id = $project "
            "AND run_id IN (SELECT unnest($ids::VARCHAR[]))",
            {**params, "ids": seen},
        )
        if page.unfinished:
            con.execute(
                "INSERT INTO pull_unfinished SELECT $source, $project, unnest($ids::VARCHAR[])",
                {**params, "ids": page.unfinished},
            )


def _ensure_state_row(con, source: str, project: str) -> None:
    con.execute(
        "INSERT INTO pull_state (source, project_id) SELECT $source, $project "
        "WHERE NOT EXISTS (SELECT 1 FROM pull_state WHERE source = $source "
        "AND project_id = $project)",
        {"source": source, "project": project},
    )


def _set_outcome(con, source: str, project: str, started: datetime, error: str | None) -> None:
    with transaction(con):
        _ensure_state_row(con, source, project)
        con.execute(
            "UPDATE pull_state SET last_pull_at = $started, last_error = $error, "
            "last_ok_at = CASE WHEN $error IS NULL THEN $started ELSE last_ok_at END "
            "WHERE source = $source AND project_id = $project",
            {"source": source, "project": project, "started": started, "error": error},
        )


def stored_versions(con) -> Callable[[dict[str, datetime]], set[str]]:
    """Which listed runs (id -> `updated`) the store lacks, or holds an older version of. Asked
    on a cursor of its own: the source asks while the pull commits on `con` (read ahead)."""
    reader = con.cursor()

    def needed(versions: dict[str, datetime]) -> set[str]:
        if not versions:
            return set()
        ids = list(versions)
        held = dict(
            reader.execute(
                "SELECT id, updated_at FROM runs WHERE id IN (SELECT unnest($ids::VARCHAR[]))",
                {"ids": ids},
            ).fetchall()
        )
        return {
            run_id
            for run_id, updated in versions.items()
            if run_id not in held or updated.replace(tzinfo=None) > held[run_id]
        }

    return needed


def pull(
    con,
    source: EngineSource,
    projects: list[str],
    since: datetime | None = None,
    progress: PullProgress | None = None,
) -> PullSummary:
    """Pulls the projects' new and changed runs into the store; PullError ends it with the pages
    committed so far kept (and the error saved for the Sources page)."""
    summary = PullSummary(source.key)
    started_clock = time.monotonic()
    try:
        source.check()
        summary.projects = source.projects(projects)
    except PullError as error:  # kept for the Sources page, as a failed pull of each project
        for project in projects:
            _set_outcome(con, source.key, project, _now(), str(error))
        raise
    for project in summary.projects:
        _pull_project(con, source, project, since, summary, progress)
    summary.seconds = time.monotonic() - started_clock
    return summary


def _pull_project(con, source, project, since, summary: PullSummary, progress) -> None:
    started = _now()
    state = load_state(con, source.key, project)
    try:
        returned: set[str] = set()
        for page in batched(read_ahead(source.refetch(project, state.unfinished))):
            returned.update(_commit(con, source, project, page, summary, progress))
        _forget_unfinished(con, source.key, project, set(state.unfinished) - returned)
        for page in batched(read_ahead(source.pages(project, state.marker, since))):
            _commit(con, source, project, page, summary, progress)
    except PullError as error:
        _set_outcome(con, source.key, project, started, str(error))
        raise
    _set_outcome(con, source.key, project, started, None)


def read_ahead(pages: Iterator[RunPage], depth: int = 2) -> Iterator[RunPage]:
    """The source's pages, read by a thread of their own up to `depth` pages ahead while the
    caller commits the last ones: the engine's answers and the store's writes overlap. An error
    of the source reaches the caller at the page where it happened; a caller that stops early
    (an error while committing) lets the reader stop too."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                while not stopped.is_set():
                    try:
                        handoff.put(("page", page), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stopped.is_set():
                    return
            handoff.put(("end", None))
        except BaseException as error:  # handed to the caller, which raises it
            handoff.put(("error", error))
        finally:
            close = getattr(pages, "close", None)
            if close is not None and stopped.is_set():
                close()

    reader = threading.Thread(target=read, name="pull-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopped.set()
        reader.join()


def batched(pages: Iterator[RunPage]) -> Iterator[RunPage]:
    """Consecutive pages as one, up to BATCH_RUNS runs or BATCH_SECONDS of waiting: each commit
    costs a staging database, so a source's small pages are committed a few thousand runs at a
    time. The batch keeps the last page's marker, so a pull killed mid-batch resumes before it."""
    batch: RunPage | None = None
    started = 0.0
    for page in pages:
        if batch is None:
            batch, started = page, time.monotonic()
        else:
            _merge(batch, page)
        if len(batch.runs) >= BATCH_RUNS or time.monotonic() - started >= BATCH_SECONDS:
            yield batch
            batch = None
    if batch is not None:
        yield batch


def _merge(batch: RunPage, page: RunPage) -> None:
    batch.runs.extend(page.runs)
    batch.marker = page.marker if page.marker is not None else batch.marker
    batch.listed += page.listed
    batch.without_steps += page.without_steps
    batch.requests += page.requests
    batch.unfinished.extend(page.unfinished)
    batch.notes.extend(page.notes)
    batch.share = page.share


def _commit(con, source, project, page: RunPage, summary: PullSummary, progress) -> list[str]:
    """The page's runs into the store, then its marker; the ids of its runs."""
    name = f"{source.key} project {project}"
    outcome = ingest_records(con, page.runs, name)
    summary.ingest.add(outcome)
    _save_page(con, source.key, project, page, outcome.new + outcome.updated)
    summary.listed += page.listed
    summary.fetched += len(page.runs)
    summary.requests += page.requests
    summary.without_steps += page.without_steps
    summary.notes.extend(page.notes)
    if progress:
        progress(summary.listed, summary.fetched, summary.requests, page.share)
    return [run["id"] for run in page.runs if isinstance(run.get("id"), str)]


def _forget_unfinished(con, source: str, project: str, run_ids: set[str]) -> None:
    """Runs read again that the engine no longer has (deleted, or past its retention)."""
    if run_ids:
        con.execute(
            "DELETE FROM pull_unfinished WHERE source = $source AND project_id = $project "
            "AND run_id IN (SELECT unnest($ids::VARCHAR[]))",
            {"source": source, "project": project, "ids": sorted(run_ids)},
        )
