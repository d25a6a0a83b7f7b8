"""The Run page: one run as the engine's read-only view shows it, at /run?id=RUN_ID&step=STEP.

A banner sums the run up ("Run Failed - Started: ..., Took: ..."); every step follows in execution
order with its badge and time, a waterfall shows where the time went, and the selected step's
details panel has its properties and the Input / Output / Timeline tabs. The selected step is the
URL's `step`; every other URL parameter is the Runs page's view, handed back by "Back to runs".
Everything comes from one store call (runs_store.services.run_detail.load_run); the whole of a
payload too
big to show is read only when its download is clicked (payload_download). Record text is only ever
shown escaped or through st.json / st.code / st.dataframe.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.common.data import PageStore, page_store, user_timezone
from pages.common.entry import draw_inside_app
from pages.common.json_view import show_payload
from pages.common.text import plain
from runs_store import settings
from runs_store.domain.formatting import banner_time, short_duration
from runs_store.domain.statuses import BY_NAME, step_status_badge, step_status_label, tone
from runs_store.domain.step_tree import AgentTimeline, Loop, TimelineEntry
from runs_store.services.agents import run_agents
from runs_store.services.run_detail import (
    Comparison,
    EditLinkError,
    RunDetail,
    Step,
    banner_line,
    compare_with_last_success,
    edit_flow_url,
    load_run,
    payload_download,
)

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

RUNS_PAGE = "pages/runs.py"
VIEW_KEYS = (
    "flow",
    "status",
    "range",
    "from",
    "to",
    "archived",
    "q",
    "page",
    "rows",
    "live",
    "failed_step",
    "signature",
    "version",
    "tool",
    "tool_failed",
    "tool_outcome",
    "model",
    "agent_status",
    "max_steps",
    "tool_calls",
)
# A run's tone (runs_store.domain.statuses.tone) as the box its banner is drawn in.
BANNER_BOXES = {
    "success": (st.success, ":material/check_circle:"),
    "error": (st.error, ":material/error:"),
    "warning": (st.warning, ":material/cancel:"),
    "info": (st.info, ":material/schedule:"),
}
# st.badge's colour names as the waterfall's bar colours.
BADGE_HEX = {"green": "#21a366", "red": "#e0393e", "blue": "#1c83e1", "gray": "#808495"}
BAR_HEIGHT = 26
# Name button, kind, badge, time: every row lines up like a table. The badge column fits
# "Succeeded", the time column "1,234 ms"; the name takes the rest.
STEP_COLUMNS = [5, 2, 2.2, 1.5]
TOOL_CALL_COLUMNS = [6, 2.2, 1.5]  # title, badge, time, as in the steps list
ERROR_JSON_LEVELS = 4  # an error body opens far enough to read its status and message
# Letters, digits, spaces, commas and hyphens: no markdown, and no dot, slash, colon or @ to make
# an address that the badge's markdown would turn into a link.
_BADGE_UNSAFE = re.compile(r"[^\w ,-]")


# ------------------------------------------------------------------ text and URL


def badge_text(text) -> str:
    """Record text for a badge label: st.badge escapes only brackets and its markdown links
    addresses, so keep plain characters."""
    return " ".join(_BADGE_UNSAFE.sub(" ", str(text)).split()) or "?"


def status_badge_markdown(status: str | None) -> str:
    """A step status as a markdown badge: Succeeded green, Failed red, others their own colour."""
    return f":{step_status_badge(status)}-badge[{badge_text(step_status_label(status))}]"


def view_params() -> dict[str, list[str]]:
    """The Runs page's view carried in this page's URL, to hand back on "Back to runs"."""
    return {key: st.query_params.get_all(key) for key in VIEW_KEYS if key in st.query_params}


def run_link_params(run_id: str) -> dict[str, list[str] | str]:
    return {"id": run_id, **view_params()}


def show_back_link() -> None:
    st.page_link(
        RUNS_PAGE, label="Back to runs", icon=":material/arrow_back:", query_params=view_params()
    )


def select_step(name: str) -> None:
    st.query_params["step"] = name


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# ------------------------------------------------------------------ banner and header


def show_not_found(run_id: str | None) -> None:
    show_back_link()
    if run_id:
        st.warning(
            f"**Run not found**: no run with the id {plain(run_id)} is loaded. It may have "
            "been removed, or the link points at another database.",
            icon=":material/search_off:",
        )
    else:
        st.warning(
            "**Run not found**: the link names no run. Open a run from the Runs list.",
            icon=":material/search_off:",
        )


def show_banner(run: RunDetail, tz) -> None:
    box, icon = BANNER_BOXES[tone(run.status)]
    body = banner_line(run, tz, now_utc())
    found = BY_NAME.get(run.status)
    if found is not None and found.hint:
        body += f"\n\n{found.meaning} {found.hint}"
    box(body, icon=icon)


def show_edit_flow(run: RunDetail) -> None:
    template = settings.get("RUNS_EDIT_FLOW_URL").strip()
    if not template:
        st.caption("Set `RUNS_EDIT_FLOW_URL` to open flows in your editor", width="content")
        st.button(
            "Edit flow",
            icon=":material/edit:",
            disabled=True,
            key="edit_flow_off",
            help="Set RUNS_EDIT_FLOW_URL to your workflow editor's URL with {flow_id} "
            "(and optionally {flow_version_id}), e.g. "
            "https://cloud.example.com/flows/{flow_id}.",
        )
        return
    try:
        st.link_button("Edit flow", edit_flow_url(template, run), icon=":material/edit:")
    except EditLinkError as error:
        st.caption(plain(str(error)), width="content")
        st.button(
            "Edit flow",
            icon=":material/edit:",
            disabled=True,
            key="edit_flow_off",
            help=plain(str(error)),
        )


def show_header(run: RunDetail) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        show_back_link()
        st.space("stretch")
        show_edit_flow(run)
    st.subheader(plain(run.flow_name), anchor=False)


def fact_line(run: RunDetail, tz) -> str:
    facts = [
        ("Run", run.id),
        ("Flow version", run.flow_version_id),
        ("Flow id", run.flow_id),
        ("Parent run", run.parent_run_id),
        ("Triggered by", run.triggered_by),
    ]
    parts = [f"**{name}** {plain(value)}" for name, value in facts if value]
    if run.tags:
        parts.append("**Tags** " + ", ".join(plain(tag) for tag in run.tags))
    if run.archived_at:
        parts.append(f"**Archived** {banner_time(run.archived_at, tz)}")
    return " · ".join(parts)


# ------------------------------------------------------------------ steps list


def step_badge(status: str | None) -> None:
    st.badge(badge_text(step_status_label(status)), color=step_status_badge(status))


def step_help(step: Step) -> str:
    """The button's tooltip: the whole title (a long one is cut on the button) and the step id."""
    return plain(step.title) + (f" (step {plain(step.name)})" if step.display_name else "")


def show_step_row(step: Step, selected: bool) -> None:
    name, kind, badge, took = st.columns(STEP_COLUMNS, gap="xsmall", vertical_alignment="center")
    with name:
        st.button(
            f"{step.position + 1}\\. {plain(step.title)}",
            key=f"pick_{step.position}",
            type="secondary" if selected else "tertiary",
            on_click=select_step,
            args=(step.name,),
            help=step_help(step),
        )
    with kind:
        st.caption(plain(step.kind))
    with badge:
        step_badge(step.status)
    with took:
        st.caption(short_duration(step.duration_ms) or "–", text_alignment="right")
    if step.loop is not None:
        show_loop_summary(step, step.loop)
    if step.branches:
        taken = [branch.name for branch in step.branches if branch.taken]
        st.caption(
            "Branch taken: " + (", ".join(plain(name) for name in taken) if taken else "none")
        )


def iteration_line(iteration) -> str:
    parts = []
    for child in iteration.steps:
        badge = status_badge_markdown(child.status)
        nested = f" ({child.iterations} iterations)" if child.iterations is not None else ""
        parts.append(f"{plain(child.name)}{nested} {badge} {short_duration(child.duration_ms)}")
    return f"**#{iteration.number}** · " + (" · ".join(parts) if parts else "no steps ran")


def show_loop_summary(step: Step, loop: Loop) -> None:
    failed = loop.failed_iterations
    title = f"{loop.count:,} iteration" + ("" if loop.count == 1 else "s")
    if failed:
        title += f" · failed: #{', #'.join(map(str, failed[:5]))}"
    with st.expander(title, expanded=bool(failed), key=f"loop_{step.position}"):
        # one paragraph per iteration, in one element: a run of many loops draws no slower
        st.markdown("\n\n".join(iteration_line(iteration) for iteration in loop.shown))
        if loop.count > len(loop.shown):
            st.caption(f"and {loop.count - len(loop.shown):,} more iterations (see the Output tab)")


def show_steps(run: RunDetail, selected: Step) -> None:
    st.markdown(f"**Steps** · {len(run.steps)} in execution order")
    with st.container(border=True, gap="xsmall", key="step_list"):
        for step in run.steps:
            show_step_row(step, step.name == selected.name)


# ------------------------------------------------------------------ waterfall


def waterfall_figure(run: RunDetail) -> go.Figure:
    """Each step as a bar from the end of the steps before it (the engine keeps no start times).

    Built in one call: plotly would validate each later update_* call anew (3x the time)."""
    titles = [escape(f"{step.position + 1}. {step.title}") for step in run.steps]
    colors = [
        BADGE_HEX.get(step_status_badge(step.status), BADGE_HEX["gray"]) for step in run.steps
    ]
    durations = [max(step.duration_ms or 0, 0) for step in run.steps]
    bar = go.Bar(
        y=titles,
        x=[max(ms, 1) for ms in durations],
        base=[step.offset_ms for step in run.steps],
        orientation="h",
        marker_color=colors,
        customdata=[
            [short_duration(ms), escape(step_status_label(step.status))]
            for ms, step in zip(durations, run.steps, strict=True)
        ],
        hovertemplate="%{y}<br>%{customdata[1]} · %{customdata[0]}<extra></extra>",
    )
    layout = {
        "yaxis": {"autorange": "reversed", "title": {"text": None}},
        "xaxis": {"title": {"text": "milliseconds since the run started"}, "rangemode": "tozero"},
        "height": 70 + BAR_HEIGHT * len(run.steps),
        "showlegend": False,
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "dragmode": False,
    }
    return go.Figure(data=[bar], layout=layout)


def show_waterfall(run: RunDetail) -> None:
    with st.expander("Where the time went", expanded=True, icon=":material/waterfall_chart:"):
        st.plotly_chart(
            waterfall_figure(run),
            theme="streamlit",
            key="waterfall",
            config={"displayModeBar": False},
        )


# ------------------------------------------------------------------ step details


def payload_reader(store: PageStore, run: RunDetail, step: Step, column: str):
    """Reads the step's whole input, output or error (masked as shown) when its download is
    clicked."""
    return store.later(payload_download, run.id, step.position, column, run.masked)


def properties_markdown(step: Step) -> str:
    """The step's properties, one a line; its status is the one coloured badge of the panel."""
    kind = f"{step.kind} ({step.type})" if step.type and step.type != step.kind else step.kind
    rows = [
        ("Name", step.name),
        ("Display name", step.display_name),
        ("Type", kind),
        ("App / action", step.app_action),
    ]
    lines = [f"**{name}** {plain(value)}" for name, value in rows if value]
    lines.append(f"**Status** {status_badge_markdown(step.status)}")
    if step.duration_ms is not None:
        lines.append(f"**Duration** {short_duration(step.duration_ms)}")
    return "  \n".join(lines)


def show_error(store: PageStore, run: RunDetail, step: Step) -> None:
    """The error's headline in red; the whole error below only when it says more."""
    error = step.error
    st.error(plain(error.headline) or "The step failed without a message.", icon=":material/error:")
    if error.adds_detail:
        show_payload(
            error.detail,
            key=f"error_download_{step.position}",
            file_name=f"{step.name}-error.json",
            expanded=ERROR_JSON_LEVELS,
            download=payload_reader(store, run, step, "error"),
        )


def show_output(store: PageStore, run: RunDetail, step: Step) -> None:
    if step.error is not None:
        show_error(store, run, step)
        if step.output.present:
            st.markdown("**Output**")
    elif step.failed:
        st.error("The step failed without an error message.", icon=":material/error:")
    if step.output.present or step.error is None:
        show_payload(
            step.output,
            key=f"output_download_{step.position}",
            file_name=f"{step.name}-output.json",
            empty="This step recorded no output.",
            download=payload_reader(store, run, step, "output"),
        )


def tool_badge(entry: TimelineEntry) -> None:
    text, color = entry.status_badge
    st.badge(badge_text(text), color=color)  # an unknown status is the record's own text


def show_tool_call(number: int, entry: TimelineEntry) -> None:
    with st.container(border=True):
        title, badge, took = st.columns(
            TOOL_CALL_COLUMNS, gap="xsmall", vertical_alignment="center"
        )
        with title:
            st.markdown(
                f"**{number}. Tool call** {plain(entry.tool_name)}"
                + (f" · {plain(entry.tool_type)}" if entry.tool_type else "")
            )
        with badge:
            tool_badge(entry)
        with took:
            st.caption(short_duration(entry.duration_ms) or "–", text_alignment="right")
        for title, value in (
            ("Parameters", entry.params),
            ("Resolved input", entry.resolved),
            ("Output", entry.output),
        ):
            if value is not None:
                st.caption(title)
                st.json(value, expanded=1)
        if entry.error not in (None, ""):
            st.error(
                plain(entry.error if isinstance(entry.error, str) else str(entry.error)),
                icon=":material/error:",
            )


def show_thought(number: int, entry: TimelineEntry) -> None:
    with st.container(border=True):
        st.markdown(f"**{number}. Thought**")
        st.text(entry.text or "(empty)")


def agent_facts(store: PageStore, run: RunDetail, step: Step):
    """The agent step's facts as the store keeps them (run_agents), or None (an agent inside a
    loop has none)."""
    found = store.cached(run_agents, run.id)
    rows = found[found["position"] == step.position]
    return None if rows.empty else rows.iloc[0]


def count_text(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{int(value):,}"


def show_agent_summary(agent) -> None:
    """The agent step in numbers: its model, status, tool calls and how they went, the time its
    tools took, tokens when recorded, and whether it stopped at maxSteps."""
    with st.container(border=True, key="agent_summary"):
        facts = [
            f"**Model** {plain(agent['model'])}",
            f"**Agent status** {plain(agent['agent_status'] or 'not recorded')}",
            f"**Thoughts** {count_text(agent['thoughts'])}",
        ]
        if not pd.isna(agent["duration_ms"]):
            facts.append(f"**Time** {short_duration(agent['duration_ms'])}")
        st.markdown(" · ".join(facts))
        numbers = {
            "Tool calls": count_text(agent["tool_calls"]),
            "Failed": count_text(agent["failed_calls"]),
            "Unfinished": count_text(agent["unfinished_calls"]),
            "Time in tools": short_duration(agent["tools_ms"]) or "–",
        }
        if not pd.isna(agent["total_tokens"]):
            numbers["Tokens"] = count_text(agent["total_tokens"])
        names = list(numbers)
        for first in range(0, len(names), 3):  # three to a row: the details panel is narrow
            for column, name in zip(st.columns(3), names[first : first + 3], strict=False):
                column.metric(name, numbers[name])
        if not pd.isna(agent["total_tokens"]):
            st.caption(
                f"Tokens: {count_text(agent['input_tokens'])} in, "
                f"{count_text(agent['output_tokens'])} out."
            )
        if agent["hit_max_steps"]:
            limit = agent["max_steps"]
            st.warning(
                "Stopped at its step limit"
                + ("" if pd.isna(limit) else f" (maxSteps {int(limit)})")
                + ": the agent failed before it finished its task.",
                icon=":material/block:",
            )


def show_timeline(step: Step, timeline: AgentTimeline, agent=None) -> None:
    facts = [
        f"**Status** {plain(timeline.status)}" if timeline.status else "",
        f"**Model** {plain(timeline.model)}" if timeline.model else "",
        f"**Time** {short_duration(step.duration_ms)}" if step.duration_ms is not None else "",
    ]
    if agent is None:
        st.markdown(" · ".join(fact for fact in facts if fact) or "The agent's run:")
    st.markdown("**Prompt**")
    st.text(timeline.prompt or "(no prompt recorded)")
    if not timeline.entries:
        st.caption("The agent recorded no thoughts or tool calls.")
    for number, entry in enumerate(timeline.entries, 1):
        if entry.kind == "thought":
            show_thought(number, entry)
        else:
            show_tool_call(number, entry)
    if timeline.structured_output is not None:
        st.markdown("**Structured output**")
        st.json(timeline.structured_output, expanded=2)


def show_details(store: PageStore, run: RunDetail, step: Step) -> None:
    with st.container(border=True, key="step_details"):
        st.markdown(f"#### {plain(step.title)}")
        st.markdown(properties_markdown(step))
        agent = agent_facts(store, run, step) if step.timeline is not None else None
        if agent is not None:
            show_agent_summary(agent)
        labels = ["Input", "Output"] + (["Timeline"] if step.timeline is not None else [])
        default = "Output" if step.failed else ("Timeline" if step.timeline else "Input")
        tabs = st.tabs(labels, default=default, key=f"tab_{step.position}", on_change="rerun")
        with tabs[0]:
            if tabs[0].open is not False:
                show_payload(
                    step.input,
                    key=f"input_download_{step.position}",
                    file_name=f"{step.name}-input.json",
                    empty="This step recorded no input.",
                    download=payload_reader(store, run, step, "input"),
                )
        with tabs[1]:
            if tabs[1].open is not False:
                show_output(store, run, step)
        if step.timeline is not None:
            with tabs[2]:
                if tabs[2].open is not False:
                    show_timeline(step, step.timeline, agent)
        show_masked_note(run)


def masked_note(run: RunDetail) -> str | None:
    """Why some values read ••••••, only when this run had values masked."""
    count = run.masked_count
    if not count:
        return None
    what = (
        "1 value that looks like a secret is"
        if count == 1
        else f"{count:,} values that look like secrets are"
    )
    return (
        f"{what} masked in this run (shown as ••••••). To see the recorded values, start the "
        "app with `RUNS_MASK_SECRETS=0`."
    )


def show_masked_note(run: RunDetail) -> None:
    note = masked_note(run)
    if note:
        st.caption(note)


# ------------------------------------------------------------------ compare


def step_status_text(name: str | None) -> str:
    return step_status_label(name) if name else "did not run"


def duration_change_text(change_ms: int | None) -> str:
    if change_ms is None:
        return ""
    sign = "+" if change_ms > 0 else "−" if change_ms < 0 else "±"
    return sign + short_duration(abs(change_ms))


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    def changed(value):
        return "–" if value is None else ("yes" if value else "no")

    steps = comparison.steps
    return pd.DataFrame(
        {
            "Step": [change.title for change in steps],
            "Status then": [step_status_text(change.status_then) for change in steps],
            "Status now": [step_status_text(change.status_now) for change in steps],
            "Duration then": [short_duration(change.duration_then) for change in steps],
            "Duration now": [short_duration(change.duration_now) for change in steps],
            "Duration change": [
                duration_change_text(change.duration_change_ms) for change in steps
            ],
            "Output changed": [changed(change.output_changed) for change in steps],
        }
    )


def changes_summary(comparison: Comparison) -> str:
    """Which steps changed status and which changed output, in words."""

    def names(changes):
        return ", ".join(plain(change.title) for change in changes) or "none"

    return (
        f"**Status changed** {names(comparison.status_changes)}  \n"
        f"**Output changed** {names(comparison.output_changes)}"
    )


def show_comparison(store: PageStore, run: RunDetail, tz) -> None:
    comparison = store.cached(compare_with_last_success, run.id)
    if comparison is None:
        st.caption("This flow has no other successful run with step data to compare with.")
        return
    when = "before" if comparison.before else "after (none succeeded before it)"
    started = banner_time(comparison.other_started_at, tz)
    st.markdown(
        f"Compared with the successful run started {started}, {when} this one"
        + (
            f", which took {short_duration(comparison.other_duration_ms)}"
            if comparison.other_duration_ms is not None
            else ""
        )
        + "."
    )
    st.page_link(
        "pages/run.py",
        label="Open that run",
        icon=":material/open_in_new:",
        query_params=run_link_params(comparison.other_id),
    )
    st.markdown(changes_summary(comparison))
    st.dataframe(comparison_frame(comparison), hide_index=True, width="stretch")


def show_compare(store: PageStore, run: RunDetail, tz) -> None:
    with st.expander(
        "Compare with the last successful run of this flow",
        key="compare",
        on_change="rerun",
        icon=":material/compare_arrows:",
    ) as section:
        if section.open:
            show_comparison(store, run, tz)


# ------------------------------------------------------------------ page


def chosen_step(run: RunDetail) -> Step:
    """The URL's step; a step inside a loop opens its loop; anything else the default."""
    wanted = st.query_params.get("step")
    default = run.default_step()
    if wanted is None:
        return default
    found = run.find_step(wanted) or run.step_containing(wanted)
    if found is None:
        st.info(
            f"Step {plain(wanted)} from the link is not in this run: showing "
            f"{plain(default.title)} instead.",
            icon=":material/link_off:",
        )
        del st.query_params["step"]
        return default
    if found.name != wanted:
        st.caption(
            f"Step {plain(wanted)} ran inside the loop {plain(found.title)}: see its "
            "iterations below."
        )
    return found


def timeline_line(run: RunDetail) -> str | None:
    """Where the run's time went, per attempt: "Queued 120 ms · Booting 1.2 s · Running 4 s"."""
    if not run.timeline:
        return None
    attempts = [
        " · ".join(f"{plain(leg)} {short_duration(ms) or '0 ms'}" for leg, ms in attempt)
        for attempt in run.timeline
    ]
    if len(attempts) == 1:
        return f"**Timeline** {attempts[0]}"
    return "**Timeline** " + "; ".join(
        f"attempt {number}: {text}" for number, text in enumerate(attempts, 1)
    )


def show_engine_notes(run: RunDetail) -> None:
    """What the engine itself says about the run: its own error, cut step data, the timeline."""
    line = timeline_line(run)
    if line:
        st.markdown(line)
    if run.internal_error is not None:
        error = run.internal_error
        where = " ".join(plain(part) for part in (error.source, error.code) if part)
        st.error(
            f"**Engine error**{f' ({where})' if where else ''}: "
            f"{plain(error.message) or 'no message'}",
            icon=":material/report:",
        )
    if run.steps_data_truncated:
        st.warning(
            "The engine cut this run's step data: it was larger than the engine returns, so "
            "some inputs and outputs below are incomplete.",
            icon=":material/content_cut:",
        )


def show_purged(run: RunDetail) -> None:
    st.info(
        "No step data was kept for this run: its logs were purged, or it never started.",
        icon=":material/inventory_2:",
    )
    if run.failed_step or run.error_message:
        step = run.failed_step_display or run.failed_step
        st.error(
            (f"**Failed step** {plain(step)}" if step else "**Error**")
            + (f"  \n{plain(run.error_message)}" if run.error_message else ""),
            icon=":material/error:",
        )
    show_masked_note(run)


def show_run(store: PageStore, run: RunDetail, tz) -> None:
    show_header(run)
    show_banner(run, tz)
    st.markdown(fact_line(run, tz))
    show_engine_notes(run)
    if not run.has_steps:
        show_purged(run)
        return
    selected = chosen_step(run)
    show_waterfall(run)
    left, right = st.columns(2, gap="medium")
    with left:
        show_steps(run, selected)
    with right:
        show_details(store, run, selected)
    show_compare(store, run, tz)


def main() -> None:
    run_id = (st.query_params.get("id") or "").strip()
    with page_store() as store:
        run = (
            store.cached(load_run, run_id, mask=settings.get_bool("RUNS_MASK_SECRETS"))
            if run_id
            else None
        )
        if run is None:
            show_not_found(run_id)
            return
        show_run(store, run, user_timezone())


main()
