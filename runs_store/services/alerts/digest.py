"""A day or a week of runs summed up as one message, and the message a channel's test button sends.

The digest covers the period ending now (the last 24 hours or 7 days, `now` rounded down to the
minute as the Runs page's ranges are), compared with the period of the same length just before:
runs, the failure rate (runs in a failed state among finished runs, as Insights counts it) and
its change in percentage points, the flows with most failed runs, the steps that failed most, the
error signatures first seen in the period, and Quota Exceeded runs in the period and this month
so far. Every number comes from the Insights functions (runs_store.services.insights) with a
`RunFilter`, so a digest and the Insights page never disagree, on DuckDB and ClickHouse alike.

Each row links to the Runs page showing its runs: RUNS_APP_URL, the page's path (the Runs page is
the app's default page, at /) and the view's URL query (`RunsView.to_query`) with the range
"Last 24 hours" or "Last 7 days", the period as the page counts it when the link is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pandas as pd

from runs_store.domain.formatting import zone
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES, in_order
from runs_store.queries.filters import RunFilter
from runs_store.queries.view_state import RunsView
from runs_store.services import insights
from runs_store.services.alerts.channels import Message, Section

PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7)}
PRESETS = {"day": "24h", "week": "7d"}  # the Runs page's range for the same span
BUCKETS = {"day": "hour", "week": "day"}  # the error signatures' trend buckets
NAMES = {"day": "Daily", "week": "Weekly"}
BEFORE = {"day": "the day before", "week": "the week before"}
TOP = 5
SIGNATURES_READ = 1000  # the most frequent signatures of the period, of which the new are shown
FAILED = tuple(in_order(FAILED_STATES))
QUOTA = "QUOTA_EXCEEDED"


def runs_link(app_url: str, view: RunsView) -> str:
    """The Runs page (the app's default page, at /) showing `view`."""
    query = view.to_query()
    base = app_url.rstrip("/") + "/"
    return base + (f"?{urlencode(query, doseq=True)}" if query else "")


@dataclass(frozen=True)
class _Period:
    name: str  # "day" | "week"
    since: datetime  # naive UTC, inclusive
    until: datetime  # naive UTC, exclusive: now, to the minute
    tz_name: str
    app_url: str

    @property
    def current(self) -> RunFilter:
        return RunFilter(since=self.since, until=self.until)

    @property
    def previous(self) -> RunFilter:
        return RunFilter(since=self.since - PERIODS[self.name], until=self.since)

    def link(self, **view) -> str:
        return runs_link(self.app_url, RunsView(preset=PRESETS[self.name], **view))

    def key(self) -> str:
        """One key per local day or ISO week of the period's end: the outbox sends a message
        once per key, so a digest run twice the same day (week) is sent once."""
        end = _local(self.until, zone(self.tz_name))
        if self.name == "day":
            return f"digest/day/{end:%Y-%m-%d}"
        year, week, _ = end.isocalendar()
        return f"digest/week/{year}-W{week:02d}"

    def shown(self) -> str:
        tz = zone(self.tz_name)
        first, last = (_local(moment, tz) for moment in (self.since, self.until))
        return f"{_day_time(first)} – {_day_time(last)} ({self.tz_name or 'UTC'})"


def _local(moment: datetime, tz) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(tz)


def _day_time(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment:%H:%M}"


def period_of(period: str, now: datetime, tz_name: str, app_url: str) -> _Period:
    if period not in PERIODS:
        raise ValueError(f"a digest's period is day or week, not {period!r}")
    end = _naive_utc(now).replace(second=0, microsecond=0)
    return _Period(period, end - PERIODS[period], end, tz_name, app_url)


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


# ------------------------------------------------------------------ the figures


@dataclass(frozen=True)
class _Outcomes:
    runs: int
    finished: int
    failed: int

    @property
    def rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None


def _outcomes(con, run_filter: RunFilter, tz_name: str) -> _Outcomes:
    by_status = insights.runs_over_time(con, run_filter, "week", tz_name)
    per_status = by_status.groupby("status")["runs"].sum().to_dict() if len(by_status) else {}
    return _Outcomes(
        int(sum(per_status.values())),
        int(sum(n for status, n in per_status.items() if status in FINISHED_STATES)),
        int(sum(n for status, n in per_status.items() if status in FAILED_STATES)),
    )


def _top_flows(con, period: _Period) -> list[dict]:
    rates = insights.flow_failure_rates(con, period.current, "week", period.tz_name, top=TOP)
    if rates.empty:
        return []
    per_flow = rates.groupby("flow_name", as_index=False)[["failed", "finished"]].sum()
    per_flow = per_flow[per_flow["failed"] > 0]
    per_flow = per_flow.sort_values(["failed", "flow_name"], ascending=[False, True])
    return [
        {
            "flow": row.flow_name,
            "failed": int(row.failed),
            "finished": int(row.finished),
            "rate": row.failed / row.finished if row.finished else None,
        }
        for row in per_flow.itertuples()
    ]


def _top_steps(con, period: _Period) -> list[dict]:
    steps = insights.failed_steps(con, period.current, limit=TOP)
    return [
        {
            "flow": row.flow_name,
            "step": None if pd.isna(row.failed_step) else row.failed_step,
            "label": row.step_label,
            "runs": int(row.runs),
            "share": float(row.share),
        }
        for row in steps.itertuples()
    ]


def _new_signatures(con, period: _Period) -> list[dict]:
    found = insights.error_signatures(
        con, period.current, BUCKETS[period.name], period.tz_name, limit=SIGNATURES_READ
    )
    new = found[found["new"].astype(bool)] if len(found) else found
    return [
        {
            "signature": row.signature,
            "runs": int(row.runs),
            "flows": [str(flow) for flow in row.flows],
            "first_seen": pd.Timestamp(row.first_seen).to_pydatetime(),  # local
        }
        for row in new.head(TOP).itertuples()
    ]


def _quota(con, period: _Period, now: datetime) -> dict:
    per_flow = insights.quota_per_flow(con, period.current)
    month = insights.quota_month_to_date(con, RunFilter(), now, period.tz_name)
    return {
        "period": int(per_flow["runs"].sum()) if len(per_flow) else 0,
        "flows": [(row.flow_name, int(row.runs)) for row in per_flow.head(TOP).itertuples()],
        "month_to_date": month.this_month,
        "last_month_same_span": month.last_month,
    }


# ------------------------------------------------------------------ the message


def build_digest(con, period: str, now: datetime, tz_name: str, app_url: str) -> Message:
    """The digest of the `period` ("day" or "week") ending `now` (naive UTC, or aware)."""
    span = period_of(period, now, tz_name, app_url)
    current = _outcomes(con, span.current, tz_name)
    before = _outcomes(con, span.previous, tz_name)
    flows, steps = _top_flows(con, span), _top_steps(con, span)
    signatures, quota = _new_signatures(con, span), _quota(con, span, span.until)
    change = _points(current.rate, before.rate)
    return Message(
        kind="digest",
        title=_title(span, current, change),
        lines=_lines(span, current, before, change, quota),
        facts=_facts(span, current, before, change, quota),
        link=span.link(),
        key=span.key(),
        sections=(
            _flows_section(span, flows),
            _steps_section(span, steps),
            _signatures_section(span, signatures),
            _quota_section(span, quota),
        ),
        data={
            "period": period,
            "since": span.since,
            "until": span.until,
            "timezone": tz_name,
            "runs": current.runs,
            "finished": current.finished,
            "failed": current.failed,
            "failure_rate": current.rate,
            "previous_runs": before.runs,
            "previous_finished": before.finished,
            "previous_failed": before.failed,
            "previous_failure_rate": before.rate,
            "change_points": change,
            "top_flows": flows,
            "top_steps": steps,
            "new_signatures": signatures,
            "quota_exceeded": quota["period"],
            "quota_month_to_date": quota["month_to_date"],
            "quota_last_month_same_span": quota["last_month_same_span"],
        },
    )


def _points(rate: float | None, before: float | None) -> float | None:
    """The change in percentage points, to one decimal; None when either rate is unknown."""
    if rate is None or before is None:
        return None
    return round((rate - before) * 100, 1)


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def points(change: float | None) -> str:
    if change is None:
        return "no change to compare"
    return f"{change:+.1f} points" if change else "no change"


def _title(span: _Period, current: _Outcomes, change: float | None) -> str:
    name = f"{NAMES[span.name]} digest"
    if not current.runs:
        return f"{name}: no runs"
    if current.rate is None:
        return f"{name}: {current.runs:,} runs, none finished"
    versus = f" ({points(change)} vs {BEFORE[span.name]})" if change is not None else ""
    return f"{name}: {current.runs:,} runs, {percent(current.rate)} failed{versus}"


def _facts(span, current: _Outcomes, before: _Outcomes, change, quota: dict):
    return (
        ("Period", span.shown()),
        ("Runs", f"{current.runs:,} ({before.runs:,} {BEFORE[span.name]})"),
        (
            "Failure rate",
            (
                f"{percent(current.rate)} ({percent(before.rate)} {BEFORE[span.name]}, "
                f"{points(change)})"
            ),
        ),
        ("Quota exceeded", f"{quota['period']:,} in the period"),
        (
            "Quota exceeded this month",
            (
                f"{quota['month_to_date']:,} so far ({quota['last_month_same_span']:,} in the "
                "same part of last month)"
            ),
        ),
    )


def _lines(span, current: _Outcomes, before: _Outcomes, change, quota: dict) -> tuple[str, ...]:
    period = "24 hours" if span.name == "day" else "7 days"
    if not current.runs:
        return (f"No runs started in the last {period}.",)
    failures = (
        f"{current.runs:,} runs in the last {period}: {current.failed:,} of "
        f"{current.finished:,} finished runs failed ({percent(current.rate)}; "
        f"{percent(before.rate)} {BEFORE[span.name]}, {points(change)})."
    )
    quota_line = (
        f"Quota exceeded: {quota['period']:,} runs in the period, "
        f"{quota['month_to_date']:,} this month so far."
    )
    return failures, quota_line


def _flows_section(span: _Period, flows: list[dict]) -> Section:
    return Section(
        "Flows with most failed runs",
        ("Flow", "Failed", "Finished", "Failure rate"),
        tuple(
            (f["flow"], f"{f['failed']:,}", f"{f['finished']:,}", percent(f["rate"])) for f in flows
        ),
        tuple(span.link(flows=(f["flow"],), statuses=FAILED) for f in flows),
    )


def _steps_section(span: _Period, steps: list[dict]) -> Section:
    return Section(
        "Steps that failed most",
        ("Step", "Flow", "Failed runs", "Of the flow's failed runs"),
        tuple((s["label"], s["flow"], f"{s['runs']:,}", percent(s["share"])) for s in steps),
        tuple(
            span.link(
                flows=(s["flow"],),
                statuses=("FAILED",),
                failed_steps=(s["step"],) if s["step"] else (),
            )
            for s in steps
        ),
    )


def _signatures_section(span: _Period, signatures: list[dict]) -> Section:
    return Section(
        "New errors",
        ("Error", "Runs", "Flows", "First seen"),
        tuple(
            (
                s["signature"],
                f"{s['runs']:,}",
                ", ".join(s["flows"]),
                _day_time(s["first_seen"]),
            )
            for s in signatures
        ),
        tuple(span.link(signature=s["signature"]) for s in signatures),
    )


def _quota_section(span: _Period, quota: dict) -> Section:
    return Section(
        "Quota exceeded",
        ("Flow", "Runs"),
        tuple((flow, f"{runs:,}") for flow, runs in quota["flows"]),
        tuple(span.link(flows=(flow,), statuses=(QUOTA,)) for flow, _ in quota["flows"]),
    )


# ------------------------------------------------------------------ the test button


def test_message(
    channel_name: str,
    now: datetime | None = None,  # noqa: PT028 (a message builder, not a test)
    app_url: str | None = None,  # noqa: PT028
) -> Message:
    """What the Alerts page's "send a test message" button sends to a channel."""
    moment = _naive_utc(now or datetime.now(UTC))
    return Message(
        kind="test",
        title=f"Test message from Runs Explorer to {channel_name}",
        lines=(
            "If you can read this, alerts and digests sent to this channel arrive here.",
            "Nothing fired: this message was sent from the Alerts page.",
        ),
        facts=(("Channel", channel_name), ("Sent at", f"{moment:%Y-%m-%d %H:%M:%S} UTC")),
        link=runs_link(app_url, RunsView()) if app_url else None,
        key=f"test/{channel_name}/{moment:%Y-%m-%dT%H:%M:%S}",
        data={"channel": channel_name, "sent_at": moment},
    )


test_message.__test__ = False  # type: ignore[attr-defined]  # a builder, not a pytest test
