"""Durations and times worded the way the engine's Runs page words them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from runs_store.domain.formatting import banner_time, long_duration, short_duration, to_local, zone


@pytest.mark.parametrize(
    "ms, text",
    [
        (0, "0 ms"),
        (263, "263 ms"),
        (832, "832 ms"),
        (999, "999 ms"),
        (1000, "1 s"),
        (4200, "4.2 s"),
        (4299, "4.2 s"),
        (10_000, "10 s"),
        (59_999, "59.9 s"),
        (60_000, "1 min"),
        (185_000, "3 min 5 s"),
        (3_600_000, "1 h"),
        (7_440_000, "2 h 4 min"),
        (3_605_000, "1 h"),
        (90_000_000, "1 d 1 h"),
        (263.7, "263 ms"),
    ],
)
def test_short_duration_reads_like_the_runs_list(ms, text):
    assert short_duration(ms) == text


@pytest.mark.parametrize("ms", [None, math.nan])
def test_an_unknown_duration_is_blank(ms):
    assert short_duration(ms) == "" and long_duration(ms) == ""


@pytest.mark.parametrize(
    "ms, text",
    [
        (832, "832 milliseconds"),
        (1, "1 millisecond"),
        (1000, "1 second"),
        (4200, "4.2 seconds"),
        (60_000, "1 minute"),
        (185_000, "3 minutes 5 seconds"),
        (7_440_000, "2 hours 4 minutes"),
        (86_400_000, "1 day"),
    ],
)
def test_long_duration_reads_like_the_run_banner(ms, text):
    assert long_duration(ms) == text


@pytest.mark.parametrize(
    "moment, tz, text",
    [
        (datetime(2026, 6, 12, 3, 23), "UTC", "Jun 12, 2026, 3:23 AM"),
        (datetime(2026, 6, 12, 1, 23), "Europe/Paris", "Jun 12, 2026, 3:23 AM"),
        (datetime(2026, 6, 12, 0, 5), "UTC", "Jun 12, 2026, 12:05 AM"),
        (datetime(2026, 6, 12, 12, 0), "UTC", "Jun 12, 2026, 12:00 PM"),
        (datetime(2026, 11, 3, 15, 7), "UTC", "Nov 3, 2026, 3:07 PM"),
        (datetime(2026, 11, 3, 2, 0), "America/New_York", "Nov 2, 2026, 9:00 PM"),
    ],
)
def test_banner_time_writes_the_engines_format_in_the_users_timezone(moment, tz, text):
    assert banner_time(moment, zone(tz)) == text


@pytest.mark.parametrize("name", [None, "", "Not/AZone", "../../etc/passwd"])
def test_an_unknown_timezone_falls_back_to_utc(name):
    assert zone(name) is UTC


def test_a_known_timezone_is_used():
    assert zone("Europe/Paris") == ZoneInfo("Europe/Paris")


def test_store_times_are_naive_utc_shown_in_local_time():
    local = to_local(datetime(2026, 1, 15, 12, 0), zone("Asia/Tokyo"))
    assert (local.hour, local.utcoffset().total_seconds()) == (21, 9 * 3600)
    assert to_local(None, UTC) is None
