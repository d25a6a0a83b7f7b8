"""The rejected records: what was not loaded, where it was, and why."""

from __future__ import annotations

from runs_store.store.backend import frame, rows


def list_rejects(con, source: str | None = None) -> list[dict]:
    sql = "SELECT source, unit, position, reason, raw, rejected_at FROM rejects"
    params: dict = {}
    if source is not None:
        sql += " WHERE source = $source"
        params["source"] = source
    names = ["source", "unit", "position", "reason", "raw", "rejected_at"]
    found = rows(con, sql + " ORDER BY source, position", params)
    return [dict(zip(names, row, strict=True)) for row in found]


def rejects_frame(con, limit: int | None = None):
    """File, location, reason and raw text of the rejects, at most `limit` of them (for screens)."""
    sql = (
        "SELECT source AS file, concat(unit, ' ', CAST(position AS VARCHAR)) AS location, "
        "reason, raw FROM rejects ORDER BY source, position"
    )
    if limit is None:
        return frame(con, sql)
    return frame(con, sql + " LIMIT $limit", {"limit": limit})


def count_rejects(con) -> int:
    return rows(con, "SELECT count(*) FROM rejects")[0][0]


def reject_location(reject: dict) -> str:
    """ "line 12" for line-based files, "item 3" for records of a JSON list, "row 7" for Parquet."""
    return f"{reject['unit']} {reject['position']}"
