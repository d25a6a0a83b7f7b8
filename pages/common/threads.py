"""Progress callbacks the store may call from its own threads (DuckDB's progress reader, the
pull's read-ahead): Streamlit draws only from a thread that carries the page's script context,
so such a callback takes the context of the page run that made it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec

from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

P = ParamSpec("P")


def drawable_from_any_thread(draw: Callable[P, None]) -> Callable[P, None]:
    """`draw`, callable from any thread of this page run."""
    context = get_script_run_ctx()

    @wraps(draw)
    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        if get_script_run_ctx(suppress_warning=True) is None:
            add_script_run_ctx(ctx=context)
        draw(*args, **kwargs)

    return call
