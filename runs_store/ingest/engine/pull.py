"""A pull: a live engine's runs into the store, incrementally, a committed page at a time.

For each project the pull first reads again the runs an earlier pull saw unfinished, then walks
the source's pages from the marker the last committed page left. Pages are spooled to disk as they
land and committed together, a batch at a time, through the same ingest as a JSONL file (the one
normaliser, the newer-`updated`-wins and test-run rules, normalised in SQL) in one transaction;
only then is the batch's last marker saved: a pull killed at any point resumes after the last batch
it committed, and a page read twice finds its runs unchanged, never doubled.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from runs_store import settings
from runs_store.ingest.engine.source import EngineSource, PullError, RunPage
from runs_store.ingest.pipeline import IngestSummary, RunSpool, scratch_folder
from runs_store.store import rollups
from runs_store.store.backend import CLICKHOUSE, dialect
from runs_store.store.clickhouse import writer as clickhouse
from runs_store.store.database import transaction

# Pages are committed together up to RUNS_PULL_COMMIT_RUNS runs, or after this long.
BATCH_SECONDS = 5.0
PROGRESS_SECONDS = 0.5  # how often progress is reported while a batch is being read

T = TypeVar("T")

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
class Seen:
    """What a pull has read so far, committed or not (its progress); updated by the reading
    thread, read by the pull's."""

    listed: int = 0
    fetched: int = 0
    requests: int = 0
    share: float | None = None

    def add(self, page: RunPage) -> None:
        self.listed += page.listed
        self.fetched += len(page.runs)
        self.requests += page.requests
        self.share = page.share


@dataclass
class PullState:
    marker: dict | None
    unfinished: list[str]
    last_pull_at: datetime | None = None
    last_ok_at: datetime | None = None
    runs_pulled: int = 0
    last_error: str | None = None


def load_state(con, source: str, project: str) -> PullState:
    if dialect(con) == CLICKHOUSE:
        found = clickhouse.pull_state_row(con, source, project)
        unfinished = clickhouse.unfinished_runs(con, source, project)
        return _state(found, unfinished)
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
    return _state(rows[0] if rows else None, unfinished)


def _state(row: tuple | None, unfinished: list[str]) -> PullState:
    if row is None:
        return PullState(None, unfinished)
    marker, last_pull_at, last_ok_at, runs_pulled, last_error = row
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
    if dialect(con) == CLICKHOUSE:
        return clickhouse.pull_states(con)
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


def _save_page(con, source: str, project: str, page: RunPage, seen: list[str], pulled: int) -> None:
    """After the batch's runs are committed: its marker, and which of its runs (`seen`) are
    unfinished."""
    if dialect(con) == CLICKHOUSE:
        changes: dict = {"pulled": pulled}
        if page.marker is not None:
            changes["marker"] = page.marker
        clickhouse.set_unfinished(con, source, project, seen, page.unfinished)
        clickhouse.save_pull_state(con, source, project, **changes)
        return
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
    if dialect(con) == CLICKHOUSE:
        ok = {} if error else {"last_ok_at": started}
        clickhouse.save_pull_state(
            con, source, project, last_pull_at=started, last_error=error, **ok
        )
        return
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
    on a cursor of its own: the source asks while the pull commits on `con` (read ahead); a
    ClickHouse connection serves both threads."""
    if dialect(con) == CLICKHOUSE:
        return functools.partial(_needed, lambda ids: _held_in_clickhouse(con, ids))
    reader = con.cursor()

    def held(ids: list[str]) -> dict[str, datetime]:
        return dict(
            reader.execute(
                "SELECT id, updated_at FROM runs WHERE id IN (SELECT unnest($ids::VARCHAR[]))",
                {"ids": ids},
            ).fetchall()
        )

    return functools.partial(_needed, held)


def _held_in_clickhouse(con, ids: list[str]) -> dict[str, datetime]:
    table = clickhouse.held_versions(con, ids)
    return dict(zip(table["id"].to_pylist(), table["updated_at"].to_pylist(), strict=True))


def _needed(
    held_versions: Callable[[list[str]], dict[str, datetime]], versions: dict[str, datetime]
) -> set[str]:
    if not versions:
        return set()
    held = held_versions(list(versions))
    return {
        run_id
        for run_id, updated in versions.items()
        if run_id not in held or updated.replace(tzinfo=None) > held[run_id]
    }


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
    reporter = _Reporter(progress)
    for project in summary.projects:
        _pull_project(con, source, project, since, summary, reporter)
    summary.seconds = time.monotonic() - started_clock
    pruned = rollups.prune(con)  # retention after every pull, the app's too
    if pruned.runs or pruned.rollup_rows:
        summary.notes.insert(0, f"retention: {pruned.line()}")
    return summary


@dataclass
class _Reporter:
    """Calls the pull's progress callback, from the pull's own thread, with what was read."""

    progress: PullProgress | None
    seen: Seen = field(default_factory=Seen)

    def report(self) -> None:
        if self.progress:
            seen = self.seen
            self.progress(seen.listed, seen.fetched, seen.requests, seen.share)


def _pull_project(con, source, project, since, summary: PullSummary, reporter) -> None:
    started = _now()
    state = load_state(con, source.key, project)
    try:
        returned: set[str] = set()
        folder = scratch_folder(con)
        for batch in spooled(folder, source.refetch(project, state.unfinished), reporter):
            returned.update(_commit(con, source, project, batch, summary, reporter))
        _forget_unfinished(con, source.key, project, set(state.unfinished) - returned)
        for batch in spooled(folder, source.pages(project, state.marker, since), reporter):
            _commit(con, source, project, batch, summary, reporter)
    except PullError as error:
        _set_outcome(con, source.key, project, started, str(error))
        raise
    _set_outcome(con, source.key, project, started, None)


def spooled(folder: Path, pages: Iterator[RunPage], reporter: _Reporter) -> Iterator[Batch]:
    """The source's pages in batches spooled to `folder`, read and spooled by a thread of their
    own while the caller commits the batch before: the engine's answers and the store's writes
    overlap, and what waits is on disk, not in memory. Progress is reported while it waits."""
    return read_ahead(
        batched(folder, pages, reporter.seen),
        depth=1,
        discard=Batch.discard,
        on_wait=reporter.report,
    )


def read_ahead(
    items: Iterator[T],
    depth: int = 2,
    discard: Callable[[T], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[T]:
    """The items, made by a thread of their own up to `depth` ahead of the caller. An error of
    the maker reaches the caller where it happened; a caller that stops early (an error while
    committing) lets the maker stop too, and the items it made but the caller never took are
    given to `discard`. While the caller waits, `on_wait` is called every PROGRESS_SECONDS."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def make() -> None:
        try:
            for item in items:
                while not stopped.is_set():
                    try:
                        handoff.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stopped.is_set():
                    if discard is not None:
                        discard(item)
                    return
            handoff.put(("end", None))
        except BaseException as error:  # handed to the caller, which raises it
            handoff.put(("error", error))
        finally:
            close = getattr(items, "close", None)
            if close is not None and stopped.is_set():
                close()

    maker = threading.Thread(target=make, name="pull-read-ahead", daemon=True)
    maker.start()
    try:
        while True:
            try:
                kind, value = handoff.get(timeout=PROGRESS_SECONDS)
            except queue.Empty:
                if on_wait is not None:
                    on_wait()
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopped.set()
        maker.join()
        while not handoff.empty():
            kind, value = handoff.get_nowait()
            if kind == "item" and discard is not None:
                discard(value)


@dataclass
class Batch:
    """Consecutive pages of a project: their runs spooled, the rest of each page merged."""

    spool: RunSpool
    page: RunPage  # runs: empty (they are in the spool); marker: the last page's
    run_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, page: RunPage) -> None:
        self.spool.add(page.runs, page.steps_json)
        self.run_ids.extend(run["id"] for run in page.runs if isinstance(run.get("id"), str))
        merged = self.page
        merged.marker = page.marker if page.marker is not None else merged.marker
        merged.listed += page.listed
        merged.without_steps += page.without_steps
        merged.requests += page.requests
        merged.unfinished.extend(page.unfinished)
        merged.notes.extend(page.notes)
        merged.share = page.share

    def discard(self) -> None:
        self.spool.discard()

    def full(self, runs: int) -> bool:
        return self.spool.records >= runs or time.monotonic() - self.started >= BATCH_SECONDS


def batched(folder: Path, pages: Iterator[RunPage], seen: Seen | None = None) -> Iterator[Batch]:
    """Consecutive pages as one batch, up to RUNS_PULL_COMMIT_RUNS runs or BATCH_SECONDS. The
    batch keeps the last page's marker, so a pull killed mid-batch resumes before it; a batch the
    caller does not commit is deleted from disk."""
    batch: Batch | None = None
    runs = settings.current().pull_commit_runs
    try:
        for page in pages:
            if batch is None:
                batch = Batch(RunSpool(folder), RunPage(runs=[], marker=None))
            batch.add(page)
            if seen is not None:
                seen.add(page)
            if batch.full(runs):
                yield batch
                batch = None
        if batch is not None:
            yield batch
            batch = None
    finally:
        if batch is not None:
            batch.discard()


def _commit(con, source, project, batch: Batch, summary: PullSummary, reporter) -> list[str]:
    """The batch's runs into the store, then its marker; the ids of its runs."""
    name = f"{source.key} project {project}"
    outcome = batch.spool.ingest(con, name)
    summary.ingest.add(outcome)
    page = batch.page
    _save_page(con, source.key, project, page, batch.run_ids, outcome.new + outcome.updated)
    summary.listed += page.listed
    summary.fetched += batch.spool.records
    summary.requests += page.requests
    summary.without_steps += page.without_steps
    summary.notes.extend(page.notes)
    reporter.report()
    return batch.run_ids


def _forget_unfinished(con, source: str, project: str, run_ids: set[str]) -> None:
    """Runs read again that the engine no longer has (deleted, or past its retention)."""
    if run_ids and dialect(con) == CLICKHOUSE:
        clickhouse.set_unfinished(con, source, project, run_ids)
    elif run_ids:
        con.execute(
            "DELETE FROM pull_unfinished WHERE source = $source AND project_id = $project "
            "AND run_id IN (SELECT unnest($ids::VARCHAR[]))",
            {"source": source, "project": project, "ids": sorted(run_ids)},
        )
