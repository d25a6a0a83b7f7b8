"""The rejected records: what was not loaded, where it was, and why."""

from __future__ import annotations


def list_rejects(con, source: str | None = None) -> list[dict]:
    sql = "SELECT source, unit, position, reason, raw, rejected_at FROM rejects"
    params: list = []
    if source is not None:
        sql += " WHERE source = ?"
        params.append(source)
    cursor = con.execute(sql + " ORDER BY source, position", params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rejects_frame(con, limit: int | None = None):
    """File, location, reason and raw text of the rejects, at most `limit` of them (for screens)."""
    sql = (
        "SELECT source AS file, unit || ' ' || position AS location, reason, raw "
        "FROM rejects ORDER BY source, position"
    )
    if limit is None:
        return con.execute(sql).df()
    return con.execute(sql + " LIMIT ?", [limit]).df()


def count_rejects(con) -> int:
    return con.execute("SELECT count(*) FROM rejects").fetchall()[0][0]


def reject_location(reject: dict) -> str:
    """ "line 12" for line-based files, "item 3" for records of a JSON list, "row 7" for Parquet."""
    return f"{reject['unit']} {reject['position']}"
