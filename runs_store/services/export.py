"""Exporting runs as CSV, JSON Lines or Parquet, with the same filters as the Runs page.

The columns are the flat export columns the ingest reads back (`id, flow, status, started_at,
finished_at, duration_ms, failed_step, archived, ...`): status as the enum name, times ISO-8601
UTC. Rows stream from the store (DuckDB, or ClickHouse reading `runs FINAL`) in batches, so
exports of millions of runs use little memory; both engines write the same files. Error
messages are masked as the app shows them (RUNS_MASK_SECRETS=0 exports them as recorded).

An export can never hurt the store or an earlier export: a file is written beside its target and
renamed into place only when complete, and an output that is the store itself (or its WAL) is
refused before anything is opened. Text cells of a CSV that a spreadsheet would run as a formula
(starting with = + - @, a tab or a carriage return) are written with a leading ' (OWASP's advice
on CSV injection); the CSV reader takes that ' off again, so an export still loads back as the
same runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # pyarrow is imported by the writers: importing it costs the CLI ~0.3 s
    import pyarrow as pa

from runs_store.domain.errors import StoreError
from runs_store.domain.run_fields import FLAT_FIELDS, Kind
from runs_store.queries.filters import ORDER_BY, RunFilter, build_where
from runs_store.queries.named_params import named
from runs_store.services.masking import masking_on, messages_as_shown
from runs_store.store.backend import CLICKHOUSE, DUCKDB, arrow_batches, dialect, latest

FORMATS = ("csv", "jsonl", "parquet")
# A text cell starting with one of these runs as a formula in Excel, LibreOffice and Sheets;
# a ' already in front of one is doubled, so that the reader can take exactly one off.
FORMULA_START = r"^'*[=+\-@\t\r]"

# A time as ISO-8601 UTC to the millisecond ({} is the column), per dialect: ClickHouse's %f is
# always six digits, of which the first three are kept.
_ISO = {
    DUCKDB: "strftime({}, '%Y-%m-%dT%H:%M:%S.%gZ')",
    CLICKHOUSE: "concat(substring(formatDateTime({}, '%Y-%m-%dT%H:%i:%S.%f'), 1, 23), 'Z')",
}
BATCH_ROWS = 50_000
# The flat export columns, in the order a file has them. Those of run_fields.FLAT_FIELDS are
# written from the column each is read back into (its first source is its name in the file); the
# others are ruled by records.normalize_flat_row: id, status, the given duration, the old flag.
EXPORT_COLUMNS = (
    "id",
    "flow",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "failed_step",
    "archived",
    "failed_step_display",
    "error_message",
    "flow_id",
    "flow_version_id",
    "project_id",
    "archived_at",
    "updated_at",
)
_OWN_EXPORT = {
    "id": "id",
    "status": "status",
    "duration_ms": "duration_ms",
    "archived": "CAST(archived_at IS NOT NULL AS BOOLEAN)",  # ClickHouse's IS NULL is a UInt8
    "error_message": "error_message",
}
_FLAT_BY_NAME = {field.sources[0]: field for field in FLAT_FIELDS}


def _exported(name: str, sql_dialect: str) -> str:
    field = _FLAT_BY_NAME.get(name)
    if field is None:
        return f"{_OWN_EXPORT[name]} AS {name}"
    if field.kind is Kind.TIMESTAMP:
        return f"{_ISO[sql_dialect].format(field.column)} AS {name}"
    return f"{field.column} AS {name}"


def _export_select(sql_dialect: str) -> str:
    """The export's columns, per dialect (they differ only in how a time is written)."""
    return f"SELECT {', '.join(_exported(name, sql_dialect) for name in EXPORT_COLUMNS)}"


# The chosen runs, as each engine takes a list of ids.
_CHOSEN = {DUCKDB: "id IN (SELECT unnest(?::VARCHAR[]))", CLICKHOUSE: "id IN ?"}


def _batches(con, run_filter: RunFilter | None, run_ids: list[str] | None):
    where, params = build_where(run_filter or RunFilter(include_archived=True))
    if run_ids is not None:
        where = (where + " AND " if where else "WHERE ") + _CHOSEN[dialect(con)]
        params = [*params, list(run_ids)]
    sql = f"{_export_select(dialect(con))} FROM {latest(con, 'runs')} {where} {ORDER_BY}"
    reader = arrow_batches(con, *named(sql, params, "p"), batch_rows=BATCH_ROWS)
    return reader if dialect(con) == DUCKDB else _as_duckdb_types(reader)


def _as_duckdb_types(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """ClickHouse's batches with the column types DuckDB's have (every column nullable, as
    ClickHouse marks some not), so that both engines write the same files."""
    import pyarrow as pa

    schema = pa.schema([field.with_nullable(True) for field in reader.schema])
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in reader))


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
            masked = pa.array(
                messages_as_shown(encoded.dictionary.to_pylist(), True), pa.string()
            ).take(encoded.indices)
            yield pa.RecordBatch.from_arrays(
                [masked if n == column else batch.column(n) for n in range(batch.num_columns)],
                schema=reader.schema,
            )

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def write_export(
    con,
    out: BinaryIO,
    fmt: str,
    run_filter: RunFilter | None = None,
    run_ids: list[str] | None = None,
    mask: bool | None = None,
) -> int:
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
            writer.write_batch(neutralise_formulas(batch))
            count += batch.num_rows
    return count


def neutralise_formulas(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every text cell that a spreadsheet would run as a formula prefixed with
    a ' (numbers, booleans and empty cells as they are)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_START), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def refuse_store_as_output(output: str | os.PathLike, database: Path) -> None:
    """StoreError when `output` is the database file or its WAL, however it is spelled
    (relative, through a link, a hard link): writing there would destroy the store."""
    target = Path(output)
    for protected in (database, database.with_name(database.name + ".wal")):
        if _same_file(target, protected):
            raise StoreError(
                f"--output {output} is the database itself ({protected}); "
                f"exporting there would destroy it. Choose another file."
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


@contextmanager
def replaced_on_success(output: str | os.PathLike) -> Iterator[BinaryIO]:
    """A file to write the export to, beside `output`; renamed onto `output` only when the
    block ends without error, so a failed export leaves an existing file as it was."""
    target = Path(output)
    if target.is_dir():
        raise StoreError(f"--output {output} is a directory; name a file")
    if not target.parent.is_dir():
        raise StoreError(f"--output {output}: the folder {target.parent} does not exist")
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def export_bytes(
    con,
    fmt: str,
    run_filter: RunFilter | None = None,
    run_ids: list[str] | None = None,
    mask: bool | None = None,
) -> bytes:
    """The export as bytes, for a download button."""
    import io

    buffer = io.BytesIO()
    write_export(con, buffer, fmt, run_filter, run_ids, mask)
    return buffer.getvalue()
