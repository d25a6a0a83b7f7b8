"""Named parameters for SQL assembled from pieces.

A query binds its values by name (`$tz`, `$limit`), so the SQL text and the call that runs it
agree without anyone counting `?`s. DuckDB does not mix the two styles in one statement, so a
piece written with positional `?` placeholders (the filter's WHERE clause from `build_where`) is
renamed first: `named(sql, params, "filter")` gives `$filter_1`, `$filter_2`, ... in order.
DuckDB's own tokenizer finds the placeholders, so a `?` inside a string or a comment stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb

from runs_store.queries.filters import RunFilter, build_where

Params = dict[str, object]


def named(sql: str, params: Sequence | Mapping, prefix: str) -> tuple[str, Params]:
    """(sql with each positional `?` renamed `$prefix_N`, its values by name); a piece already
    bound by name passes through."""
    if isinstance(params, Mapping):
        return sql, dict(params)
    places = placeholders(sql)
    if len(places) != len(params):
        raise ValueError(f"{len(places)} placeholders for {len(params)} values in {sql!r}")
    names = [f"{prefix}_{number}" for number in range(1, len(places) + 1)]
    pieces, last = [], 0
    for place, name in zip(places, names, strict=True):
        pieces += [sql[last:place], f"${name}"]
        last = place + 1
    return "".join(pieces) + sql[last:], dict(zip(names, params, strict=True))


def named_where(run_filter: RunFilter, prefix: str = "filter") -> tuple[str, Params]:
    """The filter's `WHERE ...` fragment (or "") bound by name."""
    return named(*build_where(run_filter), prefix)


def merged(*groups: Mapping) -> Params:
    """One parameter dict from several; a name bound to two different values is a mistake."""
    found: Params = {}
    for group in groups:
        for name, value in group.items():
            if name in found and found[name] is not value and found[name] != value:
                raise ValueError(f"parameter ${name} bound to two values")
            found[name] = value
    return found


def placeholders(sql: str) -> list[int]:
    """Where each positional `?` placeholder is (offsets): never in a string or a comment."""
    tokens = duckdb.tokenize(sql)
    bounds = [start for start, _ in tokens] + [len(sql)]
    return [
        start + offset
        for (start, kind), end in zip(tokens, bounds[1:], strict=True)
        if kind == duckdb.token_type.operator
        for offset, char in enumerate(sql[start:end])
        if char == "?"
    ]
