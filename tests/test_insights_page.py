"""The Insights page in Streamlit's AppTest: every tab renders for a normal, an empty and a
one-flow view, the numbers shown are the store's, and each table drills into the Runs page with
exactly the runs its row counted."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest

from conftest import ROOT
from factories import simple_run
from runs_store.ingest.pipeline import ingest_items, records_as_items
from runs_store.store.database import open_db

PAGE = "pages/insights.py"
TABS = {
    "Trends": ["Runs over time", "Failure rate of the worst flows", "Failure rate by flow version"],
    "Failed steps": ["Failed steps", "Other failed states"],
    "Errors": ["Error signatures"],
    "Quota": ["Quota exceeded"],
    "Durations": ["Durations per flow", "Slowest steps"],
    "Agents": [
        "Tools",
        "Tool-call failure rate over time",
        "Slowest tools",
        "Tool calls per run",
        "Agents that stopped at maxSteps",
        "Models",
        "Agent status by flow",
        "Tokens and cost",
    ],
}
# st.date_input refuses dates more than ten years before today, so "far past" is nine years ago.
FAR_PAST = {
    "range": "Custom range",
    "from": f"{datetime.now().year - 9}-01-01",
    "to": f"{datetime.now().year - 9}-01-07",
}


def today() -> date:
    return datetime.now(UTC).date()


def last_days(days: int) -> dict:
    """A custom range of whole UTC days (AppTest has no browser timezone: UTC)."""
    return {
        "range": "Custom range",
        "from": (today() - timedelta(days=days - 1)).isoformat(),
        "to": today().isoformat(),
    }


def count(db, where: str, params: list) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchall()[0][0]


def window(query: dict) -> list:
    first = datetime.fromisoformat(query["from"])
    return [first, datetime.fromisoformat(query["to"]) + timedelta(days=1)]


def open_insights(query: dict, timeout: float = 60):
    """The app opened straight on /insights with these URL parameters, as a link opens it."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.switch_page(PAGE)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def open_tab(tab: str, query: dict | None = None):
    at = open_insights({**(query or {}), "view": tab})
    assert not at.exception, at.exception
    return at


def subheaders(at) -> list[str]:
    return [header.value for header in at.subheader]


def runs_page_total(at) -> int:
    """The total in the Runs page's position text ("1-25 of 1,234 runs")."""
    for element in list(at.markdown) + list(at.caption) + list(at.text):
        found = re.search(r"of ([\d,]+) runs?\b", str(element.value))
        if found:
            return int(found.group(1).replace(",", ""))
    raise AssertionError("the Runs page shows no run count")


def select_row(at, key: str, row: int):
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    return at


# ---------------------------------------------------------------- every section renders


@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_renders_for_the_default_range(app_env, shared_db, tab):
    app_env(shared_db)
    at = open_tab(tab)
    assert subheaders(at) == TABS[tab]
    assert not at.info, [info.value for info in at.info]


@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_renders_a_friendly_empty_state_for_an_empty_range(app_env, shared_db, tab):
    app_env(shared_db)
    at = open_tab(tab, FAR_PAST)
    assert subheaders(at) == TABS[tab]
    assert any("No runs match this view" in info.value for info in at.info)
    assert not at.dataframe and not at.get("plotly_chart")
    assert at.metric[0].value == "0"


@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_renders_for_a_one_flow_view(app_env, shared_db, tab):
    app_env(shared_db)
    flow = "Triage support email"
    at = open_tab(tab, {"flow": flow, **last_days(30)})
    assert subheaders(at) == TABS[tab]
    for table in at.dataframe:
        if "Flow" in table.value.columns:
            assert set(table.value["Flow"]) == {flow}


def test_headline_metrics_count_the_runs_in_range_and_compare_with_the_previous_one(
    app_env, shared_db
):
    app_env(shared_db)
    query = last_days(7)
    at = open_tab("Trends", query)
    since, until = window(query)
    previous = [since - (until - since), since]
    metrics = {metric.label: metric for metric in at.metric}
    visible = "archived_at IS NULL AND started_at >= ? AND started_at < ?"
    total, before = count(shared_db, visible, [since, until]), count(shared_db, visible, previous)
    assert metrics["Runs"].value == f"{total:,}"
    assert int(metrics["Runs"].delta.replace(",", "")) == total - before
    failed = count(shared_db, visible + " AND status = 'FAILED'", [since, until])
    failed_before = count(shared_db, visible + " AND status = 'FAILED'", previous)
    assert metrics["Failed"].value == f"{failed:,}"
    assert int(metrics["Failed"].delta) == failed - failed_before


def test_all_time_has_no_deltas(app_env, shared_db):
    app_env(shared_db)
    at = open_tab("Trends", {"range": "All time"})
    total = count(shared_db, "archived_at IS NULL", [])
    assert at.metric[0].value == f"{total:,}"
    assert all(not metric.delta for metric in at.metric)


def test_the_biggest_version_jump_is_called_out(app_env, shared_db):
    app_env(shared_db)
    at = open_tab("Trends", last_days(30))
    sentences = [warning.value for warning in at.warning]
    assert any("failure rate" in text and "since version" in text for text in sentences)


def test_an_unknown_tab_in_the_link_says_so(app_env, shared_db):
    app_env(shared_db)
    at = open_insights({"view": "Nonsense"})
    assert not at.exception
    assert any('Ignored tab "Nonsense"' in info.value for info in at.info)


def test_record_text_in_the_version_sentence_is_escaped(app_env, db_copy):
    evil = "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    with duckdb.connect(str(db_copy)) as con:
        flow = con.execute(
            "SELECT flow_name FROM runs WHERE flow_name LIKE 'New Shopify%' LIMIT 1"
        ).fetchall()[0][0]
        con.execute("UPDATE runs SET flow_name = ? WHERE flow_name = ?", [evil, flow])
    app_env(db_copy)
    at = open_tab("Trends", last_days(30))
    sentence = next(w.value for w in at.warning if "since version" in w.value)
    for escaped in (r"\<img src", r"alert\(1\)\>", r"\*\*bold\*\*", r"\[link\]\(`http://x`\)"):
        assert escaped in sentence
    assert "<img" not in sentence.replace(r"\<img", "")


# ---------------------------------------------------------------- drill-downs

DRILLS = [  # tab, table key, column holding the count the row shows
    ("Failed steps", "failed_steps", "Runs"),
    ("Failed steps", "other_failed_states", "Runs"),
    ("Errors", "error_signatures", "Runs"),
    ("Quota", "quota_per_flow", "Runs"),
    ("Trends", "versions", "Runs"),
    ("Durations", "duration_percentiles", "Runs"),
]


def table_by_key(at, key: str):
    for table in at.dataframe:
        if table.proto.id.endswith(key) or key in table.proto.id:
            return table
    raise AssertionError(f"no table {key}")


def test_error_signatures_mask_secrets_and_still_open_their_runs(app_env, tmp_path, monkeypatch):
    # an hour ago is always within the last two UTC days, whatever the time of day
    created = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    db = tmp_path / "leaky.duckdb"
    with open_db(db) as con:
        ingest_items(
            con,
            records_as_items(
                [
                    simple_run(
                        f"leaky-{n}",
                        created=created,
                        status="FAILED",
                        failedStep={
                            "name": "step_1",
                            "message": "Login refused for password=hunterpass",
                        },
                    )
                    for n in range(3)
                ]
            ),
            "leaky",
        )
    app_env(db)
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    at = open_tab("Errors", last_days(2))
    assert list(table_by_key(at, "error_signatures").value["Error"]) == [
        "Login refused for password=••••••"
    ]
    select_row(at, "error_signatures", 0)
    assert runs_page_total(at) == 3
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    at = open_tab("Errors", last_days(2))
    assert list(table_by_key(at, "error_signatures").value["Error"]) == [
        "Login refused for password=hunterpass"
    ]


@pytest.mark.parametrize("tab, key, column", DRILLS)
def test_a_selected_row_opens_the_runs_page_on_exactly_the_runs_it_counted(
    app_env, shared_db, tab, key, column
):
    app_env(shared_db)
    at = open_tab(tab, last_days(30))
    shown = table_by_key(at, key).value
    row = 1 if len(shown) > 1 else 0
    expected = int(shown[column].iloc[row])
    select_row(at, key, row)
    assert [title.value for title in at.title] == ["Runs"]
    assert runs_page_total(at) == expected


def test_the_failed_step_drill_down_puts_the_step_flow_and_status_in_the_url(app_env, shared_db):
    app_env(shared_db)
    at = open_tab("Failed steps", last_days(30))
    shown = table_by_key(at, "failed_steps").value
    select_row(at, "failed_steps", 0)
    params = dict(at.query_params)
    assert params["failed_step"].startswith("step_")
    assert params["flow"] == shown["Flow"].iloc[0]
    assert params["status"] in ("Failed", "FAILED")
    assert params["from"] == last_days(30)["from"]
