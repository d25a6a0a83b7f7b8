"""The Runs page in Streamlit's AppTest: every toolbar control, paging, selection with its
actions, the URL, and the states around the table.

What the page should show is decided by list_oracle, an independent Python model run over every
run of the same database file; the page is never compared with numbers copied from itself.
The default view ("Last 7 days") counts back from the current minute, so a test that uses it
accepts the view of the minute before or after the run (`minutes`).

AppTest has no browser: widget changes do not reach `at.query_params` (the browser's frontend
writes them), so a changed view is read back from what the page carries to the run page.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import streamlit as st
import streamlit.testing.v1.app_test as app_test_module
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from factories import rows, simple_run
from list_oracle import ids, load_runs, matching, page_slice, preset_since, utc_minute
from markdown_text import as_read
from runs_store.domain.signatures import error_summary
from runs_store.domain.statuses import STATUSES
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.queries.filters import RunFilter
from runs_store.services.runs_list import list_runs
from runs_store.store.database import bump_generation, open_db

RUNS_PAGE = "pages/runs.py"
ARCHIVED_MARK = "🗄 "
POSITION = re.compile(r"^\*\*((?:[\d,]+-[\d,]+|0) of ([\d,]+) runs?)\*\*$")


# ------------------------------------------------------------------ opening and reading the page


def open_runs(query: dict | None = None, tz: str | None = None) -> AppTest:
    """The app opened on the Runs page (its default page) with these URL parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if tz:
        at.context = {"timezone": tz}
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def spanning(action):
    """Runs `action` and returns its result with the wall-clock minutes it spanned."""
    first = utc_minute()
    result = action()
    return result, {first, utc_minute()}


def table(at) -> pd.DataFrame:
    assert len(at.dataframe) == 1, f"expected the runs table, found {len(at.dataframe)} tables"
    return at.dataframe[0].value


def shown_ids(at) -> list[str]:
    return list(table(at)["id"]) if len(at.dataframe) else []


def position(at) -> tuple[str, int]:
    """The bar's position text ("51-100 of 12,345 runs") and the total it names."""
    for element in at.markdown:
        found = POSITION.match(element.value)
        if found:
            return found.group(1), int(found.group(2).replace(",", ""))
    raise AssertionError("the page shows no position text")


def notices(at) -> list[str]:
    """The info boxes' texts as a reader sees them (a notice quotes the link escaped)."""
    return [as_read(element.value) for element in at.info]


def selected_text(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.endswith(" selected**")]


def button(at, label: str):
    found = [b for b in at.button if b.label == label]
    assert len(found) == 1, f"expected one {label!r} button, found {len(found)}"
    return found[0]


def check(at) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def expected_view(runs, minute, preset="7d", per_page=25, page=1, **fields):
    """(ids on the page, total) of the view in the Python model."""
    found = matching(runs, RunFilter(since=preset_since(preset, minute), **fields))
    return ids(page_slice(found, per_page, page)), len(found)


def assert_shows(at, runs, minutes, preset="7d", per_page=25, page=1, **fields):
    """The table and the total are the Python model's view (for one of the minutes spanned)."""
    check(at)
    options = [
        expected_view(runs, minute, preset, per_page, page, **fields) for minute in sorted(minutes)
    ]
    shown = (shown_ids(at), position(at)[1])
    assert shown in options
    assert shown[0], "the view under test is empty: it would prove little"
    return shown


@pytest.fixture(scope="module")
def runs(shared_db):
    return load_runs(shared_db)


@pytest.fixture
def page_db(shared_db, app_env):
    return app_env(shared_db)


@pytest.fixture
def copy_db(db_copy, app_env):
    return app_env(db_copy)


def two_small_flows(runs) -> list[str]:
    """Two of the rarer flows of the last week: a filter on them narrows a lot, yet shows runs."""
    since = utc_minute() - timedelta(days=6)
    recent = [r["flow_name"] for r in runs if r["started_at"] >= since and not r["archived_at"]]
    counts = {name: recent.count(name) for name in set(recent)}
    return sorted(sorted(counts, key=lambda name: (counts[name], name))[2:4])


def a_failed_run(runs) -> dict:
    since = utc_minute() - timedelta(days=6)
    failed = sorted(
        (
            r
            for r in runs
            if r["failed_step"]
            and r["error_message"]
            and r["started_at"] >= since
            and not r["archived_at"]
        ),
        key=lambda r: r["id"],
    )
    return failed[len(failed) // 2]


# ------------------------------------------------------------------ the default view


def test_the_default_view_is_the_last_7_days_newest_first_25_rows(page_db, runs, shared_db):
    at, minutes = spanning(open_runs)
    shown = assert_shows(at, runs, minutes)
    assert at.selectbox(key="range").value == "7d"
    assert at.selectbox(key="range").options == [
        "Last 24 hours",
        "Last 7 days",
        "Last 30 days",
        "Last 90 days",
        "All time",
        "Custom range",
    ]
    assert at.selectbox(key="rows").value == 25 and at.pagination[0].value == 1
    assert at.selectbox(key="rows").options == ["10", "25", "50", "100"]
    assert at.multiselect(key="flow").value == [] and at.multiselect(key="status").value == []
    assert not at.checkbox(key="archived").value and at.text_input(key="q").value == ""
    assert position(at)[0] == f"1-25 of {shown[1]:,} runs"
    # and it is the store's first page for that filter
    minute = min(minutes)
    with open_db(shared_db, read_only=True) as con:
        store_page = list_runs(con, RunFilter(since=preset_since("7d", minute)), 25)
    assert shown[0] == list(store_page.rows["id"]) or len(minutes) > 1


def test_the_columns_are_the_engines_five_in_order(page_db):
    at = check(open_runs())
    order = list(at.dataframe[0].proto.column_order)
    assert order[order.index("Flow") : order.index("Flow") + 5] == [
        "Flow",
        "Status",
        "Started At",
        "Duration",
        "Failed Step",
    ]
    assert order[0] == "Open" and "id" not in order and "Archived" not in order


def test_each_row_shows_its_runs_flow_status_duration_and_failed_step(page_db, runs):
    at = check(
        open_runs(
            {
                "range": "All time",
                "rows": "100",
                "status": ["Failed", "Succeeded", "Quota Exceeded"],
            }
        )
    )
    by_id = {run["id"]: run for run in runs}
    shown = table(at)
    assert len(shown) == 100
    labels = {s.name: s.label for s in STATUSES}
    for row in shown.to_dict("records"):
        run = by_id[row["id"]]
        assert row["Flow"] == run["flow_name"]
        assert list(row["Status"]) == [labels[run["status"]]]
        expected_step = next(
            (
                text
                for text in (run["failed_step_display"], run["failed_step"])
                if text and text.strip()
            ),
            "-",
        )
        assert row["Failed Step"] == expected_step
        low, high = duration_ms_range(row["Duration"])
        assert low <= run["duration_ms"] < high, (row["Duration"], run["duration_ms"])
    assert any(row != "-" for row in shown["Failed Step"])


UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms_range(text: str) -> tuple[float, float]:
    """What a human-readable duration ("832 ms", "4.2 s", "3 min 5 s") can stand for, in ms."""
    parts = re.fullmatch(r"(\d+(?:\.\d)?) (ms|s|min|h|d)(?: (\d+) (s|min|h))?", text)
    assert parts, f"not a human-readable duration: {text!r}"
    number, unit, rest, rest_unit = parts.groups()
    low = float(number) * UNITS_MS[unit] + (int(rest) * UNITS_MS[rest_unit] if rest else 0)
    if unit == "ms":
        step = 1
    elif unit == "s":
        step = 100 if "." in number or float(number) < 60 else 1000
    else:
        step = UNITS_MS[rest_unit] if rest else UNITS_MS[unit]
    return low, low + step


@pytest.mark.parametrize(
    "text, low, high",
    [
        ("832 ms", 832, 833),
        ("4.2 s", 4200, 4300),
        ("3 min 5 s", 185_000, 186_000),
        ("2 h", 7_200_000, 10_800_000),
    ],
)
def test_the_duration_reader_of_these_tests(text, low, high):
    assert duration_ms_range(text) == (low, high)


def test_the_error_column_shows_each_runs_error_in_one_line_and_nothing_when_none(page_db, runs):
    by_id = {run["id"]: run for run in runs}
    shown = table(check(open_runs({"range": "All time", "rows": "100"})))
    for run_id, error in zip(shown["id"], shown["Error"], strict=True):
        message = by_id[run_id]["error_message"]
        assert error == (error_summary(message) if message else "")
        assert "\n" not in error and error != "nan"
    assert (shown["Error"] != "").any() and (shown["Error"] == "").any()


LEAKY_ERRORS = {  # run id -> its error message, holding a secret
    "leaky-bearer": "401 Unauthorized: Authorization: Bearer abc123XYZ789def was refused",
    "leaky-body": '{"error": "invalid_client", "client_secret": "cs_live_Zq81wPx"}',
    "leaky-form": "token request failed: client_secret=cs_live_Zq81wPx&grant_type=x",
}


def leaky_store(path):
    with open_db(path) as con:
        ingest_items(
            con,
            records_as_items(
                [
                    simple_run(
                        run_id, status="FAILED", failedStep={"name": "step_1", "message": message}
                    )
                    for run_id, message in LEAKY_ERRORS.items()
                ]
            ),
            "leaky",
        )
    return path


def test_the_error_column_masks_secrets_unless_masking_is_off(tmp_path, app_env, monkeypatch):
    app_env(leaky_store(tmp_path / "leaky.duckdb"))
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    masked = table(check(open_runs({"range": "All time"})))
    errors = dict(zip(masked["id"], masked["Error"], strict=True))
    assert errors == {
        "leaky-bearer": "401 Unauthorized: Authorization: Bearer •••••• was refused",
        "leaky-body": "invalid_client",
        "leaky-form": "token request failed: client_secret=••••••&grant_type=x",
    }
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    recorded = table(check(open_runs({"range": "All time"})))
    assert dict(zip(recorded["id"], recorded["Error"], strict=True)) == {
        run_id: error_summary(message) for run_id, message in LEAKY_ERRORS.items()
    }


def test_unfinished_runs_show_no_duration_even_when_one_is_stored(copy_db):
    """The store never keeps a duration for them; the page does not trust that."""
    with open_db(copy_db) as con:
        unfinished = [
            found[0]
            for found in con.execute(
                "SELECT id FROM runs WHERE status IN ('RUNNING', 'QUEUED', 'PAUSED')"
            ).fetchall()
        ]
        con.execute(
            "UPDATE runs SET duration_ms = 4200 WHERE id IN (SELECT unnest(?))", [unfinished]
        )
        bump_generation(con)
    assert 0 < len(unfinished) <= 100, "all of them must fit on one page of 100"
    waiting = table(
        check(
            open_runs(
                {"range": "All time", "rows": "100", "status": ["Running", "Queued", "Paused"]}
            )
        )
    )
    assert sorted(waiting["id"]) == sorted(unfinished)
    assert set(waiting["Duration"]) == {""}
    finished = table(check(open_runs({"range": "All time", "status": ["Succeeded"]})))
    assert len(finished) > 0 and "" not in set(finished["Duration"])


def test_started_at_is_shown_in_the_browsers_timezone(page_db, runs):
    at = check(open_runs(tz="Asia/Tokyo"))
    by_id = {run["id"]: run for run in runs}
    shown = table(at)
    assert str(shown["Started At"].dt.tz) == "Asia/Tokyo"
    for run_id, started in zip(shown["id"], shown["Started At"], strict=True):
        utc = by_id[run_id]["started_at"].replace(tzinfo=UTC)
        assert started.to_pydatetime() == utc.astimezone(ZoneInfo("Asia/Tokyo"))
        assert started.utcoffset() == timedelta(hours=9)
    config = json.loads(at.dataframe[0].proto.columns)
    assert "Asia/Tokyo" in config["Started At"]["help"]


@pytest.mark.parametrize("zone", [None, "Mars/Olympus_Mons"])
def test_an_unknown_browser_timezone_shows_utc(page_db, runs, zone):
    at = check(open_runs(tz=zone))
    shown = table(at)
    assert str(shown["Started At"].dt.tz) == "UTC"
    first = {run["id"]: run for run in runs}[shown["id"][0]]
    assert shown["Started At"][0].to_pydatetime().replace(tzinfo=None) == first["started_at"]


def test_every_status_has_its_own_colour_and_its_meaning_on_hover(page_db):
    at = check(open_runs())
    config = json.loads(at.dataframe[0].proto.columns)["Status"]["type_config"]
    colours = {option["value"]: option["color"] for option in config["options"]}
    assert set(colours) == {s.label for s in STATUSES} and len(set(colours.values())) == 11
    legend = " ".join(element.value for element in at.html)
    for found in STATUSES:
        chip = re.search(
            rf'<span title="([^"]*)"[^>]*color:{found.color}[^>]*>'
            rf"{re.escape(found.label)}</span>",
            legend,
        )
        assert chip, f"no legend chip for {found.label}"
        assert chip.group(1).startswith(found.meaning[:40].replace("'", "&#x27;"))
    quota = re.search(r'<span title="([^"]*)"[^>]*>Quota Exceeded</span>', legend).group(1)
    assert "You may contact Sales to increase your limit." in quota
    timeout = re.search(r'<span title="([^"]*)"[^>]*>Timeout</span>', legend).group(1)
    assert "contact Support" in timeout


# ------------------------------------------------------------------ each filter alone


def test_the_flow_filter_alone(page_db, runs):
    flows = two_small_flows(runs)
    at = open_runs()
    at, minutes = spanning(lambda: at.multiselect(key="flow").set_value(flows).run())
    assert_shows(at, runs, minutes, flows=tuple(flows))
    assert set(table(at)["Flow"]) == set(flows)


def test_the_status_filter_alone(page_db, runs):
    at = open_runs()
    at, minutes = spanning(
        lambda: at.multiselect(key="status").set_value(["FAILED", "QUOTA_EXCEEDED"]).run()
    )
    assert_shows(at, runs, minutes, statuses=("FAILED", "QUOTA_EXCEEDED"))
    assert {tuple(status) for status in table(at)["Status"]} <= {("Failed",), ("Quota Exceeded",)}


@pytest.mark.parametrize("preset", ["24h", "30d", "90d", "all"])
def test_each_date_preset_alone(page_db, runs, preset):
    at = open_runs()
    at, minutes = spanning(lambda: at.selectbox(key="range").set_value(preset).run())
    assert_shows(at, runs, minutes, preset=preset)


def test_a_custom_range_of_whole_days(page_db, runs):
    last = max(run["started_at"] for run in runs).date() - timedelta(days=3)
    first = last - timedelta(days=4)
    at = open_runs()
    at.selectbox(key="range").set_value("custom").run()
    at.date_input(key="from").set_value(first)
    at.date_input(key="to").set_value(last).run()
    check(at)
    expected = matching(
        runs,
        RunFilter(
            since=datetime.combine(first, datetime.min.time()),
            until=datetime.combine(last + timedelta(days=1), datetime.min.time()),
        ),
    )
    assert shown_ids(at) == ids(expected[:25]) and position(at)[1] == len(expected)


def test_a_custom_range_given_backwards_is_swapped_with_a_note(page_db, runs):
    last = max(run["started_at"] for run in runs).date() - timedelta(days=2)
    first = last - timedelta(days=1)
    at = check(
        open_runs({"range": "Custom range", "from": last.isoformat(), "to": first.isoformat()})
    )
    assert any("swapped" in text for text in notices(at))
    expected = matching(
        runs,
        RunFilter(
            since=datetime.combine(first, datetime.min.time()),
            until=datetime.combine(last + timedelta(days=1), datetime.min.time()),
        ),
    )
    assert position(at)[1] == len(expected) > 0


def test_show_archived_adds_the_archived_runs_marked(copy_db):
    newest = [
        found[0]
        for found in rows(copy_db, "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 10")
    ]
    with open_db(copy_db) as con:
        con.execute(
            "UPDATE runs SET archived_at = started_at WHERE id IN (SELECT unnest(?))",
            [[newest[1], newest[4]]],
        )
        bump_generation(con)
    runs = load_runs(copy_db)
    at = open_runs()
    assert newest[1] not in shown_ids(at) and newest[4] not in shown_ids(at)
    at, minutes = spanning(lambda: at.checkbox(key="archived").check().run())
    assert_shows(at, runs, minutes, include_archived=True)
    shown = table(at)
    archived = {run["id"] for run in runs if run["archived_at"] is not None}
    for run_id, flow, flag in zip(shown["id"], shown["Flow"], shown["Archived"], strict=True):
        assert flow.startswith(ARCHIVED_MARK) == (run_id in archived) == flag
    assert shown["Flow"][1].startswith(ARCHIVED_MARK) and shown["Flow"][4].startswith(ARCHIVED_MARK)
    assert any(ARCHIVED_MARK + "marks an archived run" in c.value for c in at.caption)


def search_cases(runs) -> dict[str, str]:
    failed = a_failed_run(runs)
    return {
        "a run id": failed["id"],
        "part of a run id, other case": failed["id"][4:12].swapcase(),
        "a failed step's name": failed["failed_step"],
        "a failed step's display name": failed["failed_step_display"],
        "error text": failed["error_message"][5:25],
    }


@pytest.mark.parametrize(
    "case",
    [
        "a run id",
        "part of a run id, other case",
        "a failed step's name",
        "a failed step's display name",
        "error text",
    ],
)
def test_the_search_box_finds_runs_by(page_db, runs, case):
    text = search_cases(runs)[case]
    at = open_runs()
    at, minutes = spanning(lambda: at.text_input(key="q").input(text).run())
    assert_shows(at, runs, minutes, search=text)
    assert position(at)[1] < len(runs)
    # the run itself is found: on the page the model puts it (a common step name matches many)
    target = a_failed_run(runs)["id"]
    found = ids(matching(runs, RunFilter(since=preset_since("7d", min(minutes)), search=text)))
    assert target in found
    at.pagination[0].set_value(found.index(target) // 25 + 1).run()
    assert target in shown_ids(at)


def test_all_filters_combine(page_db, runs):
    flows = two_small_flows(runs)
    at = open_runs()
    at.multiselect(key="flow").set_value(flows)
    at.multiselect(key="status").set_value(["SUCCEEDED", "FAILED"])
    at.selectbox(key="range").set_value("30d")
    at.checkbox(key="archived").check()
    at.text_input(key="q").input("e")
    at, minutes = spanning(at.run)
    assert_shows(
        at,
        runs,
        minutes,
        preset="30d",
        flows=tuple(flows),
        statuses=("SUCCEEDED", "FAILED"),
        include_archived=True,
        search="e",
    )
    alone = [
        expected_view(runs, min(minutes), preset="30d", flows=tuple(flows))[1],
        expected_view(runs, min(minutes), preset="30d", search="e")[1],
    ]
    assert position(at)[1] < min(alone)


# ------------------------------------------------------------------ paging


@pytest.mark.parametrize("per_page", [10, 50, 100])
def test_rows_per_page(page_db, runs, per_page):
    at = open_runs()
    at, minutes = spanning(lambda: at.selectbox(key="rows").set_value(per_page).run())
    shown, total = assert_shows(at, runs, minutes, per_page=per_page)
    assert len(shown) == per_page
    assert position(at)[0] == f"1-{per_page} of {total:,} runs"
    assert at.pagination[0].num_pages == math.ceil(total / per_page)


def test_next_and_previous_pages_and_both_ends(page_db, runs):
    """st.pagination is a widget AppTest drives: its Previous/Next buttons pick page +-1."""
    query = {"range": "All time", "status": "Failed", "rows": "10"}
    expected = matching(runs, RunFilter(statuses=("FAILED",)))
    last = math.ceil(len(expected) / 10)
    at = check(open_runs(query))
    pager = at.pagination[0]
    assert (pager.value, pager.num_pages) == (1, last) and last > 3
    assert shown_ids(at) == ids(expected[:10])
    for page in (2, 3, 2, last, last - 1, 1):  # next, next, previous, the end, previous, start
        at.pagination[0].set_value(page).run()
        check(at)
        assert shown_ids(at) == ids(page_slice(expected, 10, page))
        first = (page - 1) * 10 + 1
        assert position(at)[0] == (
            f"{first:,}-{min(page * 10, len(expected)):,} of {len(expected):,} runs"
        )
    at.pagination[0].set_value(last).run()
    assert len(shown_ids(at)) == len(expected) - (last - 1) * 10


def test_paging_walks_every_run_once(page_db, runs):
    query = {"range": "All time", "status": ["Quota Exceeded", "Canceled"], "rows": "10"}
    expected = ids(matching(runs, RunFilter(statuses=("QUOTA_EXCEEDED", "CANCELED"))))
    at = check(open_runs(query))
    seen = list(shown_ids(at))
    for page in range(2, at.pagination[0].num_pages + 1):
        seen += shown_ids(at.pagination[0].set_value(page).run())
    assert seen == expected


def test_changing_a_filter_or_the_rows_per_page_goes_back_to_page_1(page_db, runs):
    at = check(open_runs({"range": "All time", "page": "3"}))
    assert at.pagination[0].value == 3
    at.multiselect(key="status").set_value(["SUCCEEDED"]).run()
    assert at.pagination[0].value == 1
    assert shown_ids(at) == ids(matching(runs, RunFilter(statuses=("SUCCEEDED",)))[:25])
    at.pagination[0].set_value(4).run()
    at.selectbox(key="rows").set_value(10).run()
    assert at.pagination[0].value == 1 and position(at)[0].startswith("1-10 of ")


def test_a_deep_link_to_any_page_shows_that_page(page_db, runs):
    """The page number stays in the link; the store finds the page's first run by key (from
    the nearer end, or through the day counts), never by skipping whole rows."""
    expected = matching(runs, RunFilter(include_archived=True))
    last = math.ceil(len(expected) / 10)
    for page in (last, last - 1, last // 2, 37, 2):
        at = check(
            open_runs({"range": "All time", "archived": "true", "rows": "10", "page": str(page)})
        )
        assert at.pagination[0].value == page
        assert shown_ids(at) == ids(page_slice(expected, 10, page))
        assert at.query_params["page"] == str(page)


def test_the_browsers_back_button_shows_the_view_before(page_db, runs):
    """The browser's back button sends the older URL: the page shows that view, whole (a
    parameter the older URL lacks is back at its default), and does not write over it."""
    at = check(open_runs({"range": "All time", "rows": "10"}))
    at.pagination[0].set_value(3).run()
    before = dict(at.query_params)
    assert before == {"range": "All time", "rows": "10", "page": "3"}
    at.multiselect(key="status").set_value(["FAILED"]).run()
    assert dict(at.query_params) == {"range": "All time", "rows": "10", "status": "Failed"}
    at.query_params.clear()
    at.query_params.update(before)  # what the browser sends after Back
    check(at.run())
    assert at.multiselect(key="status").value == [] and at.pagination[0].value == 3
    assert shown_ids(at) == ids(page_slice(matching(runs, RunFilter()), 10, 3))
    assert dict(at.query_params) == before


def test_the_url_follows_every_change_in_its_own_spelling(page_db):
    at = check(open_runs())
    at.multiselect(key="status").set_value(["FAILED", "TIMEOUT"]).run()
    assert dict(at.query_params) == {"status": ["Failed", "Timeout"]}
    at.selectbox(key="range").set_value("all").run()
    at.selectbox(key="rows").set_value(50).run()
    at.pagination[0].set_value(2).run()
    assert dict(at.query_params) == {
        "status": ["Failed", "Timeout"],
        "range": "All time",
        "rows": "50",
        "page": "2",
    }
    at.toggle(key="live").set_value(True).run()
    assert at.query_params["live"] == "true" and at.query_params["page"] == "2"
    at.multiselect(key="status").set_value([]).run()  # a filter change goes back to page 1
    assert dict(at.query_params) == {"range": "All time", "rows": "50", "live": "true"}


def test_the_runs_page_opened_without_parameters_shows_the_view_it_left(page_db, runs):
    """From a run's page, the navigation's Runs link (no parameters) comes back to the view the
    Runs page last had, page included."""
    at = check(open_runs({"range": "All time", "status": "Failed", "rows": "10"}))
    at.pagination[0].set_value(2).run()
    before = shown_ids(at)
    click_open(at, 0)
    assert at.query_params["id"] == before[0]
    at.switch_page(RUNS_PAGE)
    at.query_params.clear()
    check(at.run())
    assert shown_ids(at) == before and at.pagination[0].value == 2
    assert dict(at.query_params) == {
        "range": "All time",
        "status": "Failed",
        "rows": "10",
        "page": "2",
    }


def test_a_notice_about_the_link_shows_once(page_db):
    at = check(open_runs({"status": "Bogus"}))
    assert len(notices(at)) == 1
    at.multiselect(key="status").set_value(["FAILED"]).run()
    assert notices(at) == [] and dict(at.query_params) == {"status": "Failed"}


def test_the_view_moves_to_insights_and_back(page_db):
    """The toolbar's values are the session's, on either page: going to Insights and back by
    the navigation (links without parameters) keeps the filters."""
    at = check(open_runs())
    at.multiselect(key="status").set_value(["FAILED"]).run()
    at.selectbox(key="range").set_value("30d").run()
    at.switch_page("pages/insights.py")
    at.query_params.clear()
    check(at.run())
    assert at.multiselect(key="status").value == ["FAILED"]
    assert at.selectbox(key="range").value == "30d"
    assert at.query_params["status"] == "Failed" and at.query_params["range"] == "Last 30 days"
    at.switch_page(RUNS_PAGE)
    at.query_params.clear()
    check(at.run())
    assert at.multiselect(key="status").value == ["FAILED"]
    assert dict(at.query_params) == {"status": "Failed", "range": "Last 30 days"}


# ------------------------------------------------------------------ selection and actions


def select_rows(at, positions: list[int]) -> AppTest:
    at.session_state[at.dataframe[0].key] = {
        "selection": {"rows": positions, "columns": [], "cells": []}
    }
    return check(at.run())


def test_archive_then_unarchive_the_selected_runs(copy_db):
    at = check(open_runs({"range": "All time"}))
    chosen = [shown_ids(at)[i] for i in (0, 2, 5)]
    select_rows(at, [0, 2, 5])
    assert selected_text(at) == ["**3 selected**"]
    assert not button(at, "Archive").disabled and button(at, "Unarchive").disabled
    before = position(at)[1]
    button(at, "Archive").click().run()
    check(at)
    archived = dict(
        rows(copy_db, "SELECT id, archived_at FROM runs WHERE id IN (SELECT unnest(?))", [chosen])
    )
    assert all(archived[run_id] is not None for run_id in chosen)
    assert [t.value for t in at.toast] == ["Archived 3 runs."]
    assert position(at)[1] == before - 3 and not set(chosen) & set(shown_ids(at))
    assert selected_text(at) == []  # the selection does not move to the rows now there

    at.checkbox(key="archived").check().run()
    shown = table(at)
    positions = [int(i) for i in shown.index[shown["id"].isin(chosen)]]
    assert len(positions) == 3 and all(shown["Archived"][p] for p in positions)
    select_rows(at, positions)
    assert button(at, "Archive").disabled and not button(at, "Unarchive").disabled
    button(at, "Unarchive").click().run()
    check(at)
    assert rows(
        copy_db,
        "SELECT count(*) FROM runs WHERE id IN (SELECT unnest(?)) AND archived_at IS NULL",
        [chosen],
    ) == [(3,)]
    assert [t.value for t in at.toast] == ["Restored 3 runs."]


def test_a_mixed_selection_can_be_archived_and_unarchived(copy_db):
    newest = [
        found[0]
        for found in rows(copy_db, "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 3")
    ]
    with open_db(copy_db) as con:
        con.execute("UPDATE runs SET archived_at = started_at WHERE id = ?", [newest[0]])
        bump_generation(con)
    at = check(open_runs({"range": "All time", "archived": "true"}))
    assert shown_ids(at)[:3] == newest
    select_rows(at, [0, 1])
    assert not button(at, "Archive").disabled and not button(at, "Unarchive").disabled
    button(at, "Archive").click().run()
    assert [t.value for t in check(at).toast] == ["Archived 1 run."]


@pytest.mark.parametrize("change", ["page", "filter", "rows per page", "date range"])
def test_a_selection_never_carries_over_to_other_rows(page_db, change):
    at = check(open_runs({"range": "All time"}))
    old_key = at.dataframe[0].key
    select_rows(at, [0, 1])
    assert selected_text(at) == ["**2 selected**"]
    if change == "page":
        at.pagination[0].set_value(2).run()
    elif change == "filter":
        at.multiselect(key="status").set_value(["SUCCEEDED"]).run()
    elif change == "rows per page":
        at.selectbox(key="rows").set_value(50).run()
    else:
        at.selectbox(key="range").set_value("30d").run()
    check(at)
    assert at.dataframe[0].key != old_key
    assert selected_text(at) == []
    assert not [b for b in at.button if b.label in ("Archive", "Unarchive")]


@pytest.fixture
def downloads(monkeypatch):
    """The bytes behind download buttons: AppTest keeps them in a media store it makes per
    run; this one remembers them."""
    stores = []

    class Remembering(MemoryMediaFileStorage):
        def __init__(self, endpoint: str):
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Remembering)

    def content(download_button) -> bytes:
        return stores[-1].get_file(download_button.proto.url.rsplit("/", 1)[-1]).content

    return content


def test_the_export_buttons_carry_exactly_the_selected_runs(page_db, runs, downloads):
    at = check(open_runs({"range": "All time", "status": "Failed"}))
    chosen = [shown_ids(at)[i] for i in (1, 3, 4)]
    select_rows(at, [1, 3, 4])
    by_id = {run["id"]: run for run in runs}
    exported = list(
        csv.DictReader(io.StringIO(downloads(at.download_button(key="export_sel_csv")).decode()))
    )
    assert sorted(row["id"] for row in exported) == sorted(chosen)
    for row in exported:
        assert row["status"] == "FAILED" and row["flow"] == by_id[row["id"]]["flow_name"]
        assert row["failed_step"] == by_id[row["id"]]["failed_step"]
    lines = downloads(at.download_button(key="export_sel_jsonl")).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(record["id"] for record in records) == sorted(chosen)
    assert all(
        record["error_message"] == by_id[record["id"]]["error_message"] for record in records
    )


def test_the_open_run_button_of_a_single_selection_opens_it(page_db):
    at = check(open_runs({"range": "All time", "rows": "10"}))
    chosen = shown_ids(at)[6]
    select_rows(at, [6])
    button(at, "Open run").click().run()
    assert at.query_params["id"] == chosen
    assert at.query_params["range"] == "All time" and at.query_params["rows"] == "10"


# ------------------------------------------------------------------ opening a run and coming back


def click_open(at, row: int) -> AppTest:
    """Clicks the Open button of one row of the table.

    AppTest has no call for a ButtonColumn click, so this sends what the browser sends: the
    widget state of the table's button column (its id is in the table's proto) holding the
    JSON {"row", "label"} trigger value, next to the other widgets' current states.
    """
    states = at._tree.get_widget_states()
    click = WidgetState()
    click.id = at.dataframe[0].proto.button_click_widgets["Open"]
    click.string_trigger_value.data = json.dumps({"row": row, "label": "Open"})
    states.widgets.append(click)
    return at._run(states)


def test_clicking_open_shows_the_run_page_with_the_run_id_and_the_view(page_db, runs):
    query = {"range": "All time", "status": "Failed", "rows": "10", "page": "2"}
    at = check(open_runs(query))
    run_id = shown_ids(at)[3]
    assert run_id == ids(matching(runs, RunFilter(statuses=("FAILED",))))[13]
    click_open(at, 3)
    carried = {key: at.query_params[key] for key in at.query_params}
    assert carried == {
        "id": run_id,
        "range": "All time",
        "status": "Failed",
        "rows": "10",
        "page": "2",
    }
    assert not any(d.key and d.key.startswith("runs_table_") for d in at.dataframe)


def test_coming_back_from_a_run_keeps_the_filters_and_the_page(page_db, runs):
    at = check(
        open_runs(
            {"range": "Last 30 days", "status": ["Failed", "Timeout"], "rows": "10", "page": "3"}
        )
    )
    before = shown_ids(at)
    click_open(at, 0)
    view = {key: value for key, value in at.query_params.items() if key != "id"}
    # "Back to runs" links to the Runs page with the view the run page's URL carries.
    at.switch_page(RUNS_PAGE)
    at.query_params.clear()
    at.query_params.update(view)
    check(at.run())
    assert at.pagination[0].value == 3 and at.selectbox(key="rows").value == 10
    assert at.multiselect(key="status").value == ["FAILED", "TIMEOUT"]
    assert shown_ids(at) == before


def test_the_view_carried_to_a_run_follows_the_widgets_not_the_first_link(page_db):
    """Widget changes reach the browser's URL through its frontend, which AppTest lacks; what the
    page itself puts in a link is checked instead: the view handed to the run page."""
    at = check(open_runs({"range": "All time"}))
    at.multiselect(key="status").set_value(["FAILED"])
    at.selectbox(key="range").set_value("90d")
    at.checkbox(key="archived").check()
    at.text_input(key="q").input("error").run()
    at.selectbox(key="rows").set_value(10).run()
    at.pagination[0].set_value(2).run()
    run_id = shown_ids(check(at))[0]
    click_open(at, 0)
    assert dict(at.query_params) == {
        "id": run_id,
        "status": "Failed",
        "range": "Last 90 days",
        "archived": "true",
        "q": "error",
        "rows": "10",
        "page": "2",
    }


# ------------------------------------------------------------------ the URL


def test_a_link_opens_exactly_its_view(page_db, runs):
    flows = two_small_flows(runs)
    query = {
        "flow": flows,
        "status": ["Failed", "SUCCEEDED"],
        "range": "Last 30 days",
        "q": "e",
        "archived": "true",
        "rows": "10",
        "page": "2",
    }
    at, minutes = spanning(lambda: open_runs(query))
    assert at.multiselect(key="flow").value == flows
    assert at.multiselect(key="status").value == ["FAILED", "SUCCEEDED"]
    assert at.selectbox(key="range").value == "30d" and at.checkbox(key="archived").value
    assert at.text_input(key="q").value == "e" and at.selectbox(key="rows").value == 10
    assert at.pagination[0].value == 2
    assert_shows(
        at,
        runs,
        minutes,
        preset="30d",
        per_page=10,
        page=2,
        flows=tuple(flows),
        statuses=("FAILED", "SUCCEEDED"),
        include_archived=True,
        search="e",
    )
    assert at.query_params["status"] == ["Failed", "Succeeded"]
    assert at.query_params["flow"] == flows and at.query_params["page"] == "2"


def test_a_custom_range_link_opens_its_days(page_db, runs):
    last = max(run["started_at"] for run in runs).date() - timedelta(days=1)
    first = last - timedelta(days=2)
    at = check(
        open_runs({"range": "Custom range", "from": first.isoformat(), "to": last.isoformat()})
    )
    assert at.date_input(key="from").value == first and at.date_input(key="to").value == last
    expected = matching(
        runs,
        RunFilter(
            since=datetime.combine(first, datetime.min.time()),
            until=datetime.combine(last, datetime.min.time()) + timedelta(days=1),
        ),
    )
    assert shown_ids(at) == ids(expected[:25]) and position(at)[1] == len(expected)


@pytest.mark.parametrize(
    "query, canonical, fields",
    [
        ({"status": "failed"}, {"status": "Failed"}, {"statuses": ("FAILED",)}),
        (
            {"status": ["QUOTA_EXCEEDED", "quota exceeded"]},
            {"status": "Quota Exceeded"},
            {"statuses": ("QUOTA_EXCEEDED",)},
        ),
        ({"range": "30d"}, {"range": "Last 30 days"}, {"preset": "30d"}),
        ({"archived": "yes"}, {"archived": "true"}, {"include_archived": True}),
        ({"live": "1"}, {"live": "true"}, {}),
        ({"page": ["2", "3"]}, {"page": "3"}, {"page": 3}),
    ],
)
def test_other_spellings_in_a_link_work_and_stay_in_the_url(
    page_db, runs, query, canonical, fields
):
    """A bound widget drops spellings it does not show from the URL; the page keeps the view
    in its own link by rewriting them to the widget's spelling first (a fixed bug)."""
    at, minutes = spanning(lambda: open_runs(query))
    assert {key: at.query_params[key] for key in at.query_params} == canonical
    assert_shows(at, runs, minutes, **fields)
    assert notices(at) == []


@pytest.mark.parametrize(
    "query, notice",
    [
        ({"status": "Bogus"}, 'unknown status "Bogus"'),
        ({"flow": "No such flow"}, 'flow "No such flow"'),
        ({"page": "abc"}, 'page "abc"'),
        ({"page": "0"}, 'page "0"'),
        ({"page": "99999"}, 'page "99999"'),
        ({"rows": "7"}, 'rows per page "7"'),
        ({"range": "bogus"}, 'date range "bogus"'),
        ({"from": "2026-13-01"}, 'start date "2026-13-01"'),
        ({"to": "yesterday"}, 'end date "yesterday"'),
        ({"from": "1999-12-31"}, 'start date "1999-12-31"'),
        ({"to": "2999-01-01"}, 'end date "2999-01-01"'),
        ({"archived": "maybe"}, 'show archived "maybe"'),
        ({"live": "sometimes"}, 'live refresh "sometimes"'),
    ],
)
def test_a_bad_link_value_falls_back_to_the_default_with_a_notice(page_db, runs, query, notice):
    at, minutes = spanning(lambda: open_runs(query))
    check(at)
    assert any(notice in text for text in notices(at)), notices(at)
    assert_shows(at, runs, minutes)
    assert dict(at.query_params) == {}


def test_bad_values_go_and_good_ones_stay(page_db, runs):
    at, minutes = spanning(
        lambda: open_runs({"status": ["Bogus", "FAILED"], "rows": "100", "page": "x"})
    )
    assert [n for n in notices(at) if "Bogus" in n or '"x"' in n] == notices(at)
    assert len(notices(at)) == 2
    assert_shows(at, runs, minutes, per_page=100, statuses=("FAILED",))


def test_bad_days_in_a_custom_range_fall_back_to_the_default_days(page_db, runs):
    at = check(open_runs({"range": "custom", "from": "2026-02-30", "to": "2999-12-31"}))
    assert len(notices(at)) == 2
    today = datetime.now(UTC).date()
    assert at.date_input(key="from").value == today - timedelta(days=6)
    assert at.date_input(key="to").value == today
    expected = matching(
        runs,
        RunFilter(
            since=datetime.combine(today - timedelta(days=6), datetime.min.time()),
            until=datetime.combine(today + timedelta(days=1), datetime.min.time()),
        ),
    )
    assert position(at)[1] == len(expected) and at.query_params["range"] == "Custom range"


def test_going_from_a_custom_range_back_to_last_7_days_does_not_fail(page_db, runs):
    """The browser drops range= when the default is picked but still sends from= and to=: the
    page used to write range= itself then, which Streamlit refuses for a bound parameter."""
    today = datetime.now(UTC).date()
    at = check(
        open_runs(
            {
                "range": "Custom range",
                "from": str(today - timedelta(days=20)),
                "to": str(today - timedelta(days=15)),
            }
        )
    )
    at.selectbox(key="range").set_value("7d")
    del at.query_params["range"]  # what the browser's URL holds at this rerun
    at, minutes = spanning(at.run)
    assert_shows(at, runs, minutes)


def test_a_filtered_flow_that_disappears_does_not_break_the_page(copy_db):
    at = check(open_runs({"flow": "Weekly churn report", "range": "All time"}))
    assert set(table(at)["Flow"]) == {"Weekly churn report"}
    with open_db(copy_db) as con:  # e.g. a newer export renamed the flow
        con.execute(
            "UPDATE runs SET flow_name = 'Weekly churn digest' "
            "WHERE flow_name = 'Weekly churn report'"
        )
        bump_generation(con)
    check(at.run())
    assert "Weekly churn report" not in at.multiselect(key="flow").options
    assert position(at)[1] == len(matching(load_runs(copy_db), RunFilter()))


def test_a_custom_range_counts_whole_days_in_the_browsers_timezone_across_dst(tmp_path, app_env):
    """New York leaves summer time on 2025-11-02: the range's end is local midnight at -5h,
    its start at -4h (the page used the start's offset for both ends)."""
    times = {
        "before-start": "2025-10-30T03:30:00Z",
        "first-minute": "2025-10-30T04:00:00Z",
        "last-hour": "2025-11-04T04:30:00Z",
        "after-end": "2025-11-04T05:00:00Z",
    }
    db = tmp_path / "dst.duckdb"
    with open_db(db) as con:
        ingest_items(
            con,
            records_as_items([simple_run(run_id, created=when) for run_id, when in times.items()]),
            "dst",
        )
    app_env(db)
    at = check(
        open_runs(
            {"range": "Custom range", "from": "2025-10-30", "to": "2025-11-03"},
            tz="America/New_York",
        )
    )
    assert shown_ids(at) == ["last-hour", "first-minute"]


# ------------------------------------------------------------------ around the table


def test_no_matching_runs_shows_a_friendly_state_with_ways_out(page_db, runs):
    at = check(open_runs({"q": "no run has this text 9f8e7d", "status": "Failed"}))
    assert len(at.dataframe) == 0
    assert position(at)[0] == "0 of 0 runs"
    assert any("No runs match these filters" in text for text in notices(at))
    at, minutes = spanning(lambda: button(at, "Clear filters").click().run())
    assert at.text_input(key="q").value == "" and at.multiselect(key="status").value == []
    assert_shows(at, runs, minutes)


def test_search_all_time_widens_an_empty_view(page_db, runs):
    oldest = min(
        (run for run in runs if run["archived_at"] is None), key=lambda run: run["started_at"]
    )
    at = check(open_runs({"q": oldest["id"]}))
    assert position(at)[0] == "0 of 0 runs"
    button(at, "Search all time").click().run()
    assert at.selectbox(key="range").value == "all"
    assert shown_ids(check(at)) == [oldest["id"]] and position(at)[0] == "1-1 of 1 run"


def test_an_empty_database_says_no_runs_are_loaded_and_links_to_import(empty_db, app_env):
    app_env(empty_db)
    at = check(open_runs())
    assert any("No runs are loaded yet" in text for text in notices(at))
    assert position(at)[0] == "0 of 0 runs" and len(at.dataframe) == 0
    assert any(link.proto.label == "Import runs" for link in at.get("page_link"))


def test_stuck_runs_are_counted_and_listed_with_one_click(copy_db):
    now = datetime.now(UTC)
    records = [
        simple_run(
            run_id,
            created=(now - age).strftime("%Y-%m-%dT%H:%M:%SZ"),
            status="RUNNING",
            finishTime=None,
        )
        for run_id, age in (
            ("stuck-3h", timedelta(hours=3)),
            ("stuck-2d", timedelta(days=2)),
            ("running-10min", timedelta(minutes=10)),
        )
    ]
    with open_db(copy_db) as con:
        ingest_items(con, records_as_items(records), "stuck")
    runs = load_runs(copy_db)
    at, minutes = spanning(open_runs)
    minute = min(minutes)
    in_view = matching(runs, RunFilter(since=preset_since("7d", minute), statuses=("RUNNING",)))
    stuck = [run for run in in_view if run["started_at"] < minute - timedelta(hours=1)]
    assert {"stuck-3h", "stuck-2d"} <= set(ids(stuck)) and "running-10min" in ids(in_view)
    noun = "run has" if len(stuck) == 1 else "runs have"
    assert any(
        c.value.endswith(f" {len(stuck):,} {noun} been running for over an hour.")
        for c in at.caption
    )
    button(at, "Show running runs").click().run()
    assert at.multiselect(key="status").value == ["RUNNING"]
    assert shown_ids(check(at)) == ids(in_view)


@pytest.fixture
def fragments(monkeypatch):
    """The run_every of each st.fragment the page makes (AppTest runs a fragment once)."""
    made = []
    real = st.fragment

    def recording(func=None, *, run_every=None, **options):
        made.append(run_every)
        return real(func, run_every=run_every, **options)

    monkeypatch.setattr(st, "fragment", recording)
    return made


def test_live_refreshes_the_list_every_few_seconds(page_db, runs, fragments, monkeypatch):
    monkeypatch.setenv("RUNS_LIVE_SECONDS", "4")
    at = check(open_runs({"status": "Failed"}))
    assert fragments == []
    at, minutes = spanning(lambda: at.toggle(key="live").set_value(True).run())
    assert fragments == [4.0]
    assert_shows(at, runs, minutes, statuses=("FAILED",))
    assert "every 4 seconds" in at.toggle(key="live").help
    fragments.clear()
    at.toggle(key="live").set_value(False).run()
    assert fragments == []


def test_live_from_a_link(page_db, fragments, monkeypatch):
    monkeypatch.setenv("RUNS_LIVE_SECONDS", "6")
    at = check(open_runs({"live": "true"}))
    assert at.toggle(key="live").value and fragments == [6.0]
    assert at.query_params["live"] == "true"
