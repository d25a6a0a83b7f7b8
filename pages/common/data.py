"""How pages reach the store: one short-lived connection per script run, errors shown once.

The store RUNS_DB names (a DuckDB file, chdb:PATH or a ClickHouse server, opened through
`store.backend`) is opened for one run of a page script and closed at its end, so the CLI can
ingest between two reruns (DuckDB, and chdb, let one process hold a store). Query results are
cached per store change counter: a rerun that only redraws opens the store, reads the counter, and
is done. What a user may ask for later (a whole payload to download) is read then, by a call that
opens the store again (`PageStore.later`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import streamlit as st

from runs_store import settings
from runs_store.domain.errors import StoreError
from runs_store.ingest.sample_loader import SAMPLE_FILE, load_bundled_sample
from runs_store.services.runs_list import total_runs
from runs_store.services.sample_share import sample_share
from runs_store.store.backend import generation, open_location
from runs_store.store.location import StoreLocation, current_location

# A page does not hang for long behind an ingest: it says so and offers to try again.
APP_LOCK_WAIT_SECONDS = 3.0


class PageStore:
    """The open store for this script run, and its change counter for cache keys."""

    def __init__(self, con, location: StoreLocation, read_only: bool = False):
        self.con = con
        self.location = location
        self.path = str(location)  # names the store in cache keys; never holds a password
        self.read_only = read_only
        self.generation = generation(con)

    def cached(self, func: Callable, *args, **kwargs):
        """func(con, *args, **kwargs), remembered until the database changes."""
        return _cached_call(
            f"{func.__module__}.{func.__qualname__}",
            self.path,
            self.generation,
            args,
            tuple(sorted(kwargs.items())),
            _func=func,
            _con=self.con,
        )

    def call(self, func: Callable, *args, **kwargs):
        return func(self.con, *args, **kwargs)

    def later(self, func: Callable, *args, **kwargs) -> Callable[[], object]:
        """A call of func(con, *args, **kwargs) to make after this script run, e.g. when the
        user clicks a download: it opens the database again, as this page did."""
        location, read_only = self.location, self.read_only

        def call():
            with open_location(location, read_only=read_only) as con:
                return func(con, *args, **kwargs)

        return call


@st.cache_data(max_entries=512, show_spinner=False)
def _cached_call(
    name: str, path: str, generation_: int, args: tuple, kwargs: tuple, *, _func: Callable, _con
):
    return _func(_con, *args, **dict(kwargs))


def store_opener() -> Callable:
    """Opens the store RUNS_DB names, for a piece of work that opens it more than once (each
    time waiting no longer than a page does)."""
    location = current_location()
    wait = min(APP_LOCK_WAIT_SECONDS, settings.get_number("RUNS_LOCK_WAIT_SECONDS"))
    return lambda: open_location(location, wait_seconds=wait)


def database_path() -> str:
    """The store RUNS_DB names, as the CLI's --db takes it."""
    return str(current_location())


@contextmanager
def page_store(read_only: bool = False) -> Iterator[PageStore]:
    """The store for this script run; a store error becomes an st.error and stops the page."""
    try:
        location = current_location()
        wait = min(APP_LOCK_WAIT_SECONDS, settings.get_number("RUNS_LOCK_WAIT_SECONDS"))
        with open_location(location, read_only=read_only, wait_seconds=wait) as con:
            store = PageStore(con, location, read_only)
            _load_sample_once(store)
            yield store
    except StoreError as error:
        _stop_with(error)


def check_settings() -> None:
    """A setting set to something not allowed stops the page with its line, as in page_store:
    for a page that reads a setting before it opens the store."""
    try:
        settings.current()
    except StoreError as error:
        _stop_with(error)


def _stop_with(error: StoreError) -> None:
    st.error(str(error), icon=":material/error:")
    if st.button("Try again", icon=":material/refresh:"):
        st.rerun()
    st.stop()


def _load_sample_once(store: PageStore) -> None:
    """On first start with an empty database, load sample_data/ shifted to end now."""
    if not settings.get_bool("RUNS_LOAD_SAMPLE") or not SAMPLE_FILE.exists():
        return
    if store.call(total_runs):
        return
    with st.spinner("First start: loading the bundled sample runs…"):
        load_bundled_sample(
            None,
            now=datetime.now(UTC).replace(tzinfo=None),
            connection=store.con,
        )
    store.generation = generation(store.con)


def show_sample_note(store: PageStore) -> None:
    share = store.cached(sample_share)
    if share.only_sample:
        st.sidebar.info(
            f"You are looking at **sample data** ({share.total:,} generated runs, moved so the "
            "newest is now). Load your own runs on the **Import** page, or with "
            "`python -m runs_store ingest FILE`.",
            icon=":material/science:",
        )


def user_timezone():
    from runs_store.domain.formatting import zone

    return zone(st.context.timezone)
