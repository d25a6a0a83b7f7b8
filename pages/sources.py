"""Sources page (/sources): the live engines this store pulls from, how far each got, and a
"Pull now" button, for a team that would rather not keep a terminal open.

The engines are named in the RUNS_SOURCES file (runs_store/ingest/engine/sources_file.py); what
each pull reached is kept in the store, so pulls from the CLI (cron, `pull --watch`) show here too.
Tokens and passwords are never shown: only the name of the variable that holds them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from pages.common.data import page_store, user_timezone
from pages.common.entry import draw_inside_app
from pages.common.text import plain
from pages.common.threads import drawable_from_any_thread
from runs_store import settings
from runs_store.domain.errors import StoreError
from runs_store.domain.formatting import banner_time, long_duration
from runs_store.ingest.engine.pull import pull_states
from runs_store.ingest.engine.sources_file import (
    SourceConfig,
    configured_sources,
    pull_configured,
    source_key,
)

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

RUNS_PAGE = "pages/runs.py"
EXAMPLE = """[[sources]]
name = "Production"
api = "https://ap.example.com/api"
projects = ["9GbMlXLpUdj1QJx2mxxkK"]
token = "env:AP_PROD_TOKEN"

[[sources]]
name = "Self-hosted database"
postgres = "postgresql://runs_reader@db.example.com:5432/activepieces"
password = "env:AP_DB_PASSWORD\""""


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    now = datetime.now(UTC).replace(tzinfo=None)
    return f"{long_duration(int(max((now - moment).total_seconds(), 0)) * 1000)} ago"


def secret_line(config: SourceConfig) -> str:
    what = "token" if config.kind == "api" else "password"
    if config.secret():
        return f"{what}: set in `{config.secret_env}`"
    if config.kind == "api":
        return f"{what}: **`{config.secret_env}` is not set**"
    return f"{what}: `{config.secret_env}` not set (the DSN's own authentication is used)"


def state_rows(states: list[dict], key: str, tz) -> list[dict]:
    return [
        {
            "Project": state["project_id"],
            "Last pull": banner_time(state["last_pull_at"], tz) if state["last_pull_at"] else "–",
            "Last success": ago(state["last_ok_at"]),
            "Runs pulled": state["runs_pulled"],
            "Unfinished, read again": state["unfinished"],
            "Last error": state["last_error"] or "",
        }
        for state in states
        if state["source"] == key
    ]


def show_pull_result(name: str) -> None:
    outcome = st.session_state.get(f"pulled_{name}")
    if outcome is None:
        return
    if outcome.error:
        st.error(f"Pull failed: {plain(outcome.error)}", icon=":material/error:")
    else:
        st.success(f"Pulled {plain(outcome.line)}.", icon=":material/check_circle:")


def pull_now(store, config: SourceConfig) -> None:
    bar = st.progress(0.0, text="Asking the engine…")

    @drawable_from_any_thread
    def report(listed: int, fetched: int, requests: int, share: float | None) -> None:
        bar.progress(
            min(0.99, share) if share is not None else 0.0,
            text=f"{listed:,} runs listed, {fetched:,} fetched ({requests:,} requests)",
        )

    outcomes = pull_configured(store.con, [config.name], report)
    bar.empty()
    st.session_state[f"pulled_{config.name}"] = outcomes[0] if outcomes else None
    st.rerun()


def show_source(store, config: SourceConfig, states: list[dict], tz) -> None:
    with st.container(border=True):
        head, button = st.columns([5, 1], vertical_alignment="center")
        kind = "REST API" if config.kind == "api" else "PostgreSQL (read-only)"
        head.markdown(f"#### {plain(config.name)}")
        head.caption(
            f"{kind} · {plain(config.address)} · "
            + (
                "projects " + ", ".join(plain(p) for p in config.projects)
                if config.projects
                else "every project"
            )
            + f" · {secret_line(config)}"
        )
        if button.button("Pull now", key=f"pull_{config.name}", icon=":material/sync:"):
            pull_now(store, config)
        show_pull_result(config.name)
        rows = state_rows(states, source_key(config), tz)
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        else:
            st.caption("Not pulled yet.")


def show_unconfigured(states: list[dict], names: set[str], tz) -> None:
    others = [state for state in states if state["source"] not in names]
    if not others:
        return
    st.subheader("Pulled from the command line", anchor=False)
    for key in dict.fromkeys(state["source"] for state in others):
        st.caption(plain(key))
        st.dataframe(pd.DataFrame(state_rows(others, key, tz)), hide_index=True, width="stretch")


def show_how_to(configured: bool) -> None:
    with st.expander("Add an engine", expanded=not configured, icon=":material/add_link:"):
        st.markdown(
            "Name your engines in a TOML file and point `RUNS_SOURCES` at it. Tokens and "
            "passwords stay in environment variables: the file only names them."
        )
        st.code(EXAMPLE, language="toml")
        st.markdown("Or pull from a terminal (or cron):")
        st.code(
            "RUNS_API_TOKEN=sk-... python -m runs_store pull --api https://ap.example.com/api "
            "--project PROJECT_ID\n"
            "RUNS_PG_PASSWORD=... python -m runs_store pull --postgres "
            "postgresql://runs_reader@db.example.com/activepieces",
            language="bash",
        )


def main() -> None:
    st.title("Sources", anchor=False)
    st.markdown(
        "The live engines this store pulls runs from. Each pull takes only what is new or "
        "changed since the last one, and reads unfinished runs again until they finish."
    )
    tz = user_timezone()
    try:
        configs = configured_sources()
    except StoreError as error:
        for line in str(error).splitlines():
            st.error(plain(line), icon=":material/error:")
        configs = []
    with page_store() as store:
        states = store.call(pull_states)
        keys = set()
        for config in configs:
            keys.add(source_key(config))
            show_source(store, config, states, tz)
        show_unconfigured(states, keys, tz)
    show_how_to(bool(configs) or bool(settings.current().sources))
    if states:
        st.page_link(RUNS_PAGE, label="See the runs", icon=":material/list_alt:")


main()
