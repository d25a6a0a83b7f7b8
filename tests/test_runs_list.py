"""The runs list: paging walks every run exactly once in (started_at desc, id desc) order, also
when many runs start at the same instant, whether it follows keys from page to page or opens each
page by its number (near an end, or through the day counts far from both); counts, the position
text, archiving, stuck runs and the small helpers. Expected values come from the Python model in
list_oracle and from a direct SQL query of the fully sorted list."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from backends import BACKENDS, chdb_beside, opened
from factories import rows, simple_run, store_with
from list_oracle import ids, load_runs, matching
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.queries.filters import (
    DEFAULT_PAGE_SIZE,
    ORDER_BY,
    PAGE_SIZES,
    RunFilter,
    RunKey,
    build_where,
)
from runs_store.queries.named_params import named
from runs_store.services import runs_list
from runs_store.services.runs_list import (
    DayCounts,
    RunsPage,
    count_days,
    count_runs,
    count_stuck_running,
    failed_step_label,
    flow_names,
    key_at,
    list_runs,
    newest_start,
    next_page,
    page_count,
    page_offset,
    set_archived,
    total_runs,
)
from runs_store.store import backend
from runs_store.store.backend import latest, open_location
from runs_store.store.clickhouse import schema as clickhouse_schema
from runs_store.store.database import generation, open_db


@pytest.fixture
def shared_con(store_con):
    """The shared sample store on each backend (DuckDB's read-only)."""
    return store_con


@pytest.fixture(scope="module")
def chdb_copies():
    """The chdb copy of each database file this module reads on ClickHouse, made once."""
    return {}


@pytest.fixture(scope="module")
def shared_runs(shared_db):
    return load_runs(shared_db)


def walk(con, run_filter: RunFilter, per_page: int) -> list[RunsPage]:
    """Every page of the list by page number, as deep links open them, following has_next."""
    pages, offset = [], 0
    while True:
        page = list_runs(con, run_filter, per_page, offset)
        pages.append(page)
        if not page.has_next:
            return pages
        offset += per_page
        assert len(pages) < 10_000, "has_next never became False"


def walk_by_key(con, run_filter: RunFilter, per_page: int) -> list[RunsPage]:
    """Every page of the list from the first, each one starting at the key the one before gave."""
    pages = [list_runs(con, run_filter, per_page)]
    while pages[-1].has_next:
        pages.append(next_page(con, run_filter, pages[-1]))
        assert len(pages) < 10_000, "has_next never became False"
    return pages


def walk_by_number(con, run_filter: RunFilter, per_page: int, days: bool) -> list[RunsPage]:
    """Every page opened by its number alone, in the order 1, last, 2, last-1, ... (so each is
    found from scratch, the far ones from the other end), returned in list order."""
    total = count_runs(con, run_filter)
    counts = count_days(con, run_filter) if days else None
    numbers = range(1, page_count(total, per_page) + 1)
    ends = zip(numbers, reversed(numbers), strict=True)
    zigzag = [n for pair in ends for n in pair][: len(numbers)]
    found = {
        n: list_runs(con, run_filter, per_page, page_offset(n, per_page), total, counts)
        for n in zigzag
    }
    return [found[n] for n in numbers]


def walked_ids(pages: list[RunsPage]) -> list[str]:
    return [run_id for page in pages for run_id in page.rows["id"]]


def sorted_by_sql(con, run_filter: RunFilter) -> list[tuple]:
    """The whole list as one direct query sorts it: (started_at, id) of every run, in order."""
    where, params = named(*build_where(run_filter), "p")
    sql = f"SELECT started_at, id FROM {latest(con, 'runs')} {where} {ORDER_BY}"
    return [tuple(found) for found in backend.rows(con, sql, params)]


@pytest.fixture(params=["near the ends", "through the day counts"])
def seek_by(request, monkeypatch):
    """Runs a test twice: pages found by skipping keys from the nearer end of the list, and, with
    no position counting as near an end, inside the day that the day counts point at."""
    if request.param == "through the day counts":
        monkeypatch.setattr(runs_list, "NEAR_END", -1)
    return request.param


def assert_walk(pages: list[RunsPage], expected: list[str], per_page: int) -> None:
    got = walked_ids(pages)
    assert len(got) == len(set(got)), "a run came twice"
    assert got == expected, "a run was skipped or the order differs"
    assert len(pages) == max(1, math.ceil(len(expected) / per_page))
    assert all(len(page.rows) == per_page and page.has_next for page in pages[:-1])
    assert not pages[-1].has_next and pages[-1].next_key is None
    assert [page.offset for page in pages] == [n * per_page for n in range(len(pages))]
    assert all(page.total == len(expected) for page in pages)


# ------------------------------------------------------------------ paging the generated runs

WALKS = [
    (RunFilter(), 25),
    (RunFilter(), 100),
    (RunFilter(include_archived=True), 33),
    (RunFilter(include_archived=True), 50),
    (RunFilter(statuses=("FAILED",)), 7),
    (RunFilter(search="step"), 10),
]


@pytest.mark.parametrize("run_filter, per_page", WALKS)
def test_walking_every_page_gives_the_python_sorted_list_exactly_once(
    shared_con, shared_runs, run_filter, per_page
):
    expected = ids(matching(shared_runs, run_filter))
    assert_walk(walk(shared_con, run_filter, per_page), expected, per_page)


@pytest.mark.parametrize("run_filter, per_page", WALKS)
def test_following_keys_page_to_page_gives_the_sql_sorted_list_exactly_once(
    shared_con, shared_runs, run_filter, per_page
):
    everything = sorted_by_sql(shared_con, run_filter)
    expected = [run_id for _started, run_id in everything]
    assert expected == ids(matching(shared_runs, run_filter))
    pages = walk_by_key(shared_con, run_filter, per_page)
    assert_walk(pages, expected, per_page)
    assert [page.next_key for page in pages[:-1]] == [
        RunKey(*everything[n * per_page]) for n in range(1, len(pages))
    ]


@pytest.mark.parametrize("run_filter, per_page", WALKS[:3] + WALKS[4:5])
@pytest.mark.parametrize("days", [False, True], ids=["counted per call", "day counts given"])
def test_opening_every_page_by_its_number_gives_the_sql_sorted_list(
    shared_con, seek_by, run_filter, per_page, days
):
    expected = [run_id for _started, run_id in sorted_by_sql(shared_con, run_filter)]
    assert_walk(walk_by_number(shared_con, run_filter, per_page, days), expected, per_page)


@pytest.mark.parametrize(
    "run_filter",
    [RunFilter(), RunFilter(include_archived=True), RunFilter(statuses=("FAILED", "TIMEOUT"))],
)
def test_the_key_at_every_position_is_the_sorted_lists(shared_con, seek_by, run_filter):
    everything = sorted_by_sql(shared_con, run_filter)
    total, days = len(everything), count_days(shared_con, run_filter)
    positions = sorted(
        {0, 1, 2, total // 3, total // 2, total - 3, total - 2, total - 1}
        | set(range(0, total, 97))
    )
    for position in positions:
        assert key_at(shared_con, run_filter, position, total, days) == RunKey(
            *everything[position]
        ), position
    assert key_at(shared_con, run_filter, total, total, days) is None
    assert key_at(shared_con, run_filter, -1, total, days) is None


def test_the_day_counts_add_up_to_the_count_and_follow_the_days(shared_con, shared_runs):
    for run_filter in (RunFilter(), RunFilter(statuses=("FAILED",)), RunFilter(search="zzz9")):
        counts = count_days(shared_con, run_filter)
        kept = matching(shared_runs, run_filter)
        assert counts.total == count_runs(shared_con, run_filter) == len(kept)
        per_day: dict = {}
        for run in kept:
            per_day[run["started_at"].date()] = per_day.get(run["started_at"].date(), 0) + 1
        assert counts.days == tuple(sorted(per_day.items(), reverse=True))


D1, D2, D3 = (datetime(2026, 11, day).date() for day in (3, 2, 1))


@pytest.mark.parametrize(
    "position, found",
    [
        (0, (D1, 0, 2)),
        (1, (D1, 1, 2)),  # the newest day holds positions 0-1
        (2, (D2, 0, 3)),
        (4, (D2, 2, 3)),  # then three runs on the day before
        (5, (D3, 0, 1)),  # and the last run alone
    ],
)
def test_day_counts_locate_a_position_in_its_day(position, found):
    assert DayCounts(((D1, 2), (D2, 3), (D3, 1))).locate(position) == found


@pytest.mark.parametrize("position", [-1, 6, 100])
def test_day_counts_refuse_a_position_outside_the_list(position):
    with pytest.raises(IndexError):
        DayCounts(((D1, 2), (D2, 3), (D3, 1))).locate(position)


def test_empty_day_counts_total_nothing():
    assert DayCounts().total == 0


def test_a_page_holds_the_list_columns_and_at_most_its_limit(shared_con, shared_runs):
    page = list_runs(shared_con, RunFilter(), 25, 25)
    assert list(page.rows.columns) == [
        "id",
        "flow_name",
        "status",
        "started_at",
        "duration_ms",
        "failed_step",
        "failed_step_display",
        "error_message",
        "archived_at",
        "finish_time",
    ]
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
    before_last = list_runs(shared_con, RunFilter(include_archived=True), 10, len(everything) - 11)
    assert before_last.has_next


def test_a_given_total_is_used_as_is(shared_con):
    page = list_runs(shared_con, RunFilter(), 10, 0, total=123_456)
    assert page.total == 123_456 and page.position_text() == "1-10 of 123,456 runs"


# ------------------------------------------------------------------ many runs, one start time

TIE_TIMES = ["2026-11-02T10:00:00.000Z", "2026-11-02T10:00:00.001Z", "2026-11-02T09:59:59.999Z"]
# Ids that sort differently by case, by length and by digits, to catch any order but id DESC.
TIE_IDS = [
    f"{prefix}{number}"
    for prefix in ("a", "A", "b", "run-", "Z", "z")
    for number in (1, 2, 10, 11, 100)
]


def tie_records() -> list[dict]:
    records = []
    for index, run_id in enumerate(TIE_IDS):
        for when_index, created in enumerate(TIE_TIMES):
            status = ("SUCCEEDED", "FAILED", "RUNNING")[(index + when_index) % 3]
            records.append(
                simple_run(
                    f"{run_id}-t{when_index}",
                    created=created,
                    status=status,
                    flow=("Tie flow", "Other flow")[index % 2],
                    finishTime=None if status == "RUNNING" else created,
                )
            )
    records.append(simple_run("lonely", created="2026-11-02T08:00:00Z"))
    return records


@pytest.fixture(scope="module")
def ties_db(tmp_path_factory):
    return store_with(tmp_path_factory.mktemp("ties") / "runs.duckdb", tie_records(), "ties")


@pytest.fixture(scope="module")
def ties_runs(ties_db):
    return load_runs(ties_db)


@pytest.fixture(params=BACKENDS)
def ties_con(request, ties_db, ties_runs, chdb_copies):
    """The tie database on each backend (its runs read for the oracle first: DuckDB opens a
    file once per process with one configuration)."""
    with opened(request.param, ties_db, request, chdb_copies) as con:
        yield con


def test_the_tie_database_really_has_many_runs_at_one_instant(ties_db):
    counts = rows(ties_db, "SELECT count(*) FROM runs GROUP BY started_at ORDER BY 1 DESC")
    assert [count for (count,) in counts] == [len(TIE_IDS)] * 3 + [1]


TIE_PAGE_SIZES = [1, 3, 4, 7, 10, 25, 30, 100]


def test_the_tie_page_sizes_put_page_boundaries_inside_a_tie(ties_db):
    """Otherwise the walks below could pass with a seek that skips or repeats tied runs."""
    with open_db(ties_db, read_only=True) as con:
        starts = [started for started, _id in sorted_by_sql(con, RunFilter())]
    split = [
        size
        for size in TIE_PAGE_SIZES
        if any(starts[n - 1] == starts[n] for n in range(size, len(starts), size))
    ]
    assert split == [1, 3, 4, 7, 10, 25]


@pytest.mark.parametrize("per_page", TIE_PAGE_SIZES)
def test_paging_through_runs_with_the_same_start_never_skips_or_repeats(
    ties_runs, ties_con, per_page
):
    runs = ties_runs
    expected = ids(matching(runs, RunFilter()))
    got = walked_ids(walk(ties_con, RunFilter(), per_page))
    assert got == expected and len(set(got)) == len(runs)


@pytest.mark.parametrize("per_page", TIE_PAGE_SIZES)
def test_every_walk_through_runs_with_the_same_start_gives_the_sql_sorted_list(
    ties_runs, ties_con, seek_by, per_page
):
    con = ties_con
    expected = [run_id for _started, run_id in sorted_by_sql(con, RunFilter())]
    walks = {
        "by key": walk_by_key(con, RunFilter(), per_page),
        "by number": walk_by_number(con, RunFilter(), per_page, days=False),
        "by number, day counts given": walk_by_number(con, RunFilter(), per_page, days=True),
    }
    assert expected == ids(matching(ties_runs, RunFilter()))
    for name, pages in walks.items():
        assert walked_ids(pages) == expected, name
        assert_walk(pages, expected, per_page)


def test_ties_break_by_id_descending_in_byte_order(ties_con):
    first = list(list_runs(ties_con, RunFilter(), len(TIE_IDS)).rows["id"])
    newest = [f"{run_id}-t1" for run_id in TIE_IDS]  # .001Z is the latest instant
    assert first == sorted(newest, reverse=True)
    assert first[:3] == ["z2-t1", "z11-t1", "z100-t1"]


@pytest.mark.parametrize(
    "run_filter",
    [RunFilter(statuses=("FAILED",)), RunFilter(flows=("Tie flow",)), RunFilter(search="-t2")],
)
def test_filtered_paging_through_ties_matches_python(ties_runs, ties_con, seek_by, run_filter):
    expected = ids(matching(ties_runs, run_filter))
    con = ties_con
    assert walked_ids(walk(con, run_filter, 4)) == expected and expected
    assert walked_ids(walk_by_key(con, run_filter, 4)) == expected
    assert walked_ids(walk_by_number(con, run_filter, 4, days=True)) == expected


# ------------------------------------------------------------------ counts and positions

COUNTED = [
    RunFilter(),
    RunFilter(include_archived=True),
    RunFilter(statuses=("QUOTA_EXCEEDED",)),
    RunFilter(flows=("Weekly churn report", "Onboard new employee")),
    RunFilter(search="rate limit"),
    RunFilter(search="nothing like this at all"),
]


@pytest.mark.parametrize("run_filter", COUNTED)
def test_count_runs_equals_the_python_count(shared_con, shared_runs, run_filter):
    assert count_runs(shared_con, run_filter) == len(matching(shared_runs, run_filter))


def test_total_runs_and_newest_start(shared_con, shared_runs):
    assert total_runs(shared_con) == len(shared_runs)
    assert newest_start(shared_con) == max(run["started_at"] for run in shared_runs)


def frame(count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(count)]})


@pytest.mark.parametrize(
    "shown, total, offset, text",
    [
        (50, 12_345, 50, "51-100 of 12,345 runs"),
        (25, 12_345, 0, "1-25 of 12,345 runs"),
        (20, 12_345, 12_325, "12,326-12,345 of 12,345 runs"),
        (0, 0, 0, "0 of 0 runs"),
        (1, 1, 0, "1-1 of 1 run"),
        (0, 1, 25, "0 of 1 run"),
        (2, 2, 0, "1-2 of 2 runs"),
        (7, 1_234_567, 1_234_560, "1,234,561-1,234,567 of 1,234,567 runs"),
    ],
)
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


@pytest.mark.parametrize(
    "page, per_page, offset", [(1, 25, 0), (2, 25, 25), (3, 100, 200), (0, 25, 0), (-4, 10, 0)]
)
def test_page_offset(page, per_page, offset):
    assert page_offset(page, per_page) == offset


@pytest.mark.parametrize(
    "total, per_page, pages",
    [(0, 25, 1), (1, 25, 1), (25, 25, 1), (26, 25, 2), (12_345, 50, 247), (12_345, 100, 124)],
)
def test_page_count_is_at_least_one(total, per_page, pages):
    assert page_count(total, per_page) == pages


def test_the_page_sizes_are_the_engines():
    assert PAGE_SIZES == (10, 25, 50, 100) and DEFAULT_PAGE_SIZE in PAGE_SIZES


# ------------------------------------------------------------------ archiving


@pytest.fixture(params=BACKENDS)
def archive_con(request, db_copy):
    """A store of the test's own (a copy of the shared one) on each backend, to archive in."""
    with opened(request.param, db_copy, request, read_only=False) as con:
        yield con


def unarchived_ids(con, count: int) -> list[str]:
    sql = f"SELECT id FROM {latest(con, 'runs')} WHERE archived_at IS NULL ORDER BY id LIMIT $n"
    return [found[0] for found in backend.rows(con, sql, {"n": count})]


def archived_times(con, run_ids) -> dict:
    wanted = set(run_ids)
    found = backend.rows(con, f"SELECT id, archived_at FROM {latest(con, 'runs')}")
    return {run_id: archived_at for run_id, archived_at in found if run_id in wanted}


def store_generation(con) -> int:
    if backend.dialect(con) == backend.CLICKHOUSE:
        return clickhouse_schema.generation(con)
    return generation(con)


def test_archiving_hides_runs_and_counts_only_the_ones_that_changed(archive_con):
    con = archive_con
    chosen = unarchived_ids(con, 3)
    states = backend.rows(con, f"SELECT id, archived_at FROM {latest(con, 'runs')}")
    already = next(run_id for run_id, archived_at in states if archived_at is not None)
    visible = sum(1 for _id, archived_at in states if archived_at is None)
    before = store_generation(con)
    assert set_archived(con, [*chosen, already, "no-such-run"], True) == 3
    assert store_generation(con) == before + 1
    assert count_runs(con, RunFilter()) == visible - 3
    assert all(archived_times(con, chosen).values())
    assert total_runs(con) == len(states)  # archived, not copied: each run is still one run


def test_archiving_twice_changes_nothing_the_second_time(archive_con):
    con = archive_con
    chosen = unarchived_ids(con, 2)
    assert set_archived(con, chosen, True) == 2
    first_times = archived_times(con, chosen)
    assert set_archived(con, chosen, True) == 0
    assert archived_times(con, chosen) == first_times


def test_unarchiving_restores_the_runs_and_the_counts(archive_con):
    con = archive_con
    chosen = unarchived_ids(con, 4)
    counts = [count_runs(con, f) for f in COUNTED]
    set_archived(con, chosen, True)
    assert set_archived(con, chosen[:3], False) == 3
    assert set_archived(con, chosen[:3], False) == 0
    assert set_archived(con, chosen[3:], False) == 1
    assert [count_runs(con, f) for f in COUNTED] == counts
    assert set(archived_times(con, chosen).values()) == {None}


def test_archiving_nothing_does_nothing(archive_con):
    con = archive_con
    before = store_generation(con)
    assert set_archived(con, [], True) == 0 and set_archived(con, [], False) == 0
    assert store_generation(con) == before


def test_the_archive_time_is_utc_whatever_the_servers_timezone(archive_con):
    """The store keeps naive UTC times; a server in Tokyo must not write Tokyo wall time."""
    con = archive_con
    chosen = unarchived_ids(con, 1)
    if backend.dialect(con) == backend.CLICKHOUSE:
        con.set_setting("session_timezone", "Asia/Tokyo")
    else:
        con.execute("SET TimeZone = 'Asia/Tokyo'")
    before = datetime.now(UTC).replace(tzinfo=None)
    set_archived(con, chosen, True)
    after = datetime.now(UTC).replace(tzinfo=None)
    stamp = archived_times(con, chosen)[chosen[0]]
    assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)


def test_on_clickhouse_an_archive_outlives_the_merge_of_the_run_s_versions(request, shared_db):
    """The archive is the run written again with the same version: once ClickHouse merges the
    parts (OPTIMIZE FINAL), the run is still one run, archived, with its steps; a restore
    likewise."""
    from runs_store.services.run_detail import load_run

    location = chdb_beside(request.getfixturevalue("shared_chdb"), shared_db)
    with open_location(location) as con:
        chosen = unarchived_ids(con, 2)
        steps = {run_id: len(load_run(con, run_id, mask=False).steps) for run_id in chosen}
        assert set_archived(con, chosen, True) == 2
        assert set_archived(con, chosen[1:], False) == 1
        con.command("OPTIMIZE TABLE runs FINAL")
        raw = backend.rows(
            con, "SELECT id, archived_at FROM runs WHERE id IN $ids ORDER BY id", {"ids": chosen}
        )  # without FINAL: what is on disk after the merge
        assert [run_id for run_id, _ in raw] == sorted(chosen)
        times = archived_times(con, chosen)
        assert times[chosen[0]] is not None and times[chosen[1]] is None
        assert {run_id: len(load_run(con, run_id, mask=False).steps) for run_id in chosen} == steps


# ------------------------------------------------------------------ stuck runs

STUCK_NOW = datetime(2026, 11, 2, 12, 0)


def stuck_records() -> list[dict]:
    def running(run_id, created, flow="Daily digest", **fields):
        return simple_run(
            run_id, created=created, status="RUNNING", flow=flow, finishTime=None, **fields
        )

    return [
        running("stuck-days", "2026-10-28T09:00:00Z"),
        running("stuck-2h", "2026-11-02T10:00:00Z", flow="Other flow"),
        running("stuck-just", "2026-11-02T10:59:59Z"),
        running("exactly-1h", "2026-11-02T11:00:00Z"),  # not *over* an hour yet
        running("fresh", "2026-11-02T11:45:00Z"),
        running("stuck-archived", "2026-11-01T09:00:00Z", archivedAt="2026-11-01T10:00:00Z"),
        simple_run("paused-old", created="2026-10-30T09:00:00Z", status="PAUSED", finishTime=None),
        simple_run("failed-old", created="2026-10-30T09:00:00Z", status="FAILED"),
    ]


@pytest.fixture(scope="module")
def stuck_db(tmp_path_factory):
    return store_with(tmp_path_factory.mktemp("stuck") / "runs.duckdb", stuck_records(), "stuck")


@pytest.fixture(params=BACKENDS)
def stuck_con(request, stuck_db, chdb_copies):
    with opened(request.param, stuck_db, request, chdb_copies) as con:
        yield con


STUCK = {"stuck-days", "stuck-2h", "stuck-just"}
RECENT = {"exactly-1h", "fresh"}  # stuck too when "stuck" means over 10 minutes


@pytest.mark.parametrize(
    "run_filter, expected, after_ten_minutes",
    [
        (RunFilter(), STUCK, STUCK | RECENT),
        (
            RunFilter(include_archived=True),
            STUCK | {"stuck-archived"},
            STUCK | RECENT | {"stuck-archived"},
        ),
        (RunFilter(flows=("Other flow",)), {"stuck-2h"}, {"stuck-2h"}),
        (
            RunFilter(since=datetime(2026, 11, 1)),
            {"stuck-2h", "stuck-just"},
            {"stuck-2h", "stuck-just"} | RECENT,
        ),
        # The note is about RUNNING runs whatever statuses the view shows.
        (RunFilter(statuses=("FAILED",)), STUCK, STUCK | RECENT),
        (RunFilter(search="stuck-d"), {"stuck-days"}, {"stuck-days"}),
    ],
)
def test_count_stuck_running_counts_running_runs_older_than_an_hour(
    stuck_con, run_filter, expected, after_ten_minutes
):
    con = stuck_con
    assert count_stuck_running(con, run_filter, STUCK_NOW) == len(expected)
    assert count_stuck_running(con, run_filter, STUCK_NOW, after=timedelta(minutes=10)) == len(
        after_ten_minutes
    )


def test_count_stuck_running_on_the_generated_runs(shared_con, shared_runs):
    now = max(run["started_at"] for run in shared_runs)
    expected = [
        r
        for r in shared_runs
        if r["status"] == "RUNNING"
        and r["archived_at"] is None
        and r["started_at"] < now - timedelta(hours=1)
    ]
    assert count_stuck_running(shared_con, RunFilter(), now) == len(expected)


# ------------------------------------------------------------------ small helpers


@pytest.mark.parametrize(
    "display, name, shown",
    [
        ("Send Message To A Channel", "step_3", "Send Message To A Channel"),
        (None, "step_3", "step_3"),
        ("", "step_3", "step_3"),
        ("   ", "step_3", "step_3"),
        (float("nan"), "step_3", "step_3"),
        (pd.NA, "step_3", "step_3"),
        (None, None, "-"),
        ("", "", "-"),
        (float("nan"), float("nan"), "-"),
    ],
)
def test_failed_step_label_prefers_the_display_name_then_the_name_then_a_dash(display, name, shown):
    assert failed_step_label(display, name) == shown


def test_flow_names_are_every_flow_once_sorted(shared_con, shared_runs):
    expected = sorted({run["flow_name"] for run in shared_runs})
    assert flow_names(shared_con) == expected and len(expected) > 5


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_flow_names_include_flows_whose_runs_are_all_archived(request, tmp_path, backend_name):
    db = tmp_path / "runs.duckdb"
    records = [
        simple_run("a1", flow="Kept"),
        simple_run("b1", flow="Gone", archivedAt="2026-11-04T00:00:00Z"),
    ]
    with open_db(db) as con:
        ingest_items(con, records_as_items(records), "flows")
    with opened(backend_name, db, request) as con:
        assert flow_names(con) == ["Gone", "Kept"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_an_empty_store_lists_nothing(request, empty_db, backend_name):
    with opened(backend_name, empty_db, request) as con:
        page = list_runs(con, RunFilter(), 25)
        assert page.rows.empty and page.total == 0 and not page.has_next
        assert page.position_text() == "0 of 0 runs" and page.page_count == 1
        assert flow_names(con) == [] and newest_start(con) is None and total_runs(con) == 0
