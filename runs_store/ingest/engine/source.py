"""What a live engine source gives the pull: pages of run objects in the engine's API shape.

A source knows how to reach one engine (its REST API, or its Postgres database) and how to walk a
project's runs in pages from where an earlier pull stopped. It never writes to the store: `pull`
commits each page as it lands and then saves the page's marker, so an interrupted pull resumes at
the last committed page and a page read twice only finds its runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from runs_store.domain.errors import StoreError


class PullError(StoreError):
    """A pull that cannot go on; str() is one line naming the cause (never a secret). The CLI
    exits 2, as for any source it cannot use; the pages committed before it are kept."""

    exit_code = 2


class PullRefused(PullError):
    """The engine refused the credentials, or the project is not known to it."""


@dataclass
class RunPage:
    runs: list[dict]  # run objects as GET /v1/flow-runs/{id} gives them, steps materialised
    marker: dict | None  # JSON-able: where the next page starts; saved once `runs` are committed
    listed: int = 0  # runs the source looked at for this page (progress: "runs listed")
    without_steps: int = 0  # runs whose steps could not be read (a log in S3, an expired slice)
    requests: int = 0  # requests (or queries) the page cost, for the summary and benchmarks
    unfinished: list[str] = field(default_factory=list)  # ids to read again until they finish
    notes: list[str] = field(default_factory=list)  # one line each, shown in the summary
    share: float | None = None  # how much of this pull's walk is done (0..1), where known
    # run id -> its steps as JSON text, for runs whose `steps` the source left unparsed
    steps_json: dict[str, bytes] = field(default_factory=dict)


class EngineSource(Protocol):
    key: str  # names the engine without any secret: "api https://host/api", "postgres host/db"

    def check(self) -> None:
        """Raises PullError (PullRefused for a refused token or password) with one line when the
        engine cannot be read: an unreachable host, a URL that is not an engine's, ..."""

    def projects(self, wanted: list[str]) -> list[str]:
        """The projects to pull: `wanted` checked to exist (PullRefused naming an unknown one),
        or, when empty, every project the source can see (Postgres) or PullError (the API needs
        --project)."""

    def pages(self, project: str, marker: dict | None, since: datetime | None) -> Iterator[RunPage]:
        """The project's runs new or changed since `marker` (None: the first pull, limited to runs
        created at or after `since` when given), a page at a time."""

    def close(self) -> None:
        """Lets go of its connections."""

    def refetch(self, project: str, run_ids: list[str]) -> Iterator[RunPage]:
        """Runs read before while unfinished (QUEUED, RUNNING, PAUSED, ...), read again; a page's
        `unfinished` lists those still not finished. Its markers are None."""
