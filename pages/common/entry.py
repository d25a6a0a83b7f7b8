"""Every page is drawn inside app.py's navigation, even as a fresh server's very first request.

Streamlit decides once per server process, when its first session starts, whether the app uses
the old automatic navigation: it does while a `pages/` folder sits beside app.py and no session has
yet called st.navigation. So a deep link (/insights, /run?id=...) as the first request would run
its page file directly, with file-name navigation and without app.py's page config. A page that
finds itself run that way runs app.py instead: its st.navigation switches Streamlit to the declared
pages for this session and every later one, and draws this same page, found by its URL.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parents[2] / "app.py"
_navigating = threading.local()  # each session's script runs on a thread of its own


@contextmanager
def declared_navigation() -> Iterator[None]:
    """app.py runs its pages inside this: a page run within it is where it belongs."""
    _navigating.active = True
    try:
        yield
    finally:
        _navigating.active = False


def draw_inside_app() -> None:
    """Called first by every page: outside app.py's navigation, draw app.py instead, then stop."""
    if getattr(_navigating, "active", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
