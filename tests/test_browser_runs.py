"""The Runs page in a real browser: the engine's five columns, paging, a status filter kept in the
URL, opening a run in the same tab and coming back to the same view.

Every expected number is counted in the served database file itself (read-only, between two script
runs: the app holds the file only while it draws), never hard-coded.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from conftest import wait_for_app
from runs_store.store.database import open_db

ROW_HEIGHT = 35
SELECT_COLUMN = 34  # the row-selection checkboxes, drawn left of the pinned Open column
OPEN_COLUMN = 60  # its width (pages/runs.py: ButtonColumn(width=60))
FLOW_COLUMN, STATUS_COLUMN, STARTED_COLUMN = 2, 3, 4  # cells count from 1 (Open), as the DOM does
PAGE_SIZE = 25
DEFAULT_WINDOW = timedelta(days=7)  # "Last 7 days", the Date range the page opens with
LABELS = {
    "SUCCEEDED": "Succeeded",
    "RUNNING": "Running",
    "PAUSED": "Paused",
    "FAILED": "Failed",
    "CANCELED": "Canceled",
    "QUOTA_EXCEEDED": "Quota Exceeded",
    "TIMEOUT": "Timeout",
    "QUEUED": "Queued",
    "INTERNAL_ERROR": "Internal Error",
    "MEMORY_LIMIT_EXCEEDED": "Memory Limit Exceeded",
    "LOG_SIZE_EXCEEDED": "Log Size Exceeded",
}
POSITION = re.compile(r"^(\d[\d,]*)-(\d[\d,]*) of (\d[\d,]*) runs?$")
ENGINE_COLUMNS = ["Flow", "Status", "Started At", "Duration", "Failed Step"]


# ------------------------------------------------------------------ the served database


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def db_rows(db, sql: str, params: list | None = None) -> list[tuple]:
    """Reads the server's own database file read-only (waits if the app is drawing)."""
    with open_db(db, read_only=True, wait_seconds=15) as con:
        return con.execute(sql, params or []).fetchall()


def windows(first: datetime, last: datetime):
    """The starts of the default window the page may have used between two moments: it rounds
    "now" down to the minute, so a test that spans a minute boundary can see either."""
    minute = first.replace(second=0, microsecond=0)
    while minute <= last:
        yield minute - DEFAULT_WINDOW
        minute += timedelta(minutes=1)


def expected_totals(db, first: datetime, last: datetime, status: str | None = None) -> set[int]:
    where = "archived_at IS NULL AND started_at >= ?" + (" AND status = ?" if status else "")
    return {
        db_rows(
            db, f"SELECT count(*) FROM runs WHERE {where}", [since] + ([status] if status else [])
        )[0][0]
        for since in windows(first, last)
    }


def expected_page(
    db, since: datetime, offset: int, status: str | None = None
) -> list[tuple[str, tuple[str, str, datetime]]]:
    """One page of (id, (flow, status label, start to the second)), newest first, ties by id."""
    where = "archived_at IS NULL AND started_at >= ?" + (" AND status = ?" if status else "")
    found = db_rows(
        db,
        f"SELECT id, flow_name, status, date_trunc('second', started_at) FROM runs "
        f"WHERE {where} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
        [since] + ([status] if status else []) + [PAGE_SIZE, offset],
    )
    return [(run_id, (flow, LABELS[name], started)) for run_id, flow, name, started in found]


# ------------------------------------------------------------------ the page


def open_runs_page(page, server_url: str) -> None:
    page.goto(f"{server_url}/")
    wait_for_app(page)


def position_text(page, first_row: int, other_than: str | None = None) -> str:
    """Waits for the position text that starts at `first_row` ("26-50 of 1,234 runs") and, after
    a change of view, differs from the one shown before it."""
    pattern = re.compile(rf"^{first_row:,}-\d[\d,]* of \d[\d,]* runs?$")
    shown = page.get_by_text(pattern).first
    shown.wait_for()
    if other_than is not None:
        expect(shown).not_to_have_text(other_than, timeout=30_000)
    wait_for_app(page)
    return shown.text_content().strip()


def total_of(text: str) -> int:
    match = POSITION.match(text)
    assert match, f"not a position text: {text!r}"
    return int(match.group(3).replace(",", ""))


def cell(page, column: int, row: int):
    found = page.locator(f"[data-testid='stDataFrame'] td[data-testid='glide-cell-{column}-{row}']")
    found.wait_for(state="attached")
    return found


def row_shown(page, row: int) -> tuple[str, str, datetime]:
    """(flow, status, start in naive UTC to the second) of a table row, read from its cells.

    The grid only puts the columns in view into its accessible table, so rows are told apart by
    their first columns (the Run link column may be scrolled out of view).
    """
    started = datetime.fromisoformat(cell(page, STARTED_COLUMN, row).text_content())
    return (
        cell(page, FLOW_COLUMN, row).text_content(),
        cell(page, STATUS_COLUMN, row).text_content(),
        started.astimezone(UTC).replace(tzinfo=None),
    )


def rows_shown(page, rows: int) -> list[tuple[str, str, datetime]]:
    return [row_shown(page, row) for row in range(rows)]


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def next_page(page, first_row: int) -> str:
    page.get_by_role("button", name="Next page").click()
    page.wait_for_url(lambda url: f"page={(first_row - 1) // PAGE_SIZE + 1}" in url)
    return position_text(page, first_row)


def choose_status(page, status_label: str) -> None:
    """Picks one status in the toolbar's Status multiselect, as a user does."""
    box = page.locator(".st-key-status input[role='combobox']")
    box.click()
    page.get_by_role("option", name=status_label, exact=True).click()
    page.keyboard.press("Escape")


def click_open(page, row: int) -> None:
    """The pinned Open button of a row; the table is a canvas, so the click goes by position."""
    table = page.locator("[data-testid='stDataFrame']")
    table.evaluate("element => element.scrollIntoView({block: 'center'})")
    box = table.bounding_box()
    y = box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2
    assert 0 < y < page.viewport_size["height"], "the row to click is out of view"
    page.mouse.click(box["x"] + SELECT_COLUMN + OPEN_COLUMN / 2, y)


# ------------------------------------------------------------------ tests


def test_the_list_shows_the_engines_columns_and_pages_through_the_runs(
    page, server_url, browser_db
):
    started = now_utc()
    open_runs_page(page, server_url)
    headers = page.locator("[data-testid='stDataFrame'] th[role='columnheader']")
    headers.first.wait_for(state="attached")
    shown = [text.strip() for text in headers.all_text_contents()]
    assert [name for name in shown if name in ENGINE_COLUMNS] == ENGINE_COLUMNS, shown
    assert page.locator(".st-key-range input[role='combobox']").input_value() == "Last 7 days"

    first = position_text(page, 1)
    seen = now_utc()
    total = total_of(first)
    assert total in expected_totals(browser_db, started, seen)
    assert total > 2 * PAGE_SIZE, "the sample should fill more than two pages"
    assert first == f"1-{PAGE_SIZE} of {total:,} runs"
    since = started.replace(second=0, microsecond=0) - DEFAULT_WINDOW
    first_rows = rows_shown(page, 3)
    assert first_rows == [shown for _, shown in expected_page(browser_db, since, 0)[:3]]

    second = next_page(page, PAGE_SIZE + 1)
    assert second == f"{PAGE_SIZE + 1}-{2 * PAGE_SIZE} of {total:,} runs"
    assert query(page)["page"] == ["2"]
    second_rows = rows_shown(page, 3)
    assert second_rows[0] != first_rows[0]
    assert second_rows == [shown for _, shown in expected_page(browser_db, since, PAGE_SIZE)[:3]]


def test_a_status_filter_and_the_page_survive_opening_a_run_and_coming_back(
    page, server_url, browser_db
):
    started = now_utc()
    open_runs_page(page, server_url)
    unfiltered = position_text(page, 1)
    everything = total_of(unfiltered)

    choose_status(page, "Failed")
    page.wait_for_url(lambda url: "status=" in url)
    assert query(page)["status"] == ["Failed"]
    filtered = position_text(page, 1, other_than=unfiltered)
    failed_total = total_of(filtered)
    assert failed_total in expected_totals(browser_db, started, now_utc(), "FAILED")
    assert failed_total != everything
    assert failed_total > PAGE_SIZE, "the sample should have a second page of failed runs"

    on_page_two = next_page(page, PAGE_SIZE + 1)
    assert (
        on_page_two
        == f"{PAGE_SIZE + 1}-{min(2 * PAGE_SIZE, failed_total)} of {failed_total:,} runs"
    )
    assert query(page)["status"] == ["Failed"] and query(page)["page"] == ["2"]
    row = 2
    since = started.replace(second=0, microsecond=0) - DEFAULT_WINDOW
    chosen, expected_row = expected_page(browser_db, since, PAGE_SIZE, "FAILED")[row]
    assert row_shown(page, row) == expected_row

    click_open(page, row)
    page.wait_for_url(re.compile(r"/run\?"))
    wait_for_app(page)
    assert urlsplit(page.url).path == "/run"
    assert query(page)["id"] == [chosen]
    banner = page.locator("[data-testid='stAlert']").filter(has_text="Run Failed - Started:")
    banner.first.wait_for()
    assert banner.first.is_visible()

    page.get_by_role("link", name="Back to runs").click()
    page.wait_for_url(lambda url: "/run?" not in url)
    back = position_text(page, PAGE_SIZE + 1)
    assert query(page)["status"] == ["Failed"] and query(page)["page"] == ["2"]
    # The same view and text; only if the 7-day window moved past a failed run meanwhile (the
    # page rounds "now" to the minute) may the total have changed, to what the database says.
    expected_now = expected_totals(browser_db, started, now_utc(), "FAILED")
    if len(expected_now) == 1:
        assert back == on_page_two
    else:
        assert total_of(back) in expected_now
    assert row_shown(page, row) == expected_row


def type_status(page, status_label: str) -> None:
    """Picks one status in the Status multiselect with the keyboard (the page may have scrolled
    to the pager, where a click on the box does not open its list)."""
    page.locator(".st-key-status input[role='combobox']").click()
    page.keyboard.type(status_label)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def test_the_back_and_forward_buttons_walk_the_views_the_url_had(page, server_url, browser_db):
    """Each change of the view is one history entry: Back shows the view before (a parameter the
    older URL lacks back at its default, the page it names kept), Forward the one after."""
    started = now_utc()
    open_runs_page(page, server_url)
    position_text(page, 1)
    second = next_page(page, PAGE_SIZE + 1)
    type_status(page, "Failed")
    page.wait_for_url(lambda url: "status=Failed" in url and "page=" not in url)
    filtered = position_text(page, 1, other_than=second)
    assert total_of(filtered) in expected_totals(browser_db, started, now_utc(), "FAILED")

    page.go_back()
    page.wait_for_url(lambda url: "page=2" in url and "status=" not in url)
    back = position_text(page, PAGE_SIZE + 1)
    assert back.startswith(f"{PAGE_SIZE + 1}-{2 * PAGE_SIZE} of ")
    assert total_of(back) in expected_totals(browser_db, started, now_utc())  # no status filter
    assert page.locator(".st-key-status").get_by_text("Failed").count() == 0
    since = started.replace(second=0, microsecond=0) - DEFAULT_WINDOW
    assert rows_shown(page, 3) == [
        shown for _, shown in expected_page(browser_db, since, PAGE_SIZE)[:3]
    ]
    page.go_back()
    page.wait_for_url(lambda url: "page=" not in url and "status=" not in url)
    assert position_text(page, 1).startswith(f"1-{PAGE_SIZE} of ")
    page.go_forward()
    page.wait_for_url(lambda url: "page=2" in url and "status=" not in url)
    assert position_text(page, PAGE_SIZE + 1).startswith(f"{PAGE_SIZE + 1}-{2 * PAGE_SIZE} of ")
