"""The digest on a generated store with known answers, on DuckDB and on ClickHouse (chdb): every
figure equals the one computed here in plain pandas from the store's rows, and every row's link
opens a Runs page view that holds exactly the runs the row counts.

The store is the sample generator's runs plus a few made here: a flow with a hostile name failing
with an error first seen three days before (new in the week, not in the day) and with another
first seen in the last day, Quota Exceeded runs, an archived failed run (never counted) and a run
still running (a run, but not a finished one).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from backends import COPIED, chdb_beside
from factories import simple_run, store_with
from runs_store.domain.signatures import error_signature
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES
from runs_store.queries.view_state import RunsView
from runs_store.services.alerts.channels import EmailChannel, SlackChannel
from runs_store.services.alerts.digest import build_digest, test_message
from runs_store.services.alerts.render import email_html, slack_payload
from runs_store.services.alerts.transport import send
from runs_store.services.insights import NO_STEP
from runs_store.store.backend import open_location
from runs_store.store.database import open_db
from runs_store.store.location import ChdbLocation
from sample_data.generator import generate_runs

END = datetime(2026, 11, 5, 12, 0)
NOW = END + timedelta(seconds=37)  # the digest rounds now down to the minute
TZ = "Europe/Berlin"
APP_URL = "https://runs.example.com/"
HOSTILE_FLOW = "<!channel> Invoices & <b>sync</b>"
WEEK_ERROR = "Unseen failure <http://evil.example|click> in ledger 7"  # first 3 days before
DAY_ERROR = "Fresh failure <!here> only today"  # first seen in the last day
SPANS = {"day": timedelta(days=1), "week": timedelta(days=7)}
RUN_COLUMNS = (
    "id, flow_name, status, started_at, archived_at, failed_step, failed_step_display, "
    "error_signature"
)


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def failing(run_id: str, started: datetime, error: str, **fields) -> dict:
    failed_step = {"name": "step_9", "displayName": "Post <b>ledger</b>", "message": error}
    return simple_run(
        run_id, _at(started), "FAILED", HOSTILE_FLOW, failedStep=failed_step, **fields
    )


def made_runs() -> list[dict]:
    runs = [failing(f"week-{n}", END - timedelta(hours=2 + n), WEEK_ERROR) for n in range(4)]
    runs.append(failing("week-earlier", END - timedelta(days=3), WEEK_ERROR))
    runs += [failing(f"day-{n}", END - timedelta(hours=7 + n), DAY_ERROR) for n in range(2)]
    runs.append(failing("archived", END - timedelta(hours=1), DAY_ERROR, archivedAt=_at(END)))
    runs += [
        simple_run(f"quota-{n}", _at(END - timedelta(hours=5, minutes=n)), "QUOTA_EXCEEDED", "Hog")
        for n in range(3)
    ]
    running = simple_run("still-running", _at(END - timedelta(minutes=20)), "RUNNING", "Hog")
    running["finishTime"] = None
    return [*runs, running]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    records = [*generate_runs(2500, days=40, seed=23, end=END), *made_runs()]
    return store_with(tmp_path_factory.mktemp("digest") / "runs.duckdb", records, "digest-tests")


@pytest.fixture(scope="module")
def duck(db):
    with open_db(db, read_only=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def chdb_con(duck, shared_chdb):
    """The same runs in chdb, as a database beside the shared chdb store (tests/backends.py)."""
    with open_location(ChdbLocation(shared_chdb.path, database="digest_test")) as connection:
        for table, select in COPIED.items():
            rows = duck.sql(select).to_arrow_table()
            if rows.num_rows:
                connection.insert_arrow(table, rows)
        yield connection


@pytest.fixture(scope="module", params=["duckdb", "chdb"])
def con(request, duck):
    return duck if request.param == "duckdb" else request.getfixturevalue("chdb_con")


@pytest.fixture(scope="module")
def all_runs(duck) -> pd.DataFrame:
    return duck.execute(f"SELECT {RUN_COLUMNS} FROM runs").df()


# ------------------------------------------------------------------ the oracle


def shown(runs: pd.DataFrame, since: datetime, until: datetime | None = None) -> pd.DataFrame:
    """The runs the Runs page and Insights count in a range: archived ones left out."""
    kept = (runs["started_at"] >= since) & runs["archived_at"].isna()
    if until is not None:
        kept &= runs["started_at"] < until
    return runs[kept]


def outcomes(runs: pd.DataFrame) -> tuple[int, int, int]:
    finished = runs["status"].isin(FINISHED_STATES).sum()
    return len(runs), int(finished), int(runs["status"].isin(FAILED_STATES).sum())


def top_flows(runs: pd.DataFrame) -> list[dict]:
    per_flow = (
        runs.assign(
            failed=runs["status"].isin(FAILED_STATES), finished=runs["status"].isin(FINISHED_STATES)
        )
        .groupby("flow_name")[["failed", "finished"]]
        .sum()
    )
    per_flow = per_flow[per_flow["failed"] > 0].reset_index()
    per_flow = per_flow.sort_values(["failed", "flow_name"], ascending=[False, True]).head(5)
    return [
        {"flow": r.flow_name, "failed": int(r.failed), "finished": int(r.finished),
         "rate": r.failed / r.finished}
        for r in per_flow.itertuples()
    ]  # fmt: skip


def top_steps(runs: pd.DataFrame) -> list[dict]:
    failed = runs[runs["status"] == "FAILED"]
    found = []
    for (flow, step), group in failed.groupby(["flow_name", "failed_step"], dropna=False):
        step = None if pd.isna(step) else step
        labels = group["failed_step_display"].dropna()
        label = labels.max() if len(labels) else (step or NO_STEP)
        share = len(group) / (failed["flow_name"] == flow).sum()
        found.append(
            {"flow": flow, "step": step, "label": label, "runs": len(group), "share": share}
        )
    found.sort(key=lambda s: (-s["runs"], s["flow"], s["label"]))
    return found[:5]


def new_signatures(runs: pd.DataFrame, all_runs: pd.DataFrame, since: datetime) -> list[dict]:
    first_seen = all_runs.groupby("error_signature")["started_at"].min()
    found = []
    for signature, group in runs.dropna(subset=["error_signature"]).groupby("error_signature"):
        if first_seen[signature] >= since:
            flows = sorted(group["flow_name"].unique())
            found.append({"signature": signature, "runs": len(group), "flows": flows})
    found.sort(key=lambda s: (-s["runs"], s["signature"]))
    return found[:5]


def month_to_date(all_runs: pd.DataFrame, now: datetime) -> tuple[int, int]:
    """Quota Exceeded runs since the local month began, and in as long a span of last month."""
    tz = ZoneInfo(TZ)
    local_now = now.replace(tzinfo=UTC).astimezone(tz)
    start = local_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_start = (start - timedelta(days=1)).replace(day=1)
    last_end = min(last_start + (local_now - start), start)

    def quota(since, until) -> int:
        utc = [t.astimezone(UTC).replace(tzinfo=None) for t in (since, until)]
        runs = shown(all_runs, utc[0], utc[1])
        return int((runs["status"] == "QUOTA_EXCEEDED").sum())

    return quota(start, local_now), quota(last_start, last_end)


def expected(all_runs: pd.DataFrame, period: str) -> dict:
    since = END - SPANS[period]
    current = shown(all_runs, since, END)
    before = shown(all_runs, since - SPANS[period], since)
    runs, finished, failed = outcomes(current)
    previous = outcomes(before)
    this_month, last_month = month_to_date(all_runs, END)
    return {
        "runs": runs,
        "finished": finished,
        "failed": failed,
        "failure_rate": failed / finished,
        "previous_runs": previous[0],
        "previous_finished": previous[1],
        "previous_failed": previous[2],
        "previous_failure_rate": previous[2] / previous[1],
        "change_points": round((failed / finished - previous[2] / previous[1]) * 100, 1),
        "top_flows": top_flows(current),
        "top_steps": top_steps(current),
        "new_signatures": new_signatures(current, all_runs, since),
        "quota_exceeded": int((current["status"] == "QUOTA_EXCEEDED").sum()),
        "quota_month_to_date": this_month,
        "quota_last_month_same_span": last_month,
    }


def opened_view(link: str) -> RunsView:
    """The Runs page view a link opens (the Runs page is the app's default page, at /)."""
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == "https://runs.example.com"
    assert parts.path == "/"
    view, notices = RunsView.from_query(parse_qs(parts.query))
    assert notices == []
    return view


def runs_in_view(all_runs: pd.DataFrame, view: RunsView) -> pd.DataFrame:
    """The runs the Runs page lists for a view opened at END, by the view's own filter."""
    run_filter = view.run_filter(END, END.date(), ZoneInfo(TZ))
    runs = shown(all_runs, run_filter.since, run_filter.until)
    if run_filter.flows:
        runs = runs[runs["flow_name"].isin(run_filter.flows)]
    if run_filter.statuses:
        runs = runs[runs["status"].isin(run_filter.statuses)]
    if run_filter.failed_steps:
        runs = runs[runs["failed_step"].isin(run_filter.failed_steps)]
    if run_filter.signature:
        runs = runs[runs["error_signature"] == run_filter.signature]
    return runs


# ------------------------------------------------------------------ the figures


@pytest.mark.parametrize("period", ["day", "week"])
def test_the_digest_figures_equal_the_oracle(con, all_runs, period):
    message = build_digest(con, period, NOW, TZ, APP_URL)
    data, want = message.data, expected(all_runs, period)
    assert message.kind == "digest"
    assert (data["since"], data["until"]) == (END - SPANS[period], END)
    for name in ("runs", "finished", "failed", "previous_runs", "previous_finished"):
        assert data[name] == want[name], name
    assert data["previous_failed"] == want["previous_failed"]
    assert data["failure_rate"] == pytest.approx(want["failure_rate"])
    assert data["previous_failure_rate"] == pytest.approx(want["previous_failure_rate"])
    assert data["change_points"] == want["change_points"]
    assert [{**f, "rate": pytest.approx(f["rate"])} for f in want["top_flows"]] == data["top_flows"]
    got_steps = [{**s, "share": pytest.approx(s["share"])} for s in want["top_steps"]]
    assert got_steps == data["top_steps"]
    got_new = [{k: s[k] for k in ("signature", "runs", "flows")} for s in data["new_signatures"]]
    assert got_new == want["new_signatures"]
    assert data["quota_exceeded"] == want["quota_exceeded"]
    assert data["quota_month_to_date"] == want["quota_month_to_date"]
    assert data["quota_last_month_same_span"] == want["quota_last_month_same_span"]


def test_the_made_runs_are_where_they_should_be(con):
    """The known answers the generated runs cannot guarantee: which error is new in the day and
    which in the week, the archived run left out, the running run a run but not a finished one."""
    week_error, day_error = error_signature(WEEK_ERROR), error_signature(DAY_ERROR)
    day = build_digest(con, "day", NOW, TZ, APP_URL).data
    new_today = {s["signature"]: s for s in day["new_signatures"]}
    assert week_error not in new_today
    assert new_today[day_error]["runs"] == 2 and new_today[day_error]["flows"] == [HOSTILE_FLOW]
    hostile = next(f for f in day["top_flows"] if f["flow"] == HOSTILE_FLOW)
    assert (hostile["failed"], hostile["finished"]) == (6, 6)
    week = build_digest(con, "week", NOW, TZ, APP_URL).data
    new_this_week = {s["signature"]: s["runs"] for s in week["new_signatures"]}
    assert new_this_week[week_error] == 5 and new_this_week[day_error] == 2
    assert day["quota_exceeded"] >= 3
    assert day["runs"] - day["finished"] >= 1


def test_the_title_and_facts_say_the_numbers(con, all_runs):
    message = build_digest(con, "day", NOW, TZ, APP_URL)
    want = expected(all_runs, "day")
    rate = f"{want['failure_rate'] * 100:.1f}%"
    assert message.title == (
        f"Daily digest: {want['runs']:,} runs, {rate} failed "
        f"({want['change_points']:+.1f} points vs the day before)"
    )
    facts = dict(message.facts)
    assert facts["Period"] == "Nov 4, 13:00 – Nov 5, 13:00 (Europe/Berlin)"
    assert facts["Runs"] == f"{want['runs']:,} ({want['previous_runs']:,} the day before)"
    assert facts["Failure rate"].startswith(f"{rate} (")
    assert message.key == "digest/day/2026-11-05"
    assert build_digest(con, "week", NOW, TZ, APP_URL).key == "digest/week/2026-W45"
    headings = [section.heading for section in message.sections]
    assert headings == [
        "Flows with most failed runs",
        "Steps that failed most",
        "New errors",
        "Quota exceeded",
    ]


# ------------------------------------------------------------------ the links


@pytest.mark.parametrize("period", ["day", "week"])
def test_every_row_links_to_exactly_the_runs_it_counts(con, all_runs, period):
    message = build_digest(con, period, NOW, TZ, APP_URL)
    flows, steps, signatures, quota = message.sections
    data = message.data
    for row, link in zip(data["top_flows"], flows.links, strict=True):
        assert len(runs_in_view(all_runs, opened_view(link))) == row["failed"]
    for row, link in zip(data["top_steps"], steps.links, strict=True):
        view = opened_view(link)
        assert view.flows == (row["flow"],) and view.statuses == ("FAILED",)
        if row["step"] is not None:
            assert len(runs_in_view(all_runs, view)) == row["runs"]
    for row, link in zip(data["new_signatures"], signatures.links, strict=True):
        assert len(runs_in_view(all_runs, opened_view(link))) == row["runs"]
    quota_rows = [int(cells[1].replace(",", "")) for cells in quota.rows]
    for runs, link in zip(quota_rows, quota.links, strict=True):
        assert len(runs_in_view(all_runs, opened_view(link))) == runs
    assert len(runs_in_view(all_runs, opened_view(message.link))) == data["runs"]


def test_the_links_name_the_range_of_the_period(con):
    day = build_digest(con, "day", NOW, TZ, APP_URL)
    week = build_digest(con, "week", NOW, TZ, APP_URL)
    assert day.link == "https://runs.example.com/?range=Last+24+hours"
    assert opened_view(day.link).preset == "24h"
    assert opened_view(week.link).preset == "7d"  # the Runs page's default range


# ------------------------------------------------------------------ rendered and sent


def test_hostile_record_text_is_kept_as_text_and_escaped_when_rendered(con):
    message = build_digest(con, "day", NOW, TZ, APP_URL)
    flows = message.sections[0]
    assert any(row[0] == HOSTILE_FLOW for row in flows.rows)
    page = email_html(message)
    assert "<!channel>" not in page and "<b>sync</b>" not in page and "<http://evil" not in page
    assert "&lt;!channel&gt; Invoices &amp; &lt;b&gt;sync&lt;/b&gt;" in page
    slack = str(slack_payload(message))
    assert "<!channel>" not in slack and "<http://evil" not in slack


def test_the_digest_arrives_as_email_and_in_slack(duck, smtp_receiver, http_receiver):
    message = build_digest(duck, "week", NOW, TZ, APP_URL)
    mail = EmailChannel("mail", smtp_receiver.url, "runs@example.com", ("ops@example.com",))
    assert send(mail, message).ok
    assert send(SlackChannel("ops", http_receiver.url + "/services/T/B/x"), message).ok
    (received,) = smtp_receiver.wait_for(1)
    assert received.message["Subject"] == message.title
    assert "New errors" in received.part("text/html")
    assert "Flows with most failed runs" in received.part("text/plain")
    blocks = http_receiver.wait_for(1)[0].json()["blocks"]
    assert blocks[0]["text"]["text"].startswith("Weekly digest: ")


# ------------------------------------------------------------------ edges


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("digest-empty") / "runs.duckdb"
    with open_db(path):
        pass
    return path


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
def test_an_empty_store_gives_a_digest_with_nothing_in_it(empty_store, shared_chdb, backend):
    if backend == "duckdb":
        with open_db(empty_store, read_only=True) as connection:
            message = build_digest(connection, "day", NOW, TZ, APP_URL)
    else:
        location = chdb_beside(shared_chdb, empty_store, "digest_empty")
        with open_location(location) as connection:
            message = build_digest(connection, "day", NOW, TZ, APP_URL)
    assert message.title == "Daily digest: no runs"
    assert message.data["failure_rate"] is None and message.data["change_points"] is None
    assert all(section.rows == () for section in message.sections)
    assert message.lines == ("No runs started in the last 24 hours.",)


def test_an_unknown_period_is_refused(duck):
    with pytest.raises(ValueError, match="day or week"):
        build_digest(duck, "month", NOW, TZ, APP_URL)


def test_an_aware_now_is_read_as_its_utc_moment(duck):
    aware = NOW.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    assert build_digest(duck, "day", aware, TZ, APP_URL).data["until"] == END


def test_the_test_message_names_the_channel_and_changes_key_each_time():
    first = test_message("ops", datetime(2026, 12, 1, 9, 0, 0), "http://localhost:8501")
    again = test_message("ops", datetime(2026, 12, 1, 9, 0, 5), "http://localhost:8501")
    assert first.kind == "test" and "ops" in first.title
    assert dict(first.facts)["Channel"] == "ops"
    assert first.key != again.key
    assert first.link == "http://localhost:8501/"
    assert test_message("ops").link is None
