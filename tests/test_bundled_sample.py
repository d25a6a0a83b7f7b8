"""A newcomer's first start: no database yet, so the app loads sample_data/ moved to end now.

Runs the real app (AppTest) against a path with no database, with RUNS_LOAD_SAMPLE=1.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import app_test
from factories import rows
from runs_store.ingest.sample_loader import SAMPLE_FILE
from runs_store.queries.filters import DEFAULT_PRESET, RunFilter, preset_window
from runs_store.services.runs_list import count_runs
from runs_store.store.database import open_db
from runs_store.store.sources import SAMPLE_SOURCE


def sample_records() -> list[dict]:
    with gzip.open(SAMPLE_FILE, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def first_start(tmp_path_factory):
    """The app started once on a path with no database, sample loading on (the default)."""
    db = tmp_path_factory.mktemp("newcomer") / "data" / "runs.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNS_DB", str(db))
        patch.setenv("RUNS_LOAD_SAMPLE", "1")
        started = now_utc()
        at = app_test(timeout=120)
        generation = rows(db, "SELECT value FROM meta WHERE key = 'generation'")[0][0]
        at.run()  # a second render must not load it again
    return {"db": db, "at": at, "started": started, "generation": generation}


def test_the_committed_sample_is_small_and_readable():
    assert SAMPLE_FILE.exists() and SAMPLE_FILE.stat().st_size < 4_000_000
    records = sample_records()
    assert 3_000 <= len(records) <= 5_000
    assert any(r.get("environment") == "TESTING" for r in records)
    assert any("flowDisplayName" in r for r in records)  # some runs in the older shape


def test_the_first_start_loads_every_live_run_of_the_sample(first_start):
    assert not first_start["at"].exception
    live = [r for r in sample_records() if r.get("environment") != "TESTING"]
    stored = rows(
        first_start["db"],
        "SELECT count(*), count(*) FILTER (WHERE source = ?) FROM runs",
        [SAMPLE_SOURCE],
    )[0]
    assert stored == (len({r["id"] for r in live}),) * 2
    assert rows(first_start["db"], "SELECT count(*) FROM rejects")[0][0] == 0


def test_the_newest_sample_run_starts_now(first_start):
    newest = rows(first_start["db"], "SELECT max(started_at) FROM runs")[0][0]
    assert abs(newest - first_start["started"]) < timedelta(minutes=3)


def test_the_whole_sample_moves_by_one_shift(first_start):
    records = sample_records()
    newest_created = max(datetime.fromisoformat(r["created"]) for r in records).replace(tzinfo=None)
    newest_stored = rows(first_start["db"], "SELECT max(started_at) FROM runs")[0][0]
    shift = newest_stored - newest_created
    oldest_created = min(
        datetime.fromisoformat(r["created"]) for r in records if r.get("environment") != "TESTING"
    ).replace(tzinfo=None)
    assert (
        rows(first_start["db"], "SELECT min(started_at) FROM runs")[0][0] == oldest_created + shift
    )


def test_the_default_last_7_days_view_is_populated(first_start):
    since, until = preset_window(DEFAULT_PRESET, now_utc())
    with open_db(first_start["db"], read_only=True) as con:
        in_view = count_runs(con, RunFilter(since=since, until=until))
    expected = rows(
        first_start["db"],
        "SELECT count(*) FROM runs WHERE archived_at IS NULL AND started_at >= ?",
        [since],
    )[0][0]
    assert in_view == expected and in_view > 300
    shown = first_start["at"].dataframe
    assert shown and len(shown[0].value) > 0


def test_the_sidebar_says_it_is_sample_data_and_how_to_load_your_own(first_start):
    notes = [info.value for info in first_start["at"].sidebar.info]
    assert any(
        "sample data" in note and "Import" in note and "python -m runs_store ingest" in note
        for note in notes
    )


def test_a_second_render_does_not_load_the_sample_again(first_start):
    after = rows(first_start["db"], "SELECT value FROM meta WHERE key = 'generation'")[0][0]
    assert after == first_start["generation"]


def test_with_sample_loading_off_a_new_database_stays_empty(tmp_path, monkeypatch):
    db = tmp_path / "runs.duckdb"
    monkeypatch.setenv("RUNS_DB", str(db))
    monkeypatch.setenv("RUNS_LOAD_SAMPLE", "0")
    at = app_test()
    assert not at.exception
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == 0
    assert not any("sample data" in info.value for info in at.sidebar.info)
