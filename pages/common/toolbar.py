"""The filter toolbar of the Runs and Insights pages, kept in the URL.

Flow, status, date range (presets or custom days), show archived and search are widgets bound to
query parameters, so a copied link opens the same view and a view moves between the two pages
intact. Drill-downs from Insights (failed step, error signature, flow version) arrive as URL
parameters too and show as removable chips.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import streamlit as st

from pages.common import url_state
from pages.common.text import plain
from runs_store.filters import (DEFAULT_PRESET, PRESET_LABELS, RunFilter, day_window,
                                preset_window)
from runs_store.statuses import STATUS_NAMES, label, parse_status

FILTER_KEYS = ("flow", "status", "range", "from", "to", "archived", "q", "failed_step",
               "signature", "version")
DRILL_KEYS = {"failed_step": "Failed step", "signature": "Error", "version": "Flow version"}
EARLIEST_DAY = date(2000, 1, 1)


def _known_status(value: str) -> str:
    """Either spelling (FAILED, Failed) in; the label out, which is what the widget reads."""
    found = parse_status(value)
    if found is None:
        raise url_state.BadValue(f'Ignored unknown status "{value}" from the link.')
    return found.label


def _known_range(value: str) -> str:
    """A preset key (7d, custom) or its label in any case; the label out, as the widget reads."""
    wanted = value.strip().lower()
    for key, text in PRESET_LABELS.items():
        if wanted in (key, text.lower()):
            return text
    raise url_state.BadValue(f'Ignored date range "{value}" from the link: use one of '
                             f'{", ".join(PRESET_LABELS.values())}.')


def _known_flow(flows: list[str]):
    known = set(flows)

    def check(value: str) -> str:
        if value not in known:
            raise url_state.BadValue(f'Ignored flow "{value}" from the link: no runs of a flow '
                                     f'by that name are loaded.')
        return value

    return check


def day_bounds(tz=timezone.utc) -> tuple[date, date]:
    """The days a custom range may name: up to tomorrow, for a link made a timezone ahead."""
    return EARLIEST_DAY, datetime.now(tz).date() + timedelta(days=1)


def clean_filter_params(flows: list[str], tz=timezone.utc) -> list[str]:
    """Checks the toolbar's URL parameters before its widgets read them."""
    earliest, latest = day_bounds(tz)
    notices = []
    notices += url_state.clean_many("flow", _known_flow(flows))
    notices += url_state.clean_many("status", _known_status)
    notices += url_state.clean_one("range", _known_range)
    notices += url_state.clean_one("from", url_state.a_date("start date", earliest, latest))
    notices += url_state.clean_one("to", url_state.a_date("end date", earliest, latest))
    notices += url_state.clean_one("archived", url_state.a_boolean("show archived"))
    if _days_without_range():
        url_state.set_param("range", PRESET_LABELS["custom"])
    seed_widgets_from_link()
    return notices


def _days_without_range() -> bool:
    """A link with days but no range means a custom range. (Once the Date range widget is
    drawn, the parameter is its own: it leaves the URL when Last 7 days, the default, is picked
    while the days are still there, and set_param leaves it alone.)"""
    params = st.query_params
    return ("from" in params or "to" in params) and "range" not in params


def _preset_key(text: str) -> str:
    return next(key for key, shown in PRESET_LABELS.items() if shown == text)


def seed_widgets_from_link() -> None:
    """Gives each toolbar widget its value from the (cleaned) link when it is first drawn.

    A bound widget matches URL text against its options' shown labels and silently drops
    anything else (FAILED, 7d, yes); seeding it with the parsed value makes every accepted
    spelling work.
    """
    params = st.query_params
    parse = {
        "flow": lambda: params.get_all("flow"),
        "status": lambda: [parse_status(value).name for value in params.get_all("status")],
        "range": lambda: _preset_key(params["range"]),
        "from": lambda: date.fromisoformat(params["from"]),
        "to": lambda: date.fromisoformat(params["to"]),
        "archived": lambda: params["archived"] == "true",
        "q": lambda: params["q"],
    }
    for key, value in parse.items():
        url_state.seed_widget(key, value)


def _widget_params() -> dict[str, list[str] | str]:
    """The toolbar widgets' values as URL values, left out where they are the default."""
    state = st.session_state
    chosen = {
        "flow": list(state.get("flow") or []),
        "status": [label(name) for name in state.get("status") or []],
        "range": PRESET_LABELS.get(state.get("range")) if state.get("range") != DEFAULT_PRESET
        else None,
        "archived": "true" if state.get("archived") else None,
        "q": (state.get("q") or "").strip(),
    }
    if state.get("range") == "custom":
        chosen.update({key: state[key].isoformat() for key in ("from", "to") if state.get(key)})
    return {key: value for key, value in chosen.items() if value}


def filter_query_params() -> dict[str, list[str] | str]:
    """The toolbar's current URL parameters, to carry them to another page.

    Read from the widgets once the toolbar has been drawn (the URL may lag one rerun behind
    them), else from the URL itself.
    """
    if "range" in st.session_state:
        params = _widget_params()
        params.update({key: st.query_params.get_all(key) for key in DRILL_KEYS
                       if key in st.query_params})
        return params
    return {key: st.query_params.get_all(key) for key in FILTER_KEYS if key in st.query_params}


def _custom_window(tz) -> tuple[datetime | None, datetime | None]:
    today = datetime.now(tz).date()
    earliest, latest = day_bounds(tz)
    left, right = st.columns(2)
    first = left.date_input("From", value=today - timedelta(days=6), key="from",
                            bind="query-params", min_value=earliest, max_value=latest)
    last = right.date_input("To", value=today, key="to", bind="query-params",
                            min_value=earliest, max_value=latest)
    if first and last and first > last:
        st.info("The start date was after the end date: swapped them.", icon=":material/swap_horiz:")
        first, last = last, first
    if not first or not last:
        return None, None
    return day_window(first, last, tz)


def _drill_down_chips() -> dict[str, tuple[str, ...]]:
    values = {key: tuple(st.query_params.get_all(key)) for key in DRILL_KEYS}
    active = {key: found for key, found in values.items() if found}
    if active:
        with st.container(horizontal=True, gap="small", vertical_alignment="center"):
            for key, found in active.items():
                # the values are record text (a step name, an error signature, a version id)
                text = f"{DRILL_KEYS[key]}: {plain(', '.join(found))}"
                if st.button(text, icon=":material/close:", key=f"clear_{key}",
                             help="Remove this filter"):
                    del st.query_params[key]
                    st.rerun()
    return values


def render_toolbar(flows: list[str], tz) -> RunFilter:
    """Draws the toolbar and returns the filter it describes."""
    url_state.show_notices(clean_filter_params(flows, tz))
    top = st.columns([3, 3, 2, 3, 1.7], vertical_alignment="bottom")
    chosen_flows = top[0].multiselect("Flow", flows, key="flow", bind="query-params",
                                      placeholder="All flows")
    chosen_statuses = top[1].multiselect("Status", STATUS_NAMES, format_func=label, key="status",
                                         bind="query-params", placeholder="All statuses")
    preset = top[2].selectbox("Date range", list(PRESET_LABELS), format_func=PRESET_LABELS.get,
                              index=list(PRESET_LABELS).index(DEFAULT_PRESET), key="range",
                              bind="query-params")
    search = top[3].text_input("Search", key="q", bind="query-params",
                               placeholder="Run id, failed step or error text",
                               icon=":material/search:")
    archived = top[4].checkbox("Show archived", key="archived", bind="query-params")
    if preset == "custom":
        since, until = _custom_window(tz)
    else:
        since, until = preset_window(preset, datetime.now(timezone.utc).replace(tzinfo=None))
    drill = _drill_down_chips()
    return RunFilter(flows=tuple(chosen_flows), statuses=tuple(chosen_statuses), since=since,
                     until=until, include_archived=bool(archived), search=(search or "").strip(),
                     failed_steps=drill["failed_step"], signature=(drill["signature"] or ("",))[0],
                     flow_version_ids=drill["version"])
