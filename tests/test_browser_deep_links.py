"""A link to any page works as the very first request a freshly started server gets.

Streamlit decides how to draw an app once per server process: while a folder named `pages/` sits
next to app.py and no session has run app.py's st.navigation yet, a session is drawn by the
automatic pages/ discovery (file-name labels, the entry file and the hidden Run page listed,
app.py's wide layout never applied); a page run that way hands over to app.py
(pages/common/entry.py). Every test here starts its own server and opens its link as that server's
very first request, then compares with what the same server shows from /.
"""

from __future__ import annotations

import pytest

from conftest import running_server, wait_for_app
from factories import rows

# The Runs page is the default page, at / (Streamlit gives a default page no other path), so
# /runs is an unknown path like any other (see the last test).
DEEP_LINKS = {
    "/insights": "Insights",
    "/import": "Import runs",
    "/sources": "Sources",
    "/alerts": "Alerts",
    "/run?id=no-such-run": "Run not found",
}
NAV_LABELS = ["Runs", "Insights", "Import", "Sources", "Alerts"]  # app.py's pages; Run is hidden
APP_TITLE = "Runs Explorer"  # app.py's st.set_page_config
# The centered layout caps the main block at 736 px; the wide one fills the 1440 px viewport
# less the sidebar (about 1140 px).
WIDE_MAIN_BLOCK = 1000


@pytest.fixture
def fresh_server(db_copy):
    with running_server(db_copy) as url:
        yield url


@pytest.fixture
def newest_run(db_copy) -> str:
    """A run the Run page can show, read before the server holds the file."""
    return rows(
        db_copy,
        "SELECT id FROM runs WHERE archived_at IS NULL ORDER BY started_at DESC, id LIMIT 1",
    )[0][0]


def nav_labels(page) -> list[str]:
    links = page.get_by_test_id("stSidebarNavLink").get_by_test_id("stMarkdownContainer")
    return [label.strip() for label in links.all_inner_texts()]


def main_block_width(page) -> float:
    return page.get_by_test_id("stMainBlockContainer").evaluate(
        "block => block.getBoundingClientRect().width"
    )


def assert_date_range_reads_in_full(page) -> None:
    """The toolbar's Date range shows "Last 7 days" whole (the centered layout cut it short)."""
    date_range = page.get_by_role("combobox", name="Date range")
    date_range.wait_for()
    assert date_range.input_value() == "Last 7 days"
    assert date_range.evaluate("box => box.scrollWidth <= box.clientWidth")


def open_first(page, url: str) -> None:
    page.goto(url)
    wait_for_app(page)
    page.get_by_test_id("stSidebarNavLink").first.wait_for()


def assert_app_frame(page) -> None:
    """The navigation, title and wide layout app.py declares, whatever page is shown."""
    assert nav_labels(page) == NAV_LABELS
    assert page.title() == APP_TITLE
    assert main_block_width(page) > WIDE_MAIN_BLOCK


@pytest.mark.parametrize("link", list(DEEP_LINKS))
def test_a_deep_link_opens_its_page_on_a_fresh_server(fresh_server, page, link):
    page.goto(fresh_server + link)
    wait_for_app(page)
    page.get_by_text(DEEP_LINKS[link], exact=False).first.wait_for()
    assert page.get_by_text("Page not found").count() == 0
    assert page.url == fresh_server + link


@pytest.mark.parametrize("link", ["/insights", "/import", "/run?id={run}"])
def test_a_first_request_deep_link_draws_the_same_navigation_and_layout_as_the_main_page(
    fresh_server, page, newest_run, link
):
    open_first(page, fresh_server + link.format(run=newest_run))
    deep_labels, deep_width = nav_labels(page), main_block_width(page)
    assert_app_frame(page)

    open_first(page, fresh_server + "/")
    assert deep_labels == nav_labels(page)
    assert deep_width == pytest.approx(main_block_width(page), abs=2)


def test_a_first_request_to_the_run_page_shows_its_run(fresh_server, page, newest_run):
    open_first(page, f"{fresh_server}/run?id={newest_run}")
    page.get_by_text(newest_run, exact=False).first.wait_for()
    assert page.get_by_text("Page not found").count() == 0
    assert_app_frame(page)


def test_the_main_page_as_the_first_request_draws_the_declared_navigation(fresh_server, page):
    open_first(page, fresh_server + "/")
    assert_app_frame(page)
    assert_date_range_reads_in_full(page)


@pytest.mark.parametrize("link", ["/no-such-page", "/runs"])
def test_an_unknown_path_as_the_first_request_falls_back_to_the_runs_page(fresh_server, page, link):
    open_first(page, fresh_server + link)
    page.get_by_text("Page not found").first.wait_for()
    assert page.url == fresh_server + "/"
    assert_app_frame(page)
    assert_date_range_reads_in_full(page)


def test_the_insights_link_as_the_first_request_shows_its_toolbar_in_full(fresh_server, page):
    open_first(page, fresh_server + "/insights")
    page.get_by_text("Insights").first.wait_for()
    assert_date_range_reads_in_full(page)
