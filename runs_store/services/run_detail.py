"""One run as its page shows it: the run, its steps in execution order, and what is inside them.

`load_run` reads the run row and its step rows (two point queries, nothing about other runs) and
prepares everything the run page draws: payloads parsed and masked or, past the preview size, cut
to a masked preview; each failed step's error headline; loop iterations, router branches and Run
Agent timelines; each step's offset in the waterfall. A payload is cut in SQL: only its first part
leaves DuckDB, and the whole is read by `payload_download` when the user asks for it. The
banner's wording, the Edit flow link and the comparison with the last successful run of the same
flow live here too, so the page only draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from string import Formatter
from urllib.parse import quote, urlsplit

from runs_store import settings
from runs_store.domain.bounded_json import loads_bounded
from runs_store.domain.errors import StoreError
from runs_store.domain.formatting import banner_time, long_duration
from runs_store.domain.signatures import load_json_text, summarise_json_error
from runs_store.domain.statuses import UNFINISHED, label
from runs_store.domain.step_tree import (
    AGENT_PIECE,
    AgentTimeline,
    Branch,
    Loop,
    is_agent_step,
    loop_child_names,
    read_branches,
    read_loop,
    read_timeline,
    type_label,
)
from runs_store.services.masking import (
    CUT_LOOKAROUND,
    MaskTally,
    mask_json_text,
    mask_secrets,
    masking_on,
    preview_end,
)
from runs_store.store.backend import (
    CLICKHOUSE,
    DUCKDB,
    arrow,
    by_dialect,
    dialect,
    latest,
    rows,
)

MAX_PARSE_BYTES = 64 * 1024 * 1024  # loops and agents are read even past the preview size
HEADLINE_CHARS = 500
TREE_TYPES = ["LOOP_ON_ITEMS", "ROUTER"]  # steps whose output holds iterations or branches
AGENT_SNIFF_CHARS = 4096  # an output whose start names a tool call is read as an agent's

RUN_COLUMNS = (
    "id, flow_name, flow_id, flow_version_id, project_id, status, started_at, "
    "start_time, finish_time, duration_ms, failed_step, failed_step_display, "
    "error_message, archived_at, tags, parent_run_id, has_steps, pause_metadata, "
    "triggered_by, logs_file_id, steps_data_truncated, timeline, internal_error"
)
# The engine's names for the legs of a run's timeline (AddTimelineToFlowRun, 0.84), as shown.
TIMELINE_LEGS = {
    "QUEUE": "Queued",
    "PROVISION": "Provisioning",
    "BOOT": "Booting",
    "RUN": "Running",
}
# Input and output leave the store cut to $head characters (the preview and what lies just past
# it), with their whole size in bytes; a loop's, router's or agent's whole, as its tree is read
# from them. ClickHouse: `length` counts bytes and `leftUTF8` characters (its `left` cuts bytes);
# the inner query names the whole texts apart, as a ClickHouse alias (`input`) would otherwise
# be what `length(input)` beside it reads; and only the steps of the run's current version count
# (a step row carries the version of the run it came with, see store/clickhouse/schema.py).
_STEPS_DUCKDB = """
SELECT position, name, display_name, type, status, duration_ms, piece_name, action_name,
       reads_tree, strlen(input) AS input_size, strlen(output) AS output_size,
       CASE WHEN reads_tree THEN input ELSE left(input, $head) END AS input,
       CASE WHEN reads_tree THEN output ELSE left(output, $head) END AS output, error
FROM (SELECT *, coalesce((list_contains($tree_types, type) OR piece_name = $agent_piece
                          OR contains(left(output, $sniff), '"TOOL_CALL"'))
                         AND strlen(output) <= $max_tree, false) AS reads_tree
      FROM run_steps WHERE run_id = $run_id)
ORDER BY position
"""
_STEPS_CLICKHOUSE = """
SELECT position, name, display_name, type, status, duration_ms, piece_name, action_name,
       reads_tree, length(whole_input) AS input_size, length(whole_output) AS output_size,
       if(reads_tree, whole_input, leftUTF8(whole_input, $head)) AS input,
       if(reads_tree, whole_output, leftUTF8(whole_output, $head)) AS output, error
FROM (SELECT position, name, display_name, type, status, duration_ms, piece_name, action_name,
             input AS whole_input, output AS whole_output, error,
             coalesce((has($tree_types, type) OR piece_name = $agent_piece
                       OR position(leftUTF8(output, $sniff), '"TOOL_CALL"') > 0)
                      AND length(output) <= $max_tree, false) AS reads_tree
      FROM run_steps FINAL
      WHERE run_id = $run_id
        AND run_updated_at = (SELECT max(updated_at) FROM runs FINAL WHERE id = $run_id))
ORDER BY position
"""
PAYLOAD_COLUMNS = ("input", "output", "error")  # what payload_download may read


class EditLinkError(ValueError):
    """The Edit flow link cannot be made; str() says why and how to fix it."""


class PayloadGone(StoreError):
    """A download asked for a step that is no longer in the database."""


# ---------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Payload:
    """A step's input, output or error detail, ready to show."""

    size: int = 0  # bytes of its JSON text; 0 when nothing was recorded
    value: object = None  # parsed (and masked), when small enough to show whole
    preview: str | None = None  # the first preview_kb of the text (masked), when too big;
    #                               the whole is read on demand by payload_download
    masked: bool = False  # masking was on when it was read
    masked_count: int = 0  # values hidden in what is shown (the preview, when cut)

    @property
    def present(self) -> bool:
        return self.size > 0

    @property
    def cut(self) -> bool:
        return self.preview is not None


def preview_bytes() -> int:
    return max(1, int(settings.current().payload_preview_kb * 1024))


def head_chars(limit: int) -> int:
    """Characters of a payload to read for a preview of `limit` bytes: enough for the preview
    (a character is at least a byte) and for masking to see what runs across its end."""
    return limit + CUT_LOOKAROUND


def _size(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def _parse(text: str):
    try:
        return loads_bounded(text)
    except ValueError:
        return text


def cut_preview(text: str, limit: int, tally: MaskTally | None) -> str:
    """The first `limit` bytes of `text` (whole characters), masked when given a tally.

    Masked, the cut moves back before a credential-shaped value that runs across it (what is
    left of one may be too short to recognise), and a secret key's value cut short is masked
    (MaskTally.json_preview); `text` should reach CUT_LOOKAROUND characters past the cut.
    """
    end = len(text[:limit].encode("utf-8")[:limit].decode("utf-8", errors="ignore"))
    if tally is None:
        return text[:end]
    return tally.json_preview(text[: preview_end(text, end)])


def make_payload(
    text: str | None, mask: bool, limit: int, parsed=None, size: int | None = None
) -> Payload:
    """A payload from stored JSON text: whole and parsed, or a cut preview past `limit` bytes.

    `text` may be only the start of a longer text whose byte `size` is given (see _STEPS)."""
    if text is None or text == "":
        return Payload()
    size, tally = _size(text) if size is None else size, MaskTally()
    if size > limit:
        return Payload(
            size,
            preview=cut_preview(text, limit, tally if mask else None),
            masked=mask,
            masked_count=tally.hits,
        )
    value = _parse(text) if parsed is None else parsed
    return Payload(
        size,
        value=tally.json_value(value, text) if mask else value,
        masked=mask,
        masked_count=tally.hits,
    )


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class StepError:
    headline: str  # one line for the red box, shown as text
    detail: Payload  # the whole error: parsed JSON or the full message text

    @property
    def adds_detail(self) -> bool:
        """Whether the whole error says more than its headline: JSON, cut, or longer text."""
        detail = self.detail
        if detail.cut or isinstance(detail.value, (dict, list)):
            return True
        return detail.present and str(detail.value).strip() != self.headline


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line[:HEADLINE_CHARS] + ("…" if len(line) > HEADLINE_CHARS else "")


def _read_error(text: str) -> tuple[dict | list | str, str]:
    """(the error decoded: a JSON object or list, else its message; its detail as JSON text)
    from a stored error."""
    decoded = load_json_text(text)
    if decoded is not None:
        return decoded, json.dumps(decoded, ensure_ascii=False)
    message = _parse(text) if text.startswith('"') else text
    message = message if isinstance(message, str) else text
    return message, json.dumps(message)


def make_error(text: str | None, mask: bool, limit: int) -> StepError | None:
    if text is None or text in ("", "null"):
        return None
    decoded, detail_text = _read_error(text)
    if isinstance(decoded, str):
        # not JSON as a whole, it may hold some: Request failed: {"password": "..."}
        shown = mask_json_text(decoded) if mask else decoded
        return StepError(_first_line(shown), make_payload(detail_text, mask, limit, parsed=decoded))
    masked = mask_secrets(decoded) if mask else decoded
    headline = summarise_json_error(masked) or json.dumps(masked, ensure_ascii=False)
    return StepError(_first_line(headline), make_payload(detail_text, mask, limit, parsed=decoded))


# ---------------------------------------------------------------- steps and the run


@dataclass(frozen=True)
class Step:
    position: int
    name: str
    display_name: str | None
    type: str | None
    status: str | None
    duration_ms: int | None
    piece_name: str | None
    action_name: str | None
    input: Payload
    output: Payload
    error: StepError | None
    offset_ms: int = 0  # where its bar starts in the waterfall
    loop: Loop | None = None
    branches: tuple[Branch, ...] = ()
    timeline: AgentTimeline | None = None
    children: frozenset[str] = frozenset()  # names of steps run inside this loop
    masked_count: int = 0  # values hidden in its input, output and error

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"

    @property
    def kind(self) -> str:
        """Trigger, Action, Code, Loop, Router or Run Agent."""
        return type_label(self.type, self.piece_name, self.action_name)

    @property
    def app_action(self) -> str:
        return " / ".join(part for part in (self.piece_name, self.action_name) if part)


@dataclass(frozen=True)
class EngineError:
    """The engine's own error about the run (`internalError`): not a step's."""

    source: str | None
    code: str | None
    message: str | None


@dataclass(frozen=True)
class RunDetail:
    id: str
    flow_name: str
    flow_id: str | None
    flow_version_id: str | None
    project_id: str | None
    status: str
    started_at: datetime
    start_time: datetime | None
    finish_time: datetime | None
    duration_ms: int | None
    failed_step: str | None
    failed_step_display: str | None
    error_message: str | None
    archived_at: datetime | None
    tags: tuple[str, ...]
    parent_run_id: str | None
    has_steps: bool
    pause_metadata: dict | None
    steps: tuple[Step, ...]
    masked: bool  # masking was on when the run was read
    masked_count: int = 0  # values actually hidden in what the page shows of it
    triggered_by: str | None = None
    logs_file_id: str | None = None
    steps_data_truncated: bool = False  # the engine cut the steps it returned
    # where the run's time went, one tuple of (leg, ms) per attempt (a resumed run has several)
    timeline: tuple[tuple[tuple[str, int], ...], ...] = ()
    internal_error: EngineError | None = None

    def find_step(self, name: str | None) -> Step | None:
        return next((step for step in self.steps if step.name == name), None)

    def step_containing(self, name: str | None) -> Step | None:
        """The loop step that ran `name` inside its iterations."""
        return next((step for step in self.steps if name in step.children), None)

    def default_step(self) -> Step | None:
        """The failed step (or the loop holding it); else, for a run that did not succeed
        (timed out, canceled, still running), the last step it reached; else the first step."""
        chosen = (
            self.find_step(self.failed_step)
            or self.step_containing(self.failed_step)
            or next((step for step in self.steps if step.failed), None)
        )
        if chosen or not self.steps:
            return chosen
        return self.steps[0] if self.status == "SUCCEEDED" else self.steps[-1]


def _read_tree(row: dict, mask: bool) -> dict:
    """Loop iterations, router branches and the agent timeline from a step's output (read whole
    for the steps the query marks `reads_tree`), and that output parsed and masked ("shown")."""
    if not row["reads_tree"] or not row["output"]:
        return {"shown": None, "hits": None}
    parsed, tally = _parse(row["output"]), MaskTally()
    shown = tally.json_value(parsed, row["output"]) if mask else parsed
    tree = {
        "shown": shown,
        "hits": tally.hits,
        "loop": read_loop(shown),
        "branches": read_branches(shown),
        "children": loop_child_names(parsed),
    }
    if is_agent_step(row["piece_name"], row["action_name"], parsed):
        step_input = _parse(row["input"]) if row["input"] else None
        tree["timeline"] = read_timeline(mask_secrets(step_input) if mask else step_input, shown)
    return tree


def _output_payload(row: dict, shown, hits: int | None, mask: bool, limit: int) -> Payload:
    """The output payload; a small output the tree already parsed and masked is not again."""
    size = row["output_size"]
    if shown is not None and size <= limit:
        return Payload(size, value=shown, masked=mask, masked_count=hits or 0)
    return make_payload(row["output"], mask, limit, size=size)


def make_step(row: dict, offset_ms: int, mask: bool, limit: int) -> Step:
    """A step from its row of the _STEPS query."""
    tree = _read_tree(row, mask)
    shown, tree_hits = tree.pop("shown"), tree.pop("hits")
    output = _output_payload(row, shown, tree_hits, mask, limit)
    step_input = make_payload(row["input"], mask, limit, size=row["input_size"])
    error = make_error(row["error"], mask, limit)
    # a loop's or agent's output was read whole even when cut: its masks show in the tree
    output_hits = output.masked_count if tree_hits is None else max(tree_hits, output.masked_count)
    hits = step_input.masked_count + output_hits + (error.detail.masked_count if error else 0)
    return Step(
        row["position"],
        row["name"],
        row["display_name"],
        row["type"],
        row["status"],
        row["duration_ms"],
        row["piece_name"],
        row["action_name"],
        step_input,
        output,
        error,
        offset_ms,
        **tree,
        masked_count=hits,
    )


def read_step_rows(con, run_id: str, limit: int) -> list[dict]:
    """The run's step rows in execution order, payloads cut for a preview of `limit` bytes."""
    return _rows(
        con,
        by_dialect(con, _STEPS_DUCKDB, _STEPS_CLICKHOUSE),
        {
            "run_id": run_id,
            "head": head_chars(limit),
            "tree_types": TREE_TYPES,
            "agent_piece": AGENT_PIECE,
            "sniff": AGENT_SNIFF_CHARS,
            "max_tree": MAX_PARSE_BYTES,
        },
    )


def _rows(con, sql: str, params: dict) -> list[dict]:
    """The rows of a query as dicts by column name, on either engine."""
    return arrow(con, sql, params).to_pylist()


def _pause_metadata(text: str | None) -> dict | None:
    value = _parse(text) if text else None
    return value if isinstance(value, dict) else None


def load_run(con, run_id: str, mask: bool | None = None) -> RunDetail | None:
    """The run with this id and all its steps, or None when there is no such run."""
    found = _rows(
        con,
        f"SELECT {RUN_COLUMNS} FROM {latest(con, 'runs')} WHERE id = $run_id LIMIT 1",
        {"run_id": run_id},
    )
    if not found:
        return None
    run = found[0]
    mask = masking_on(mask)
    limit, offset, steps = preview_bytes(), 0, []
    for row in read_step_rows(con, run_id, limit):
        steps.append(make_step(row, offset, mask, limit))
        offset += max(row["duration_ms"] or 0, 0)
    error_message, error_hits = _run_error(run["error_message"], mask)
    internal_error, internal_hits = _engine_error(run["internal_error"], mask)
    has_steps = bool(run["has_steps"]) and bool(steps)
    return RunDetail(
        **{
            key: run[key]
            for key in RUN_COLUMNS.replace(" ", "").split(",")
            if key not in _READ_APART
        },
        error_message=error_message,
        tags=tuple(run["tags"] or ()),
        has_steps=has_steps,
        pause_metadata=_pause_metadata(run["pause_metadata"]),
        steps=tuple(steps),
        masked=mask,
        # the run's error message repeats its failed step's; it is shown only without steps
        masked_count=(sum(step.masked_count for step in steps) if has_steps else error_hits)
        + internal_hits,
        steps_data_truncated=bool(run["steps_data_truncated"]),
        timeline=timeline_legs(run["timeline"]),
        internal_error=internal_error,
    )


_READ_APART = (
    "tags",
    "pause_metadata",
    "has_steps",
    "error_message",
    "steps_data_truncated",
    "timeline",
    "internal_error",
)


def timeline_legs(text: str | None) -> tuple[tuple[tuple[str, int], ...], ...]:
    """`{legs: [[{name, durationMs}, ...], ...]}` as (leg, ms) per attempt; odd entries are
    left out, an unknown leg keeps the engine's name."""
    value = _parse(text) if text else None
    legs = value.get("legs") if isinstance(value, dict) else None
    if not isinstance(legs, list):
        return ()
    attempts = []
    for attempt in legs:
        entries = attempt if isinstance(attempt, list) else [attempt]
        shown = tuple(
            (TIMELINE_LEGS.get(str(entry.get("name")), str(entry.get("name"))), int(ms))
            for entry in entries
            if isinstance(entry, dict)
            and isinstance(ms := entry.get("durationMs"), (int, float))
            and not isinstance(ms, bool)
        )
        if shown:
            attempts.append(shown)
    return tuple(attempts)


def _engine_error(text: str | None, mask: bool) -> tuple[EngineError | None, int]:
    value = _parse(text) if text else None
    if not isinstance(value, dict):
        return None, 0
    message, hits = _run_error(_text_or_json(value.get("message")), mask)
    return EngineError(
        _text_or_json(value.get("source")), _text_or_json(value.get("code")), message
    ), hits


def _text_or_json(value) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def payload_download(con, run_id: str, position: int, column: str, mask: bool) -> str:
    """A step's whole input, output or error detail for download, masked when `mask` is (as
    its preview was): read only when the user asks for it."""
    if column not in PAYLOAD_COLUMNS:
        raise ValueError(f"no payload column {column!r}")
    found = rows(
        con,
        by_dialect(con, _PAYLOAD_DUCKDB, _PAYLOAD_CLICKHOUSE).format(column=column),
        {"run_id": run_id, "position": position},
    )
    if not found:
        raise PayloadGone(
            f"Step {position + 1} of run {run_id} is no longer in the database "
            "(the run was loaded again or removed): reload the page."
        )
    text = found[0][0] or ""
    if column == "error" and text:
        text = _read_error(text)[1]
    return mask_json_text(text) if mask else text


def _run_error(text: str | None, mask: bool) -> tuple[str | None, int]:
    """The run's error message (shown when its steps were purged), masked like step errors,
    and how many values that hid."""
    if not text or not mask:
        return text, 0
    tally = MaskTally()
    return tally.json_text(text), tally.hits


# ---------------------------------------------------------------- the banner


def _since(moment: datetime | None, now: datetime) -> str:
    if moment is None or now < moment:
        return ""
    return long_duration(int((now - moment).total_seconds() * 1000))


def _pause_words(run: RunDetail, tz: tzinfo) -> str:
    meta = run.pause_metadata or {}
    if meta.get("type") == "WEBHOOK":
        return "waiting for a webhook call"
    resume = meta.get("resumeDateTime")
    try:
        moment = datetime.fromisoformat(str(resume)) if resume else None
    except ValueError:
        moment = None
    if moment is None:
        return "paused"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return f"resumes: {banner_time(moment, tz)}"


def _progress_words(run: RunDetail, tz: tzinfo, now: datetime) -> str:
    if run.status == "PAUSED":
        return _pause_words(run, tz)
    verb = "queued for" if run.status == "QUEUED" else "running for"
    elapsed = _since(
        run.start_time if run.status == "RUNNING" and run.start_time else run.started_at, now
    )
    return f"{verb} {elapsed}" if elapsed else verb.split()[0]


def banner_line(run: RunDetail, tz: tzinfo, now: datetime) -> str:
    """ "Run Succeeded - Started: Jun 12, 2026, 3:23 AM, Took: 832 milliseconds".

    Unfinished runs say how long they have been running or queued, or when a pause ends;
    `now` is naive UTC like the store's timestamps.
    """
    line = f"Run {label(run.status)} - Started: {banner_time(run.started_at, tz)}"
    if run.status in UNFINISHED:
        return f"{line}, {_progress_words(run, tz, now)}"
    if run.duration_ms is not None and run.duration_ms >= 0:
        return f"{line}, Took: {long_duration(run.duration_ms)}"
    return line


# ---------------------------------------------------------------- Edit flow


def edit_flow_url(template: str, run: RunDetail) -> str:
    """The editor URL for this run's flow from a template with {flow_id} / {flow_version_id}."""
    fields = {
        "flow_id": run.flow_id,
        "flow_version_id": run.flow_version_id,
        "project_id": run.project_id,
    }
    try:
        used = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise EditLinkError(f"RUNS_EDIT_FLOW_URL is not a valid template ({error}).") from None
    unknown = used - set(fields)
    if unknown:
        raise EditLinkError(
            f"RUNS_EDIT_FLOW_URL uses {{{sorted(unknown)[0]}}}; only "
            "{flow_id}, {flow_version_id} and {project_id} are known."
        )
    missing = sorted(name for name in used if not fields[name])
    if missing:
        raise EditLinkError(
            f"This run has no {missing[0].replace('_', ' ')}, so the Edit flow link cannot be made."
        )
    url = template.format(**{name: quote(value or "", safe="") for name, value in fields.items()})
    if urlsplit(url).scheme not in ("http", "https"):
        raise EditLinkError("RUNS_EDIT_FLOW_URL must start with http:// or https://.")
    return url


# ---------------------------------------------------------------- compare with last success


@dataclass(frozen=True)
class StepChange:
    name: str
    title: str
    status_then: str | None
    status_now: str | None
    duration_then: int | None
    duration_now: int | None
    output_changed: bool | None  # None when the step ran in only one of the two runs

    @property
    def status_changed(self) -> bool:
        return self.status_then != self.status_now

    @property
    def duration_change_ms(self) -> int | None:
        if self.duration_then is None or self.duration_now is None:
            return None
        return self.duration_now - self.duration_then


@dataclass(frozen=True)
class Comparison:
    other_id: str
    other_started_at: datetime
    other_duration_ms: int | None
    before: bool  # the other run started before this one
    steps: tuple[StepChange, ...]

    @property
    def status_changes(self) -> tuple[StepChange, ...]:
        """Steps whose status differs, including steps that ran in only one of the runs."""
        return tuple(change for change in self.steps if change.status_changed)

    @property
    def output_changes(self) -> tuple[StepChange, ...]:
        return tuple(change for change in self.steps if change.output_changed)


_LAST_SUCCESS = """
WITH this AS (SELECT id, flow_id, flow_name, started_at FROM @RUNS@ WHERE id = $run_id LIMIT 1)
SELECT r.id, r.started_at, r.duration_ms, r.started_at <= this.started_at AS before
FROM @RUNS_R@, this
WHERE r.status = 'SUCCEEDED' AND r.has_steps AND r.id <> this.id
  AND CASE WHEN this.flow_id IS NOT NULL THEN r.flow_id = this.flow_id
           ELSE r.flow_name = this.flow_name END
ORDER BY r.started_at > this.started_at,
         abs(@MS@(r.started_at) - @MS@(this.started_at)), r.id DESC
LIMIT 1
"""
# Milliseconds since the epoch, per dialect.
_EPOCH_MS = {DUCKDB: "epoch_ms", CLICKHOUSE: "toUnixTimestamp64Milli"}
_STEP_HASHES_DUCKDB = """
SELECT run_id, position, name, display_name, status, duration_ms,
       md5(coalesce(output, '') || chr(0) || coalesce(error, '')) AS digest
FROM run_steps WHERE run_id IN ($run_id, $other_id) ORDER BY run_id, position
"""
# The same digest (MD5 as lower-case hex) of each run's current version's steps.
_STEP_HASHES_CLICKHOUSE = """
SELECT run_id, position, name, display_name, status, duration_ms,
       lower(hex(MD5(concat(coalesce(output, ''), char(0), coalesce(error, ''))))) AS digest
FROM run_steps FINAL
WHERE run_id IN ($run_id, $other_id)
  AND (run_id, run_updated_at) IN
      (SELECT id, updated_at FROM runs FINAL WHERE id IN ($run_id, $other_id))
ORDER BY run_id, position
"""
# One step's whole payload (the column from PAYLOAD_COLUMNS only); on ClickHouse, of the run's
# current version.
_PAYLOAD_DUCKDB = "SELECT {column} FROM run_steps WHERE run_id = $run_id AND position = $position"
_PAYLOAD_CLICKHOUSE = (
    "SELECT {column} FROM run_steps FINAL WHERE run_id = $run_id AND position = $position "
    "AND run_updated_at = (SELECT max(updated_at) FROM runs FINAL WHERE id = $run_id)"
)


def _field(row: dict | None, key: str):
    return None if row is None else row[key]


def _change(name: str, now: dict | None, then: dict | None) -> StepChange:
    either = now or then
    assert either is not None, f"step {name!r} is in at least one of the two runs"
    return StepChange(
        name,
        either["display_name"] or name,
        _field(then, "status"),
        _field(now, "status"),
        _field(then, "duration_ms"),
        _field(now, "duration_ms"),
        None if now is None or then is None else now["digest"] != then["digest"],
    )


def compare_with_last_success(con, run_id: str) -> Comparison | None:
    """This run's steps beside those of the nearest successful run of the same flow.

    The nearest one that started before this run, else the first one after it; None when the
    flow has no other successful run with step data.
    """
    sql = (
        _LAST_SUCCESS.replace("@RUNS@", latest(con, "runs"))
        .replace("@RUNS_R@", latest(con, "runs", "r"))
        .replace("@MS@", _EPOCH_MS[dialect(con)])
    )
    found = _rows(con, sql, {"run_id": run_id})
    if not found:
        return None
    other = found[0]
    step_rows = _rows(
        con,
        by_dialect(con, _STEP_HASHES_DUCKDB, _STEP_HASHES_CLICKHOUSE),
        {"run_id": run_id, "other_id": other["id"]},
    )
    now = {row["name"]: row for row in step_rows if row["run_id"] == run_id}
    then = {row["name"]: row for row in step_rows if row["run_id"] == other["id"]}
    names = list(now) + [name for name in then if name not in now]
    return Comparison(
        other["id"],
        other["started_at"],
        other["duration_ms"],
        bool(other["before"]),
        tuple(_change(name, now.get(name), then.get(name)) for name in names),
    )
