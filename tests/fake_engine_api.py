"""A contract-faithful fake of the Activepieces engine's REST API, served over real HTTP.

Why it exists: the API connector (runs_store/ingest/engine/api.py) must be tested against what the
engine's server really answers, its paging bug included, without running an engine. `FakeEngine`
serves run objects made by `sample_data.generator.generate_runs` from a ThreadingHTTPServer on
127.0.0.1 the way the engine's Fastify server does: the same routes, query rules, page and cursor
encodings, error bodies and status codes, plus injected faults (429, 5xx, slow answers, resets).
The run routes cut `flowVersion` down to {displayName}; GET /v1/flows/{flowId}?versionId= gives the
flow with a run's full version (its step graph), answered from the flowVersion the runs carry.
`NotAnEngine` answers every path with an HTML page, for "that URL is not an engine" tests.

Read from the engine's source, repository activepieces/activepieces (server files under
packages/server/api/src/app/, shared under packages/shared/src/lib/; "later" = a newer stored
version that the index gave without its commit):
- flows/flow-run/flow-run-controller.ts @03c3239e (and later, with /compare): GET /v1/flow-runs
  (limit `?? 10`, environment PRODUCTION always), /count-by-status, /:id (getOnePopulatedOrThrow);
  response schemas SeekPage(FlowRun.omit({steps})) and FlowRun; route security.
- flows/flow-run/flow-run-service.ts @373e004b: list filters, orderBy created DESC + id DESC,
  inclusive createdAfter/createdBefore, `steps = {}` when the log is missing; @00fd1e1a (before
  PR #13516): order DESC on `created` alone.
- helper/pagination/paginator.ts @00482b7e and @2cb0bbdf ("created:" + epoch ms, DATE_TRUNC
  second, limit + 1, previous/next rules) and later (id tie-breaker, `created::text` in cursors,
  legacy cursors still decoded); build-paginator.ts @025a9f14 (a falsy limit keeps the
  paginator's 100); pagination-utils.ts @1bfacec4 (base64("next_"/"prev_" + c), split on "_").
- shared automation/flow-run/flow-run.ts @0c44356b, @a217d801 (FlowRun response schema);
  dto/list-flow-runs-request.ts @1fbe7a5b, @adad3917; execution/step-output.ts @17b03761
  (StepOutputType.SLICE = "slice", LogSliceRef {fileId, size, url}); core/common/
  activepieces-error.ts @10d68569 (ErrorCode names), base-model (OptionalBooleanFromQuery) and
  id-generator (ApId = 21 of [0-9a-zA-Z]) later.
- file/files-controller.ts @1192d9fb, files-service.ts @03c3239e, file.service.ts @0718425f:
  GET /v1/files/:fileId?token=<signed read token>, bytes as application/octet-stream.
- helper/error-handler.ts @0011a65c (status map, body {code, params}); core/security/v2/authn/
  authenticate.ts @098b2e9d; authentication/lib/access-token-manager.ts @03cbd22b; core/security/
  v2/authz/authorize.ts @1a361f0c, authorization-middleware.ts @03c3239e, projectIdExtractor.ts
  @21c55cc0; ee/authentication/project-role/rbac-service.ts @117e5d5e; project/project-service.ts
  @0138a47f; app.ts (later: "Route not found" in onRequest, authn and authz as preHandlers, so after
  query validation); core/security/rate-limit.ts @1cb8c7cc (no rate limit on these routes).
- flows/flow/flow.controller.ts @0166cd98 (GET /v1/flows/:id?versionId=, USER and SERVICE,
  READ_FLOW, project from the flow's table row; @6b35754d the same route before the v2 security);
  flows/flow/flow.service.ts @00482b7e getOnePopulatedOrThrow (flow, then the version, then
  `triggerSource`; ENTITY_NOT_FOUND with empty params); flows/flow-version/flow-version.service.ts
  @0166cd98 getFlowVersionOrThrow (WHERE flowId AND id, newest `created` first; 404
  {entityId, entityType: "FlowVersion", message: "flowId=..."}); flows/flow/flow.entity.ts
  @015cb8d7 (table `flow`: the 404 of projectIdExtractor.fromTable); flows/flow/
  flow-version.controller.ts @0d569d42 (only GET /v1/flows/:flowId/versions, USER only, metadata
  without the step graph); shared automation/flows/flow.ts @da2815f4 (Flow, PopulatedFlow),
  flow-version.ts @10d68569 (FlowVersion), dto/list-flows-request.ts @e332effb
  (GetFlowQueryParamsRequest: versionId any string); flow-version/migrations/index.ts @0100bbd4 and
  migrate-v25-http-piece-version.ts @817e2ac3 (linked steps, schema "26").
Where the source left a point open, the comment says "Assumed".
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import json
import math
import re
import secrets
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from runs_store.domain.statuses import STATUS_NAMES

__all__ = ["FakeEngine", "NotAnEngine"]

STATUSES = frozenset(STATUS_NAMES)  # the engine's eleven, as runs_store.domain declares them
DEFAULT_LIMIT = 10  # flow-run-controller DEFAULT_PAGING_LIMIT
PAGINATOR_LIMIT = 100  # Paginator's own default, kept when the asked limit is 0
SLICE_THRESHOLD = 32 * 1024  # AP_FLOW_RUN_LOG_SLICE_THRESHOLD_KB default
# Assumed: the schema a version has once flowVersionMigrationService.migrate read it (the chain
# at migrations/index.ts @0100bbd4 ends with v25 -> "26"); a version's own schemaVersion wins.
FLOW_SCHEMA_VERSION = "26"
# FlowVersion's fields (shared automation/flows/flow-version.ts): the response schema keeps these.
FLOW_VERSION_FIELDS = (
    "id",
    "created",
    "updated",
    "flowId",
    "displayName",
    "trigger",
    "updatedBy",
    "valid",
    "schemaVersion",
    "agentIds",
    "state",
    "connectionIds",
    "backupFiles",
    "notes",
)
PLATFORM_ID = "FakePlatform000000000"
USER_ID = "FakeUser0000000000000"
JSON_TYPE = "application/json; charset=utf-8"
_AP_ID = re.compile(r"[0-9a-zA-Z]{21}")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Refusal(Exception):
    """An answer other than the happy one: status, body and headers as the engine sends them."""

    def __init__(self, status: int, body, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def engine_error(status: int, code: str, **params) -> _Refusal:
    """An ActivepiecesError as error-handler.ts sends it: {code, params}."""
    return _Refusal(status, {"code": code, "params": params})


def fastify_error(status: int, message: str, code: str | None = None) -> _Refusal:
    """Any other error as Fastify serialises it: {statusCode, code?, error, message}."""
    body = {"statusCode": status, "error": HTTPStatus(status).phrase, "message": message}
    if code:
        body = {"statusCode": status, "code": code, **body}
    return _Refusal(status, body)


def route_not_found() -> _Refusal:
    return fastify_error(404, "Route not found")


def bad_query(message: str) -> _Refusal:
    # Assumed: the zod message text differs by zod version; status and code are Fastify's.
    return fastify_error(400, f"querystring/{message}", code="FST_ERR_VALIDATION")


# ------------------------------------------------------------------ timestamps


def parse_timestamp(text: str) -> datetime | None:
    """A timestamp the way Postgres reads one into timestamptz; a zone-less one is UTC (the
    session zone of the engine's database), None when Postgres would refuse it."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso_ms(moment: datetime) -> str:
    """JavaScript's Date.toISOString(): 2026-11-03T09:14:02.118Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def postgres_text(moment: datetime) -> str:
    """`timestamptz::text` in a UTC session: 2026-11-03 09:14:02.118+00 (trailing zeros cut)."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "+00"


def created_of(run: dict) -> datetime:
    moment = parse_timestamp(str(run.get("created", "")))
    if moment is None:
        raise ValueError(f"run {run.get('id')!r} has no valid `created`")
    return moment


# ------------------------------------------------------------------ cursors


def to_base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def from_base64(text: str) -> str:
    """Node's Buffer.from(text, "base64"): lenient, ignores what is not base64."""
    cleaned = re.sub(r"[^A-Za-z0-9+/\-_]", "", text).translate(str.maketrans("-_", "+/"))
    if len(cleaned) % 4 == 1:  # a lone last character carries no whole byte
        cleaned = cleaned[:-1]
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4)).decode("latin-1")
    except ValueError:
        return ""


def page_cursor(direction: str, inner: str | None) -> str | None:
    """pagination-utils createPage: base64("next_" + c) or base64("prev_" + c)."""
    return None if inner is None else to_base64(f"{direction}_{inner}")


def split_page_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    """pagination-utils decodeCursor: (after, before); anything not "next_" counts as before."""
    if not cursor:
        return None, None
    text = from_base64(cursor)
    parts = text.split("_")
    inner = parts[1] if len(parts) > 1 and parts[1] else None
    return (inner, None) if text.startswith("next_") else (None, inner)


def keyset_cursor(run: dict) -> str:
    """Later paginator.ts: btoa(JSON {created: created::text, id})."""
    data = {"created": postgres_text(created_of(run)), "id": run["id"]}
    return to_base64(json.dumps(data, separators=(",", ":")))


def legacy_cursor(run: dict) -> str:
    """paginator.ts @00482b7e: btoa("created:" + epoch ms)."""
    return to_base64(f"created:{epoch_ms(created_of(run))}")


def created_from_epoch_text(raw: str | None) -> datetime:
    """decodeByType for a timestamp column: parseInt(raw), then new Date(ms)."""
    match = re.match(r"\s*([+-]?\d+)", raw or "")
    if match is None:
        raise ValueError("date column in cursor should be a valid timestamp")
    return _EPOCH + timedelta(milliseconds=int(match.group(1)))


def decode_legacy_cursor(inner: str) -> dict:
    """paginator.ts @00482b7e decode: "created:<ms>"; a bad cursor is a 500."""
    found = {}
    for column in from_base64(inner).split(","):
        key, *rest = column.split(":")
        if key != "created":
            raise ValueError(f"entity property not found {key}")
        found["created"] = created_from_epoch_text(rest[0] if rest else None)
    return found


def decode_keyset_cursor(inner: str) -> dict:
    """Later paginator.ts decode: JSON {created, id}; a legacy "created:<ms>" cursor is still
    read; anything unreadable is no cursor at all (the first page)."""
    text = from_base64(inner)
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            return decode_legacy_cursor(inner)
        except (ValueError, OverflowError):
            return {}
    if not isinstance(parsed, dict):
        return {}
    found: dict = {}
    created = parsed.get("created")
    if isinstance(created, str) and parse_timestamp(created) is not None:
        found["created"] = parse_timestamp(created)
        if isinstance(parsed.get("id"), str | int | float) and not isinstance(parsed["id"], bool):
            found["id"] = str(parsed["id"])
    return found


# ------------------------------------------------------------------ the list query


@dataclass(frozen=True)
class ListQuery:
    project_id: str
    limit: int | None  # None: every row (the paginator's NO_LIMIT)
    cursor: str | None
    created_after: datetime | None
    created_before: datetime | None
    statuses: tuple[str, ...] | None
    flow_ids: tuple[str, ...] | None
    run_ids: tuple[str, ...] | None
    tags: tuple[str, ...] | None
    failed_step_name: str | None
    failed_step_message: str | None
    include_archived: bool


def single_value(query: dict, key: str) -> str | None:
    values = query.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise bad_query(f"{key} Invalid input: expected string, received array")
    return values[0]


def ap_ids(query: dict, key: str) -> tuple[str, ...] | None:
    values = query.get(key)
    if values is None:
        return None
    if not all(_AP_ID.fullmatch(value) for value in values):
        raise bad_query(f"{key} Invalid string: must match pattern")
    return tuple(values)


def resolved_limit(raw: str | None, page_cap: int | None) -> int | None:
    """Number(limit ?? 10); a falsy one (0) keeps the paginator's 100; -1 is NO_LIMIT.
    Assumed: other negatives also read everything, a fraction is cut to an integer."""
    if raw is None:
        asked = float(DEFAULT_LIMIT)
    else:
        try:
            asked = float(raw) if raw.strip() else 0.0
        except ValueError:
            raise bad_query("limit Invalid input: expected number, received NaN") from None
        if not math.isfinite(asked):
            raise bad_query("limit Invalid input: expected number")
    limit = None if asked < 0 else int(asked) or PAGINATOR_LIMIT
    if page_cap is None:
        return limit
    return page_cap if limit is None else min(limit, page_cap)


def created_bound(query: dict, key: str) -> datetime | None:
    raw = single_value(query, key)
    if not raw:
        return None
    moment = parse_timestamp(raw)
    if moment is None:  # handed to Postgres as given: its refusal is a 500
        raise fastify_error(500, f'invalid input syntax for type timestamp with time zone: "{raw}"')
    return moment


def parse_list_query(query: dict, page_cap: int | None) -> ListQuery:
    """ListFlowRunsRequestQuery (zod), then the controller's defaults."""
    project_id = single_value(query, "projectId")
    if project_id is None:
        raise bad_query("projectId Invalid input: expected string, received undefined")
    if not _AP_ID.fullmatch(project_id):
        raise bad_query("projectId Invalid string: must match pattern")
    statuses = query.get("status")
    if statuses is not None and not set(statuses) <= STATUSES:
        raise bad_query("status Invalid option")
    return ListQuery(
        project_id=project_id,
        limit=resolved_limit(single_value(query, "limit"), page_cap),
        cursor=single_value(query, "cursor"),
        created_after=created_bound(query, "createdAfter"),
        created_before=created_bound(query, "createdBefore"),
        statuses=tuple(statuses) if statuses is not None else None,
        flow_ids=ap_ids(query, "flowId"),
        run_ids=ap_ids(query, "flowRunIds"),
        tags=tuple(query["tags"]) if "tags" in query else None,
        failed_step_name=single_value(query, "failedStepName"),
        failed_step_message=single_value(query, "failedStepMessage"),
        include_archived=single_value(query, "includeArchived") == "true",
    )


def is_listed(run: dict, created: datetime, query: ListQuery) -> bool:
    """flow-run-service list: the WHERE clause, environment = PRODUCTION included."""
    failed = run.get("failedStep") or {}
    checks = (
        run.get("projectId") == query.project_id,
        run.get("environment") == "PRODUCTION",
        query.include_archived or run.get("archivedAt") is None,
        query.flow_ids is None or run.get("flowId") in query.flow_ids,
        query.statuses is None or run.get("status") in query.statuses,
        query.run_ids is None or run.get("id") in query.run_ids,
        query.created_after is None or created >= query.created_after,
        query.created_before is None or created <= query.created_before,
        query.tags is None or set(query.tags) <= set(run.get("tags") or ()),
        query.failed_step_name is None or failed.get("name") == query.failed_step_name,
        query.failed_step_message is None
        or query.failed_step_message.lower() in str(failed.get("message", "")).lower(),
    )
    return all(checks)


# ------------------------------------------------------------------ response shapes


def without_flow_graph(run: dict) -> dict:
    """The response schema keeps only flowVersion.displayName of the joined flow version."""
    shown = dict(run)
    if isinstance(shown.get("flowVersion"), dict):
        version = shown["flowVersion"]
        shown["flowVersion"] = (
            {"displayName": version["displayName"]} if "displayName" in version else {}
        )
    return shown


def listed_item(run: dict) -> dict:
    item = without_flow_graph(run)
    item.pop("steps", None)
    return item


def fetched_run(run: dict) -> dict:
    shown = without_flow_graph(run)
    # getOnePopulatedOrThrow starts from `steps = {}`: a purged or never-started run has {}.
    shown["steps"] = run.get("steps") or {}
    return shown


@dataclass
class VersionFacts:
    """What the runs held tell of one flow version."""

    record: dict | None  # the full flowVersion a run carried (newest run's copy); None: none did
    first_seen: datetime  # the earliest `created` of a run on it: the fake's version `created`
    record_seen: datetime | None
    production: bool  # a PRODUCTION run used it: the version was published, so LOCKED


@dataclass
class FlowFacts:
    """A flow as the runs held show it: its project, versions and published version."""

    flow_id: str
    project_id: str
    first_run: datetime
    versions: dict[str, VersionFacts]
    published: tuple[datetime, str] | None  # (created, version id) of the newest PRODUCTION run

    def latest_version_id(self) -> str | None:
        """getFlowVersionOrThrow without versionId: ORDER BY created DESC, the newest version.
        Assumed: a version known only from runs without a flowVersion (older engines' records)
        cannot be served, so the newest version that has a record is the one returned."""
        known = [(facts.first_seen, vid) for vid, facts in self.versions.items() if facts.record]
        return max(known)[1] if known else None


def collect_flow(
    runs: Iterable[dict], created: dict[str, datetime], flow_id: str
) -> FlowFacts | None:
    """FlowFacts of `flow_id` from the runs held, or None when no run is of that flow."""
    facts: FlowFacts | None = None
    for run in runs:
        if run.get("flowId") != flow_id:
            continue
        moment = created[str(run["id"])]
        if facts is None:
            facts = FlowFacts(flow_id, str(run.get("projectId")), moment, {}, None)
        facts.first_run = min(facts.first_run, moment)
        record = run.get("flowVersion")
        has_graph = isinstance(record, dict) and isinstance(record.get("trigger"), dict)
        version_id = str(run.get("flowVersionId") or (record or {}).get("id") or "")
        if not version_id:
            continue
        version = facts.versions.setdefault(version_id, VersionFacts(None, moment, None, False))
        version.first_seen = min(version.first_seen, moment)
        if has_graph and (version.record_seen is None or moment >= version.record_seen):
            version.record, version.record_seen = record, moment
        if run.get("environment") == "PRODUCTION":
            version.production = True
            if facts.published is None or (moment, version_id) > facts.published:
                facts.published = (moment, version_id)
    return facts


def populated_flow(flow: FlowFacts, version_id: str) -> dict:
    """PopulatedFlow as GET /v1/flows/:id answers it: Flow's columns and `version`, the full
    FlowVersion with its step graph (`trigger` -> nextAction / firstLoopAction / children).
    Assumed, as the runs do not tell them: externalId = id, no owner, folder, metadata or
    template; a version's `updated` is its `created`; `triggerSource` (set only when the flow has
    an active trigger source, to {schedule}) is left out."""
    version = flow.versions[version_id]
    record = version.record or {}
    shown = {
        "id": version_id,
        "created": iso_ms(version.first_seen),
        "updated": iso_ms(version.first_seen),
        "flowId": flow.flow_id,
        "displayName": record.get("displayName", ""),
        "trigger": record.get("trigger"),
        "updatedBy": None,
        "valid": True,
        "schemaVersion": FLOW_SCHEMA_VERSION,
        "agentIds": [],
        # A published version is LOCKED; a version only test runs used is still the DRAFT.
        "state": "LOCKED" if version.production else "DRAFT",
        "connectionIds": [],
        "backupFiles": None,
        "notes": [],
    }
    shown.update({key: record[key] for key in FLOW_VERSION_FIELDS if key in record})
    shown["id"], shown["flowId"] = version_id, flow.flow_id
    published = flow.published[1] if flow.published else None
    newest = max(facts.first_seen for facts in flow.versions.values())
    return {
        "id": flow.flow_id,
        "created": iso_ms(flow.first_run),
        "updated": iso_ms(newest),
        "projectId": flow.project_id,
        "externalId": flow.flow_id,
        "ownerId": None,
        "folderId": None,
        "status": "ENABLED" if published else "DISABLED",
        "publishedVersionId": published,
        "metadata": None,
        "operationStatus": "NONE",
        "timeSavedPerRun": None,
        "templateId": None,
        "version": shown,
    }


def compact_json(value) -> bytes:
    """JSON.stringify's bytes: no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def derived_id(*parts: str) -> str:
    """A 21-character id in the engine's alphabet, the same for the same parts."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return "".join(_ALNUM[byte % 62] for byte in digest[:21])


@dataclass
class SliceFile:
    data: bytes
    project_id: str
    read_token: str


@dataclass
class Fault:
    kind: str  # "fail", "slow" or "reset"
    prefix: str
    remaining: int
    status: int = 0
    retry_after: str | None = None
    body: object = None
    seconds: float = 0.0


def fault_answer(fault: Fault) -> _Refusal:
    headers = [] if fault.retry_after is None else [("Retry-After", fault.retry_after)]
    if fault.body is not None:
        return _Refusal(fault.status, fault.body, headers)
    # The shape of @fastify/rate-limit's answer, which a proxy or gateway would put in front.
    message = (
        f"Rate limit exceeded, retry in {fault.retry_after or 1} second"
        if fault.status == 429
        else HTTPStatus(fault.status).phrase
    )
    refusal = fastify_error(fault.status, message)
    refusal.headers = headers
    return refusal


# ------------------------------------------------------------------ the HTTP plumbing


class _QuietServer(ThreadingHTTPServer):
    """One thread per connection; knows its open connections so stop() can end idle ones."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler_class, owner):
        super().__init__(("127.0.0.1", 0), handler_class)
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.to_reset: set[socket.socket] = set()
        self.guard = threading.Lock()

    def shutdown_request(self, request):
        with self.guard:
            reset = request in self.to_reset
            self.to_reset.discard(request)
        if reset:  # linger 0 then close: the client reads a reset, not an answer
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.close()
            return
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that gave up (timeouts, resets) is expected in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Fastify
    disable_nagle_algorithm = True  # Node's sockets are noDelay (nodejs/node#42163)

    def setup(self):
        super().setup()
        with self.server.guard:
            self.server.connections.add(self.connection)

    def finish(self):
        with self.server.guard:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format, *args):
        pass

    def answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.owner.serve(self, method)

    def do_GET(self):
        self.answer("GET")

    def do_POST(self):
        self.answer("POST")

    def do_PUT(self):
        self.answer("PUT")

    def do_DELETE(self):
        self.answer("DELETE")

    def do_PATCH(self):
        self.answer("PATCH")

    def send_body(self, status: int, body: bytes, content_type: str, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_refusal(self, refusal: _Refusal) -> None:
        body = refusal.body
        if isinstance(body, dict | list):
            self.send_body(refusal.status, compact_json(body), JSON_TYPE, refusal.headers)
            return
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        kind = "text/html; charset=utf-8" if data.lstrip()[:1] == b"<" else "text/plain"
        self.send_body(refusal.status, data, kind, refusal.headers)

    def reset(self) -> None:
        with self.server.guard:
            self.server.to_reset.add(self.connection)
        self.close_connection = True


class _BackgroundServer:
    """A server on 127.0.0.1 and a free port, served from a daemon thread."""

    def __init__(self, handler_class):
        self._server = _QuietServer(handler_class, self)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            self._server.server_close()
            return
        self._server.shutdown()
        with self._server.guard:
            open_connections = list(self._server.connections)
        for connection in open_connections:  # idle keep-alive connections end here
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


# ------------------------------------------------------------------ the fake engine


class FakeEngine(_BackgroundServer):
    """The engine's REST API over `runs` (engine run objects), on http://127.0.0.1:PORT/api.

    `token` is the one valid credential: "sk-..." is a platform API key (a SERVICE principal),
    anything else a user's JWT. `project_ids`: the projects the token may see (None: every
    project of the runs). `cursor_style`: "keyset" (current engines) or "legacy" (<= 0.83, with
    issue #9357). `slices`: step outputs larger than `slice_threshold` bytes of JSON are served
    as slice files. `page_cap`: the most rows a page holds; the engine itself sets no maximum
    (None reproduces that), the default models a gateway that cuts pages to 100.
    Flows and their versions are not given apart: GET /v1/flows/{id} reads them off the runs held
    (a run's flowId, flowVersionId and full flowVersion), so added or updated runs show there too.
    The port is bound on construction, so `base_url` is known before start(); runs are copied
    (never changed in place) and every request is recorded, faulted ones included.
    """

    def __init__(
        self,
        runs: Iterable[dict],
        token: str = "sk-test-token",
        project_ids: Iterable[str] | None = None,
        cursor_style: str = "keyset",
        slices: bool = True,
        page_cap: int | None = 100,
        slice_threshold: int = SLICE_THRESHOLD,
    ):
        if cursor_style not in ("keyset", "legacy"):
            raise ValueError(f"cursor_style must be 'keyset' or 'legacy', not {cursor_style!r}")
        super().__init__(_Handler)
        self._token = token
        self._cursor_style = cursor_style
        self._slices = slices
        self._slice_threshold = slice_threshold
        self._page_cap = page_cap
        self._visible = None if project_ids is None else set(project_ids)
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}
        self._created: dict[str, datetime] = {}
        self._order: list[tuple[datetime, str]] | None = None
        self._order_created: list[datetime] = []
        self._arrival: dict[str, int] = {}
        self._projects: set[str] = set(self._visible or ())
        self._files: dict[str, SliceFile] = {}
        self._read_tokens: dict[str, str] = {}  # outlive their files, as signed tokens do
        self._faults: list[Fault] = []
        self._requests: list[tuple[str, str, dict]] = []
        self._refusals = 0
        self._in_flight = 0
        self._max_concurrent = 0
        self._flight = threading.Condition(self._lock)
        self._slow_gate = threading.Event()
        self.add_runs(runs)

    # -------------------------------------------------------------- live changes

    def add_runs(self, runs: Iterable[dict]) -> None:
        """Adds runs (a run with a known id replaces it)."""
        with self._lock:
            for run in runs:
                self._store(dict(run))

    def update_run(self, run_id: str, **fields) -> dict:
        """Changes a run as the engine would (e.g. a RUNNING run that finishes); `updated` moves
        forward unless given. Returns the stored run."""
        with self._lock:
            old = self._runs[run_id]
            new = {**old, **fields}
            if "updated" not in fields:
                new["updated"] = self._later_than(old.get("updated"))
            self._store(new, arrival=self._arrival[run_id])
            return dict(self._runs[run_id])

    def archive_run(self, run_id: str) -> None:
        """bulkArchive: archivedAt = now; TypeORM's update() also moves `updated`."""
        with self._lock:
            old = self._runs[run_id]
            now = self._later_than(old.get("updated"))
            self._store({**old, "archivedAt": now, "updated": now}, arrival=self._arrival[run_id])

    def expire_file(self, file_id: str) -> None:
        """The slice file is gone (retention): GET /v1/files/{id} answers 404 from now on."""
        with self._lock:
            del self._files[file_id]

    def slice_refs(self, run_id: str) -> dict[str, dict]:
        """Step name -> LogSliceRef of the run's sliced steps, as GET /v1/flow-runs/{id} gives."""
        with self._lock:
            steps = self._runs[run_id].get("steps") or {}
        return {
            name: dict(step["output"])
            for name, step in steps.items()
            if isinstance(step, dict) and step.get("outputType") == "slice"
        }

    def _later_than(self, updated) -> str:
        now = datetime.now(UTC)
        previous = parse_timestamp(str(updated)) if updated else None
        if previous is not None and previous >= now:
            now = previous + timedelta(milliseconds=1)
        return iso_ms(now)

    def _store(self, run: dict, arrival: int | None = None) -> None:
        run_id = str(run["id"])
        created = created_of(run)
        if isinstance(run.get("steps"), dict):
            run["steps"] = self._sliced_steps(run, run["steps"])
        self._runs[run_id] = run
        self._created[run_id] = created
        self._order = None  # the creation order is sorted again when next listed
        if arrival is None:
            arrival = self._arrival.get(run_id, len(self._arrival))
        self._arrival[run_id] = arrival
        self._projects.add(str(run.get("projectId")))

    def _sliced_steps(self, run: dict, steps: dict) -> dict:
        if not self._slices:
            return steps
        return {name: self._sliced_step(run, name, step) for name, step in steps.items()}

    def _sliced_step(self, run: dict, name: str, step):
        """flow-execution-context maybeSliceOutput: an output over the threshold goes to its own
        file (FLOW_RUN_LOG_SLICE, raw JSON) and the step keeps a LogSliceRef. Assumed: only
        top-level steps are sliced here (loop iterations keep their children's outputs)."""
        if not isinstance(step, dict) or "output" not in step or step.get("outputType") == "slice":
            return step
        data = compact_json(step["output"])
        if len(data) <= self._slice_threshold:
            return step
        file_id = derived_id(str(run["id"]), name, hashlib.sha256(data).hexdigest())
        token = secrets.token_urlsafe(24)
        self._files[file_id] = SliceFile(data, str(run.get("projectId")), token)
        self._read_tokens[file_id] = token
        url = f"{self.base_url}/v1/files/{file_id}?token={token}"
        return {
            **step,
            "outputType": "slice",
            "output": {"fileId": file_id, "size": len(data), "url": url},
        }

    # -------------------------------------------------------------- faults

    def fail_next(self, path_prefix: str, status: int, times: int = 1, retry_after=None, body=None):
        """The next `times` requests under `path_prefix` (after /api) answer `status`."""
        retry = None if retry_after is None else str(retry_after)
        self._add_fault(Fault("fail", path_prefix, times, status, retry, body))

    def slow_next(self, path_prefix: str, seconds: float, times: int = 1) -> None:
        """The next `times` requests under `path_prefix` wait `seconds` before their answer (or
        until release_slow() or stop())."""
        self._add_fault(Fault("slow", path_prefix, times, seconds=seconds))

    def reset_next(self, path_prefix: str, times: int = 1) -> None:
        """The next `times` requests under `path_prefix` get their connection reset, no answer."""
        self._add_fault(Fault("reset", path_prefix, times))

    def release_slow(self) -> None:
        """Ends the waits of the requests slowed now."""
        with self._lock:
            gate, self._slow_gate = self._slow_gate, threading.Event()
        gate.set()

    def _add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, kind: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and path.startswith(fault.prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -------------------------------------------------------------- observation

    @property
    def requests(self) -> list[tuple[str, str, dict]]:
        """(method, path after /api, query as lists of values), in order; read tokens redacted."""
        with self._lock:
            return list(self._requests)

    def count(self, path_prefix: str = "") -> int:
        with self._lock:
            return sum(1 for _, path, _ in self._requests if path.startswith(path_prefix))

    @property
    def max_concurrent(self) -> int:
        with self._lock:
            return self._max_concurrent

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def refusals(self) -> int:
        """Requests refused for their credentials (401 and 403); the credentials are not kept."""
        with self._lock:
            return self._refusals

    def wait_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        """Waits until `count` requests are being served at once; False if that never happens."""
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight >= count, timeout)

    def stop(self) -> None:
        self.release_slow()
        super().stop()

    # -------------------------------------------------------------- serving

    def serve(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        api_path = path[len("/api") :] if path.startswith("/api/") else path
        query = parse_qs(url.query, keep_blank_values=True)
        self._record(method, api_path, query)
        with self._flight:
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)
            self._flight.notify_all()
        try:
            self._answer(handler, method, path, api_path, query)
        finally:
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _record(self, method: str, api_path: str, query: dict) -> None:
        shown = {key: ["<redacted>"] if key == "token" else values for key, values in query.items()}
        with self._lock:
            self._requests.append((method, api_path, shown))

    def _answer(self, handler, method, path, api_path, query) -> None:
        slow = self._take_fault("slow", api_path)
        if slow is not None:
            with self._lock:
                gate = self._slow_gate
            gate.wait(slow.seconds)
        if self._take_fault("reset", api_path) is not None:
            handler.reset()
            return
        failure = self._take_fault("fail", api_path)
        try:
            if failure is not None:
                raise fault_answer(failure)
            status, body, content_type, headers = self._route(
                handler, method, path, api_path, query
            )
            handler.send_body(status, body, content_type, headers)
        except _Refusal as refusal:
            if refusal.status in (401, 403) and failure is None:
                with self._lock:
                    self._refusals += 1
            handler.send_refusal(refusal)
        except Exception:
            traceback.print_exc()
            handler.send_refusal(fastify_error(500, "Internal Server Error"))

    def _route(self, handler, method, path, api_path, query):
        parts = api_path.strip("/").split("/")
        if method != "GET" or not path.startswith("/api/") or parts[:1] != ["v1"]:
            raise route_not_found()
        authorization = handler.headers.get("Authorization")
        if parts[1:] == ["flow-runs"]:
            return self._list_runs(authorization, query)
        if parts[1:] == ["flow-runs", "count-by-status"]:
            return self._count_by_status(authorization, query)
        if len(parts) == 3 and parts[1] == "flow-runs":
            return self._get_run(authorization, parts[2])
        if len(parts) == 3 and parts[1] == "files":
            return self._get_file(authorization, parts[2], query)
        if len(parts) == 3 and parts[1] == "flows":
            return self._get_flow(authorization, parts[2], query)
        raise route_not_found()

    # -------------------------------------------------------------- auth

    def _principal(self, authorization: str | None) -> str:
        """v2/authn/authenticate.ts: "Bearer sk-..." is an API key, another "Bearer ..." a JWT,
        no bearer at all an UNKNOWN principal that authorization refuses later."""
        if authorization is None or not authorization.startswith("Bearer "):
            return "UNKNOWN"
        token = authorization.replace("Bearer ", "", 1)
        if authorization.startswith("Bearer sk-"):
            if token != self._token:
                raise engine_error(401, "AUTHENTICATION", message="invalid api key")
            return "SERVICE"
        if token != self._token:
            raise engine_error(
                401, "INVALID_BEARER_TOKEN", message="invalid access token or session expired"
            )
        return "USER"

    def _authorize_project(self, principal: str, project_id: str) -> None:
        """v2/authz/authorize.ts then rbac-service assertPrinicpalAccessToProject."""
        if principal == "UNKNOWN":
            raise engine_error(
                403, "AUTHORIZATION", message="principal is not allowed for this route"
            )
        with self._lock:
            known = project_id in self._projects
            visible = known if self._visible is None else project_id in self._visible
        if principal == "USER" and not visible:
            raise engine_error(
                403,
                "AUTHORIZATION",
                message="No role found for the user",
                userId=USER_ID,
                projectId=project_id,
            )
        if not known:  # projectService.getOneOrThrow
            raise engine_error(404, "ENTITY_NOT_FOUND", entityId=project_id, entityType="project")
        if not visible:  # the project belongs to another platform than the key's
            raise engine_error(
                403,
                "AUTHORIZATION",
                message="Service is not allowed to access this project",
                projectId=project_id,
                platformId=PLATFORM_ID,
            )

    # -------------------------------------------------------------- routes

    def _list_runs(self, authorization, query):
        parsed = parse_list_query(query, self._page_cap)
        self._authorize_project(self._principal(authorization), parsed.project_id)
        with self._lock:
            rows = [
                run
                for run in self._created_within(parsed.created_after, parsed.created_before)
                if is_listed(run, self._created[run["id"]], parsed)
            ]
            page, after, before = self._paginate(rows, parsed)
        body = {
            "data": [listed_item(run) for run in page],
            "next": page_cursor("next", after),
            "previous": page_cursor("prev", before),
        }
        return 200, compact_json(body), JSON_TYPE, ()

    def _created_within(self, after: datetime | None, before: datetime | None) -> list[dict]:
        """The runs created in [after, before], found by bisection in the runs kept in creation
        order, as the engine's (projectId, created) index finds them: a window's page costs the
        window's runs, not every run held."""
        if self._order is None:
            self._order = sorted((created, run_id) for run_id, created in self._created.items())
            self._order_created = [created for created, _ in self._order]
        low = bisect.bisect_left(self._order_created, after) if after else 0
        high = bisect.bisect_right(self._order_created, before) if before else len(self._order)
        return [self._runs[run_id] for _, run_id in self._order[low:high]]

    def _paginate(self, rows: list[dict], query: ListQuery):
        """paginator.ts paginate: limit + 1 rows past the cursor, then the next/previous rules."""
        after, before = split_page_cursor(query.cursor)
        bound = self._decode(after or before) if (after or before) else {}
        backwards = after is None and before is not None
        rows = sorted(rows, key=self._sort_key, reverse=not backwards)
        if bound:
            rows = [run for run in rows if self._beyond(run, bound, backwards)]
        if query.limit is None:
            return rows, None, None
        page = rows[: query.limit + 1]
        has_more = len(page) > query.limit
        page = page[: query.limit]
        if backwards:
            page.reverse()
        if not page:
            return page, None, None
        encode = keyset_cursor if self._cursor_style == "keyset" else legacy_cursor
        next_inner = encode(page[-1]) if before is not None or has_more else None
        previous_needed = after is not None or (has_more and before is not None)
        return page, next_inner, encode(page[0]) if previous_needed else None

    def _decode(self, inner: str) -> dict:
        if self._cursor_style == "keyset":
            return decode_keyset_cursor(inner)
        try:
            return decode_legacy_cursor(inner)
        except (ValueError, OverflowError) as error:
            raise fastify_error(500, str(error)) from None

    def _sort_key(self, run: dict):
        """keyset: (created, id); legacy: created alone, ties in the order the rows happen to
        come (here: the order the runs were added), as Postgres gives no order to ties."""
        if self._cursor_style == "keyset":
            return self._created[run["id"]], str(run["id"])
        return self._created[run["id"]], -self._arrival[run["id"]]

    def _beyond(self, run: dict, bound: dict, backwards: bool) -> bool:
        created = self._created[run["id"]]
        if self._cursor_style == "legacy":
            # DATE_TRUNC('second', created) < DATE_TRUNC('second', :created): issue #9357.
            mine, theirs = created.replace(microsecond=0), bound["created"].replace(microsecond=0)
            return mine > theirs if backwards else mine < theirs
        mine_key = (created, str(run["id"]))
        theirs_key = (bound["created"], bound["id"]) if "id" in bound else None
        if theirs_key is None:
            return created > bound["created"] if backwards else created < bound["created"]
        return mine_key > theirs_key if backwards else mine_key < theirs_key

    def _count_by_status(self, authorization, query):
        project_id = single_value(query, "projectId")
        if project_id is None or not _AP_ID.fullmatch(project_id):
            raise bad_query("projectId Invalid string: must match pattern")
        after, before = created_bound(query, "createdAfter"), created_bound(query, "createdBefore")
        self._authorize_project(self._principal(authorization), project_id)
        counts: dict[str, int] = {}
        with self._lock:
            for run in self._runs.values():
                created = self._created[run["id"]]
                if (
                    run.get("projectId") == project_id
                    and run.get("environment") == "PRODUCTION"
                    and run.get("archivedAt") is None
                    and (after is None or created >= after)
                    and (before is None or created <= before)
                ):
                    counts[run["status"]] = counts.get(run["status"], 0) + 1
        data = [{"status": status, "count": counts[status]} for status in sorted(counts)]
        return 200, compact_json({"data": data}), JSON_TYPE, ()

    def _get_run(self, authorization, run_id: str):
        if not _AP_ID.fullmatch(run_id):
            raise fastify_error(
                400, "params/id Invalid string: must match pattern", "FST_ERR_VALIDATION"
            )
        principal = self._principal(authorization)
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:  # projectIdExtractor.fromTable, before any principal check
            raise engine_error(404, "ENTITY_NOT_FOUND", entityId=run_id, entityType="flow_run")
        self._authorize_project(principal, str(run.get("projectId")))
        # No environment filter by id: a TESTING run is returned.
        return 200, compact_json(fetched_run(run)), JSON_TYPE, ()

    def _get_flow(self, authorization, flow_id: str, query: dict):
        """flow.controller GET /:id?versionId=: getOnePopulatedOrThrow, from the runs held.
        Order as the engine's: params and query validation (400), authentication (401), the
        flow's row for its project (404 "flow", before any principal check), the project rules
        (403/404), then the version WHERE flowId AND id (404 "FlowVersion")."""
        if not _AP_ID.fullmatch(flow_id):
            raise fastify_error(
                400, "params/id Invalid string: must match pattern", "FST_ERR_VALIDATION"
            )
        version_id = single_value(query, "versionId")  # any string: not checked as an ApId
        principal = self._principal(authorization)
        with self._lock:
            flow = collect_flow(self._runs.values(), self._created, flow_id)
        if flow is None:  # projectIdExtractor.fromTable(FlowEntity)
            raise engine_error(404, "ENTITY_NOT_FOUND", entityId=flow_id, entityType="flow")
        self._authorize_project(principal, flow.project_id)
        wanted = flow.latest_version_id() if version_id is None else version_id
        known = flow.versions.get(wanted) if wanted is not None else None
        if known is None or known.record is None:
            params = {"entityType": "FlowVersion", "message": f"flowId={flow_id}"}
            if version_id is not None:  # JSON drops the undefined entityId of a latest lookup
                params = {"entityId": version_id, **params}
            raise _Refusal(404, {"code": "ENTITY_NOT_FOUND", "params": params})
        return 200, compact_json(populated_flow(flow, wanted)), JSON_TYPE, ()

    def _get_file(self, authorization, file_id: str, query: dict):
        """files-controller GET /:fileId: the ?token= read token (from the slice's url) is what
        authorizes; a Bearer header, if any, must still be valid (authn runs first)."""
        if not _AP_ID.fullmatch(file_id):
            raise fastify_error(
                400, "params/fileId Invalid string: must match pattern", "FST_ERR_VALIDATION"
            )
        token = single_value(query, "token")
        if token is None:
            raise bad_query("token Invalid input: expected string, received undefined")
        self._principal(authorization)
        with self._lock:
            file = self._files.get(file_id)
            issued = self._read_tokens.get(file_id)
        if token != issued:
            raise engine_error(
                401, "INVALID_BEARER_TOKEN", message="invalid token or expired for the file"
            )
        if file is None:
            raise engine_error(
                404,
                "ENTITY_NOT_FOUND",
                entityType="file",
                entityId=file_id,
                message="File not found",
            )
        headers = [
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Disposition", f'attachment; filename="{file_id}.bin"'),
        ]
        # No mimetype in a slice's metadata: application/octet-stream, the raw JSON bytes.
        return 200, file.data, "application/octet-stream", headers


# ------------------------------------------------------------------ not an engine


class _WelcomeHandler(_Handler):
    def answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_body(200, b"<html>welcome</html>", "text/html; charset=utf-8")


class NotAnEngine(_BackgroundServer):
    """Answers every path with 200 text/html "<html>welcome</html>": a URL that is not an engine."""

    def __init__(self):
        super().__init__(_WelcomeHandler)
