"""The runs list: paging walks every run exactly once in (started_at desc, id desc) order, also
when many runs start at the same instant; counts, the position text, archiving, stuck runs and
the small helpers. Expected values come from the Python model in list_oracle."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from factories import rows, simple_run, store_with
from list_oracle import ids, load_runs, matching
from runs_store.db import generation, open_db
from runs_store.filters import RunFilter
from runs_store.ingest import ingest_items, records_as_items
from runs_store.runs_list import (DEFAULT_PAGE_SIZE, PAGE_SIZES, RunsPage, count_runs,
                                  count_stuck_running, failed_step_label, flow_names,
                                  list_runs, newest_start, page_count, page_offset,
                                  set_archived, total_runs)


@pytest.fixture(scope="module")
def shared_con(shared_db):
    """Read-only, opened as factories.rows opens files, so both can be open at once."""
    con = duckdb.connect(str(shared_db), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def shared_runs(shared_db):
    return load_runs(shared_db)


def walk(con, run_filter: RunFilter, per_page: int) -> list[RunsPage]:
    """Every page of the list, following has_next from the first page."""
    pages, offset = [], 0
    while True:
        page = list_runs(con, run_filter, per_page, offset)
        pages.append(page)
        if not page.has_next:
            return pages
        offset += per_page
        assert len(pages) < 10_000, "has_next never became False"


def walked_ids(pages: list[RunsPage]) -> list[str]:
    return [run_id for page in pages for run_id in page.rows["id"]]


# ------------------------------------------------------------------ paging the generated runs

WALKS = [(RunFilter(), 25), (RunFilter(), 100), (RunFilter(include_archived=True), 33),
         (RunFilter(include_archived=True), 50), (RunFilter(statuses=("FAILED",)), 7),
         (RunFilter(search="step"), 10)]


@pytest.mark.parametrize("run_filter, per_page", WALKS)
def test_walking_every_page_gives_the_python_sorted_list_exactly_once(
        shared_con, shared_runs, run_filter, per_page):
    expected = ids(matching(shared_runs, run_filter))
    pages = walk(shared_con, run_filter, per_page)
    got = walked_ids(pages)
    assert len(got) == len(set(got)), "a run came twice"
    assert got == expected
    assert len(pages) == max(1, math.ceil(len(expected) / per_page))
    assert all(len(page.rows) == per_page for page in pages[:-1])
    assert all(page.total == len(expected) for page in pages)


def test_a_page_holds_the_list_columns_and_at_most_its_limit(shared_con, shared_runs):
    page = list_runs(shared_con, RunFilter(), 25, 25)
    assert list(page.rows.columns) == ["id", "flow_name", "status", "started_at", "duration_ms",
                                       "failed_step", "failed_step_display", "error_message",
                                       "archived_at", "finish_time"]
    assert (page.offset, page.limit, len(page.rows), page.has_next) == (25, 25, 25, True)
    by_id = {run["id"]: run for run in shared_runs}
    for record in page.rows.to_dict("records"):
        run = by_id[record["id"]]
        assert record["flow_name"] == run["flow_name"] and record["status"] == run["status"]
        assert pd.Timestamp(record["started_at"]).to_pydatetime() == run["started_at"]


def test_a_page_past_the_end_is_empty_and_has_no_next(shared_con, shared_runs):
    total = len(matching(shared_runs, RunFilter()))
    page = list_runs(shared_con, RunFilter(), 25, total + 25)
    assert page.rows.empty and not page.has_next and page.total == total
    assert page.position_text() == f"0 of {total:,} runs"


def test_a_page_ending_exactly_at_the_last_run_has_no_next(shared_con, shared_runs):
    everything = matching(shared_runs, RunFilter(include_archived=True))
    last = list_runs(shared_con, RunFilter(include_archived=True), 10, len(everything) - 10)
    assert list(last.rows["id"]) == ids(everything[-10:]) and not last.has_next
    before_last = list_runs(shared_con, RunFilter(include_archived=True), 10,
                            len(everything) - 11)
    assert before_last.has_next


def test_a_given_total_is_used_as_is(shared_con):
    page = list_runs(shared_con, RunFilter(), 10, 0, total=123_456)
    assert page.total == 123_456 and page.position_text() == "1-10 of 123,456 runs"


# ------------------------------------------------------------------ many runs, one start time

TIE_TIMES = ["2026-11-02T10:00:00.000Z", "2026-11-02T10:00:00.001Z", "2026-11-02T09:59:59.999Z"]
# Ids that sort differently by case, by length and by digits, to catch any order but id DESC.
TIE_IDS = [f"{prefix}{number}" for prefix in ("a", "A", "b", "run-", "Z", "z")
           for number in (1, 2, 10, 11, 100)]


def tie_records() -> list[dict]:
    records = []
    for index, run_id in enumerate(TIE_IDS):
        for when_index, created in enumerate(TIE_TIMES):
            status = ("SUCCEEDED", "FAILED", "RUNNING")[(index + when_index) % 3]
            records.append(simple_run(f"{run_id}-t{when_index}", created=created, status=status,
                                      flow=("Tie flow", "Other flow")[index % 2],
                                      finishTime=None if status == "RUNNING" else created))
    records.append(simple_run("lonely", created="2026-11-02T08:00:00Z"))
    return records


@pytest.fixture(scope="module")
def ties_db(tmp_path_factory):
    return store_with(tmp_path_factory.mktemp("ties") / "runs.duckdb", tie_records(), "ties")


def test_the_tie_database_really_has_many_runs_at_one_instant(ties_db):
    counts = rows(ties_db, "SELECT count(*) FROM runs GROUP BY started_at ORDER BY 1 DESC")
    assert [count for (count,) in counts] == [len(TIE_IDS)] * 3 + [1]


@pytest.mark.parametrize("per_page", [1, 3, 4, 7, 10, 25, 30, 100])
def test_paging_through_runs_with_the_same_start_never_skips_or_repeats(ties_db, per_page):
    runs = load_runs(ties_db)
    expected = ids(matching(runs, RunFilter()))
    with open_db(ties_db, read_only=True) as con:
        got = walked_ids(walk(con, RunFilter(), per_page))
    assert got == expected and len(set(got)) == len(runs)


def test_ties_break_by_id_descending_in_byte_order(ties_db):
    with open_db(ties_db, read_only=True) as con:
        first = list(list_runs(con, RunFilter(), len(TIE_IDS)).rows["id"])
    newest = [f"{run_id}-t1" for run_id in TIE_IDS]  # .001Z is the latest instant
    assert first == sorted(newest, reverse=True)
    assert first[:3] == ["z2-t1", "z11-t1", "z100-t1"]


@pytest.mark.parametrize("run_filter", [RunFilter(statuses=("FAILED",)),
                                        RunFilter(flows=("Tie flow",)),
                                        RunFilter(search="-t2")])
def test_filtered_paging_through_ties_matches_python(ties_db, run_filter):
    expected = ids(matching(load_runs(ties_db), run_filter))
    with open_db(ties_db, read_only=True) as con:
        got = walked_ids(walk(con, run_filter, 4))
    assert got == expected and expected


# ------------------------------------------------------------------ counts and positions

COUNTED = [RunFilter(), RunFilter(include_archived=True), RunFilter(statuses=("QUOTA_EXCEEDED",)),
           RunFilter(flows=("Weekly churn report", "Onboard new employee")),
           RunFilter(search="rate limit"), RunFilter(search="nothing like this at all")]


@pytest.mark.parametrize("run_filter", COUNTED)
def test_count_runs_equals_the_python_count(shared_con, shared_runs, run_filter):
    assert count_runs(shared_con, run_filter) == len(matching(shared_runs, run_filter))


def test_total_runs_and_newest_start(shared_con, shared_runs):
    assert total_runs(shared_con) == len(shared_runs)
    assert newest_start(shared_con) == max(run["started_at"] for run in shared_runs)


def frame(count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(count)]})


@pytest.mark.parametrize("shown, total, offset, text", [
    (50, 12_345, 50, "51-100 of 12,345 runs"),
    (25, 12_345, 0, "1-25 of 12,345 runs"),
    (20, 12_345, 12_325, "12,326-12,345 of 12,345 runs"),
    (0, 0, 0, "0 of 0 runs"),
    (1, 1, 0, "1-1 of 1 run"),
    (0, 1, 25, "0 of 1 run"),
    (2, 2, 0, "1-2 of 2 runs"),
    (7, 1_234_567, 1_234_560, "1,234,561-1,234,567 of 1,234,567 runs"),
])
def test_position_text_says_which_runs_of_how_many(shown, total, offset, text):
    page = RunsPage(frame(shown), total, offset, 50, has_next=False)
    assert page.position_text() == text


def test_position_text_of_real_pages(shared_con, shared_runs):
    total = len(matching(shared_runs, RunFilter()))
    second = list_runs(shared_con, RunFilter(), 50, 50)
    assert second.position_text() == f"51-100 of {total:,} runs"
    last_offset = (total - 1) // 50 * 50
    last = list_runs(shared_con, RunFilter(), 50, last_offset)
    assert last.position_text() == f"{last_offset + 1:,}-{total:,} of {total:,} runs"
    one = matching(shared_runs, RunFilter())[0]["id"]
    only = list_runs(shared_con, RunFilter(search=one), 25)
    assert only.position_text() == "1-1 of 1 run" and only.page_count == 1


@pytest.mark.parametrize("page, per_page, offset", [(1, 25, 0), (2, 25, 25), (3, 100, 200),
                                                   (0, 25, 0), (-4, 10, 0)])
def test_page_offset(page, per_page, offset):
    assert page_offset(page, per_page) == offset


@pytest.mark.parametrize("total, per_page, pages", [(0, 25, 1), (1, 25, 1), (25, 25, 1),
                                                    (26, 25, 2), (12_345, 50, 247),
                                                    (12_345, 100, 124)])
def test_page_count_is_at_least_one(total, per_page, pages):
    assert page_count(total, per_page) == pages


def test_the_page_sizes_are_the_engines():
    assert PAGE_SIZES == (10, 25, 50, 100) and DEFAULT_PAGE_SIZE in PAGE_SIZES


# ------------------------------------------------------------------ archiving

def unarchived_ids(db, count: int) -> list[str]:
    return [found[0] for found in rows(
        db, "SELECT id FROM runs WHERE archived_at IS NULL ORDER BY id LIMIT ?", [count])]


def archived_times(db, run_ids) -> dict:
    return dict(rows(db, "SELECT id, archived_at FROM runs WHERE id IN "
                         "(SELECT unnest(?::VARCHAR[]))", [list(run_ids)]))


def test_archiving_hides_runs_and_counts_only_the_ones_that_changed(db_copy):
    chosen = unarchived_ids(db_copy, 3)
    already = rows(db_copy, "SELECT id FROM runs WHERE archived_at IS NOT NULL LIMIT 1")[0][0]
    visible = len([r for r in load_runs(db_copy) if r["archived_at"] is None])
    with open_db(db_copy) as con:
        before = generation(con)
        assert set_archived(con, chosen + [already, "no-such-run"], True) == 3
        assert generation(con) == before + 1
        assert count_runs(con, RunFilter()) == visible - 3
    assert all(archived_times(db_copy, chosen).values())


def test_archiving_twice_changes_nothing_the_second_time(db_copy):
    chosen = unarchived_ids(db_copy, 2)
    with open_db(db_copy) as con:
        assert set_archived(con, chosen, True) == 2
    first_times = archived_times(db_copy, chosen)
    with open_db(db_copy) as con:
        assert set_archived(con, chosen, True) == 0
    assert archived_times(db_copy, chosen) == first_times


def test_unarchiving_restores_the_runs_and_the_counts(db_copy):
    chosen = unarchived_ids(db_copy, 4)
    with open_db(db_copy) as con:
        counts = [count_runs(con, f) for f in COUNTED]
        set_archived(con, chosen, True)
        assert set_archived(con, chosen[:3], False) == 3
        assert set_archived(con, chosen[:3], False) == 0
        assert set_archived(con, chosen[3:], False) == 1
        assert [count_runs(con, f) for f in COUNTED] == counts
    assert set(archived_times(db_copy, chosen).values()) == {None}


def test_archiving_nothing_does_nothing(db_copy):
    with open_db(db_copy) as con:
        before = generation(con)
        assert set_archived(con, [], True) == 0 and set_archived(con, [], False) == 0
        assert generation(con) == before


def test_the_archive_time_is_utc_whatever_the_servers_timezone(db_copy):
    """The store keeps naive UTC times; a server in Tokyo must not write Tokyo wall time."""
    chosen = unarchived_ids(db_copy, 1)
    with open_db(db_copy) as con:
        con.execute("SET TimeZone = 'Asia/Tokyo'")
        before = datetime.now(timezone.utc).replace(tzinfo=None)
        set_archived(con, chosen, True)
        after = datetime.now(timezone.utc).replace(tzinfo=None)
    stamp = archived_times(db_copy, chosen)[chosen[0]]
    assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)


# ------------------------------------------------------------------ stuck runs

STUCK_NOW = datetime(2026, 11, 2, 12, 0)


def stuck_records() -> list[dict]:
    def running(run_id, created, flow="Daily digest", **fields):
        return simple_run(run_id, created=created, status="RUNNING", flow=flow, finishTime=None,
                          **fields)

    return [
        running("stuck-days", "2026-10-28T09:00:00Z"),
        running("stuck-2h", "2026-11-02T10:00:00Z", flow="Other flow"),
        running("stuck-just", "2026-11-02T10:59:59Z"),
        running("exactly-1h", "2026-11-02T11:00:00Z"),  # not *over* an hour yet
        running("fresh", "2026-11-02T11:45:00Z"),
        running("stuck-archived", "2026-11-01T09:00:00Z", archivedAt="2026-11-01T10:00:00Z"),
        simple_run("paused-old", created="2026-10-30T09:00:00Z", status="PAUSED",
                   finishTime=None),
        simple_run("failed-old", created="2026-10-30T09:00:00Z", status="FAILED"),
    ]


@pytest.fixture(scope="module")
def stuck_db(tmp_path_factory):
    return store_with(tmp_path_factory.mktemp("stuck") / "runs.duckdb", stuck_records(), "stuck")


STUCK = {"stuck-days", "stuck-2h", "stuck-just"}
RECENT = {"exactly-1h", "fresh"}  # stuck too when "stuck" means over 10 minutes


@pytest.mark.parametrize("run_filter, expected, after_ten_minutes", [
    (RunFilter(), STUCK, STUCK | RECENT),
    (RunFilter(include_archived=True), STUCK | {"stuck-archived"},
     STUCK | RECENT | {"stuck-archived"}),
    (RunFilter(flows=("Other flow",)), {"stuck-2h"}, {"stuck-2h"}),
    (RunFilter(since=datetime(2026, 11, 1)), {"stuck-2h", "stuck-just"},
     {"stuck-2h", "stuck-just"} | RECENT),
    # The note is about RUNNING runs whatever statuses the view shows.
    (RunFilter(statuses=("FAILED",)), STUCK, STUCK | RECENT),
    (RunFilter(search="stuck-d"), {"stuck-days"}, {"stuck-days"}),
])
def test_count_stuck_running_counts_running_runs_older_than_an_hour(
        stuck_db, run_filter, expected, after_ten_minutes):
    with open_db(stuck_db, read_only=True) as con:
        assert count_stuck_running(con, run_filter, STUCK_NOW) == len(expected)
        assert count_stuck_running(con, run_filter, STUCK_NOW,
                                   after=timedelta(minutes=10)) == len(after_ten_minutes)


def test_count_stuck_running_on_the_generated_runs(shared_con, shared_runs):
    now = max(run["started_at"] for run in shared_runs)
    expected = [r for r in shared_runs if r["status"] == "RUNNING" and r["archived_at"] is None
                and r["started_at"] < now - timedelta(hours=1)]
    assert count_stuck_running(shared_con, RunFilter(), now) == len(expected)


# ------------------------------------------------------------------ small helpers

@pytest.mark.parametrize("display, name, shown", [
    ("Send Message To A Channel", "step_3", "Send Message To A Channel"),
    (None, "step_3", "step_3"),
    ("", "step_3", "step_3"),
    ("   ", "step_3", "step_3"),
    (float("nan"), "step_3", "step_3"),
    (pd.NA, "step_3", "step_3"),
    (None, None, "-"),
    ("", "", "-"),
    (float("nan"), float("nan"), "-"),
])
def test_failed_step_label_prefers_the_display_name_then_the_name_then_a_dash(display, name,
                                                                               shown):
    assert failed_step_label(display, name) == shown


def test_flow_names_are_every_flow_once_sorted(shared_con, shared_runs):
    expected = sorted({run["flow_name"] for run in shared_runs})
    assert flow_names(shared_con) == expected and len(expected) > 5


def test_flow_names_include_flows_whose_runs_are_all_archived(tmp_path):
    db = tmp_path / "runs.duckdb"
    records = [simple_run("a1", flow="Kept"),
               simple_run("b1", flow="Gone", archivedAt="2026-11-04T00:00:00Z")]
    with open_db(db) as con:
        ingest_items(con, records_as_items(records), "flows")
        assert flow_names(con) == ["Gone", "Kept"]


def test_an_empty_store_lists_nothing(empty_db):
    with open_db(empty_db, read_only=True) as con:
        page = list_runs(con, RunFilter(), 25)
        assert page.rows.empty and page.total == 0 and not page.has_next
        assert page.position_text() == "0 of 0 runs" and page.page_count == 1
        assert flow_names(con) == [] and newest_start(con) is None and total_runs(con) == 0
