"""The view between the URL and the widgets, with Streamlit's public API only.

The view is one value (runs_store.queries.view_state.RunsView) and the URL is its text; the widgets
are
not bound to the URL. At the top of a run, `settle_view` decides where the view comes from:

- a page just arrived at (a link opened, "Back to runs", a drill-down from Insights, the
  sidebar): the parameters the URL has; for those it lacks, the widgets' values this session
  holds (the toolbar's come along from the page just left, and a drill-down sets them), and when
  the URL has none at all, the view the page itself last left in the URL;
- a widget the user just changed (its on_change ran, or a page action set widgets): the widgets;
- the URL changed while the page stayed (the browser's back and forward buttons): the URL, whole;
- otherwise the URL and the widgets already agree.

It reads that through `RunsView.from_query` (a value that cannot be used falls back to its default,
with a notice naming it) and seeds the widgets' session state before they are drawn. Once they are
drawn, `write_view` puts the view back in the URL, its canonical spelling and defaults left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import streamlit as st

from pages.common.text import plain
from runs_store.queries.view_state import CUSTOM, RunsView, ViewContext

MARK = "view_settled_by"  # the scope that settled the view last
WRITTEN = "view_written"  # {scope name: the URL query it last left}
CHANGED = "view_changed"  # a view widget changed since the last run


@dataclass(frozen=True)
class Scope:
    """The part of the view one page keeps: its URL keys, which of them are widgets, and the
    widgets that only it draws and that are not kept across pages (missing = just arrived)."""

    name: str
    keys: tuple[str, ...]
    widgets: tuple[str, ...]
    arrival_marks: tuple[str, ...] = ()
    whole_url: bool = False  # the page has no other parameters: its URL is written in one go


@dataclass(frozen=True)
class Settled:
    view: RunsView
    notices: list[str]
    from_link: frozenset[str]  # keys whose value the URL set in this run


def note_change() -> None:
    """The on_change of every view widget (and what a page action that sets widgets calls):
    the widgets win over the URL in the next run."""
    st.session_state[CHANGED] = True


def query_now(keys) -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in keys if key in st.query_params}


def settle_view(scope: Scope, context: ViewContext, today: date) -> Settled:
    """The view for this run (see the module docstring), its widgets seeded, and the notices."""
    url = query_now(scope.keys)
    written = st.session_state.get(WRITTEN, {})
    changed = bool(st.session_state.pop(CHANGED, False))
    arrived = st.session_state.get(MARK) != scope.name or any(
        key not in st.session_state for key in scope.arrival_marks
    )
    moved = not arrived and not changed and url != written.get(scope.name)
    st.session_state[MARK] = scope.name
    session = _widget_query(scope.widgets)
    if changed:
        query = {**{key: url[key] for key in url if key not in scope.widgets}, **session}
    elif moved:
        query = url
    else:
        left = written.get(scope.name, {}) if arrived and not url else {}
        query = {**left, **session, **url}
    view, notices = RunsView.from_query(query, context, scope.keys)
    linked = frozenset() if changed else frozenset(k for k in url if session.get(k) != url[k])
    _seed_widgets(view, scope.widgets, today, every=arrived or moved)
    return Settled(view, notices, linked)


def write_view(scope: Scope, view: RunsView) -> None:
    """Puts the scope's part of the view in the URL when it differs, and remembers the URL the
    scope left, to tell its own writes from a move of the browser's history.

    The browser gets one history entry per change of the URL, so a page that owns its whole URL
    writes it in one go; another (Insights also has its own bound tab parameter) sets what changed
    in one go and removes each parameter back at its default on its own.
    """
    st.session_state.pop(CHANGED, None)  # a Live refresh's paging change is written already
    wanted = view.to_query(scope.keys)
    if query_now(scope.keys) != wanted:
        if scope.whole_url:
            st.query_params.from_dict(wanted)
        else:
            _write_keys(wanted, scope.keys)
    st.session_state.setdefault(WRITTEN, {})[scope.name] = query_now(scope.keys)


def _write_keys(wanted: dict[str, list[str]], keys) -> None:
    changed = {key: value for key, value in wanted.items() if st.query_params.get_all(key) != value}
    if changed:
        st.query_params.update(changed)
    for key in keys:
        if key not in wanted and key in st.query_params:
            del st.query_params[key]


def drop_params(keys) -> None:
    """Removes URL parameters that no widget shows (the drill-down chips), as a user change."""
    for key in keys:
        if key in st.query_params:
            del st.query_params[key]
    note_change()


def _widget_query(keys) -> dict[str, list[str]]:
    """The widgets' values in this session as URL values, every one spelled out."""
    return RunsView.widgets_as_query(
        {key: st.session_state[key] for key in keys if key in st.session_state}
    )


def _seed_widgets(view: RunsView, keys, today: date, every: bool) -> None:
    """Gives each widget about to be drawn the view's value where its state differs, or `every`
    one on a page just arrived at (the value read may still be the page left's widget's)."""
    days = dict(zip(("from", "to"), view.custom_days(today), strict=True))
    for key in keys:
        if key in days:
            if view.preset != CUSTOM:
                continue  # the day inputs are not drawn
            wanted = days[key]
        else:
            wanted = view.widget_value(key)
        if every or key not in st.session_state or st.session_state[key] != wanted:
            st.session_state[key] = wanted


def show_notices(notices: list[str]) -> None:
    """Each notice as text: it quotes what the link said, which anyone can write (a flow name
    of markdown, an address to click), so none of it is read as markdown."""
    for notice in notices:
        st.info(plain(notice), icon=":material/link_off:")
