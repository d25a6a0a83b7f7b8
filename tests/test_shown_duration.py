"""The runs list's duration rule, in one place (runs_store.domain.formatting.shown_duration): a run
that
has not finished shows no duration, even when one is stored; every other run shows its duration
as the list words it."""

from __future__ import annotations

import math

import pytest

from runs_store.domain.formatting import short_duration, shown_duration
from runs_store.domain.statuses import STATUSES, UNFINISHED


@pytest.mark.parametrize("status", sorted(UNFINISHED))
def test_an_unfinished_run_shows_no_duration_even_when_one_is_stored(status):
    assert shown_duration(status, 4200) == ""


@pytest.mark.parametrize("status", [s.name for s in STATUSES if s.finished])
def test_a_finished_run_shows_its_duration(status):
    assert shown_duration(status, 4200) == "4.2 s" == short_duration(4200)


@pytest.mark.parametrize(
    "status, ms, shown",
    [
        ("SUCCEEDED", 832, "832 ms"),
        ("FAILED", 185_000, "3 min 5 s"),
        ("SUCCEEDED", None, ""),  # no duration recorded
        ("TIMEOUT", math.nan, ""),  # a missing value as pandas hands it over
        ("SOMETHING_NEW", 1000, "1 s"),  # a status this app does not know: shown as stored
        ("RUNNING", None, ""),
    ],
)
def test_shown_duration(status, ms, shown):
    assert shown_duration(status, ms) == shown


def test_the_unfinished_statuses_are_exactly_those_without_an_outcome():
    assert {s.name for s in STATUSES if not s.finished} == set(UNFINISHED)
