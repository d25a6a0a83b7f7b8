"""Showing a step payload: collapsible JSON when it is small, a cut preview and a download when not.

A step can output megabytes. Sending all of it to the browser as an expandable tree would freeze
the tab, so a payload past RUNS_PAYLOAD_PREVIEW_KB (cut in the store, see
runs_store.services.run_detail.Payload) is shown as plain text of its first part, with its full
size and
a download of the whole that is only read from the store when clicked. Record text is only ever
shown through st.json / st.code, never as markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from runs_store.services.run_detail import Payload, preview_bytes

PREVIEW_HEIGHT = 420  # px; a long preview scrolls inside its box


def human_size(size: int) -> str:
    """1,234 bytes, 12.3 KB, 5.2 MB."""
    if size < 1024:
        return f"{size:,} byte" + ("" if size == 1 else "s")
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def show_payload(
    payload: Payload,
    *,
    key: str,
    file_name: str,
    download: Callable[[], str],
    empty: str = "Nothing was recorded.",
    expanded: int = 1,
) -> None:
    """The payload as collapsible JSON opened `expanded` levels deep, or as a cut preview with
    its size and a download of the whole, which `download` reads when the user clicks it."""
    if not payload.present:
        st.caption(empty)
    elif payload.cut:
        show_cut_payload(payload, key=key, file_name=file_name, download=download)
    elif isinstance(payload.value, (dict, list)):
        st.json(payload.value, expanded=expanded)
    else:
        st.code(str(payload.value), language=None, wrap_lines=True)


def show_cut_payload(
    payload: Payload, *, key: str, file_name: str, download: Callable[[], str]
) -> None:
    shown = human_size(preview_bytes())
    st.caption(
        f"This payload is {human_size(payload.size)}: too large to show whole, so only its "
        f"first {shown} are shown below. Download it to see all of it."
    )
    st.download_button(
        f"Download the whole payload ({human_size(payload.size)})",
        data=download,
        file_name=file_name,
        mime="application/json",
        on_click="ignore",
        key=key,
        icon=":material/download:",
    )
    st.code(payload.preview or "", language=None, wrap_lines=True, height=PREVIEW_HEIGHT)
