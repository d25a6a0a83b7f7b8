"""How much of the store is the bundled sample: the pages say so while a user is looking at
generated runs rather than their own."""

from __future__ import annotations

from dataclasses import dataclass

from runs_store.store.backend import latest, rows
from runs_store.store.sources import SAMPLE_SOURCE


@dataclass(frozen=True)
class SampleShare:
    from_sample: int
    total: int

    @property
    def only_sample(self) -> bool:
        """The store holds runs, and every one of them came from the bundled sample."""
        return bool(self.total) and self.from_sample == self.total


def sample_share(con) -> SampleShare:
    """Runs from the bundled sample, and all runs."""
    from_sample, total = rows(
        con,
        # count(CASE ...) rather than DuckDB's FILTER clause: both engines read it
        f"SELECT count(CASE WHEN source = $sample THEN 1 END), count(*) FROM {latest(con, 'runs')}",
        {"sample": SAMPLE_SOURCE},
    )[0]
    return SampleShare(from_sample, total)
