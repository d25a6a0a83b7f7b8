"""Import page (/import): load run files from the browser, for users who never open a terminal.

Each upload is saved to a temporary file and loaded by the very code the CLI uses
(`SourceFile` + `ingest_file`), so the rules are the same: one transaction per file, bad records
kept with their reason, test runs skipped, loading a file again changes nothing. Files load only
when the user presses the button, never again on a rerun.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.common.data import database_path, page_store, show_sample_note
from pages.common.entry import draw_inside_app
from pages.common.text import plain
from pages.common.threads import drawable_from_any_thread
from runs_store.domain.errors import StoreError
from runs_store.ingest.pipeline import IngestSummary, ingest_file
from runs_store.ingest.readers import SourceFile
from runs_store.store.rejects import count_rejects, rejects_frame

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

RUNS_PAGE = "pages/runs.py"
ACCEPTED = ["jsonl", "ndjson", "json", "csv", "parquet", "gz"]
ROWS_SHOWN = 1_000  # rejects drawn in a table; the CLI lists them all
RAW_CHARS = 2_000  # of a rejected record's text in a table cell


# ------------------------------------------------------------------ loading


def ingest_upload(con, upload, folder: Path, progress) -> IngestSummary:
    """Saves one upload to a temporary file and loads it exactly as the CLI loads a file."""
    path = folder / f"upload-{upload.file_id}"
    upload.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload, out)
    try:
        source = SourceFile(path, display_name="upload:" + upload.name)
        return ingest_file(con, source, progress)
    finally:
        path.unlink(missing_ok=True)


def rejection_rows(summary: IngestSummary) -> list[dict]:
    return [
        {"file": r.source, "location": f"{r.unit} {r.position}", "reason": r.reason, "raw": r.raw}
        for r in summary.rejections[:ROWS_SHOWN]
    ]


def load_uploads(con, uploads: list) -> dict:
    """Loads every upload in turn under one progress bar; returns what to show afterwards."""
    total_bytes = sum(upload.size for upload in uploads) or 1
    bar = st.progress(0.0, text="Starting…")
    summary, errors, done_before = IngestSummary(), [], 0
    with tempfile.TemporaryDirectory(prefix="runs-import-") as folder:
        for upload in uploads:

            @drawable_from_any_thread
            def report(done: int, size: int, name: str = upload.name, start: int = done_before):
                share = min(1.0, (start + min(done, size)) / total_bytes)
                bar.progress(
                    share, text=f"Loading {plain(name)}: {done / 1e6:,.1f} of {size / 1e6:,.1f} MB"
                )

            try:
                summary.add(ingest_upload(con, upload, Path(folder), report))
            except StoreError as error:  # unreadable file, bad setting, out of memory
                errors.append(str(error))
            done_before += upload.size
    bar.empty()
    return {
        "line": summary.line(),
        "files": summary.files,
        "rejected": summary.rejected,
        "rejections": rejection_rows(summary),
        "errors": errors,
    }


# ------------------------------------------------------------------ drawing


def rejects_table(frame: pd.DataFrame, key: str) -> None:
    frame = frame.assign(raw=frame["raw"].str.slice(0, RAW_CHARS))
    st.dataframe(
        frame,
        key=key,
        hide_index=True,
        width="stretch",
        column_config={
            "file": st.column_config.TextColumn("File", width="medium"),
            "location": st.column_config.TextColumn("Location", width="small"),
            "reason": st.column_config.TextColumn("Reason", width="large"),
            "raw": st.column_config.TextColumn("Record as it was in the file", width="large"),
        },
    )


def show_result(result: dict) -> None:
    for message in result["errors"]:
        st.error(f"Not loaded: {plain(message)}", icon=":material/error:")
    if not result["files"]:
        return
    text = f"Ingested {result['line']}."
    if result["rejected"]:
        st.warning(text, icon=":material/warning:")
        st.markdown(
            f"**Rejected records of this upload** ({result['rejected']:,}); the good "
            f"records of the same files were loaded."
        )
        rejects_table(pd.DataFrame(result["rejections"]), key="upload_rejects")
        if result["rejected"] > ROWS_SHOWN:
            st.caption(f"Showing the first {ROWS_SHOWN:,}.")
    else:
        st.success(text, icon=":material/check_circle:")
    st.page_link(
        RUNS_PAGE,
        label="See them on the Runs page (all time)",
        icon=":material/list_alt:",
        query_params={"range": "all"},
    )


def show_store_rejects(store, expanded: bool) -> None:
    """Every reject in the store, from uploads and the CLI alike (collapsed after an upload)."""
    total = store.cached(count_rejects)
    if not total:
        st.caption("No rejected records in the store: every record loaded so far was accepted.")
        return
    with st.expander(
        f"All rejected records in the store ({total:,})",
        expanded=expanded,
        icon=":material/report:",
    ):
        st.caption(
            "Kept verbatim with their file, position and reason. Fix a file and load it "
            "again: its rejects are replaced."
            + (f" Showing the first {ROWS_SHOWN:,}." if total > ROWS_SHOWN else "")
        )
        rejects_table(store.cached(rejects_frame, ROWS_SHOWN), key="store_rejects")


def show_terminal_help() -> None:
    db = shlex.quote(database_path())
    st.subheader("From a terminal", anchor=False)
    st.markdown(
        "The same ingest, for files of any size or whole folders; it waits while this "
        "app is drawing a page:"
    )
    st.code(
        f"python -m runs_store ingest exports/ more-runs.jsonl.gz --db {db}\n"
        f"python -m runs_store rejects --db {db}",
        language="bash",
    )


def upload_limit_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


def pick_uploads() -> list:
    """The uploader; a new, empty one after each load so nothing is loaded twice."""
    round_ = st.session_state.setdefault("import_round", 0)
    uploads = st.file_uploader(
        "Run files",
        type=ACCEPTED,
        accept_multiple_files=True,
        key=f"uploads_{round_}",
        help="Engine run exports (.jsonl, .ndjson, .json: one run, a list, or a list page), or "
        "flat runs (.csv, .parquet) with the export columns; each may be gzipped (.gz).",
    )
    st.caption(
        "Engine run exports (`.jsonl`, `.ndjson`, `.json`) or flat runs (`.csv`, "
        f"`.parquet`), optionally gzipped. Up to {upload_limit_mb():,} MB per file "
        "(`server.maxUploadSize` in `.streamlit/config.toml`); for larger files use the "
        "terminal command below."
    )
    return uploads or []


def finish_load(result: dict) -> None:
    st.session_state["import_result"] = result
    st.session_state["import_round"] += 1
    st.rerun()


# ------------------------------------------------------------------ the page

st.title("Import runs", anchor=False)
st.markdown(
    "Load your runs from the engine's exports. Each file loads in one go or not at all; "
    "bad records are set aside with the reason, and loading a file again changes nothing."
)

with page_store() as store:
    show_sample_note(store)
    uploads = pick_uploads()
    if uploads:
        count = len(uploads)
        if st.button(
            f"Load {count} file{'s' if count != 1 else ''}",
            type="primary",
            icon=":material/upload:",
            key="load_uploads",
        ):
            finish_load(load_uploads(store.con, uploads))
    has_result = "import_result" in st.session_state
    if has_result:
        show_result(st.session_state["import_result"])
    show_store_rejects(store, expanded=not has_result)
    show_terminal_help()
