"""A view of the runs as one value, and the URL query that carries it.

The Runs page's view (filters, drill-downs from Insights, page, rows per page, Live) is a frozen
`RunsView`; Insights shows the filter part of the same view. Every URL key is declared once, in
`PARAMS`: the field it fills, its default, how it is read and how it is written. `from_query`
reads a query (dict[str, list[str]], as `urllib.parse.parse_qs` gives it and `st.query_params`
holds it) and never raises: a value that cannot be used falls back to the default, with a notice
naming the parameter. `to_query` writes the canonical query back, defaults left out, so reading it
again gives the same view. Nothing here knows Streamlit: pages/common/url_state.py moves the view
between the URL and the widgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from runs_store.domain.agents import AGENT_STATUSES
from runs_store.domain.agents import FAILED as CALL_FAILED
from runs_store.domain.statuses import label, parse_status
from runs_store.queries.filters import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_PRESET,
    PAGE_SIZES,
    PRESET_LABELS,
    TOOL_OUTCOMES,
    RunFilter,
    day_window,
    preset_window,
)
from runs_store.store.agent_facts import NO_STATUS

EARLIEST_DAY = date(2000, 1, 1)
CUSTOM = "custom"
CUSTOM_DAYS = 7  # a custom range with no days given covers the last seven, today included


class BadValue(ValueError):
    """A URL value that cannot be used; str() says which parameter, what it said and why."""


@dataclass(frozen=True)
class ViewContext:
    """What reading a link depends on besides the link: the flows that exist, and the days a
    custom range may name (up to tomorrow, for a link made a timezone ahead)."""

    flows: frozenset[str] | None = None  # None: any flow name is accepted
    earliest: date = EARLIEST_DAY
    latest: date | None = None
    tools: frozenset[str] | None = None  # the tools agents called; None: any name is accepted
    models: frozenset[str] | None = None  # the models agents ran on (provider/model), likewise

    @classmethod
    def on(
        cls,
        today: date,
        flows: Iterable[str] | None = None,
        tools: Iterable[str] | None = None,
        models: Iterable[str] | None = None,
    ) -> ViewContext:
        return cls(
            None if flows is None else frozenset(flows),
            EARLIEST_DAY,
            today + timedelta(days=1),
            None if tools is None else frozenset(tools),
            None if models is None else frozenset(models),
        )


@dataclass(frozen=True)
class RunsView:
    flows: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # status names (FAILED), shown by label (Failed)
    preset: str = DEFAULT_PRESET  # a key of filters.PRESET_LABELS
    first_day: date | None = None  # a custom range's days, in the user's timezone
    last_day: date | None = None
    archived: bool = False
    search: str = ""
    failed_steps: tuple[str, ...] = ()  # drill-downs from Insights
    signature: str = ""
    versions: tuple[str, ...] = ()
    tool: str = ""  # the agents' filters, as RunFilter's
    tool_outcome: str = ""  # "", or one of filters.TOOL_OUTCOMES
    agent_model: str = ""
    agent_status: str = ""  # one of AGENT_STATUSES, or NO_STATUS
    max_steps: bool = False
    tool_calls: int | None = None
    page: int = 1
    rows: int = DEFAULT_PAGE_SIZE
    live: bool = False

    def with_(self, **changes) -> RunsView:
        return replace(self, **changes)

    @classmethod
    def from_query(
        cls,
        query: dict[str, list[str]],
        context: ViewContext = ViewContext(),
        keys: Iterable[str] | None = None,
    ) -> tuple[RunsView, list[str]]:
        """The view a URL query describes, and a notice for each value that was ignored.

        Only `keys` are read (every declared key by default); a value given more than once
        counts once, and a single-valued parameter keeps its last value, as Streamlit reads it.
        """
        wanted = set(PARAMS_BY_KEY if keys is None else keys)
        values, notices = {}, []
        for param in PARAMS:
            given = [str(value) for value in query.get(param.key) or ()]
            if param.key not in wanted or not given:
                continue
            value, ignored = param.read(given, context)
            if value is not _IGNORED:
                values[param.field] = value
            notices += ignored
        return cls(**_settle_days(values)), notices

    def to_query(self, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
        """The URL query of this view (only `keys`, all by default), its defaults left out."""
        wanted = set(PARAMS_BY_KEY if keys is None else keys)
        query = {}
        for param in PARAMS:
            value = getattr(self, param.field)
            if param.key in wanted and not param.alias and value != param.default:
                query[param.key] = param.write(value)
        return query

    def widget_value(self, key: str):
        """The value of the widget bound to a URL key (lists for the multiselects)."""
        value = getattr(self, PARAMS_BY_KEY[key].field)
        return list(value) if isinstance(value, tuple) else value

    def with_widget_values(self, values: dict[str, object]) -> RunsView:
        """This view with the given widgets' values (by URL key), cleaned as a link would be."""
        changes = {}
        for key, value in values.items():
            param = PARAMS_BY_KEY[key]
            changes[param.field] = param.clean(value)
        return _checked(replace(self, **changes))

    @staticmethod
    def widgets_as_query(values: dict[str, object]) -> dict[str, list[str]]:
        """Widget values (by URL key) as URL values, each spelled out even at its default (a
        range of Last 7 days too), so that every one of them counts as given."""
        query = {}
        for key, value in values.items():
            param = PARAMS_BY_KEY[key]
            cleaned = param.clean(value)
            if cleaned is not None:
                query[key] = param.write(cleaned)
        return query

    def custom_days(self, today: date) -> tuple[date, date]:
        """The custom range's first and last day as given; the last week when none are."""
        first = self.first_day or today - timedelta(days=CUSTOM_DAYS - 1)
        return first, self.last_day or today

    @property
    def days_swapped(self) -> bool:
        return bool(self.first_day and self.last_day and self.first_day > self.last_day)

    def run_filter(self, now: datetime, today: date, tz: tzinfo) -> RunFilter:
        """The filter this view asks for: `now` is naive UTC, `today` the user's date."""
        since: datetime | None
        until: datetime | None
        if self.preset == CUSTOM:
            first, last = sorted(self.custom_days(today))
            since, until = day_window(first, last, tz)
        else:
            since, until = preset_window(self.preset, now)
        return RunFilter(
            flows=self.flows,
            statuses=self.statuses,
            since=since,
            until=until,
            include_archived=self.archived,
            search=self.search,
            failed_steps=self.failed_steps,
            signature=self.signature,
            flow_version_ids=self.versions,
            tool=self.tool,
            tool_outcome=self.tool_outcome,
            agent_model=self.agent_model,
            agent_status=self.agent_status,
            max_steps=self.max_steps,
            tool_calls=self.tool_calls,
        )


def page_notice(page: int, page_count: int) -> str:
    """What a page shows when a link asks for a page past the end of its view."""
    return (
        f'Ignored page "{page}" from the link: this view has only {page_count:,} '
        f"page{'s' if page_count > 1 else ''}."
    )


# ------------------------------------------------------------------ how each parameter reads


_IGNORED = object()  # what a parameter reads as when its value cannot be used


@dataclass(frozen=True)
class Param:
    """One URL parameter: its key, the RunsView field it fills, how it reads from the URL
    (every value given, never none, to (value or _IGNORED, notices)), how it is written back,
    and how a widget's value is cleaned into the field."""

    key: str
    field: str
    read: Callable[[list[str], ViewContext], tuple[object, list[str]]]
    write: Callable[[Any], list[str]]
    clean: Callable[[Any], Any]
    alias: bool = False  # an older spelling of a field: read from links, never written

    @property
    def default(self):
        return RunsView.__dataclass_fields__[self.field].default


def _one(read_one: Callable[[str, ViewContext], object]):
    """A single-valued parameter: the last value given counts (as Streamlit reads it); a bad
    one is ignored, with its notice."""

    def read(given: list[str], context: ViewContext) -> tuple[object, list[str]]:
        try:
            return read_one(given[-1], context), []
        except BadValue as error:
            return _IGNORED, [str(error)]

    return read


def _many(read_one: Callable[[str, ViewContext], str]):
    """A repeated parameter: each value read on its own, bad ones noted and dropped, empty ones
    dropped, repeats (FAILED and Failed are one status) kept once, in the order given."""

    def read(given: list[str], context: ViewContext) -> tuple[object, list[str]]:
        kept, notices = [], []
        for value in given:
            try:
                kept.append(read_one(value, context))
            except BadValue as error:
                notices.append(str(error))
        return tuple(dict.fromkeys(value for value in kept if value)), notices

    return read


def _flow(value: str, context: ViewContext) -> str:
    if context.flows is not None and value not in context.flows:
        raise BadValue(
            f'Ignored flow "{value}" from the link: no runs of a flow by that name are loaded.'
        )
    return value


def _tool(value: str, context: ViewContext) -> str:
    """A tool name, kept as written; one no agent called is ignored when the tools are known."""
    if value and context.tools is not None and value not in context.tools:
        raise BadValue(
            f'Ignored tool "{value}" from the link: no agent of the loaded runs called a tool '
            "by that name."
        )
    return value


def _model(value: str, context: ViewContext) -> str:
    """A model (provider/model), kept as written; one no agent ran on is ignored when the
    models are known."""
    if value and context.models is not None and value not in context.models:
        raise BadValue(
            f'Ignored model "{value}" from the link: no agent of the loaded runs ran on a model '
            "by that name."
        )
    return value


def _outcome(value: str, _context: ViewContext) -> str:
    """A tool call's outcome (failed, unfinished), any case; empty for any outcome."""
    wanted = value.strip().lower()
    if wanted and wanted not in TOOL_OUTCOMES:
        raise BadValue(
            f'Ignored tool call outcome "{value}" from the link: use one of '
            f"{', '.join(TOOL_OUTCOMES)}."
        )
    return wanted


def _tool_failed(value: str, context: ViewContext) -> str:
    """The older `tool_failed=true` link: a failed tool call (false: any outcome)."""
    return CALL_FAILED if _boolean("tool failed")(value, context) else ""


def _agent_status(value: str, _context: ViewContext) -> str:
    """An agent's status as the engine records it (any case), or none recorded."""
    wanted = value.strip()
    if wanted.upper() in AGENT_STATUSES:
        return wanted.upper()
    if wanted.lower() in (NO_STATUS, "none"):
        return NO_STATUS
    if not wanted:
        return ""
    raise BadValue(
        f'Ignored agent status "{value}" from the link: use one of '
        f"{', '.join(AGENT_STATUSES)} or none."
    )


def _call_count(value: str, _context: ViewContext) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise BadValue(f'Ignored tool calls "{value}" from the link: not a whole number.') from None
    if number < 0:
        raise BadValue(f'Ignored tool calls "{value}" from the link: it must be at least 0.')
    return number


def _status(value: str, _context: ViewContext) -> str:
    found = parse_status(value)
    if found is None:
        raise BadValue(f'Ignored unknown status "{value}" from the link.')
    return found.name


def _text(value: str, _context: ViewContext) -> str:
    """Search text: surrounding blanks mean nothing."""
    return value.strip()


def _exact(value: str, _context: ViewContext) -> str:
    """Record text (a step name, an error signature, a version id): kept as written."""
    return value


def _preset(value: str, _context: ViewContext) -> str:
    wanted = value.strip().lower()
    for key, text in PRESET_LABELS.items():
        if wanted in (key, text.lower()):
            return key
    raise BadValue(
        f'Ignored date range "{value}" from the link: use one of '
        f"{', '.join(PRESET_LABELS.values())}."
    )


def _day(what: str):
    def read(value: str, context: ViewContext) -> date:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(
                f'Ignored {what} "{value}" from the link: not a date like 2026-11-24.'
            ) from None
        if day < context.earliest or (context.latest and day > context.latest):
            raise BadValue(
                f'Ignored {what} "{value}" from the link: it must be between '
                f"{context.earliest} and {context.latest or 'any day'}."
            )
        return day

    return read


def _boolean(what: str):
    def read(value: str, _context: ViewContext) -> bool:
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise BadValue(f'Ignored {what} "{value}" from the link: use true or false.')

    return read


def _page(value: str, _context: ViewContext) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadValue(f'Ignored page "{value}" from the link: not a whole number.') from None
    if number < 1:
        raise BadValue(f'Ignored page "{value}" from the link: it must be at least 1.')
    return number


def _rows(value: str, _context: ViewContext) -> int:
    allowed = [str(size) for size in PAGE_SIZES]
    if value.strip() not in allowed:
        raise BadValue(
            f'Ignored rows per page "{value}" from the link: it is not one of {", ".join(allowed)}.'
        )
    return int(value)


def _outcome_value(value) -> str:
    return str(value or "") if str(value or "") in TOOL_OUTCOMES else ""


def _true_or_false(on: bool) -> list[str]:
    return ["true" if on else "false"]


def _texts(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(value) for value in values or () if str(value)))


def _statuses(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(found.name for found in map(parse_status, values or ()) if found))


PARAMS: tuple[Param, ...] = (
    Param("flow", "flows", _many(_flow), list, _texts),
    Param("status", "statuses", _many(_status), lambda names: [label(n) for n in names], _statuses),
    Param(
        "range",
        "preset",
        _one(_preset),
        lambda key: [PRESET_LABELS[key]],
        lambda key: key if key in PRESET_LABELS else DEFAULT_PRESET,
    ),
    Param(
        "from",
        "first_day",
        _one(_day("start date")),
        lambda day: [day.isoformat()],
        lambda day: day if isinstance(day, date) else None,
    ),
    Param(
        "to",
        "last_day",
        _one(_day("end date")),
        lambda day: [day.isoformat()],
        lambda day: day if isinstance(day, date) else None,
    ),
    Param("archived", "archived", _one(_boolean("show archived")), _true_or_false, bool),
    Param("q", "search", _one(_text), lambda text: [text], lambda text: str(text or "").strip()),
    Param("failed_step", "failed_steps", _many(_exact), list, _texts),
    Param(
        "signature", "signature", _one(_exact), lambda text: [text], lambda text: str(text or "")
    ),
    Param("version", "versions", _many(_exact), list, _texts),
    Param("tool", "tool", _one(_tool), lambda text: [text], lambda text: str(text or "")),
    # Links made before tool_outcome (alerts, digests, bookmarks) said tool_failed=true.
    Param("tool_failed", "tool_outcome", _one(_tool_failed), list, str, alias=True),
    Param("tool_outcome", "tool_outcome", _one(_outcome), lambda text: [text], _outcome_value),
    Param("model", "agent_model", _one(_model), lambda text: [text], lambda text: str(text or "")),
    Param(
        "agent_status",
        "agent_status",
        _one(_agent_status),
        lambda text: [text],
        lambda text: str(text or ""),
    ),
    Param("max_steps", "max_steps", _one(_boolean("stopped at maxSteps")), _true_or_false, bool),
    Param(
        "tool_calls",
        "tool_calls",
        _one(_call_count),
        lambda number: [str(number)],
        lambda number: None if number is None else int(number),
    ),
    Param(
        "page",
        "page",
        _one(_page),
        lambda number: [str(number)],
        lambda number: max(1, int(number or 1)),
    ),
    Param(
        "rows",
        "rows",
        _one(_rows),
        lambda number: [str(number)],
        lambda number: number if number in PAGE_SIZES else DEFAULT_PAGE_SIZE,
    ),
    Param("live", "live", _one(_boolean("live refresh")), _true_or_false, bool),
)
PARAMS_BY_KEY: dict[str, Param] = {param.key: param for param in PARAMS}
URL_KEYS: tuple[str, ...] = tuple(PARAMS_BY_KEY)
FILTER_KEYS = ("flow", "status", "range", "from", "to", "archived", "q")  # the toolbar's widgets
DRILL_KEYS = ("failed_step", "signature", "version")  # chips, in the URL only
PAGING_KEYS = ("page", "rows", "live")  # the Runs page's own
AGENT_WIDGETS = ("tool", "tool_outcome", "model")  # the agents' filters drawn as widgets
AGENT_DRILL_KEYS = ("agent_status", "max_steps", "tool_calls")  # the agents' chips, URL only
AGENT_KEYS = AGENT_WIDGETS + AGENT_DRILL_KEYS  # the agents' filters (Runs, Insights, drill-downs)
ALIAS_KEYS = tuple(param.key for param in PARAMS if param.alias)  # read, never written


def _settle_days(values: dict) -> dict:
    """Days without a range mean a custom range; days with another range mean nothing."""
    if "preset" not in values and ("first_day" in values or "last_day" in values):
        values["preset"] = CUSTOM
    if values.get("preset", DEFAULT_PRESET) != CUSTOM:
        values.pop("first_day", None)
        values.pop("last_day", None)
    return values


def _checked(view: RunsView) -> RunsView:
    return view if view.preset == CUSTOM else replace(view, first_day=None, last_day=None)
