"""The reads of the store on each backend (DuckDB and ClickHouse's engine, chdb, and a server over
HTTP): how much of the store is the bundled sample and the rejected records (expected values from
what the test wrote), and the run page, the list and exports of the shared store, which must
answer on ClickHouse exactly as on DuckDB."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from backends import BACKENDS, copy_to_chdb, opened
from factories import rows, simple_run, write_text
from runs_store.ingest.pipeline import ingest_items, ingest_paths, records_as_items
from runs_store.queries.filters import RunFilter
from runs_store.services.export import export_bytes
from runs_store.services.run_detail import compare_with_last_success, load_run
from runs_store.services.runs_list import count_days, count_runs, list_runs, set_archived
from runs_store.services.sample_share import sample_share
from runs_store.store.backend import open_location
from runs_store.store.database import open_db
from runs_store.store.location import parse_location
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


# ------------------------------------------------------------------ the same answers, run by run


def sample_ids(shared_db, count: int = 60) -> list[str]:
    """About `count` runs spread over the store (evenly by id): of many statuses and flows."""
    found = rows(shared_db, "SELECT id FROM runs ORDER BY id")
    return [run_id for (run_id,) in found[:: max(1, len(found) // count)]]


def test_every_sampled_run_loads_the_same_on_clickhouse_as_on_duckdb(shared_db, shared_chdb):
    """The run page's whole model (run, steps, payload previews, trees, errors, masks) and its
    comparison with the last success, from each engine, are equal."""
    chosen = sample_ids(shared_db)
    with open_db(shared_db, read_only=True) as con:
        expected = {run_id: load_run(con, run_id) for run_id in chosen}
        compared = {run_id: compare_with_last_success(con, run_id) for run_id in chosen}
    with open_location(shared_chdb) as con:
        assert {run_id: load_run(con, run_id) for run_id in chosen} == expected
        assert {run_id: compare_with_last_success(con, run_id) for run_id in chosen} == compared
    assert all(expected.values()) and any(compared.values())
    assert any(run.steps for run in expected.values())


# ------------------------------------------------------------------ through a server over HTTP

PASSWORD = "read-services"


@pytest.fixture(scope="module")
def http_store(shared_db, tmp_path_factory):
    """The shared store copied into a database of a ClickHouse server reached over HTTP (the
    chdb-backed server of clickhouse_http.py, in its own process)."""
    import clickhouse_http

    with clickhouse_http.running(tmp_path_factory.mktemp("http") / "server", PASSWORD) as port:
        mp = pytest.MonkeyPatch()
        mp.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
        try:
            location = parse_location(f"clickhouse://default@127.0.0.1:{port}/shared")
            yield copy_to_chdb(shared_db, location)
        finally:
            mp.undo()


def test_the_services_answer_the_same_over_http(http_store, shared_db, monkeypatch):
    monkeypatch.setenv("RUNS_CLICKHOUSE_PASSWORD", PASSWORD)
    chosen = sample_ids(shared_db, 10)
    run_filter = RunFilter(statuses=("FAILED", "SUCCEEDED"))
    with open_db(shared_db, read_only=True) as con:
        expected_page = list_runs(con, run_filter, 25, 50)
        expected_days = count_days(con, run_filter)
        expected_runs = {run_id: load_run(con, run_id) for run_id in chosen}
        expected_csv = export_bytes(con, "csv", RunFilter(include_archived=True))
    with open_location(http_store) as con:
        page = list_runs(con, run_filter, 25, 50)
        assert list(page.rows["id"]) == list(expected_page.rows["id"])
        assert (page.total, page.next_key) == (expected_page.total, expected_page.next_key)
        assert count_days(con, run_filter) == expected_days
        assert {run_id: load_run(con, run_id) for run_id in chosen} == expected_runs
        assert export_bytes(con, "csv", RunFilter(include_archived=True)) == expected_csv
        visible = count_runs(con, RunFilter())
        assert set_archived(con, chosen[:2], True) == len(
            [run_id for run_id in chosen[:2] if expected_runs[run_id].archived_at is None]
        )
        assert count_runs(con, RunFilter()) <= visible


def test_on_clickhouse_the_run_page_reads_only_the_steps_of_the_run_s_newest_version(
    request, shared_db
):
    """A newer version of a run that brings fewer steps: the steps only the older version had
    are no longer the run's (they stay on disk until merged), and a step both have reads as the
    newer one has it."""
    from backends import chdb_beside
    from runs_store.services.run_detail import PayloadGone, payload_download
    from runs_store.store import backend

    run_id = rows(
        shared_db,
        "SELECT run_id FROM run_steps GROUP BY run_id HAVING count(*) >= 3 ORDER BY run_id LIMIT 1",
    )[0][0]
    location = chdb_beside(request.getfixturevalue("shared_chdb"), shared_db)
    with open_location(location) as con:
        before = load_run(con, run_id, mask=False)
        version = backend.rows(
            con, "SELECT updated_at FROM runs FINAL WHERE id = $id", {"id": run_id}
        )
        newer = version[0][0] + timedelta(seconds=1)
        params = {"id": run_id, "newer": newer}
        con.command(
            *backend.clickhouse_params(
                "INSERT INTO runs SELECT * REPLACE ($newer AS updated_at) "
                "FROM (SELECT * FROM runs FINAL WHERE id = $id)",
                params,
            )
        )
        con.command(
            *backend.clickhouse_params(
                "INSERT INTO run_steps SELECT * REPLACE ($newer AS run_updated_at, "
                "'{\"again\": true}' AS output) "
                "FROM (SELECT * FROM run_steps FINAL WHERE run_id = $id AND position < 2)",
                params,
            )
        )
        after = load_run(con, run_id, mask=False)
        assert [step.name for step in after.steps] == [step.name for step in before.steps[:2]]
        assert after.steps[1].output.value == {"again": True}
        assert json.loads(payload_download(con, run_id, 1, "output", mask=False)) == {"again": True}
        with pytest.raises(PayloadGone):
            payload_download(con, run_id, 2, "output", mask=False)
        on_disk = backend.rows(
            con, "SELECT count() FROM run_steps WHERE run_id = $id", {"id": run_id}
        )[0][0]
        assert on_disk > len(after.steps)  # the older version's steps are there, unread
