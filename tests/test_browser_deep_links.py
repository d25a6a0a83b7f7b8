"""A link to any page works as the very first request a freshly started server gets.

Before app.py has run once, Streamlit resolves a URL path by the files in pages/; a link to a page
whose file is named otherwise used to open the main page under a "Page not found" dialog.
"""

from __future__ import annotations

import pytest

from conftest import running_server, wait_for_app

DEEP_LINKS = {"/runs": "Runs", "/insights": "Insights", "/import": "Import runs",
              "/run?id=no-such-run": "Run not found"}


@pytest.fixture
def fresh_server(db_copy):
    with running_server(db_copy) as url:
        yield url


@pytest.mark.parametrize("link", list(DEEP_LINKS))
def test_a_deep_link_opens_its_page_on_a_fresh_server(fresh_server, page, link):
    page.goto(fresh_server + link)
    wait_for_app(page)
    page.get_by_text(DEEP_LINKS[link], exact=False).first.wait_for()
    assert page.get_by_text("Page not found").count() == 0
    assert page.url == fresh_server + link
