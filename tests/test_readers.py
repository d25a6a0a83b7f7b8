"""Every input shape users have: JSON Lines, JSON (one run, a list, a list page), CSV, Parquet,
gzipped or not, single files or whole directories. Each test writes real files and ingests them
into a real database."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from datetime import UTC

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factories import engine_run, older_run, rows, run_row, simple_run, write_jsonl, write_text
from runs_store.domain.errors import InputPathError
from runs_store.ingest.pipeline import ingest_paths
from runs_store.ingest.readers import SourceFile, detect_format, expand_paths

RUNS = [engine_run("a1"), older_run("a2"), simple_run("a3", status="Quota Exceeded")]
IDS = {"a1", "a2", "a3"}


def stored_ids(db):
    return {row[0] for row in rows(db, "SELECT id FROM runs")}


def write_bytes(path, data: bytes, gz: bool):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def flat_rows():
    """Flat runs in the export columns, status by name and by label."""
    return [
        {
            "id": "f1",
            "flow": "Daily digest",
            "status": "SUCCEEDED",
            "started_at": "2026-11-01T08:00:00.000Z",
            "finished_at": "2026-11-01T08:00:02.500Z",
            "duration_ms": 2500,
            "failed_step": "",
            "archived": "false",
        },
        {
            "id": "f2",
            "flow": "Daily digest",
            "status": "Failed",
            "started_at": "2026-11-01T09:00:00.000Z",
            "finished_at": "2026-11-01T09:00:01.000Z",
            "duration_ms": 1000,
            "failed_step": "step_3",
            "archived": "true",
        },
        {
            "id": "f3",
            "flow": "CRM sync",
            "status": "Memory Limit Exceeded",
            "started_at": "2026-11-01T10:00:00.000Z",
            "finished_at": "",
            "duration_ms": "",
            "failed_step": "",
            "archived": "false",
        },
    ]


def csv_text(records) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def check_flat_rows_loaded(db):
    assert stored_ids(db) == {"f1", "f2", "f3"}
    f1, f2, f3 = (run_row(db, run_id) for run_id in ("f1", "f2", "f3"))
    assert (f1["status"], f2["status"], f3["status"]) == (
        "SUCCEEDED",
        "FAILED",
        "MEMORY_LIMIT_EXCEEDED",
    )
    assert f1["duration_ms"] == 2500 and f1["failed_step"] is None
    assert f2["failed_step"] == "step_3" and f2["archived_at"] is not None
    assert f1["archived_at"] is None and f3["finish_time"] is None and f3["duration_ms"] is None
    assert f1["has_steps"] is False


# ------------------------------------------------------------------ engine JSON shapes


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_json_lines_files_load_one_run_per_line(tmp_path, suffix, gz):
    path = write_jsonl(tmp_path / ("runs" + suffix + (".gz" if gz else "")), RUNS, gz=gz)
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert stored_ids(db) == IDS and summary.new == 3 and summary.rejected == 0


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
@pytest.mark.parametrize("shape", ["single run", "list", "list page"])
def test_json_files_hold_one_run_a_list_or_a_list_page(tmp_path, shape, gz):
    content = {
        "single run": RUNS[0],
        "list": RUNS,
        "list page": {"data": RUNS, "next": "cursor-2", "previous": None},
    }[shape]
    expected = {"a1"} if shape == "single run" else IDS
    path = write_bytes(
        tmp_path / ("runs.json" + (".gz" if gz else "")), json.dumps(content, indent=2).encode(), gz
    )
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert stored_ids(db) == expected and summary.new == len(expected)


def test_a_json_lines_line_may_be_a_whole_list_page(tmp_path):
    page_1 = {"data": RUNS[:2], "next": "c2", "previous": None}
    page_2 = {"data": RUNS[2:], "next": None, "previous": "c1"}
    path = write_jsonl(tmp_path / "pages.jsonl", [page_1, page_2])
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [path])
    assert stored_ids(db) == IDS


def test_concatenated_json_documents_in_a_json_file_load_one_per_line(tmp_path):
    path = write_text(tmp_path / "runs.json", "".join(json.dumps(r) + "\n" for r in RUNS))
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [path])
    assert stored_ids(db) == IDS


def test_a_json_file_that_is_not_json_is_rejected_and_kept(tmp_path):
    path = write_text(tmp_path / "broken.json", '[{"id": "x",\n "status": ')
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert summary.rejected == 1 and summary.exit_code == 1
    reason, raw = rows(db, "SELECT reason, raw FROM rejects")[0]
    assert reason.startswith("not valid JSON") and raw == path.read_text()


def test_blank_lines_and_a_byte_order_mark_are_ignored(tmp_path):
    text = "\ufeff" + json.dumps(RUNS[0]) + "\n\n   \n" + json.dumps(RUNS[1]) + "\r\n"
    path = write_text(tmp_path / "runs.jsonl", text)
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert stored_ids(db) == {"a1", "a2"} and summary.rejected == 0


def test_positions_count_lines_items_and_rows(tmp_path):
    jsonl = write_text(tmp_path / "runs.jsonl", "\n" + json.dumps(RUNS[0]) + "\n\nbad\n")
    listed = write_text(tmp_path / "runs.json", json.dumps([RUNS[0], 7]))
    table = write_text(tmp_path / "runs.csv", csv_text(flat_rows()))
    assert [(i.unit, i.position) for i in SourceFile(jsonl).items()] == [("line", 2), ("line", 4)]
    assert [(i.unit, i.position) for i in SourceFile(listed).items()] == [("item", 1), ("item", 2)]
    assert [(i.unit, i.position) for i in SourceFile(table).items()] == [
        ("line", 2),
        ("line", 3),
        ("line", 4),
    ]


# ------------------------------------------------------------------ flat rows


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_csv_files_load_flat_runs_with_status_by_name_or_label(tmp_path, gz):
    path = write_bytes(
        tmp_path / ("runs.csv" + (".gz" if gz else "")), csv_text(flat_rows()).encode(), gz
    )
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert summary.new == 3 and summary.rejected == 0
    check_flat_rows_loaded(db)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_parquet_files_load_flat_runs(tmp_path, gz):
    records = flat_rows()
    for record in records:
        record["archived"] = record["archived"] == "true"
        record["duration_ms"] = record["duration_ms"] or None
        record["finished_at"] = record["finished_at"] or None
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buffer)
    path = write_bytes(tmp_path / ("runs.parquet" + (".gz" if gz else "")), buffer.getvalue(), gz)
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [path])
    assert summary.new == 3 and summary.rejected == 0
    check_flat_rows_loaded(db)


def test_parquet_with_real_timestamp_columns_loads(tmp_path):
    from datetime import datetime

    table = pa.table(
        {
            "id": ["p1"],
            "flow": ["F"],
            "status": ["SUCCEEDED"],
            "started_at": pa.array(
                [datetime(2026, 11, 1, 9, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [tmp_path / "typed.parquet"])
    assert run_row(db, "p1")["started_at"] == datetime(2026, 11, 1, 9)


def test_a_csv_row_with_too_many_values_or_a_missing_flow_is_rejected(tmp_path):
    text = (
        "id,flow,status,started_at\n"
        "ok,F,SUCCEEDED,2026-11-01T08:00:00Z\n"
        "long,F,SUCCEEDED,2026-11-01T08:00:00Z,surprise\n"
        "noflow,,SUCCEEDED,2026-11-01T08:00:00Z\n"
    )
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [write_text(tmp_path / "runs.csv", text)])
    found = rows(db, "SELECT position, reason FROM rejects ORDER BY position")
    assert stored_ids(db) == {"ok"} and summary.rejected == 2
    assert found[0][0] == 3 and "more values than the header" in found[0][1]
    assert found[1] == (4, "no flow name (flow or flow_id)")


def test_a_damaged_parquet_file_is_an_input_error(tmp_path):
    path = write_text(tmp_path / "runs.parquet", "this is not parquet")
    with pytest.raises(InputPathError, match=r"runs\.parquet"):
        ingest_paths(tmp_path / "runs.duckdb", [path])


# ------------------------------------------------------------------ paths


def test_a_directory_loads_every_recognised_file_below_it(tmp_path):
    folder = tmp_path / "exports"
    (folder / "nested").mkdir(parents=True)
    write_jsonl(folder / "one.jsonl", [RUNS[0]])
    write_jsonl(folder / "nested" / "two.ndjson.gz", [RUNS[1]], gz=True)
    write_text(folder / "three.csv", csv_text(flat_rows()))
    write_text(folder / "notes.txt", "not runs")
    db = tmp_path / "runs.duckdb"
    summary = ingest_paths(db, [folder])
    assert summary.files == 3
    assert stored_ids(db) == {"a1", "a2", "f1", "f2", "f3"}


@pytest.mark.parametrize(
    "name",
    [
        "runs.jsonl",
        "RUNS.JSONL",
        "runs.ndjson.gz",
        "r.json",
        "r.json.gz",
        "r.csv",
        "r.csv.gz",
        "r.parquet",
        "r.parquet.gz",
    ],
)
def test_recognised_extensions_ignore_case_and_a_trailing_gz(name):
    assert detect_format(name) is not None


@pytest.mark.parametrize("name", ["runs.txt", "runs.gz", "runs.xlsx", "runs", "runs.jsonl.zip"])
def test_unknown_extensions_are_not_recognised(name):
    assert detect_format(name) is None


def test_unknown_extension_missing_path_and_special_files_are_input_errors(tmp_path):
    write_text(tmp_path / "runs.txt", "x")
    os.mkfifo(tmp_path / "pipe.jsonl")
    cases = {
        tmp_path / "runs.txt": "not a recognised format",
        tmp_path / "missing.jsonl": "no such file or directory",
        tmp_path / "pipe.jsonl": "not a regular file",
    }
    for path, message in cases.items():
        with pytest.raises(InputPathError) as caught:
            expand_paths([path])
        assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_gz_file_that_is_not_gzip_is_read_as_plain_text(tmp_path):
    path = write_jsonl(tmp_path / "runs.jsonl.gz", RUNS, gz=False)
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [path])
    assert stored_ids(db) == IDS


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_gzip_file_is_an_input_error_naming_it(tmp_path, damage):
    data = gzip.compress(("".join(json.dumps(r) + "\n" for r in RUNS * 200)).encode())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data[:20] + bytes(b ^ 0x5A for b in data[20:200]) + data[200:]
    path = tmp_path / "runs.jsonl.gz"
    path.write_bytes(data)
    with pytest.raises(InputPathError, match=r"runs\.jsonl\.gz"):
        ingest_paths(tmp_path / "runs.duckdb", [path])
