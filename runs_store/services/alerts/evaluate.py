"""Every rule judged on the store at one moment, per flow it matches: firing, ok or not enough
runs, with the numbers that decided it and a link to the runs behind it.

The window of a rule is `[now - window, now)` by the runs' start (`started_at`, the Runs page's
"Started At"); archived runs are left out, as the Runs page and Insights leave them out. Each
kind is one GROUP BY flow (new errors: by flow and signature) in SQL both engines read alike,
through the store's seam, values only as parameters:

- failure_rate: failed runs / finished runs (FAILED_STATES / FINISHED_STATES), on min_runs or more;
- failed_runs, quota_exceeded: runs that failed, or hit the quota, more than `above`;
- new_error: an error signature whose first run of the flow is inside the window, its runs in
  the window more than `above` (a judgement, and an incident, per signature);
- slow: the p95 of the finished runs' durations above `above` ms, on min_runs or more;
- no_runs: a flow with a run before the window and none in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from runs_store import settings
from runs_store.domain.formatting import short_duration
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES, in_order
from runs_store.queries.view_state import CUSTOM, RunsView
from runs_store.services.alerts.rules import Rule, RulesFile
from runs_store.store.backend import by_dialect, latest, rows

FIRING = "firing"
OK = "ok"
NOT_ENOUGH_RUNS = "not enough runs"
STATES = (FIRING, OK, NOT_ENOUGH_RUNS)
# The Runs page is the app's default page, at / (Streamlit gives a default page no other path;
# /runs would be an unknown page, its query lost).
RUNS_PAGE = "/"
QUOTA = "QUOTA_EXCEEDED"
FAILED = tuple(in_order(FAILED_STATES))
FINISHED = tuple(in_order(FINISHED_STATES))


@dataclass(frozen=True)
class Judgement:
    """One rule on one flow (and, for new_error, one signature) at one moment."""

    rule: str
    kind: str
    flow: str
    detail: str  # the error signature of a new_error; "" otherwise
    state: str  # FIRING | OK | NOT_ENOUGH_RUNS
    measured: float | None  # a rate, a count of runs, or milliseconds (slow: p95)
    threshold: float | None
    runs: int  # the runs the measure was taken on
    window_start: datetime  # naive UTC
    window_end: datetime
    summary: str  # what crossed which threshold, with the numbers, in one line
    query: dict[str, list[str]]  # the Runs page's URL query for the runs behind it

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.flow, self.detail)

    @property
    def link(self) -> str:
        return runs_link(self.query)


def runs_link(query: dict[str, list[str]]) -> str:
    """RUNS_APP_URL's Runs page showing a view (`RunsView.to_query`)."""
    base = settings.current().app_url.rstrip("/")
    return base + RUNS_PAGE + (f"?{urlencode(query, doseq=True)}" if query else "")


def evaluate(
    con, rules: RulesFile, now: datetime, flows: list[str] | None = None
) -> list[Judgement]:
    """Every rule of the file judged at `now` (naive UTC), per flow (`flows`: the store's
    known_flows, when the caller has read them already)."""
    flows = known_flows(con) if flows is None else flows
    judged: list[Judgement] = []
    for rule in rules.rules:
        judged += evaluate_rule(con, rule, now, flows, rules.timezone)
    return judged


def known_flows(con) -> list[str]:
    """Every flow the store has a (not archived) run of."""
    found = rows(
        con,
        f"SELECT DISTINCT flow_name FROM {latest(con, 'runs')} WHERE archived_at IS NULL",
    )
    return sorted(row[0] for row in found)


def evaluate_rule(
    con, rule: Rule, now: datetime, flows: list[str], tz_name: str = "UTC"
) -> list[Judgement]:
    window = _Window(now - rule.window, now, rule, ZoneInfo(tz_name))
    wanted = list(rule.flows) or flows
    if rule.kind == "no_runs":
        return [_judge_quiet(window, flow, found) for flow, found in _quiet(con, window, wanted)]
    if rule.kind == "new_error":
        return _judge_new_errors(window, wanted, _new_errors(con, window, wanted))
    counted = _counts(con, window, wanted)
    return [_judge_counts(window, flow, counted.get(flow, _NO_RUNS)) for flow in wanted]


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime
    rule: Rule
    tz: ZoneInfo

    def judgement(self, flow, detail, state, measured, runs, summary, view) -> Judgement:
        return Judgement(
            self.rule.name,
            self.rule.kind,
            flow,
            detail,
            state,
            measured,
            self.rule.above,
            runs,
            self.start,
            self.end,
            summary,
            view.to_query(),
        )

    def days_view(self, flow: str, **fields) -> RunsView:
        """The Runs page's view of the flow over the days (in the rules' timezone) that hold the
        window: the page's range is by day, so a window of hours shows its whole days."""
        first = self.start.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.tz).date()
        last = self.end.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.tz).date()
        return RunsView(flows=(flow,), preset=CUSTOM, first_day=first, last_day=last, **fields)

    @property
    def span(self) -> str:
        return f"in the last {self.rule.window_text}"


# ---------------------------------------------------------------- SQL


def _in(prefix: str, values: tuple[str, ...] | list[str]) -> tuple[str, dict[str, str]]:
    """`($prefix0, $prefix1, ...)` and its parameters: a list bound value by value."""
    params = {f"{prefix}{index}": value for index, value in enumerate(values)}
    return "(" + ", ".join(f"${name}" for name in params) + ")", params


def _flow_clause(flows: list[str]) -> tuple[str, dict[str, str]]:
    listed, params = _in("flow", flows)
    return f"AND flow_name IN {listed}", params


def _p95(con, column: str) -> str:
    """The continuous 95th percentile (DuckDB's quantile_cont; ClickHouse's exact inclusive one
    interpolates the same way)."""
    return by_dialect(
        con, f"quantile_cont({column}, 0.95)", f"quantileExactInclusive(0.95)({column})"
    )


@dataclass(frozen=True)
class _Counts:
    finished: int
    failed: int
    quota: int
    timed: int  # finished runs with a duration
    p95_ms: float | None


_NO_RUNS = _Counts(0, 0, 0, 0, None)


def _counts(con, window: _Window, flows: list[str]) -> dict[str, _Counts]:
    if not flows:
        return {}
    finished, finished_params = _in("fin", FINISHED)
    failed, failed_params = _in("fail", FAILED)
    flow_sql, flow_params = _flow_clause(flows)
    timed = f"CASE WHEN status IN {finished} THEN duration_ms END"
    sql = f"""
        SELECT flow_name,
               sum(CASE WHEN status IN {finished} THEN 1 ELSE 0 END) AS finished,
               sum(CASE WHEN status IN {failed} THEN 1 ELSE 0 END) AS failed,
               sum(CASE WHEN status = $quota THEN 1 ELSE 0 END) AS quota,
               count({timed}) AS timed,
               {_p95(con, timed)} AS p95
        FROM {latest(con, "runs")}
        WHERE archived_at IS NULL AND started_at >= $since AND started_at < $until {flow_sql}
        GROUP BY flow_name
    """
    params = {
        **finished_params,
        **failed_params,
        **flow_params,
        "quota": QUOTA,
        "since": window.start,
        "until": window.end,
    }
    return {
        flow: _Counts(int(fin), int(fail), int(quota), int(timed), _number(p95))
        for flow, fin, fail, quota, timed, p95 in rows(con, sql, params)
    }


def _number(value) -> float | None:
    """A SQL aggregate as a float; None for NULL (DuckDB) or NaN (ClickHouse's empty quantile)."""
    if value is None:
        return None
    value = float(value)
    return None if value != value else value


def _new_errors(con, window: _Window, flows: list[str]) -> list[tuple[str, str, int, datetime]]:
    """(flow, signature, runs in the window, first run) of each signature first seen in the
    window, per flow."""
    if not flows:
        return []
    flow_sql, flow_params = _flow_clause(flows)
    sql = f"""
        SELECT flow_name, error_signature,
               sum(CASE WHEN started_at >= $since THEN 1 ELSE 0 END) AS in_window,
               min(started_at) AS first_run
        FROM {latest(con, "runs")}
        WHERE archived_at IS NULL AND error_signature IS NOT NULL AND started_at < $until
              {flow_sql}
        GROUP BY flow_name, error_signature
        HAVING min(started_at) >= $since
        ORDER BY flow_name, in_window DESC, error_signature
    """
    params = {**flow_params, "since": window.start, "until": window.end}
    return [(f, s, int(n), first) for f, s, n, first in rows(con, sql, params)]


def _quiet(con, window: _Window, flows: list[str]) -> list[tuple[str, tuple | None]]:
    """Per flow: (runs in the window, its last run before the window's end), None if none ever."""
    if not flows:
        return []
    flow_sql, flow_params = _flow_clause(flows)
    sql = f"""
        SELECT flow_name, sum(CASE WHEN started_at >= $since THEN 1 ELSE 0 END) AS in_window,
               max(started_at) AS last_run
        FROM {latest(con, "runs")}
        WHERE archived_at IS NULL AND started_at < $until {flow_sql}
        GROUP BY flow_name
    """
    params = {**flow_params, "since": window.start, "until": window.end}
    found = {flow: (int(count), last) for flow, count, last in rows(con, sql, params)}
    return [(flow, found.get(flow)) for flow in flows]


# ---------------------------------------------------------------- judging


def _judge_counts(window: _Window, flow: str, counts: _Counts) -> Judgement:
    rule = window.rule
    above = rule.above or 0.0
    if rule.kind == "failure_rate":
        enough = counts.finished >= rule.min_runs
        rate = counts.failed / counts.finished if counts.finished else None
        state = _state(enough, rate is not None and rate > above)
        summary = (
            f"failure rate {percent(rate)} ({counts.failed:,} of {counts.finished:,} finished "
            f"runs) {_versus(state)} {percent(above)} {window.span}"
            if enough
            else _too_few(counts.finished, rule.min_runs, "finished runs", window)
        )
        view = window.days_view(flow, statuses=FAILED)
        return window.judgement(flow, "", state, rate, counts.finished, summary, view)
    if rule.kind == "slow":
        enough = counts.timed >= rule.min_runs
        p95 = counts.p95_ms
        state = _state(enough, p95 is not None and p95 > above)
        summary = (
            f"p95 duration {short_duration(p95)} (of {counts.timed:,} finished runs) "
            f"{_versus(state)} {short_duration(above)} {window.span}"
            if enough
            else _too_few(counts.timed, rule.min_runs, "finished runs with a duration", window)
        )
        view = window.days_view(flow, statuses=FINISHED)
        return window.judgement(flow, "", state, p95, counts.timed, summary, view)
    count = counts.quota if rule.kind == "quota_exceeded" else counts.failed
    what = "runs hit the quota" if rule.kind == "quota_exceeded" else "failed runs"
    state = FIRING if count > above else OK
    summary = f"{plural(count, what)} {_versus(state)} {above:,.0f} {window.span}"
    statuses = (QUOTA,) if rule.kind == "quota_exceeded" else FAILED
    view = window.days_view(flow, statuses=statuses)
    return window.judgement(flow, "", state, float(count), count, summary, view)


def _judge_new_errors(window: _Window, flows: list[str], found) -> list[Judgement]:
    above = window.rule.above or 0.0
    judged, firing_flows = [], set()
    for flow, signature, count, first_run in found:
        if count <= above:
            continue
        firing_flows.add(flow)
        summary = (
            f"new error {signature!r}: {plural(count, 'runs')} {window.span} (first at "
            f"{first_run:%Y-%m-%d %H:%M} UTC), more than {above:,.0f}"
        )
        view = window.days_view(flow, signature=signature)
        judged.append(window.judgement(flow, signature, FIRING, float(count), count, summary, view))
    for flow in flows:
        if flow not in firing_flows:
            summary = f"no new error signature {window.span}"
            judged.append(window.judgement(flow, "", OK, 0.0, 0, summary, window.days_view(flow)))
    return judged


def _judge_quiet(window: _Window, flow: str, found: tuple | None) -> Judgement:
    view = RunsView(flows=(flow,), preset="all")  # its last runs, whenever they were
    if found is None:
        summary = "no runs yet: a flow is watched once it has run"
        return window.judgement(flow, "", NOT_ENOUGH_RUNS, None, 0, summary, view)
    count, last_run = found
    if count:
        summary = f"{plural(count, 'runs')} {window.span}"
        return window.judgement(flow, "", OK, float(count), count, summary, view)
    summary = f"no runs {window.span} (the last started {last_run:%Y-%m-%d %H:%M} UTC)"
    return window.judgement(flow, "", FIRING, 0.0, 0, summary, view)


def _state(enough: bool, crossed: bool) -> str:
    if not enough:
        return NOT_ENOUGH_RUNS
    return FIRING if crossed else OK


def _versus(state: str) -> str:
    return ">" if state == FIRING else "<="


def percent(rate: float | None) -> str:
    """34%, 33.3%; "-" for no rate."""
    return "-" if rate is None else f"{rate:.0%}" if rate * 100 % 1 == 0 else f"{rate:.1%}"


def _too_few(count: int, needed: int, what: str, window: _Window) -> str:
    return f"{plural(count, what)} {window.span}: judged from {needed:,}"


def plural(count: int, what: str) -> str:
    """ "1 run", "2 runs", "1 finished run with a duration": `what` is written plural."""
    if count == 1:
        what = what.replace("runs", "run", 1)
    return f"{count:,} {what}"
