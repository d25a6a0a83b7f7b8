"""Durations and times worded the way a person says them, for the list, the banner and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runs_store.domain.statuses import BY_NAME

_UNITS_SHORT = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))
_UNITS_LONG = (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1000))


def _two_units(ms: int, units: tuple[tuple[str, int], ...]) -> list[tuple[int, str]]:
    parts: list[tuple[int, str]] = []
    for name, size in units:
        if ms >= size or parts:
            parts.append((ms // size, name))
            ms %= size
        if len(parts) == 2:
            break
    return parts


def short_duration(ms) -> str:
    """832 ms, 4.2 s, 3 min 5 s, 2 h 4 min, 3 d 1 h; empty for an unknown duration."""
    if ms is None or ms != ms:  # None or NaN
        return ""
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms // 100 / 10:.1f} s".replace(".0 s", " s")
    return " ".join(f"{count} {name}" for count, name in _two_units(ms, _UNITS_SHORT) if count)


def shown_duration(status: str, ms) -> str:
    """A run's duration as the runs list shows it: blank while the run has not finished (a
    duration stored for an unfinished run is not trusted), else short_duration. A status the
    app does not know shows its duration."""
    found = BY_NAME.get(status)
    return short_duration(ms) if found is None or found.finished else ""


def long_duration(ms) -> str:
    """832 milliseconds, 4.2 seconds, 3 minutes 5 seconds: the banner's wording."""
    if ms is None or ms != ms:
        return ""
    ms = int(ms)
    if ms < 1000:
        return f"{ms} millisecond" + ("" if ms == 1 else "s")
    if ms < 60_000:
        seconds = f"{ms // 100 / 10:.1f}".removesuffix(".0")
        return f"{seconds} second" + ("" if seconds == "1" else "s")
    return " ".join(
        f"{count} {name}" + ("" if count == 1 else "s")
        for count, name in _two_units(ms, _UNITS_LONG)
        if count
    )


def zone(name: str | None) -> tzinfo:
    """The named IANA timezone, or UTC when the name is missing or unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


@overload
def to_local(moment: datetime, tz: tzinfo) -> datetime: ...
@overload
def to_local(moment: None, tz: tzinfo) -> None: ...
def to_local(moment: datetime | None, tz: tzinfo) -> datetime | None:
    """A naive-UTC store timestamp in the user's timezone."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).astimezone(tz)


def banner_time(moment: datetime, tz: tzinfo) -> str:
    """ "Jun 12, 2026, 3:23 AM", as the engine's run banner writes it."""
    local = to_local(moment, tz)
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return f"{local:%b} {local.day}, {local.year}, {hour}:{local:%M} {half}"
