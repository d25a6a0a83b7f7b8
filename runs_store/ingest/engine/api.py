"""The engine's REST API as a source: its runs listed by time windows, each fetched with its steps.

The list (`GET /v1/flow-runs`) gives runs without steps, newest first, in pages whose cursor
engines up to 0.83 truncate to the second (engine issue #9357: every run sharing the second that
ends a page is skipped). So the walk never relies on following `next`: it asks for inclusive
`createdAfter`/`createdBefore` windows small enough to come back whole, halves a window whose page
comes back full, and follows a cursor only inside a window one millisecond wide. Each run that is
new or changed since the store last saw it is then fetched by id (`GET /v1/flow-runs/{id}`) for its
steps, a few at a time, and its sliced step outputs are read from `GET /v1/files/{fileId}`.

Retries (429 with Retry-After, 5xx, timeouts, resets; exponential backoff with jitter) are
urllib3's. The token is sent as `Authorization: Bearer` and never kept anywhere else.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from runs_store.domain.bounded_json import TooDeep, loads_bounded
from runs_store.domain.statuses import UNFINISHED
from runs_store.ingest.engine.logs import (
    LogTooLarge,
    LogUnreadable,
    decode_slice,
    loop_iterations,
    slice_reference,
    with_slices,
)
from runs_store.ingest.engine.source import PullError, PullRefused, RunPage

PAGE_LIMIT = 100  # the engine's largest list page
FIRST_SPAN = timedelta(hours=1)
SMALLEST_SPAN = timedelta(milliseconds=1)
# A later pull lists again the last minutes before where the earlier one ended: a run the engine
# stamped a little before our clock's "now" (clocks differ, inserts lag) is still found. Runs
# listed again are fetched only if the store lacks them.
OVERLAP = timedelta(minutes=5)
RETRIED_STATUSES = (429, 500, 502, 503, 504)

# Which runs of a listed page the store lacks or holds an older version of: ids -> their `updated`
# as the list gave it; answers the ids to fetch. Without one, every listed run is fetched.
StoredCheck = Callable[[dict[str, datetime]], set[str]]


def engine_time(moment: datetime) -> str:
    """A moment (naive ones are UTC) as the engine writes one: ISO-8601 UTC, milliseconds, Z."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def read_engine_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class _Walk:
    """Where a pull of one project stands: all runs created at or before `complete_through` were
    pulled by an earlier pull; this one covers (complete_through, target] and, walking down from
    target, is done down to `low` (inclusive)."""

    target: datetime
    upper: datetime
    floor: datetime | None
    complete_through: datetime | None
    boundary_ids: set[str] = field(default_factory=set)  # runs created at `upper`, already read

    def share(self, low: datetime) -> float | None:
        """How much of (floor, target] the walk has covered, walking down to `low`."""
        if self.floor is None or self.target <= self.floor:
            return None
        return min(1.0, max(0.0, (self.target - low) / (self.target - self.floor)))

    def marker(self, low: datetime | None) -> dict:
        if low is None:
            return {"complete_through": engine_time(self.target)}
        return {
            "complete_through": _or_none(self.complete_through),
            "target": engine_time(self.target),
            "low": engine_time(low),
        }


def _or_none(moment: datetime | None) -> str | None:
    return engine_time(moment) if moment else None


class ApiSource:
    """An engine's REST API at `base_url` (its root as users know it, `https://HOST/api`)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        concurrency: int = 8,
        timeout_seconds: float = 30.0,
        retries: int = 6,
        backoff_seconds: float = 0.5,
        max_payload_bytes: int = 64 * 1024 * 1024,
        stored_check: StoredCheck | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        token_name: str = "RUNS_API_TOKEN",  # the variable it came from, named when refused
    ):
        self.base_url = _checked_base_url(base_url)
        self.key = f"api {self.base_url}"
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._retries = retries
        self._retry = Retry(
            total=retries,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods={"GET"},
            backoff_factor=backoff_seconds,
            backoff_jitter=backoff_seconds / 2,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._http = urllib3.PoolManager(
            maxsize=concurrency,
            block=True,
            timeout=urllib3.Timeout(connect=min(timeout_seconds, 10.0), read=timeout_seconds),
            retries=self._retry,
        )
        self._concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None  # the fetching threads, kept across pages
        self._token_name = token_name
        self._max_payload_bytes = max_payload_bytes
        self.stored_check = stored_check
        self._now = now
        self.requests = 0
        self._counting = threading.Lock()
        self._versions: dict[str, dict | None] = {}  # flow version id -> its step graph
        self._versions_lock = threading.Lock()

    # ------------------------------------------------------------ EngineSource

    def check(self) -> None:
        """The URL's shape was checked when the source was made; reachability and the token are
        checked by the first request of `projects`."""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._http.clear()

    def projects(self, wanted: list[str]) -> list[str]:
        if not wanted:
            raise PullError("pulling from the API needs at least one --project ID")
        for project in wanted:
            self._list(project, {"limit": 1})
        return wanted

    def pages(self, project: str, marker: dict | None, since: datetime | None) -> Iterator[RunPage]:
        walk = self._walk_from(marker, since)
        span = FIRST_SPAN
        while True:
            lower = walk.upper - span
            last = walk.floor is not None and lower <= walk.floor
            if walk.floor is not None and last:
                lower = walk.floor
            items, full = self._window(project, lower, walk.upper)
            if full and walk.upper - lower > SMALLEST_SPAN:
                span = max((walk.upper - lower) / 2, SMALLEST_SPAN)
                continue
            if full:
                items = self._window_by_cursor(project, lower, walk.upper)
            fresh = [item for item in items if item.get("id") not in walk.boundary_ids]
            if not items and walk.floor is None:
                older = self._older_than(project, lower)
                if older is None:
                    yield self._page(([], []), walk.marker(None))
                    return
                walk.upper, walk.boundary_ids, span = older, set(), FIRST_SPAN
                continue
            page = self._page(
                self._details(self._needed(fresh)), walk.marker(None if last else lower)
            )
            page.listed = len(fresh)
            page.share = 1.0 if last else walk.share(lower)
            yield page
            if last:
                return
            walk.boundary_ids = {item["id"] for item in items if _created(item) == lower}
            walk.upper = lower
            if len(items) < PAGE_LIMIT // 4:
                span *= 2

    def refetch(self, project: str, run_ids: list[str]) -> Iterator[RunPage]:
        for start in range(0, len(run_ids), PAGE_LIMIT):
            chunk = run_ids[start : start + PAGE_LIMIT]
            page = self._page(self._details(chunk), None)
            page.listed = len(chunk)
            yield page

    # ------------------------------------------------------------ the walk

    def _walk_from(self, marker: dict | None, since: datetime | None) -> _Walk:
        marker = marker or {}
        complete = _parsed(marker.get("complete_through"))
        floor = (complete - OVERLAP) if complete else None
        if floor is None and since is not None:
            floor = read_engine_time(engine_time(since))
        if marker.get("target") and marker.get("low"):
            target = read_engine_time(marker["target"])
            return _Walk(target, read_engine_time(marker["low"]), floor, complete)
        now = self._now().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        return _Walk(now, now, floor, complete)

    def _window(self, project: str, lower: datetime, upper: datetime) -> tuple[list[dict], bool]:
        page = self._list(
            project,
            {
                "limit": PAGE_LIMIT,
                "createdAfter": engine_time(lower),
                "createdBefore": engine_time(upper),
            },
        )
        # `next` is set when rows were left over; a gateway may also cut a page short of the limit
        return page["data"], page.get("next") is not None or len(page["data"]) >= PAGE_LIMIT

    def _window_by_cursor(self, project: str, lower: datetime, upper: datetime) -> list[dict]:
        """More than a page of runs in one millisecond: the cursor is followed (exact on engines
        from 0.84; an older engine may skip some, which nothing else could read either)."""
        seen: dict[str, dict] = {}
        query = {"limit": PAGE_LIMIT, "createdAfter": engine_time(lower)}
        query["createdBefore"] = engine_time(upper)
        cursor = None
        while True:
            page = self._list(project, {**query, **({"cursor": cursor} if cursor else {})})
            for item in page["data"]:
                seen.setdefault(item["id"], item)
            cursor = page.get("next")
            if not cursor or not page["data"]:
                return list(seen.values())

    def _older_than(self, project: str, moment: datetime) -> datetime | None:
        """The creation time of the newest run created before `moment`, or None if there is none."""
        before = moment - SMALLEST_SPAN
        page = self._list(project, {"limit": 1, "createdBefore": engine_time(before)})
        return _created(page["data"][0]) if page["data"] else None

    def _page(self, fetched: tuple[list[dict], list[str]], marker: dict | None) -> RunPage:
        """Runs fetched with their notes (one per run whose steps could not all be read)."""
        runs, notes = fetched
        return RunPage(
            runs=runs,
            marker=marker,
            requests=self._take_requests(),
            unfinished=[run["id"] for run in runs if run.get("status") in UNFINISHED],
            without_steps=len(notes),
            notes=notes,
        )

    def _take_requests(self) -> int:
        with self._counting:
            taken, self.requests = self.requests, 0
        return taken

    def _count_requests(self, attempts: int) -> None:
        """Every attempt sent, retries included (detail fetches run on several threads)."""
        with self._counting:
            self.requests += attempts

    # ------------------------------------------------------------ runs with their steps

    def _needed(self, items: list[dict]) -> list[str]:
        """The listed runs to fetch: those the store lacks or holds older (all, without a check)."""
        wanted = [item["id"] for item in items]
        if self.stored_check is None:
            return wanted
        needed = self.stored_check({item["id"]: _updated(item) for item in items})
        return [run_id for run_id in wanted if run_id in needed]

    def _details(self, run_ids: list[str]) -> tuple[list[dict], list[str]]:
        """The runs with their steps, a few at a time, and a note for each whose steps could not
        all be read."""
        if not run_ids:
            return [], []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="pull-fetch")
        runs, notes = [], []
        for run, note in self._pool.map(self._detail, run_ids):
            if run is not None:  # None: deleted since it was listed
                runs.append(run)
            if note:
                notes.append(note)
        return runs, notes

    def _detail(self, run_id: str) -> tuple[dict | None, str | None]:
        run = self._get_json(f"/v1/flow-runs/{run_id}", {}, missing_ok=True)
        if run is None:
            return None, None
        self._add_step_graph(run)
        missing = self._materialise_slices(run)
        return run, f"run {run_id}: {missing} sliced step output(s) not read" if missing else None

    def _add_step_graph(self, run: dict) -> None:
        """The run's flow version's step graph (`trigger`), which names each step, its piece and
        action: the run routes cut `flowVersion` down to its displayName. Read once per version
        (`GET /v1/flows/{flowId}?versionId=`); a version the engine no longer has is left out."""
        flow_id, version_id = run.get("flowId"), run.get("flowVersionId")
        if not isinstance(flow_id, str) or not isinstance(version_id, str):
            return
        with self._versions_lock:
            if version_id not in self._versions:
                self._versions[version_id] = self._version(flow_id, version_id)
            version = self._versions[version_id]
        if version is not None:
            shown = run.get("flowVersion")
            run["flowVersion"] = {**version, **(shown if isinstance(shown, dict) else {})}
            run["flowVersion"]["id"] = version_id

    def _version(self, flow_id: str, version_id: str) -> dict | None:
        if not flow_id.isalnum():
            return None
        flow = self._get_json(f"/v1/flows/{flow_id}", {"versionId": version_id}, missing_ok=True)
        version = flow.get("version") if isinstance(flow, dict) else None
        if not isinstance(version, dict) or version.get("id") != version_id:
            return None
        return {"displayName": version.get("displayName"), "trigger": version.get("trigger")}

    def _materialise_slices(self, run: dict) -> int:
        """Puts back each sliced output (`outputType: "slice"`, `output: {fileId, size, url}`),
        loops included, as the Postgres source does (logs.with_slices); the number not read."""
        steps = run.get("steps")
        if not isinstance(steps, dict):
            return 0
        references = dict(_slice_references(steps))
        outputs: dict = {}
        unread: dict[str, str] = {}
        for file_id, reference in references.items():
            try:
                outputs[file_id] = self._slice(file_id, reference)
            except _SliceUnread as why:
                unread[file_id] = str(why)
        run["steps"] = with_slices(steps, outputs, unread)
        return len(unread)

    def _slice(self, file_id: str, reference: dict):
        """The sliced output, read with the signed token of its `url` (the files route takes no
        other credential), always from this engine's own API root."""
        size = reference.get("size")
        if not file_id.isalnum():
            raise _SliceUnread("unreadable")
        if isinstance(size, int) and size > self._max_payload_bytes:
            raise _SliceUnread("too large")
        token = parse_qs(urlsplit(str(reference.get("url") or "")).query).get("token", [""])[0]
        query = "?" + urlencode({"token": token}) if token else ""
        body = self._get_bytes(f"/v1/files/{file_id}{query}", missing_ok=True)
        if body is None:
            raise _SliceUnread("expired")
        try:
            return decode_slice(body, self._max_payload_bytes)[0]
        except LogTooLarge:
            raise _SliceUnread("too large") from None
        except LogUnreadable:
            raise _SliceUnread("unreadable") from None

    # ------------------------------------------------------------ HTTP

    def _list(self, project: str, query: dict) -> dict:
        page = self._get_json(
            "/v1/flow-runs", {"projectId": project, "includeArchived": "true", **query}
        )
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise PullError(self._not_an_engine("its run list is not a page of runs"))
        return page

    def _get_json(self, path: str, query: dict, missing_ok: bool = False):
        body = self._get_bytes(path + ("?" + urlencode(query) if query else ""), missing_ok)
        if body is None:
            return None
        try:
            return loads_bounded(body.decode("utf-8"))
        except TooDeep as error:
            raise PullError(f"{self._host()} answered {path} with JSON {error}") from None
        except ValueError:  # not JSON, or not UTF-8
            raise PullError(self._not_an_engine("its answer is not JSON")) from None

    def _get_bytes(self, path_and_query: str, missing_ok: bool = False) -> bytes | None:
        url = self.base_url + path_and_query
        try:
            response = self._http.request("GET", url, headers=self._headers, preload_content=True)
        except Urllib3Error as error:
            self._count_requests(1 + self._retries)
            raise PullError(f"cannot reach {self._host()}: {_reason(error)}") from None
        self._count_requests(1 + len(response.retries.history) if response.retries else 1)
        status = response.status
        if status == 401 and not path_and_query.startswith("/v1/files/"):
            raise PullRefused(
                f"the engine at {self.base_url} refused the token in {self._token_name} (401): "
                "give a valid user token or platform API key"
            )
        listing = path_and_query.startswith("/v1/flow-runs?")
        if listing and status == 404 and _error_code(response.data) != "ENTITY_NOT_FOUND":
            raise PullError(self._not_an_engine("it has no run list at /v1/flow-runs"))
        if status == 403 or (listing and status in (400, 404)):
            project = _project_of(path_and_query)
            raise PullRefused(
                f"project {project!r} is not known to the engine at {self.base_url}, or this "
                f"token may not read it ({status})"
            )
        if (status == 404 and missing_ok) or (
            status in (400, 401) and path_and_query.startswith("/v1/files/")
        ):
            return None  # a run deleted since it was listed; a slice expired or its token too
        if status == 404:
            raise PullError(self._not_an_engine(f"{path_and_query.split('?')[0]} is not found"))
        if status >= 400:
            raise PullError(
                f"the engine at {self.base_url} answered {status} to {path_and_query.split('?')[0]}"
                f"{' after retries' if status in RETRIED_STATUSES else ''}"
            )
        return response.data

    def _not_an_engine(self, why: str) -> str:
        return (
            f"{self.base_url} does not answer like an Activepieces engine's API ({why}); give its "
            "API root, e.g. https://cloud.activepieces.com/api or https://HOST/api"
        )

    def _host(self) -> str:
        parts = urlsplit(self.base_url)
        return parts.netloc


class _SliceUnread(Exception):
    """A sliced output that cannot be read; str() is why, in a word or two."""


def _slice_references(steps: dict) -> Iterator[tuple[str, dict]]:
    """(file id, reference) of every sliced output in the steps, loops included."""
    for step in steps.values():
        file_id = slice_reference(step)
        if file_id is not None:
            yield file_id, step["output"]
            continue
        for iteration in loop_iterations(step) or ():
            if isinstance(iteration, dict):
                yield from _slice_references(iteration)


def _checked_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PullRefused(
            f"--api {base_url!r} is not an http(s) URL: give the engine's API root, "
            "e.g. https://cloud.activepieces.com/api"
        )
    if parts.username or parts.password:
        raise PullRefused("--api must not hold credentials: put the token in RUNS_API_TOKEN")
    return base_url.strip().rstrip("/")


def _project_of(path_and_query: str) -> str:
    return parse_qs(path_and_query.partition("?")[2]).get("projectId", ["?"])[0]


def _error_code(body: bytes) -> str | None:
    """The `code` of an engine's error answer (ENTITY_NOT_FOUND, AUTHORIZATION, ...)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer.get("code") if isinstance(answer, dict) else None


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:200]


def _created(item: dict) -> datetime:
    return read_engine_time(item["created"])


def _updated(item: dict) -> datetime:
    return read_engine_time(item.get("updated") or item["created"])


def _parsed(text: str | None) -> datetime | None:
    return read_engine_time(text) if text else None
