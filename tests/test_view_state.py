"""The view as one value: every URL key declared once, each read (a bad value falls back to its
default with a notice naming the parameter) and written back, the round trip state -> query ->
state as identity (hypothesis), any query dict read without raising into a valid view, and the
pages moving it through Streamlit's public API only."""

from __future__ import annotations

import ast
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import ROOT
from runs_store.domain.statuses import STATUS_NAMES
from runs_store.queries.filters import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_PRESET,
    PAGE_SIZES,
    PRESET_LABELS,
    RunFilter,
    day_window,
)
from runs_store.queries.view_state import (
    AGENT_DRILL_KEYS,
    AGENT_KEYS,
    AGENT_WIDGETS,
    ALIAS_KEYS,
    CUSTOM,
    DRILL_KEYS,
    EARLIEST_DAY,
    FILTER_KEYS,
    PAGING_KEYS,
    PARAMS,
    URL_KEYS,
    RunsView,
    ViewContext,
    page_notice,
)

TODAY = date(2026, 11, 24)
FLOWS = (
    "Daily digest",
    "Weekly churn report",
    "Onboard new employee",
    "a, b & c",
    " spaced name ",
    "Ünïcode flow",
)
CONTEXT = ViewContext.on(TODAY, FLOWS)


def read(query: dict, context: ViewContext = CONTEXT) -> tuple[RunsView, list[str]]:
    return RunsView.from_query(
        {key: value if isinstance(value, list) else [value] for key, value in query.items()},
        context,
    )


# ------------------------------------------------------------------ declared once


def test_every_url_key_is_declared_once_and_fills_one_field_in_order():
    assert len(URL_KEYS) == len(set(URL_KEYS)) == len(PARAMS)
    written = [param for param in PARAMS if not param.alias]
    assert [param.field for param in written] == [field.name for field in fields(RunsView)]
    assert {param.field for param in PARAMS if param.alias} <= {p.field for p in written}
    assert ALIAS_KEYS == ("tool_failed",)
    assert AGENT_KEYS == AGENT_WIDGETS + AGENT_DRILL_KEYS
    assert sorted(FILTER_KEYS + DRILL_KEYS + PAGING_KEYS + AGENT_KEYS + ALIAS_KEYS) == sorted(
        URL_KEYS
    )


def test_the_defaults_are_the_default_view_and_write_nothing():
    view = RunsView()
    assert (view.preset, view.page, view.rows, view.live) == (
        DEFAULT_PRESET,
        1,
        DEFAULT_PAGE_SIZE,
        False,
    )
    assert view.to_query() == {} and read({}) == (view, [])


def test_the_pages_take_their_keys_from_the_view_state():
    """Runs, the toolbar and the URL glue name no list of URL keys of their own."""
    for script in ("pages/runs.py", "pages/common/toolbar.py", "pages/common/url_state.py"):
        source = (ROOT / script).read_text()
        assert '"failed_step", "signature", "version"' not in source, script
        assert "FILTER_KEYS = (" not in source and "VIEW_KEYS" not in source, script


def test_the_run_page_hands_back_every_key_of_the_view():
    """The run page keeps its own list of the view's keys for "Back to runs": it must be these."""
    tree = ast.parse((ROOT / "pages/run.py").read_text())
    found = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", "") == "VIEW_KEYS" for target in node.targets)
    ]
    if found:  # once it reads view_state.URL_KEYS there is no list left to compare
        keys = ast.literal_eval(found[0])
        assert sorted(keys) == sorted(URL_KEYS)


# ------------------------------------------------------------------ reading a link, table-driven

READS = [
    (
        "flows and statuses in either spelling",
        {"flow": ["Daily digest", "a, b & c"], "status": ["failed", "QUOTA_EXCEEDED", "Failed"]},
        RunsView(flows=("Daily digest", "a, b & c"), statuses=("FAILED", "QUOTA_EXCEEDED")),
    ),
    ("a range by key or by label, any case", {"range": "30D"}, RunsView(preset="30d")),
    ("a range by its label", {"range": "last 90 days"}, RunsView(preset="90d")),
    (
        "days without a range are a custom range",
        {"from": "2026-11-01", "to": "2026-11-03"},
        RunsView(preset=CUSTOM, first_day=date(2026, 11, 1), last_day=date(2026, 11, 3)),
    ),
    (
        "days with another range mean nothing",
        {"range": "Last 7 days", "from": "2026-11-01"},
        RunsView(),
    ),
    ("a custom range without days", {"range": "Custom range"}, RunsView(preset=CUSTOM)),
    ("yes and 1 are true", {"archived": "yes", "live": "1"}, RunsView(archived=True, live=True)),
    ("search text is trimmed", {"q": "  time out \t"}, RunsView(search="time out")),
    (
        "drill-downs are record text, kept as written",
        {
            "failed_step": ["step_2", " step 3 ", "step_2"],
            "signature": "sig 1 ",
            "version": ["v1", ""],
        },
        RunsView(failed_steps=("step_2", " step 3 "), signature="sig 1 ", versions=("v1",)),
    ),
    (
        "a single value given twice keeps the last",
        {"page": ["2", "3"], "rows": ["10", "50"]},
        RunsView(page=3, rows=50),
    ),
    ("page and rows as numbers", {"page": "12", "rows": "100"}, RunsView(page=12, rows=100)),
    ("keys it does not know are not its business", {"view": "Trends", "id": "r1"}, RunsView()),
]


@pytest.mark.parametrize("name, query, expected", READS, ids=[case[0] for case in READS])
def test_a_link_reads_as(name, query, expected):
    assert read(query) == (expected, [])


NOTICES = [
    (
        {"flow": "No such flow"},
        ('Ignored flow "No such flow" from the link: no runs of a flow by that name are loaded.'),
    ),
    ({"status": "Bogus"}, 'Ignored unknown status "Bogus" from the link.'),
    (
        {"range": "bogus"},
        (
            'Ignored date range "bogus" from the link: use one of Last 24 hours, '
            "Last 7 days, Last 30 days, Last 90 days, All time, Custom range."
        ),
    ),
    (
        {"from": "2026-13-01"},
        ('Ignored start date "2026-13-01" from the link: not a date like 2026-11-24.'),
    ),
    (
        {"to": "yesterday"},
        ('Ignored end date "yesterday" from the link: not a date like 2026-11-24.'),
    ),
    (
        {"from": "1999-12-31"},
        (
            'Ignored start date "1999-12-31" from the link: it must be between '
            "2000-01-01 and 2026-11-25."
        ),
    ),
    (
        {"to": "2026-11-26"},
        (
            'Ignored end date "2026-11-26" from the link: it must be between '
            "2000-01-01 and 2026-11-25."
        ),
    ),
    ({"archived": "maybe"}, 'Ignored show archived "maybe" from the link: use true or false.'),
    ({"page": "abc"}, 'Ignored page "abc" from the link: not a whole number.'),
    ({"page": "0"}, 'Ignored page "0" from the link: it must be at least 1.'),
    ({"page": "9" * 5000}, "Ignored page"),
    ({"rows": "7"}, 'Ignored rows per page "7" from the link: it is not one of 10, 25, 50, 100.'),
    ({"live": "sometimes"}, 'Ignored live refresh "sometimes" from the link: use true or false.'),
]


@pytest.mark.parametrize(
    "query, notice", NOTICES, ids=[next(iter(q)) + "=" + str(q)[-12:] for q, _ in NOTICES]
)
def test_a_bad_value_falls_back_to_its_default_with_a_notice_naming_it(query, notice):
    view, notices = read(query)
    assert view == RunsView()
    assert len(notices) == 1 and notices[0].startswith(notice)


def test_bad_values_go_and_good_ones_stay():
    view, notices = read(
        {
            "status": ["Bogus", "FAILED", "Nope"],
            "rows": "100",
            "page": "x",
            "flow": ["Daily digest", "Gone flow"],
        }
    )
    assert view == RunsView(statuses=("FAILED",), rows=100, flows=("Daily digest",))
    assert [n.split('"')[1] for n in notices] == ["Gone flow", "Bogus", "Nope", "x"]


def test_a_bad_range_with_days_is_a_custom_range_of_those_days():
    view, notices = read({"range": "fortnight", "from": "2026-11-01"})
    assert view == RunsView(preset=CUSTOM, first_day=date(2026, 11, 1)) and len(notices) == 1


def test_only_the_keys_asked_for_are_read():
    view, notices = RunsView.from_query(
        {"page": ["x"], "status": ["Failed"]}, CONTEXT, keys=FILTER_KEYS
    )
    assert view == RunsView(statuses=("FAILED",)) and notices == []


def test_without_a_list_of_flows_any_flow_is_accepted():
    assert read({"flow": "Anything"}, ViewContext())[0].flows == ("Anything",)


# ------------------------------------------------------------------ writing it back


def test_a_view_writes_its_canonical_spellings_and_leaves_defaults_out():
    view = RunsView(
        flows=("Daily digest",),
        statuses=("FAILED", "QUOTA_EXCEEDED"),
        preset=CUSTOM,
        first_day=date(2026, 11, 1),
        last_day=date(2026, 11, 3),
        archived=True,
        search="error",
        failed_steps=("step_2",),
        page=4,
        rows=10,
        live=True,
    )
    assert view.to_query() == {
        "flow": ["Daily digest"],
        "status": ["Failed", "Quota Exceeded"],
        "range": ["Custom range"],
        "from": ["2026-11-01"],
        "to": ["2026-11-03"],
        "archived": ["true"],
        "q": ["error"],
        "failed_step": ["step_2"],
        "page": ["4"],
        "rows": ["10"],
        "live": ["true"],
    }
    assert view.to_query(PAGING_KEYS) == {"page": ["4"], "rows": ["10"], "live": ["true"]}


def test_widget_values_are_spelled_out_even_at_their_defaults():
    assert RunsView.widgets_as_query({"range": "7d", "archived": False, "page": 1, "flow": []}) == {
        "range": ["Last 7 days"],
        "archived": ["false"],
        "page": ["1"],
        "flow": [],
    }


def test_widget_values_are_cleaned_as_a_link_would_be():
    view = RunsView().with_widget_values(
        {"status": ["FAILED", "Failed"], "q": " x ", "from": date(2026, 1, 1), "rows": 7}
    )
    assert (view.statuses, view.search, view.first_day, view.rows) == (
        ("FAILED",),
        "x",
        None,
        DEFAULT_PAGE_SIZE,
    )  # no custom range: its days mean nothing


# ------------------------------------------------------------------ the filter it asks for

NOW = datetime(2026, 11, 24, 15, 42, 17)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "view, since, until",
    [
        (RunsView(), datetime(2026, 11, 17, 15, 42), None),
        (RunsView(preset="all"), None, None),
        (
            RunsView(preset=CUSTOM, first_day=date(2026, 11, 1), last_day=date(2026, 11, 3)),
            *day_window(date(2026, 11, 1), date(2026, 11, 3), PARIS),
        ),
        (
            RunsView(preset=CUSTOM, first_day=date(2026, 11, 3), last_day=date(2026, 11, 1)),
            *day_window(date(2026, 11, 1), date(2026, 11, 3), PARIS),
        ),  # given backwards: swapped
        (RunsView(preset=CUSTOM), *day_window(TODAY - timedelta(days=6), TODAY, PARIS)),
    ],
)
def test_the_filter_of_a_view(view, since, until):
    expected = RunFilter(since=since, until=until)
    assert view.run_filter(NOW, TODAY, PARIS) == expected


def test_the_filter_carries_every_other_field():
    view = RunsView(
        flows=("A",),
        statuses=("FAILED",),
        archived=True,
        search="x",
        failed_steps=("s",),
        signature="sig",
        versions=("v",),
    )
    assert view.run_filter(NOW, TODAY, UTC).with_(since=None) == RunFilter(
        flows=("A",),
        statuses=("FAILED",),
        include_archived=True,
        search="x",
        failed_steps=("s",),
        signature="sig",
        flow_version_ids=("v",),
    )


def test_a_backwards_range_says_it_was_swapped():
    assert RunsView(
        preset=CUSTOM, first_day=date(2026, 11, 3), last_day=date(2026, 11, 1)
    ).days_swapped
    assert not RunsView(preset=CUSTOM, first_day=date(2026, 11, 1)).days_swapped


def test_the_page_notice_says_how_many_pages_there_are():
    assert page_notice(99, 1) == 'Ignored page "99" from the link: this view has only 1 page.'
    assert page_notice(99_999, 1_234).endswith("only 1,234 pages.")


# ------------------------------------------------------------------ properties (hypothesis)

texts = st.text(max_size=12)
days = st.dates(min_value=EARLIEST_DAY, max_value=TODAY + timedelta(days=1))


def unique(elements, **options):
    return st.lists(elements, unique=True, max_size=4, **options).map(tuple)


@st.composite
def views(draw) -> RunsView:
    """Any view a page can be in: values within the context, no repeats, days only for a
    custom range, search text trimmed."""
    preset = draw(st.sampled_from(list(PRESET_LABELS)))
    custom = preset == CUSTOM
    return RunsView(
        flows=draw(unique(st.sampled_from(FLOWS))),
        statuses=draw(unique(st.sampled_from(STATUS_NAMES))),
        preset=preset,
        first_day=draw(st.none() | days) if custom else None,
        last_day=draw(st.none() | days) if custom else None,
        archived=draw(st.booleans()),
        search=draw(texts.map(str.strip)),
        failed_steps=draw(unique(texts.filter(bool))),
        signature=draw(texts),
        versions=draw(unique(texts.filter(bool))),
        page=draw(st.integers(min_value=1, max_value=10**12)),
        rows=draw(st.sampled_from(PAGE_SIZES)),
        live=draw(st.booleans()),
    )


def is_valid(view: RunsView) -> bool:
    """A view a page can show: what `views` draws, checked field by field."""
    custom = view.preset == CUSTOM
    return all(
        (
            set(view.flows) <= set(FLOWS),
            set(view.statuses) <= set(STATUS_NAMES),
            all(
                len(set(values)) == len(values) and all(values)
                for values in (view.flows, view.statuses, view.failed_steps, view.versions)
            ),
            view.preset in PRESET_LABELS,
            custom or (view.first_day is None and view.last_day is None),
            all(
                day is None or EARLIEST_DAY <= day <= CONTEXT.latest
                for day in (view.first_day, view.last_day)
            ),
            isinstance(view.archived, bool) and isinstance(view.live, bool),
            view.search == view.search.strip(),
            isinstance(view.signature, str),
            isinstance(view.page, int) and view.page >= 1,
            view.rows in PAGE_SIZES,
        )
    )


@given(views())
def test_a_view_written_and_read_back_is_the_same_view(view):
    assert RunsView.from_query(view.to_query(), CONTEXT) == (view, [])


@given(views())
def test_a_view_survives_a_real_url(view):
    """Through the text of a URL (percent-encoding, '+' for spaces) and parse_qs, as a browser
    and Streamlit carry it."""
    text = urlencode(view.to_query(), doseq=True)
    assert RunsView.from_query(parse_qs(text, keep_blank_values=True), CONTEXT) == (view, [])


@given(views())
def test_the_widgets_values_of_a_view_are_the_view(view):
    values = {key: view.widget_value(key) for key in FILTER_KEYS + PAGING_KEYS}
    assert (
        RunsView(
            failed_steps=view.failed_steps, signature=view.signature, versions=view.versions
        ).with_widget_values(values)
        == view
    )
    read_back, notices = RunsView.from_query(
        {**RunsView.widgets_as_query(values), **view.to_query(DRILL_KEYS)}, CONTEXT
    )
    assert (read_back, notices) == (view, [])


queries = st.dictionaries(
    st.sampled_from(URL_KEYS) | st.text(max_size=8),
    st.lists(
        st.text(max_size=15)
        | st.sampled_from(
            [
                "Failed",
                "FAILED",
                "7d",
                "Custom range",
                "2026-11-01",
                "true",
                "0",
                "2",
                "25",
                " 100 ",
                "Daily digest",
                "9" * 5000,
            ]
        ),
        max_size=4,
    ),
)


@settings(max_examples=300)
@given(queries)
def test_any_query_reads_without_raising_into_a_valid_view(query):
    view, notices = RunsView.from_query(query, CONTEXT)
    assert is_valid(view), view
    assert RunsView.from_query(view.to_query(), CONTEXT) == (view, [])
    assert all(isinstance(notice, str) and "from the link" in notice for notice in notices)


@given(queries)
def test_every_notice_names_a_parameter_that_was_given(query):
    _view, notices = RunsView.from_query(query, CONTEXT)
    assert len(notices) <= sum(len(values) for key, values in query.items() if key in URL_KEYS)


# ------------------------------------------------------------------ Streamlit's public API only

VIEW_SCRIPTS = ("pages/runs.py", "pages/common/toolbar.py", "pages/common/url_state.py")


@pytest.mark.parametrize("script", VIEW_SCRIPTS)
def test_the_view_moves_through_streamlits_public_api_only(script):
    """No import from Streamlit's internals (streamlit.runtime...), no private attribute, and no
    widget bound to the URL: the view state owns the URL."""
    tree = ast.parse((ROOT / script).read_text())
    imports = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imports += [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert [name for name in imports if name.startswith("streamlit") and name != "streamlit"] == []
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    assert private == []
    bound = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "bind"
    ]
    assert bound == []


# ------------------------------------------------------------------ the agents' tool filters


NOON = datetime(2026, 11, 24, 12)

# (URL query, the RunsView fields it gives, its canonical query): the agents' filters.
AGENT_LINKS = [
    (
        {"tool": "exa_search", "tool_outcome": "failed"},
        {"tool": "exa_search", "tool_outcome": "failed"},
        {"tool": ["exa_search"], "tool_outcome": ["failed"]},
    ),
    (
        {"tool_outcome": "Unfinished"},
        {"tool_outcome": "unfinished"},
        {"tool_outcome": ["unfinished"]},
    ),
    (  # the older spelling: alerts, digests and bookmarks made before tool_outcome
        {"tool": "exa_search", "tool_failed": "true"},
        {"tool": "exa_search", "tool_outcome": "failed"},
        {"tool": ["exa_search"], "tool_outcome": ["failed"]},
    ),
    ({"tool_failed": "1"}, {"tool_outcome": "failed"}, {"tool_outcome": ["failed"]}),
    ({"tool_failed": "false"}, {}, {}),
    (  # both given: the newer key wins, whatever their order
        {"tool_outcome": "unfinished", "tool_failed": "true"},
        {"tool_outcome": "unfinished"},
        {"tool_outcome": ["unfinished"]},
    ),
    (
        {"flow": "Daily digest", "agent_status": "failed", "max_steps": "1"},
        {"flows": ("Daily digest",), "agent_status": "FAILED", "max_steps": True},
        {"flow": ["Daily digest"], "agent_status": ["FAILED"], "max_steps": ["true"]},
    ),
    ({"agent_status": "IN_PROGRESS"}, {"agent_status": "IN_PROGRESS"}, None),
    (
        {"agent_status": "none"},
        {"agent_status": "(none recorded)"},
        {"agent_status": ["(none recorded)"]},
    ),
    ({"agent_status": "(none recorded)"}, {"agent_status": "(none recorded)"}, None),
    ({"tool_calls": "0"}, {"tool_calls": 0}, None),
    ({"tool_calls": " 12 "}, {"tool_calls": 12}, {"tool_calls": ["12"]}),
    (
        {"model": "openai/gpt-4o", "tool_outcome": "failed"},
        {"agent_model": "openai/gpt-4o", "tool_outcome": "failed"},
        None,
    ),
]


@pytest.mark.parametrize("query, fields_given, canonical", AGENT_LINKS)
def test_the_agents_filters_round_trip_through_the_url_and_reach_the_filter(
    query, fields_given, canonical
):
    view, notices = read(query)
    assert (view, notices) == (RunsView(**fields_given), [])
    written = view.to_query()
    assert written == (query_of(query) if canonical is None else canonical)
    assert read(written) == (view, [])
    run_filter = view.run_filter(NOON, TODAY, UTC)
    for name in ("tool", "tool_outcome", "agent_model", "agent_status", "max_steps", "tool_calls"):
        assert getattr(run_filter, name) == getattr(view, name)


def query_of(query: dict) -> dict[str, list[str]]:
    return {key: [value] for key, value in query.items()}


@pytest.mark.parametrize(
    "query, notice",
    [
        (
            {"tool_failed": "perhaps"},
            'Ignored tool failed "perhaps" from the link: use true or false.',
        ),
        (
            {"tool_outcome": "succeeded"},
            'Ignored tool call outcome "succeeded" from the link: use one of failed, unfinished.',
        ),
        (
            {"agent_status": "DONE"},
            (
                'Ignored agent status "DONE" from the link: use one of COMPLETED, FAILED, '
                "IN_PROGRESS or none."
            ),
        ),
        (
            {"max_steps": "often"},
            'Ignored stopped at maxSteps "often" from the link: use true or false.',
        ),
        ({"tool_calls": "many"}, 'Ignored tool calls "many" from the link: not a whole number.'),
        ({"tool_calls": "-1"}, 'Ignored tool calls "-1" from the link: it must be at least 0.'),
        ({"tool_calls": "2.5"}, 'Ignored tool calls "2.5" from the link: not a whole number.'),
    ],
)
def test_a_bad_agent_filter_value_falls_back_with_a_notice(query, notice):
    view, notices = read({**query, "tool": " spaced tool "})
    assert view == RunsView(tool=" spaced tool ") and notices == [notice]


def test_a_bad_tool_outcome_keeps_a_good_older_tool_failed():
    view, notices = read({"tool_failed": "true", "tool_outcome": "maybe"})
    assert view.tool_outcome == "failed" and len(notices) == 1


def test_the_agent_widgets_clean_and_spell_out_their_values():
    view = RunsView().with_widget_values({"tool": "t", "tool_outcome": "bogus", "model": ""})
    assert (view.tool, view.tool_outcome) == ("t", "")
    query = RunsView.widgets_as_query({"tool_outcome": "", "model": ""})
    assert query == {"tool_outcome": [""], "model": [""]}
    assert read(query) == (RunsView(), [])


def test_an_agents_model_travels_in_the_url_and_reaches_the_filter():
    view, notices = read({"model": "openai/gpt-4o"})
    assert (view.agent_model, notices) == ("openai/gpt-4o", [])
    assert view.to_query() == {"model": ["openai/gpt-4o"]}
    run_filter = view.run_filter(datetime(2026, 11, 24, 12), TODAY, UTC)
    assert run_filter.agent_model == "openai/gpt-4o"


def test_a_tool_no_agent_called_falls_back_with_a_notice_when_the_tools_are_known():
    context = ViewContext.on(TODAY, tools=["exa_search"])
    view, notices = RunsView.from_query({"tool": ["nope"]}, context)
    assert view.tool == ""
    assert notices == [
        'Ignored tool "nope" from the link: no agent of the loaded runs called a tool by that name.'
    ]
    assert RunsView.from_query({"tool": ["exa_search"]}, context) == (
        RunsView(tool="exa_search"),
        [],
    )


def test_a_model_no_agent_ran_on_falls_back_with_a_notice_when_the_models_are_known():
    context = ViewContext.on(TODAY, models=["openai/gpt-4o"])
    view, notices = RunsView.from_query({"model": ["openai/gpt-5"]}, context)
    assert view.agent_model == ""
    said = 'Ignored model "openai/gpt-5" from the link: no agent of the loaded runs ran on a '
    assert notices == [said + "model by that name."]
    assert RunsView.from_query({"model": ["openai/gpt-4o"]}, context)[0].agent_model == (
        "openai/gpt-4o"
    )
