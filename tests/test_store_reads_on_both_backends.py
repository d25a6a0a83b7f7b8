"""The small reads of the store on each backend (DuckDB and ClickHouse's engine, chdb): how much
of the store is the bundled sample, and the rejected records, from the same store copied as it is
into chdb. Expected values come from what the test wrote, not from either engine."""

from __future__ import annotations

import json

import pytest

from backends import BACKENDS, opened
from factories import simple_run, write_text
from runs_store.ingest.pipeline import ingest_items, ingest_paths, records_as_items
from runs_store.services.sample_share import sample_share
from runs_store.store.database import open_db
from runs_store.store.rejects import count_rejects, list_rejects, reject_location, rejects_frame
from runs_store.store.sources import SAMPLE_SOURCE

pytestmark = pytest.mark.store


@pytest.fixture(scope="module")
def chdb_copies():
    return {}


@pytest.fixture(scope="module")
def mixed_db(tmp_path_factory):
    """Three runs from the bundled sample, two of the user's own."""
    db = tmp_path_factory.mktemp("mixed") / "runs.duckdb"
    with open_db(db) as con:
        sample = [simple_run(f"s{n}", created=f"2026-11-0{n}T10:00:00Z") for n in (1, 2, 3)]
        ingest_items(con, records_as_items(sample), SAMPLE_SOURCE)
        own = [simple_run(f"o{n}", created=f"2026-11-0{n}T11:00:00Z") for n in (1, 2)]
        ingest_items(con, records_as_items(own), "mine.jsonl")
    return db


@pytest.fixture(scope="module")
def rejects_db(tmp_path_factory):
    """Two files with rejected records among good ones."""
    folder = tmp_path_factory.mktemp("rejects")
    lines = [
        json.dumps(simple_run("ok")),
        "not json",
        json.dumps(simple_run("s", status="Nope")),
        json.dumps({"created": "2026-11-03T09:00:00Z"}),
    ]
    path = write_text(folder / "runs.jsonl", "\n".join(lines) + "\n")
    listed = write_text(folder / "list.json", json.dumps([simple_run("l1"), "oops"]))
    db = folder / "runs.duckdb"
    ingest_paths(db, [path, listed])
    return db, path, listed


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_sample_share_counts_the_sample_s_runs_and_all_runs(
    request, mixed_db, chdb_copies, backend_name
):
    with opened(backend_name, mixed_db, request, chdb_copies) as con:
        share = sample_share(con)
    assert (share.from_sample, share.total, share.only_sample) == (3, 5, False)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_an_empty_store_is_not_only_the_sample(request, empty_db, backend_name):
    with opened(backend_name, empty_db, request) as con:
        share = sample_share(con)
        assert count_rejects(con) == 0 and list_rejects(con) == []
        assert rejects_frame(con).empty
    assert (share.from_sample, share.total, share.only_sample) == (0, 0, False)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_rejects_are_listed_by_file_and_position_with_their_reason(
    request, rejects_db, chdb_copies, backend_name
):
    db, path, listed = rejects_db
    with opened(backend_name, db, request, chdb_copies) as con:
        found = list_rejects(con)
        of_one_file = list_rejects(con, str(path))
        counted = count_rejects(con)
        shown = rejects_frame(con)
        first_two = rejects_frame(con, limit=2)
    expected = [
        (str(listed), "item 2", "not a JSON object"),
        (str(path), "line 2", "not valid JSON"),
        (str(path), "line 3", "unknown status 'Nope'"),
        (str(path), "line 4", "missing id"),
    ]
    assert counted == len(found) == len(expected)
    for reject, (source, location, reason) in zip(found, expected, strict=True):
        assert (reject["source"], reject_location(reject)) == (source, location)
        assert reason in reject["reason"] and reject["raw"] is not None
        assert reject["rejected_at"] is not None
    assert [reject_location(r) for r in of_one_file] == ["line 2", "line 3", "line 4"]
    assert list(shown.columns) == ["file", "location", "reason", "raw"]
    assert list(shown["location"]) == [location for _, location, _ in expected]
    assert len(first_two) == 2 and list(first_two["file"]) == [str(listed), str(path)]
