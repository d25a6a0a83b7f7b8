"""Record text stays text, in Streamlit's AppTest: pages/common/text.py's escaping, and every
piece of markdown the Runs page, the Run page and Insights send for records full of links.

Markdown is read the way Streamlit's renderer reads it (tests/markdown_text.py). The real browser
checks the same pages in tests/test_browser_record_text.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conftest import ROOT
from markdown_text import as_read, link_targets
from pages.common.text import code, plain
from run_records import (
    LINK_ERROR,
    LINK_FLOW,
    LINK_HOST,
    LINK_IN_URL,
    LINK_RUN,
    LINK_STEP_TITLE,
    LINK_THOUGHT,
    LINK_TOOL_ERROR,
    LINK_TOOL_STATUS,
    build_run_db,
    link_runs,
)
from runs_store.domain.signatures import error_signature

# Elements whose text Streamlit shows verbatim, never as markdown.
VERBATIM = ("text", "code", "json")
MARKDOWN_FIELDS = ("body", "label", "help")  # what the other elements send as markdown


# ------------------------------------------------------------------ the model of the renderer


def test_the_reader_model_finds_the_links_streamlit_makes():
    """The checks below are only as good as this model of the renderer."""
    assert link_targets("see [x](http://a.example/y) now") == ["http://a.example/y"]
    assert link_targets("<https://a.example>") == ["https://a.example"]
    assert link_targets(r"http\://a\.example/b and me@a\.example") == [
        "http://a.example/b",
        "me@a.example",
    ]  # escapes do not stop the renderer's own links
    assert link_targets(r"\[x\]\(y\) `http://a.example` and ``www.a.example``") == []
    assert as_read(r"\*\*b\*\* `` a`b `` c  " + "\nd") == "**b** a`b c\nd"


# ------------------------------------------------------------------ pages/common/text.py

HOSTILE = [
    LINK_FLOW,
    LINK_STEP_TITLE,
    LINK_ERROR,
    LINK_THOUGHT,
    LINK_IN_URL,
    LINK_TOOL_STATUS,
    "<img src=x onerror=alert(1)> :red[red] $x$ [link](javascript:alert(3))",
    "mail ANA@Example.COM, or WWW.example.org/a_(b)_c. Done!",
    "backticks `http://a.example/``x``` and \\`www.a.example\\`",
    "two lines: https://a.example/1\nhttps://a.example/2 (see `code`)",
    "ends with an address: ftp://a.example/f)",
    "",
    "`",
    " lead and trail ",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_text_reads_as_itself_and_links_nothing(text):
    shown = plain(text)
    assert link_targets(shown) == []
    assert as_read(shown) == text


@pytest.mark.parametrize("text", ["abc", "a`b", "``x``", "`", " x ", "http://a.example"])
def test_a_code_span_reads_as_its_text(text):
    assert link_targets(code(text)) == []
    assert as_read(code(text)) == text


# ------------------------------------------------------------------ the pages


@pytest.fixture(scope="module")
def links_db(tmp_path_factory):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    return build_run_db(tmp_path_factory.mktemp("links") / "links.duckdb", link_runs(now))


def opened(page: str, query: dict, session: dict | None = None):
    """The app opened on `page` with these URL parameters (as a link opens it), then rerun with
    `session` set when given."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page(page)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if session:
        for key, value in session.items():
            at.session_state[key] = value
        at.run()
    assert not at.exception, at.exception
    return at


def markdown_sent(at) -> list[str]:
    """Every text the page sent to be read as markdown: bodies, labels and tooltips."""
    from google.protobuf.message import Message

    def strings(message):
        for field, value in message.ListFields():
            for item in value if field.is_repeated else [value]:
                if isinstance(item, Message):
                    yield from strings(item)
                elif field.name in MARKDOWN_FIELDS and isinstance(item, str):
                    yield item

    return [
        text
        for node in at._tree
        if node.type not in VERBATIM and isinstance(getattr(node, "proto", None), Message)
        for text in strings(node.proto)
    ]


VIEWS = {  # name: (page, URL parameters, session state, record text some markdown must read as)
    "runs": (
        "pages/runs.py",
        {
            "range": "all",
            "flow": [LINK_FLOW, LINK_IN_URL],
            "failed_step": ["step_3", LINK_IN_URL],
            "signature": error_signature(LINK_ERROR),
        },
        None,
        LINK_IN_URL,
    ),
    "run": ("pages/run.py", {"id": LINK_RUN}, None, LINK_ERROR),
    "run compared": ("pages/run.py", {"id": LINK_RUN}, {"compare": True}, LINK_STEP_TITLE),
    "run agent": ("pages/run.py", {"id": LINK_RUN, "step": "step_2"}, None, LINK_TOOL_ERROR),
    **{
        f"insights {tab}": (
            "pages/insights.py",
            {"view": tab},
            None,
            LINK_FLOW if tab == "Trends" else None,
        )
        for tab in ("Trends", "Failed steps", "Errors", "Quota", "Durations", "Agents")
    },
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_no_page_sends_record_text_that_links(app_env, links_db, view):
    page, query, session, expected = VIEWS[view]
    app_env(links_db)
    sent = markdown_sent(opened(page, query, session))
    assert [target for text in sent for target in link_targets(text) if LINK_HOST in target] == []
    if expected:
        assert any(expected in as_read(text) for text in sent), "the record text is not shown"
