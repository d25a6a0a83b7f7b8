"""Moving the bundled sample in time (sample_loader.shift_times): every timestamp under a time key
moves by the same shift, and a value there that is no timestamp stays as it was."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runs_store.ingest.sample_loader import shift_times

HOUR = timedelta(hours=1)


def test_every_timestamp_under_a_time_key_moves_by_the_shift_however_deep():
    record = {
        "created": "2026-11-03T09:14:00.000Z",
        "id": "2026-11-03T09:14:00.000Z",
        "steps": {"step_1": {"output": {"endTime": "2026-11-03T09:15:30.250Z"}}},
    }
    assert shift_times(record, HOUR) == {
        "created": "2026-11-03T10:14:00.000Z",
        "id": "2026-11-03T09:14:00.000Z",
        "steps": {"step_1": {"output": {"endTime": "2026-11-03T10:15:30.250Z"}}},
    }


@pytest.mark.parametrize("value", ["", "soon", "2026-13-45"])
def test_a_time_key_holding_no_timestamp_is_left_as_it_was(value):
    assert shift_times({"created": value, "updated": None}, HOUR) == {
        "created": value,
        "updated": None,
    }
