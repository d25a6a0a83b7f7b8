"""Reading the URL before the widgets do: bad values fall back to defaults, with a notice.

Widgets bound to query parameters silently drop values they cannot show. A copied link with a
typo should say what was ignored instead, so each page cleans its parameters first with rules
from here and shows the notices.
"""

from __future__ import annotations

from datetime import date
from typing import Callable, Iterable

import streamlit as st


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
    if kept != values:
        st.query_params[key] = kept
        if not kept:
            del st.query_params[key]
    return notices


def clean_one(key: str, check: Callable[[str], str]) -> list[str]:
    """Replaces a single parameter by its checked value, or drops it; returns notices."""
    if key not in st.query_params:
        return []
    value = st.query_params[key]
    try:
        cleaned = check(value)
    except BadValue as error:
        del st.query_params[key]
        return [str(error)]
    if cleaned != value:
        st.query_params[key] = cleaned
    return []


def one_of(options: Iterable[str], what: str) -> Callable[[str], str]:
    allowed = list(options)

    def check(value: str) -> str:
        if value not in allowed:
            raise BadValue(f'Ignored {what} "{value}" from the link: it is not one of '
                           f'{", ".join(allowed)}.')
        return value

    return check


def a_date(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise BadValue(f'Ignored {what} "{value}" from the link: not a date like 2026-11-24.')

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


def show_notices(notices: list[str]) -> None:
    for notice in notices:
        st.info(notice, icon=":material/link_off:")
