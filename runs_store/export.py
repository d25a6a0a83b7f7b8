"""Exporting runs as CSV, JSON Lines or Parquet, with the same filters as the Runs page.

The columns are the flat export columns the ingest reads back (`id, flow, status, started_at,
finished_at, duration_ms, failed_step, archived, ...`): status as the enum name, times ISO-8601
UTC. Rows stream from DuckDB in batches, so exports of millions of runs use little memory. Error
messages are masked as the app shows them (RUNS_MASK_SECRETS=0 exports them as recorded).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # pyarrow is imported by the writers: importing it costs the CLI ~0.3 s
    import pyarrow as pa

from runs_store.filters import ORDER_BY, RunFilter, build_where
from runs_store.masking import masking_on, messages_as_shown

FORMATS = ("csv", "jsonl", "parquet")

_ISO = "'%Y-%m-%dT%H:%M:%S.%gZ'"
EXPORT_SELECT = f"""
SELECT id, flow_name AS flow, status,
       strftime(started_at, {_ISO}) AS started_at,
       strftime(finish_time, {_ISO}) AS finished_at,
       duration_ms, failed_step, archived_at IS NOT NULL AS archived,
       failed_step_display, error_message, flow_id, flow_version_id, project_id,
       strftime(archived_at, {_ISO}) AS archived_at,
       strftime(updated_at, {_ISO}) AS updated_at
FROM runs
"""
EXPORT_COLUMNS = ("id", "flow", "status", "started_at", "finished_at", "duration_ms",
                  "failed_step", "archived", "failed_step_display", "error_message", "flow_id",
                  "flow_version_id", "project_id", "archived_at", "updated_at")


def _batches(con, run_filter: RunFilter | None, run_ids: list[str] | None):
    where, params = build_where(run_filter or RunFilter(include_archived=True))
    if run_ids is not None:
        where = (where + " AND " if where else "WHERE ") + "id IN (SELECT unnest(?::VARCHAR[]))"
        params = params + [list(run_ids)]
    return con.sql(f"{EXPORT_SELECT} {where} {ORDER_BY}", params=params).to_arrow_reader(50_000)


def _masked(reader: pa.RecordBatchReader, mask: bool | None) -> pa.RecordBatchReader:
    """The batches with their error messages masked as the app shows them (RUNS_MASK_SECRETS)."""
    import pyarrow as pa

    if not masking_on(mask):
        return reader
    column = EXPORT_COLUMNS.index("error_message")

    def batches():
        for batch in reader:
            # each distinct message is masked once (a million runs share a few thousand)
            encoded = batch.column(column).dictionary_encode()
            masked = pa.array(messages_as_shown(encoded.dictionary.to_pylist(), True),
                              pa.string()).take(encoded.indices)
            yield pa.RecordBatch.from_arrays(
                [masked if n == column else batch.column(n) for n in range(batch.num_columns)],
                schema=reader.schema)

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def write_export(con, out: BinaryIO, fmt: str, run_filter: RunFilter | None = None,
                 run_ids: list[str] | None = None, mask: bool | None = None) -> int:
    """Writes the matching runs to a binary stream; returns how many were written. Error
    messages are masked unless `mask` is False (default: RUNS_MASK_SECRETS)."""
    reader = _masked(_batches(con, run_filter, run_ids), mask)
    if fmt == "csv":
        return _write_csv(reader, out)
    if fmt == "jsonl":
        return _write_jsonl(reader, out)
    if fmt == "parquet":
        return _write_parquet(reader, out)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _write_csv(reader: pa.RecordBatchReader, out: BinaryIO) -> int:
    import pyarrow.csv as pacsv

    count = 0
    with pacsv.CSVWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


def _write_jsonl(reader: pa.RecordBatchReader, out: BinaryIO) -> int:
    count = 0
    for batch in reader:
        lines = [json.dumps(row, ensure_ascii=False) for row in batch.to_pylist()]
        if lines:
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
        count += batch.num_rows
    return count


def _write_parquet(reader: pa.RecordBatchReader, out: BinaryIO) -> int:
    import pyarrow.parquet as pq

    count = 0
    with pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


def export_bytes(con, fmt: str, run_filter: RunFilter | None = None,
                 run_ids: list[str] | None = None, mask: bool | None = None) -> bytes:
    """The export as bytes, for a download button."""
    import io

    buffer = io.BytesIO()
    write_export(con, buffer, fmt, run_filter, run_ids, mask)
    return buffer.getvalue()
