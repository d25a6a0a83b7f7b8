"""Reading the URL before the widgets do: bad values fall back to defaults, with a notice.

Widgets bound to query parameters silently drop values they cannot show. A copied link with a
typo should say what was ignored instead, so each page cleans its parameters first with rules
from here and shows the notices. Cleaned values go back into the link in the widgets' own
spelling, so the widgets read them and the URL keeps describing the view.
"""

from __future__ import annotations

from datetime import date
from typing import Callable, Iterable

import streamlit as st
from streamlit.errors import StreamlitAPIException

from pages.common.text import plain


class BadValue(ValueError):
    """A URL value that cannot be used; str() says which and why."""


def clean_many(key: str, check: Callable[[str], str]) -> list[str]:
    """Keeps the values of a repeated parameter that pass `check`; returns notices."""
    values = st.query_params.get_all(key)
    if not values:
        return []
    kept, notices = [], []
    for value in values:
        try:
            kept.append(check(value))
        except BadValue as error:
            notices.append(str(error))
    kept = list(dict.fromkeys(kept))  # FAILED and Failed are one value
    if kept != values:
        _rewrite(key, kept)
    return notices


def clean_one(key: str, check: Callable[[str], str]) -> list[str]:
    """Replaces a single parameter by its checked value, or drops it; returns notices.

    A parameter given more than once keeps its last value, as Streamlit reads it.
    """
    values = st.query_params.get_all(key)
    if not values:
        return []
    try:
        cleaned = check(values[-1])
    except BadValue as error:
        _rewrite(key, [])
        return [str(error)]
    if [cleaned] != values:
        _rewrite(key, [cleaned])
    return []


def set_param(key: str, value: str) -> None:
    """Puts a value in the link before its widget reads it (see _rewrite)."""
    _rewrite(key, [value])


def _rewrite(key: str, values: list[str]) -> None:
    """Puts the cleaned values in the link, where the widgets about to be drawn read them.

    A parameter bound to a widget drawn in an earlier rerun belongs to that widget: the link
    is left to it (Streamlit refuses the write, and the widget drops values it cannot show).
    """
    try:
        if values:
            st.query_params[key] = values if len(values) > 1 else values[0]
        else:
            del st.query_params[key]
    except StreamlitAPIException:
        return
    _reseed_widgets_from_link()


def _reseed_widgets_from_link() -> None:
    """Makes widgets that are first drawn in this run read the cleaned link.

    A URL-bound widget takes its first value from the link as it arrived and drops, from the
    URL too, any spelling it does not show (FAILED for Failed, 7d, yes): the view would no longer
    be in its own link. Streamlit re-reads the link the same way after a page switch.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    try:
        with ctx.session_state.query_params() as params:
            params.set_initial_query_params_from_current()
    except AttributeError:  # Streamlit's internals moved: widgets still get seed_widget's value
        pass


def one_of(options: Iterable[str], what: str) -> Callable[[str], str]:
    allowed = list(options)

    def check(value: str) -> str:
        if value not in allowed:
            raise BadValue(f'Ignored {what} "{value}" from the link: it is not one of '
                           f'{", ".join(allowed)}.')
        return value

    return check


def a_date(what: str, earliest: date | None = None, latest: date | None = None
           ) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(f'Ignored {what} "{value}" from the link: not a date like 2026-11-24.')
        if (earliest and day < earliest) or (latest and day > latest):
            raise BadValue(f'Ignored {what} "{value}" from the link: it must be between '
                           f'{earliest or "any day"} and {latest or "any day"}.')
        return day.isoformat()

    return check


def a_boolean(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return "true"
        if lowered in ("false", "0", "no"):
            return "false"
        raise BadValue(f'Ignored {what} "{value}" from the link: use true or false.')

    return check


def a_whole_number(what: str, low: int, high: int | None = None) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            raise BadValue(f'Ignored {what} "{value}" from the link: not a whole number.')
        if number < low or (high is not None and number > high):
            limit = f"{low}-{high}" if high is not None else f"at least {low}"
            raise BadValue(f'Ignored {what} "{value}" from the link: it must be {limit}.')
        return str(number)

    return check


def seed_widget(key: str, parse: Callable[[], object]) -> None:
    """Before a URL-bound widget is first drawn, sets its value from the link's parameter.

    `parse` reads the (already cleaned) parameter; nothing happens when the link has none or
    the widget already has a value in this session.
    """
    if key in st.query_params and key not in st.session_state:
        st.session_state[key] = parse()


def show_notices(notices: list[str]) -> None:
    """Each notice as text: it quotes what the link said, which anyone can write (a flow name
    of markdown, an address to click), so none of it is read as markdown."""
    for notice in notices:
        st.info(plain(notice), icon=":material/link_off:")


def _release_bindings(keys) -> None:
    """Lets go of this page's widget bindings for these parameters (see switch_page_with)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    with ctx.session_state.query_params() as params:
        for key in keys:
            binding = params.get_binding_for_param(key)
            if binding is not None:
                params.unbind_widget(binding.widget_id)


def switch_page_with(page: str, query_params: dict) -> None:
    """st.switch_page to `page` with these URL parameters, even ones a widget here is bound to.

    Streamlit 1.67 refuses to set a parameter that is bound to a widget (bind="query-params"),
    also while leaving the page, so the bindings of the carried parameters are released first;
    the widgets that read them bind again when their page runs.
    """
    try:
        _release_bindings(query_params)
    except AttributeError:  # Streamlit's internals moved: a plain switch still works unbound
        pass
    st.switch_page(page, query_params=query_params)
