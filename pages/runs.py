"""The Runs page: every run of every flow, newest first, filtered, paged and acted on.

The page settles its view (runs_store.queries.view_state.RunsView: the toolbar's filters, the
drill-downs,
the page, rows per page and Live) from the URL and its widgets (pages/common/url_state.py), asks
the store for the view's day counts and one page of rows, draws them, and writes the view back to
the URL, so a copied link opens the same view. Opening a run carries the view in the run page's
URL so its "Back to runs" returns here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from urllib.parse import quote

import pandas as pd
import streamlit as st

from pages.common import status_ui, url_state
from pages.common.data import PageStore, check_settings, page_store, show_sample_note, user_timezone
from pages.common.entry import draw_inside_app
from pages.common.text import plain
from pages.common.toolbar import (
    agent_choices,
    agents_drawn,
    draw_toolbar,
    today_in,
    utc_now,
    view_context,
)
from runs_store import settings
from runs_store.domain.errors import StoreError
from runs_store.domain.formatting import shown_duration
from runs_store.domain.signatures import error_summary
from runs_store.domain.statuses import label
from runs_store.ingest.engine.sources_file import (
    PullOutcome,
    configured_sources,
    pull_configured,
)
from runs_store.queries.filters import PAGE_SIZES, RunFilter
from runs_store.queries.view_state import (
    AGENT_DRILL_KEYS,
    AGENT_KEYS,
    AGENT_WIDGETS,
    ALIAS_KEYS,
    DRILL_KEYS,
    FILTER_KEYS,
    PAGING_KEYS,
    URL_KEYS,
    RunsView,
    page_notice,
)
from runs_store.services import runs_list
from runs_store.services.export import export_bytes
from runs_store.services.masking import messages_as_shown
from runs_store.store.backend import open_location
from runs_store.store.location import current_location

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

RUN_PAGE = "pages/run.py"
IMPORT_PAGE = "pages/import.py"
OPEN_KEY = "runs_open_click"
FLASH_KEY = "runs_flash"
VIEW_KEY = "runs_view_signature"
LINKED_PAGE_KEY = "runs_page_from_link"  # this run's page came from the link (read once)
ROW_HEIGHT = 35
ARCHIVED_MARK = "🗄 "
EXPORTS = {"csv": ("CSV", "text/csv"), "jsonl": ("JSON", "application/x-ndjson")}
BIG_EXPORT = 500_000


# ------------------------------------------------------------------ URL and paging state

RUNS = url_state.Scope(
    "runs",
    keys=URL_KEYS,
    widgets=FILTER_KEYS + AGENT_WIDGETS + PAGING_KEYS,
    arrival_marks=("rows",),
    whole_url=True,
)


def view_signature(view: RunsView) -> str:
    """Identifies the filters and rows per page, to notice when either changes."""
    return json.dumps(
        [view.to_query(FILTER_KEYS + DRILL_KEYS + AGENT_KEYS), view.rows], sort_keys=True
    )


def reset_page_on_change(signature: str, page_from_link: bool) -> None:
    """Back to page 1 when the filters or the rows per page changed since the last rerun, unless
    the link (or the browser's history) names the page to show."""
    previous = st.session_state.get(VIEW_KEY)
    st.session_state[VIEW_KEY] = signature
    if (
        previous is not None
        and previous != signature
        and not page_from_link
        and st.session_state.get("page", 1) != 1
    ):
        st.session_state["page"] = 1


def keep_page_in_range(page_count: int, from_link: bool) -> None:
    """A page past the end falls back to page 1 (one the link asked for: with a notice)."""
    wanted = st.session_state.get("page", 1)
    if wanted > page_count:
        if from_link:
            url_state.show_notices([page_notice(wanted, page_count)])
        st.session_state["page"] = 1


def table_key(signature: str, page: int, generation: int) -> str:
    """A selection belongs to one page of one view of one state of the data, never another."""
    digest = hashlib.sha1(f"{signature}|{page}|{generation}".encode()).hexdigest()[:12]
    return f"runs_table_{digest}"


# ------------------------------------------------------------------ the table


def started_local(started: pd.Series, tz) -> pd.Series:
    return pd.to_datetime(started).dt.tz_localize("UTC").dt.tz_convert(tz)


def table_frame(rows: pd.DataFrame, tz) -> pd.DataFrame:
    """The page's rows as the table shows them; `id` and `Archived` ride along, hidden."""
    archived = rows["archived_at"].notna()
    return pd.DataFrame(
        {
            "id": rows["id"],
            "Open": "Open",
            "Flow": [
                ARCHIVED_MARK + name if gone else name
                for name, gone in zip(rows["flow_name"], archived, strict=True)
            ],
            "Status": [[label(name)] for name in rows["status"]],
            "Started At": started_local(rows["started_at"], tz),
            "Duration": [
                shown_duration(status, ms)
                for status, ms in zip(rows["status"], rows["duration_ms"], strict=True)
            ],
            "Failed Step": [
                runs_list.failed_step_label(d, n)
                for d, n in zip(rows["failed_step_display"], rows["failed_step"], strict=True)
            ],
            "Error": [
                error_summary(message) for message in messages_as_shown(rows["error_message"])
            ],
            "Archived": archived,
            "Run": ["run?id=" + quote(str(run_id), safe="") for run_id in rows["id"]],
        }
    )


def column_config(tz) -> dict:
    zone_name = getattr(tz, "key", None) or "UTC"
    when = "MMM D, YYYY, h:mm:ss A"
    return {
        "Open": st.column_config.ButtonColumn(
            " ", type="tertiary", key=OPEN_KEY, width=52, help="Open the run's page", pinned=True
        ),
        "Flow": st.column_config.TextColumn("Flow", width=210),
        "Status": status_ui.status_column(),
        "Started At": st.column_config.DatetimeColumn(
            "Started At", format=when, help=f"In your timezone ({zone_name})", width=175
        ),
        "Duration": st.column_config.TextColumn("Duration", width=80),
        "Failed Step": st.column_config.TextColumn("Failed Step", width=160),
        "Error": st.column_config.TextColumn(
            "Error",
            width=300,
            help="The failed step's error, in one line; the run page has all of it",
        ),
        "Run": st.column_config.LinkColumn(
            "Run",
            display_text=r"run\?id=(.*)$",
            width=110,
            help="A plain link to the run (opens a new tab)",
        ),
    }


def show_table(frame: pd.DataFrame, key: str, tz):
    order = ["Open", "Flow", "Status", "Started At", "Duration", "Failed Step", "Error", "Run"]
    return st.dataframe(
        frame,
        key=key,
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        height=ROW_HEIGHT * (len(frame) + 1) + 3,
        column_order=order,
        column_config=column_config(tz),
    )


def selected_ids(event, frame: pd.DataFrame) -> list[str]:
    positions = (event or {}).get("selection", {}).get("rows", []) if event else []
    return [frame["id"].iloc[p] for p in positions if 0 <= p < len(frame)]


# ------------------------------------------------------------------ actions


def open_run(run_id: str, view: RunsView) -> None:
    """The run page in this tab, carrying the view so "Back to runs" can restore it."""
    st.switch_page(RUN_PAGE, query_params={"id": run_id, **view.to_query()})


def open_clicked_run(frame: pd.DataFrame, view: RunsView) -> None:
    click = st.session_state.get(OPEN_KEY)
    if click is not None and 0 <= click["row"] < len(frame):
        open_run(frame["id"].iloc[click["row"]], view)


def archive(store: PageStore, run_ids: list[str], archived: bool) -> None:
    changed = store.call(runs_list.set_archived, run_ids, archived)
    verb = "Archived" if archived else "Restored"
    st.session_state[FLASH_KEY] = f"{verb} {changed:,} run{'' if changed == 1 else 's'}."
    st.rerun()


def show_flash() -> None:
    message = st.session_state.pop(FLASH_KEY, None)
    if message:
        st.toast(message, icon=":material/inventory_2:")


def show_selection_actions(
    store: PageStore, frame: pd.DataFrame, chosen: list[str], view: RunsView
) -> None:
    """Open, archive, restore or export the selected runs."""
    picked = frame[frame["id"].isin(chosen)]
    archived = picked["Archived"]
    st.markdown(f"**{len(chosen):,} selected**")
    if len(chosen) == 1 and st.button("Open run", icon=":material/open_in_new:", type="primary"):
        open_run(chosen[0], view)
    if st.button(
        "Archive",
        icon=":material/archive:",
        disabled=bool(archived.all()),
        help="Hide these runs unless Show archived is ticked",
    ):
        archive(store, chosen, True)
    if st.button("Unarchive", icon=":material/unarchive:", disabled=not archived.any()):
        archive(store, chosen, False)
    for fmt, (name, mime) in EXPORTS.items():
        st.download_button(
            name,
            store.call(export_bytes, fmt, run_ids=chosen),
            file_name=f"runs-selected.{fmt}",
            mime=mime,
            icon=":material/download:",
            on_click="ignore",
            key=f"export_sel_{fmt}",
            help=f"Download the selected runs as {name}",
        )


def export_all_later(run_filter: RunFilter, fmt: str):
    """A download built only when clicked, on its own connection (the click has no script run)."""
    location = current_location()

    def build() -> bytes:
        with open_location(location) as con:
            return export_bytes(con, fmt, run_filter=run_filter)

    return build


def show_export_all(run_filter: RunFilter, total: int) -> None:
    with st.popover(
        "Export all",
        icon=":material/download:",
        help="Every run matching the filters, not only this page",
    ):
        st.markdown(f"All **{total:,}** runs that match the filters:")
        for fmt, (name, mime) in EXPORTS.items():
            st.download_button(
                f"{name}",
                export_all_later(run_filter, fmt),
                file_name=f"runs.{fmt}",
                mime=mime,
                icon=":material/download:",
                on_click="ignore",
                key=f"export_all_{fmt}",
            )
        if total > BIG_EXPORT:
            st.caption(
                "For exports this large the command line streams straight to a file: "
                "`python -m runs_store export --format csv --out runs.csv`."
            )


# ------------------------------------------------------------------ states around the table


def stuck_note(store: PageStore, run_filter: RunFilter) -> None:
    """Runs RUNNING for over an hour are usually stuck: say so, with a way to list them."""
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    stuck = store.cached(runs_list.count_stuck_running, run_filter, now)
    if not stuck:
        return
    noun = "run has" if stuck == 1 else "runs have"
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.caption(f":material/hourglass_top: {stuck:,} {noun} been running for over an hour.")
        st.button(
            "Show running runs",
            type="tertiary",
            on_click=_show_only,
            args=("RUNNING",),
            key="show_stuck",
        )


def _show_only(status_name: str) -> None:
    st.session_state["status"] = [status_name]
    url_state.note_change()


def _widen_range() -> None:
    st.session_state["range"] = "all"
    url_state.note_change()


def _clear_filters() -> None:
    for key, empty in (
        ("flow", []),
        ("status", []),
        ("q", ""),
        ("tool", ""),
        ("model", ""),
        ("tool_outcome", ""),
    ):
        st.session_state[key] = empty
    url_state.drop_params(DRILL_KEYS + AGENT_DRILL_KEYS + ALIAS_KEYS)


def show_empty(store: PageStore) -> None:
    """A friendly dead end: why nothing shows and one click to see more."""
    if not store.cached(runs_list.total_runs):
        st.info("No runs are loaded yet.", icon=":material/inbox:")
        st.page_link(IMPORT_PAGE, label="Import runs", icon=":material/upload_file:")
        return
    st.info(
        "**No runs match these filters.** Widen the date range or clear some filters.",
        icon=":material/filter_alt_off:",
    )
    with st.container(horizontal=True, gap="small"):
        if st.session_state.get("range") != "all":
            st.button("Search all time", on_click=_widen_range, icon=":material/date_range:")
        st.button("Clear filters", on_click=_clear_filters, icon=":material/filter_alt_off:")


# ------------------------------------------------------------------ the list


def show_runs(store: PageStore, view: RunsView, run_filter: RunFilter, tz) -> None:
    """The bar, the table and the paging controls for the current view."""
    page_from_link = st.session_state.pop(LINKED_PAGE_KEY, False)  # not in a Live refresh
    bar, table_area, footer = st.container(), st.container(), st.container()
    left, middle = footer.columns([1, 5], vertical_alignment="bottom")
    rows = left.selectbox(
        "Rows per page", list(PAGE_SIZES), key="rows", on_change=url_state.note_change
    )
    signature = view_signature(view.with_(rows=rows))
    reset_page_on_change(signature, page_from_link)
    counts = store.cached(runs_list.count_days, run_filter)
    page_count = runs_list.page_count(counts.total, rows)
    keep_page_in_range(page_count, page_from_link)
    with middle:
        page = st.pagination(page_count, key="page", on_change=url_state.note_change)
    view = view.with_(page=page, rows=rows)
    url_state.write_view(RUNS, view)  # the whole view, once all of it is known
    runs = store.cached(
        runs_list.list_runs,
        run_filter,
        rows,
        runs_list.page_offset(page, rows),
        counts.total,
        counts,
    )
    with bar:
        stuck_note(store, run_filter)
    retention = store.cached(runs_list.retention_notice, run_filter)
    if runs.rows.empty:
        footer.empty()
        with bar:
            st.markdown(f"**{runs.position_text()}**")
            if retention is not None:  # the range's runs are gone: its counts are in Insights
                st.info(retention, icon=":material/history:")
            else:
                show_empty(store)
        return
    if retention is not None:
        with bar:
            st.caption(f":material/history: {retention}")
    frame = table_frame(runs.rows, tz)
    with table_area:
        event = show_table(frame, table_key(signature, page, store.generation), tz)
        if run_filter.include_archived:
            st.caption(f"{ARCHIVED_MARK}marks an archived run.")
        open_clicked_run(frame, view)
    with bar.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(f"**{runs.position_text()}**", width="content")
        st.space("stretch")
        chosen = selected_ids(event, frame)
        if chosen:
            show_selection_actions(store, frame, chosen, view)
        show_export_all(run_filter, counts.total)


def show_runs_fresh(view: RunsView, run_filter: RunFilter, tz) -> None:
    """show_runs on a connection of its own: a Live refresh reruns only this part, and first
    pulls from the engines in RUNS_SOURCES, if any."""
    with page_store() as store:
        if view.live:
            show_live_pull(store)
        show_runs(store, view, run_filter, tz)


def show_live_pull(store) -> None:
    """Pulls what is new from each configured engine (skipped while another pull runs); a
    source that fails says so in one line and the list still refreshes."""
    try:
        if not configured_sources():
            return
        outcomes = pull_configured(store.con, wait=False)
    except StoreError as error:
        outcomes = [PullOutcome("RUNS_SOURCES", error=str(error).splitlines()[0])]
    failed = [outcome for outcome in outcomes if outcome.error]
    for outcome in failed:
        st.caption(f":material/sync_problem: {plain(outcome.name)}: {plain(outcome.error)}")
    if outcomes and not failed:
        changed = sum(outcome.changed for outcome in outcomes)
        st.caption(
            f":material/sync: Pulled from {len(outcomes)} source"
            f"{'s' if len(outcomes) != 1 else ''}: {changed:,} new or changed runs"
        )


def live_seconds() -> float:
    return max(2.0, settings.get_number("RUNS_LIVE_SECONDS"))


def show_live_toggle(area, view: RunsView) -> RunsView:
    """The Live toggle (seeded with the view); returns the view with it."""
    live = area.toggle(
        "Live",
        key="live",
        on_change=url_state.note_change,
        help=f"Refresh the list every {live_seconds():g} seconds",
    )
    return view.with_(live=live)


def main() -> None:
    check_settings()  # the header reads RUNS_LIVE_SECONDS before the store is opened
    title, toggle = st.columns([5, 1], vertical_alignment="bottom")
    title.title("Runs")
    tz = user_timezone()
    with page_store() as store:
        flows = store.cached(runs_list.flow_names)
        choices = agent_choices(store)
        settled = url_state.settle_view(RUNS, view_context(flows, tz, choices), today_in(tz))
        st.session_state[LINKED_PAGE_KEY] = "page" in settled.from_link
        view = show_live_toggle(toggle, settled.view)
        url_state.show_notices(settled.notices)
        show_flash()
        show_sample_note(store)
        view = draw_toolbar(view, flows, tz, agents_drawn(view, choices))
    run_filter = view.run_filter(utc_now(), today_in(tz), tz)
    if view.live:
        st.fragment(show_runs_fresh, run_every=live_seconds())(view, run_filter, tz)
    else:
        show_runs_fresh(view, run_filter, tz)
    status_ui.status_legend()


main()
