"""Export: the Runs page's filters, the promised columns, and export -> ingest giving the same runs.

The database is the shared generated one plus a few runs with awkward text; expected rows always
come from a direct SQL query of the same database.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta

import pyarrow.parquet as pq
import pytest

from backends import BACKENDS, opened
from factories import exported_rows, rows, simple_run, write_jsonl
from runs_store.cli import main
from runs_store.ingest.pipeline import ingest_paths
from runs_store.queries.filters import RunFilter
from runs_store.services.export import EXPORT_COLUMNS, export_bytes, write_export
from runs_store.services.masking import MASK

AWKWARD = [
    simple_run(
        "awk-1",
        flow='Quotes "and", commas\nand a newline',
        status="FAILED",
        failedStep={
            "name": "step_9",
            "displayName": "Ünïcode 東京 step",
            "message": 'line one\nline "two", three',
        },
    ),
    simple_run(
        "awk-2",
        flow="<img src=x onerror=alert(1)>",
        status="RUNNING",
        finishTime=None,
        updated="2026-11-03T09:30:00Z",
    ),
    simple_run("awk-3", flow="Archived flow", archivedAt="2026-11-04T00:00:00Z"),
    simple_run("awk-test", flow="Test only", environment="TESTING"),
    simple_run(
        "awk-secret",
        flow="Token refresh",
        status="FAILED",
        failedStep={
            "name": "step_1",
            "displayName": "Refresh the token",
            "message": '{"error": "invalid_client", "client_secret": '
            '"cs_live_Zq81wPx", "note": "Bearer abc123XYZ789def"}',
        },
    ),
]
SECRETS_IN_ERRORS = ("cs_live_Zq81wPx", "abc123XYZ789def")

COMPARED = (
    "id",
    "flow_name",
    "status",
    "started_at",
    "finish_time",
    "duration_ms",
    "failed_step",
    "failed_step_display",
    "error_message",
    "flow_id",
    "flow_version_id",
    "project_id",
    "archived_at",
    "updated_at",
)


@pytest.fixture(scope="module")
def export_db(shared_db, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    db = folder / "runs.duckdb"
    shutil.copy(shared_db, db)
    ingest_paths(db, [write_jsonl(folder / "awkward.jsonl", AWKWARD)])
    return db


@pytest.fixture(scope="module")
def chdb_copies():
    """The chdb copy of each database file this module reads on ClickHouse, made once."""
    return {}


@pytest.fixture(params=BACKENDS)
def export_con(request, export_db, chdb_copies):
    """The export database on each backend (DuckDB's read-only, or its chdb copy)."""
    with opened(request.param, export_db, request, chdb_copies) as con:
        yield con


def export_ids(db, tmp_path, *args: str) -> list[str]:
    out = tmp_path / "out.jsonl"
    assert main(["export", "--db", str(db), "--format", "jsonl", "--output", str(out), *args]) == 0
    return [json.loads(line)["id"] for line in out.read_text().splitlines()]


def expected_ids(db, where: str = "archived_at IS NULL", params: list | None = None) -> list[str]:
    return [
        r[0]
        for r in rows(
            db, f"SELECT id FROM runs WHERE {where} ORDER BY started_at DESC, id DESC", params
        )
    ]


# ------------------------------------------------------------------ filters


def test_export_without_filters_is_all_time_without_archived_runs(export_db, tmp_path):
    exported = export_ids(export_db, tmp_path)
    assert exported == expected_ids(export_db)
    assert "awk-3" not in exported and len(exported) > 2000


def test_export_with_archived_includes_archived_runs(export_db, tmp_path):
    exported = export_ids(export_db, tmp_path, "--archived")
    assert exported == expected_ids(export_db, "true")
    assert "awk-3" in exported


def test_export_by_flow_repeatable(export_db, tmp_path):
    flows = [
        r[0]
        for r in rows(
            export_db, "SELECT flow_name FROM runs GROUP BY 1 ORDER BY count(*) DESC LIMIT 2"
        )
    ]
    exported = export_ids(export_db, tmp_path, "--flow", flows[0], "--flow", flows[1])
    assert exported == expected_ids(export_db, "archived_at IS NULL AND flow_name IN (?, ?)", flows)
    assert exported


@pytest.mark.parametrize(
    "given",
    [["FAILED", "QUOTA_EXCEEDED"], ["Failed", "Quota Exceeded"], ["failed", "quota_exceeded"]],
)
def test_export_by_status_takes_enum_names_or_labels(export_db, tmp_path, given):
    args = [part for value in given for part in ("--status", value)]
    exported = export_ids(export_db, tmp_path, *args)
    assert exported == expected_ids(
        export_db, "archived_at IS NULL AND status IN ('FAILED', 'QUOTA_EXCEEDED')"
    )
    assert exported


def test_export_since_until_is_a_half_open_window_in_utc(export_db, tmp_path):
    newest = rows(export_db, "SELECT max(started_at) FROM runs")[0][0]
    since = datetime.combine(newest.date() - timedelta(days=5), datetime.min.time())
    until = newest.replace(minute=0, second=0, microsecond=0)
    exported = export_ids(
        export_db,
        tmp_path,
        "--since",
        since.strftime("%Y-%m-%d"),
        "--until",
        until.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert exported == expected_ids(
        export_db, "archived_at IS NULL AND started_at >= ? AND started_at < ?", [since, until]
    )
    assert exported


def test_filters_combine(export_db, tmp_path):
    flow = rows(
        export_db,
        "SELECT flow_name FROM runs WHERE status = 'FAILED' "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )[0][0]
    exported = export_ids(export_db, tmp_path, "--flow", flow, "--status", "Failed", "--archived")
    assert exported == expected_ids(export_db, "flow_name = ? AND status = 'FAILED'", [flow])


def test_test_runs_are_never_exported(export_db, tmp_path):
    assert "awk-test" not in export_ids(export_db, tmp_path, "--archived")
    assert rows(export_db, "SELECT count(*) FROM runs WHERE id = 'awk-test'")[0][0] == 0


# ------------------------------------------------------------------ columns and values


def test_csv_has_the_promised_columns_enum_statuses_iso_utc_times_and_step_names(
    export_db, export_con
):
    data = export_bytes(export_con, "csv", RunFilter(include_archived=True))
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert {
        "id",
        "flow",
        "status",
        "started_at",
        "finished_at",
        "duration_ms",
        "failed_step",
        "archived",
    } <= set(table[0])
    stored = {
        r[0]: r[1:]
        for r in rows(
            export_db,
            "SELECT id, status, started_at, failed_step, archived_at IS NOT NULL FROM runs",
        )
    }
    assert len(table) == len(stored)
    for row in table:
        status, started_at, failed_step, archived = stored[row["id"]]
        assert row["status"] == status
        assert (
            row["started_at"]
            == started_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{started_at.microsecond // 1000:03d}Z"
        )
        assert row["failed_step"] == (failed_step or "")
        assert row["archived"] == ("true" if archived else "false")


def test_export_of_chosen_ids_and_export_bytes_agree(export_db, export_con):
    chosen = expected_ids(export_db)[:5]
    con = export_con
    out = io.BytesIO()
    count = write_export(con, out, "jsonl", RunFilter(), run_ids=chosen)
    assert out.getvalue() == export_bytes(con, "jsonl", RunFilter(), run_ids=chosen)
    assert write_export(con, io.BytesIO(), "jsonl", RunFilter(), run_ids=[]) == 0
    assert count == 5
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == chosen
    assert list(json.loads(out.getvalue().splitlines()[0])) == list(EXPORT_COLUMNS)


def test_an_unknown_format_is_refused(export_con):
    with pytest.raises(ValueError, match="xml"):
        write_export(export_con, io.BytesIO(), "xml")


# ------------------------------------------------------------------ round trip


def runs_table(db) -> list[tuple]:
    return rows(db, f"SELECT {', '.join(COMPARED)} FROM runs ORDER BY id")


def exported_errors(con, fmt: str, mask: bool | None = None) -> dict[str, str]:
    data = export_bytes(con, fmt, RunFilter(include_archived=True), mask=mask)
    return {row["id"]: row["error_message"] or "" for row in exported_rows(data, fmt)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_mask_secrets_in_error_messages_unless_masking_is_off(
    export_db, export_con, fmt, monkeypatch
):
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    masked, recorded = exported_errors(export_con, fmt), exported_errors(export_con, fmt, False)
    stored = dict(rows(export_db, "SELECT id, coalesce(error_message, '') FROM runs"))
    assert recorded == stored
    assert json.loads(masked["awk-secret"]) == {
        "error": "invalid_client",
        "client_secret": MASK,
        "note": "Bearer " + MASK,
    }
    assert all(secret in recorded["awk-secret"] for secret in SECRETS_IN_ERRORS)
    # every other message is exported as recorded
    assert {k: v for k, v in masked.items() if k != "awk-secret"} == {
        k: v for k, v in stored.items() if k != "awk-secret"
    }
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    assert exported_errors(export_con, fmt) == stored


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_then_ingest_into_an_empty_database_gives_the_same_runs(
    export_db, tmp_path, fmt, monkeypatch
):
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")  # a faithful copy: messages as recorded
    out = tmp_path / f"runs.{fmt}"
    assert (
        main(
            ["export", "--db", str(export_db), "--format", fmt, "--output", str(out), "--archived"]
        )
        == 0
    )
    if fmt == "parquet":
        assert pq.read_metadata(out).num_rows == len(runs_table(export_db))
    target = tmp_path / "again.duckdb"
    summary = ingest_paths(target, [out])
    assert summary.rejected == 0 and summary.new == len(runs_table(export_db))
    assert runs_table(target) == runs_table(export_db)


# ------------------------------------------------------------------ the same export on both engines

EXPORT_FILTERS = [
    RunFilter(),
    RunFilter(include_archived=True),
    RunFilter(statuses=("FAILED", "QUOTA_EXCEEDED")),
    RunFilter(search="step", include_archived=True),
]


@pytest.mark.parametrize("run_filter", EXPORT_FILTERS)
def test_an_export_selects_the_runs_the_filter_keeps_in_the_list_order(
    export_db, export_con, run_filter
):
    """Through the service on each backend (the CLI's own options are tested above on DuckDB):
    the same runs as the Python oracle, newest first."""
    from list_oracle import ids, load_runs, matching

    data = export_bytes(export_con, "jsonl", run_filter)
    exported = [json.loads(line)["id"] for line in data.splitlines()]
    assert exported == ids(matching(load_runs(export_db), run_filter))
    assert exported


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_clickhouse_writes_the_same_file_as_duckdb(request, export_db, chdb_copies, fmt):
    """Byte for byte for CSV and JSON Lines; the same table (types included) for Parquet."""
    data = {}
    for backend_name in BACKENDS:
        with opened(backend_name, export_db, request, chdb_copies) as con:
            data[backend_name] = export_bytes(con, fmt, RunFilter(include_archived=True))
    if fmt == "parquet":
        duck, click = (pq.read_table(io.BytesIO(data[name])) for name in BACKENDS)
        assert click.schema == duck.schema and click.equals(duck)
    else:
        assert data["chdb"] == data["duckdb"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_from_clickhouse_ingests_as_the_same_runs(
    request, export_db, chdb_copies, tmp_path, fmt, monkeypatch
):
    monkeypatch.setenv("RUNS_MASK_SECRETS", "0")
    out = tmp_path / f"runs.{fmt}"
    with opened("chdb", export_db, request, chdb_copies) as con, out.open("wb") as file:
        write_export(con, file, fmt, RunFilter(include_archived=True))
    target = tmp_path / "again.duckdb"
    summary = ingest_paths(target, [out])
    assert summary.rejected == 0 and summary.new == len(runs_table(export_db))
    assert runs_table(target) == runs_table(export_db)


def test_a_clickhouse_export_streams_in_batches(request, export_db, chdb_copies, monkeypatch):
    """Rows come from ClickHouse a batch at a time, not as one table."""
    from runs_store.services import export

    monkeypatch.setattr(export, "BATCH_ROWS", 500)
    with opened("chdb", export_db, request, chdb_copies) as con:
        reader = export._batches(con, RunFilter(include_archived=True), None)
        sizes = [batch.num_rows for batch in reader]
    assert len(sizes) > 2 and max(sizes) <= 500
    assert sum(sizes) == len(runs_table(export_db))
