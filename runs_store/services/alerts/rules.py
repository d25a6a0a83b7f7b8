"""The alert rules file (`--rules FILE`, default RUNS_ALERTS): TOML naming the channels to tell and
the rules to judge, read into frozen values.

A file with mistakes is refused whole, with one line per mistake naming the file, the rule or
channel and the key, e.g. ``alerts.toml: rule 'Invoices failing': key 'above': a rate from 0 to 1
is needed, got 1.5``: a user fixes them all in one go. A value written `env:NAME` is a reference
to an environment variable, kept as its name and read only when a message is sent (an unset one
is then a configuration error of that channel, not of the file). The shape is docs/alerts.md's.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runs_store.domain.errors import StoreError
from runs_store.services.alerts.channels import (
    CHANNEL_TYPES,
    Channel,
    EmailChannel,
    SecretRef,
    SlackChannel,
    Value,
    WebhookChannel,
)

KINDS = ("failure_rate", "failed_runs", "quota_exceeded", "new_error", "slow", "no_runs")
COUNT_KINDS = ("failed_runs", "quota_exceeded", "new_error")
MIN_RUNS_KINDS = ("failure_rate", "slow")  # judged only on enough runs
DEFAULT_MIN_RUNS = 10
MAX_WINDOW = timedelta(days=366)
_WINDOW = re.compile(r"(?P<amount>\d+)\s*(?P<unit>[mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_CHANNEL_KEYS = {
    "slack": {"type", "url"},
    "webhook": {"type", "url", "secret"},
    "email": {"type", "smtp", "from", "to", "user", "password"},
}
_RULE_KEYS = ("name", "kind", "window", "above", "min_runs", "flows", "channels")
_TOP_KEYS = ("channels", "rules", "timezone")


class RulesError(StoreError):
    """A rules file that cannot be used; `lines` holds one line per mistake."""

    def __init__(self, lines: Iterable[str]):
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # one of KINDS
    window: timedelta
    window_text: str  # as written: "1h"
    above: float | None  # None for no_runs
    min_runs: int  # 0 where the kind has none
    flows: tuple[str, ...]  # () = every flow
    channels: tuple[str, ...]


@dataclass(frozen=True)
class RulesFile:
    path: str  # as given: messages name it so
    channels: dict[str, Channel]
    rules: tuple[Rule, ...]
    timezone: str = "UTC"  # people's days: the digest's, and the days a link's range names
    warnings: tuple[str, ...] = field(default=())

    def rule(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


def load_rules(path: str | Path) -> RulesFile:
    """The rules file at `path`, checked whole; RulesError with every mistake otherwise."""
    shown = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError([f"{shown}: no such file (check --rules or RUNS_ALERTS)"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError([f"{shown}: cannot be read: {error}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError([f"{shown}: not valid TOML: {error}"]) from None
    return parse_rules(data, shown)


def parse_rules(data: dict[str, Any], shown: str = "alerts.toml") -> RulesFile:
    """The rules a parsed TOML document describes; RulesError listing every mistake."""
    mistakes = _Mistakes(shown)
    for key in data:
        if key not in _TOP_KEYS:
            mistakes.add("", key, f"unknown key; the file has {', '.join(_TOP_KEYS)}")
    table = data.get("channels", {})
    channels = _read_channels(table, mistakes)
    defined = set(table) if isinstance(table, dict) else set()  # a bad one is named once
    rules = _read_rules(data.get("rules", []), defined, mistakes)
    timezone = _read_timezone(data.get("timezone", "UTC"), mistakes)
    if mistakes.lines:
        raise RulesError(mistakes.lines)
    return RulesFile(shown, channels, rules, timezone)


class _Mistakes:
    """The lines of a file's mistakes, each naming where it is."""

    def __init__(self, shown: str):
        self.shown = shown
        self.lines: list[str] = []

    def add(self, where: str, key: str | None, text: str) -> None:
        parts = [self.shown] + ([where] if where else []) + ([f"key {key!r}"] if key else [])
        self.lines.append(": ".join([*parts, text]))


# ---------------------------------------------------------------- channels


def _read_channels(table: object, mistakes: _Mistakes) -> dict[str, Channel]:
    if not isinstance(table, dict):
        mistakes.add("", "channels", "a table of channels is needed, [channels.NAME]")
        return {}
    channels = {}
    for name, spec in table.items():
        where = f"channel {name!r}"
        if not isinstance(spec, dict):
            mistakes.add(where, None, "a table is needed: [channels.NAME] with type = ...")
            continue
        channel = _read_channel(name, spec, where, mistakes)
        if channel is not None:
            channels[name] = channel
    return channels


def _read_channel(name: str, spec: dict, where: str, mistakes: _Mistakes) -> Channel | None:
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        text = "missing" if kind is None else f"got {kind!r}"
        mistakes.add(where, "type", f"one of {', '.join(CHANNEL_TYPES)} is needed, {text}")
        return None
    before = len(mistakes.lines)
    for key in spec:
        if key not in _CHANNEL_KEYS[kind]:
            allowed = ", ".join(sorted(_CHANNEL_KEYS[kind]))
            mistakes.add(where, key, f"unknown key for a {kind} channel; it takes {allowed}")
    channel: Channel
    if kind == "email":
        channel = _read_email(name, spec, where, mistakes)
    else:
        url = _value(spec, "url", where, mistakes, _http_url, required=True)
        if kind == "slack":
            channel = SlackChannel(name, url or "")
        else:
            secret = _value(spec, "secret", where, mistakes, _any_text)
            channel = WebhookChannel(name, url or "", secret)
    return channel if len(mistakes.lines) == before else None


def _read_email(name: str, spec: dict, where: str, mistakes: _Mistakes) -> EmailChannel:
    smtp = _value(spec, "smtp", where, mistakes, _smtp_url, required=True, env=False)
    sender = _value(spec, "from", where, mistakes, _address, required=True, env=False)
    to = spec.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        mistakes.add(where, "to", "a list of one or more addresses is needed")
        to = []
    for address in to:
        if _address(address) is not None:
            mistakes.add(where, "to", f"an e-mail address is needed, got {address!r}")
    user = _value(spec, "user", where, mistakes, _any_text, literal=False)
    password = _value(spec, "password", where, mistakes, _any_text, literal=False)
    return EmailChannel(
        name,
        str(smtp or ""),
        str(sender or ""),
        tuple(str(a) for a in to),
        user if isinstance(user, SecretRef) else None,
        password if isinstance(password, SecretRef) else None,
    )


def _value(
    spec: dict,
    key: str,
    where: str,
    mistakes: _Mistakes,
    check: Callable[[object], str | None],
    required: bool = False,
    env: bool = True,
    literal: bool = True,
) -> Value | None:
    """A channel's value: a literal checked by `check` (which says what is wrong, or None), or
    `env:NAME` where `env` allows it (only that where `literal` is False)."""
    if key not in spec:
        if required:
            mistakes.add(where, key, "missing")
        return None
    text = spec[key]
    if isinstance(text, str) and text.startswith("env:") and env:
        name = text[len("env:") :]
        if not _ENV_NAME.fullmatch(name):
            mistakes.add(where, key, f"env: needs a variable name, got {text!r}")
            return None
        return SecretRef(name)
    if not literal:
        mistakes.add(where, key, 'only "env:NAME" is taken here (a secret is never written in)')
        return None
    wrong = check(text)
    if wrong:
        mistakes.add(where, key, wrong)
        return None
    return str(text)


def _http_url(value: object) -> str | None:
    url = urlsplit(value) if isinstance(value, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.netloc:
        return f'an http(s) URL or "env:NAME" is needed, got {value!r}'
    return None


def _smtp_url(value: object) -> str | None:
    url = urlsplit(value) if isinstance(value, str) else None
    if url is None or url.scheme not in ("smtp", "smtps") or not url.hostname:
        return f"smtp://HOST:PORT or smtps://HOST:PORT is needed, got {value!r}"
    if url.username or url.password:
        return "no user or password in the URL: use user and password = env:NAME"
    try:
        url.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return f"the port is not a number from 1 to 65535, got {value!r}"
    return None


def _address(value: object) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value):
        return f"an e-mail address is needed, got {value!r}"
    return None


def _any_text(value: object) -> str | None:
    return None if isinstance(value, str) and value else f"a text is needed, got {value!r}"


# ---------------------------------------------------------------- rules


def _read_rules(items: object, channels: set[str], mistakes: _Mistakes) -> tuple[Rule, ...]:
    if not isinstance(items, list):
        mistakes.add("", "rules", "a list of rules is needed, each a [[rules]] table")
        return ()
    rules, seen = [], set()
    for number, spec in enumerate(items, start=1):
        name = spec.get("name") if isinstance(spec, dict) else None
        where = f"rule {name!r}" if isinstance(name, str) and name.strip() else f"rule #{number}"
        if not isinstance(spec, dict):
            mistakes.add(where, None, "a [[rules]] table is needed")
            continue
        if isinstance(name, str) and name in seen:
            mistakes.add(where, "name", "another rule has this name; each needs its own")
        rule = _read_rule(spec, where, channels, mistakes)
        seen.add(name)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _read_rule(spec: dict, where: str, channels: set[str], mistakes: _Mistakes) -> Rule | None:
    before = len(mistakes.lines)
    for key in spec:
        if key not in _RULE_KEYS:
            mistakes.add(where, key, f"unknown key; a rule takes {', '.join(_RULE_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        mistakes.add(where, "name", "a name is needed (any text)")
    kind = spec.get("kind")
    if kind not in KINDS:
        text = "missing" if kind is None else f"got {kind!r}"
        mistakes.add(where, "kind", f"one of {', '.join(KINDS)} is needed, {text}")
    window = _read_window(spec.get("window"), where, mistakes)
    above = _read_above(kind, spec, where, mistakes)
    min_runs = _read_min_runs(kind, spec, where, mistakes)
    flows = _read_names(spec, "flows", where, mistakes, required=False)
    wanted = _read_names(spec, "channels", where, mistakes, required=True)
    for channel in wanted:
        if channel not in channels:
            known = ", ".join(sorted(channels)) or "none are defined"
            mistakes.add(where, "channels", f"no channel {channel!r} ([channels.NAME]: {known})")
    if len(mistakes.lines) != before or window is None:
        return None
    return Rule(
        str(name), str(kind), window, str(spec["window"]).strip(), above, min_runs, flows, wanted
    )


def _read_window(text: object, where: str, mistakes: _Mistakes) -> timedelta | None:
    if text is None:
        mistakes.add(where, "window", "missing: a span like 15m, 1h, 24h or 7d is needed")
        return None
    match = _WINDOW.fullmatch(text.strip()) if isinstance(text, str) else None
    span = timedelta(**{_UNITS[match["unit"]]: int(match["amount"])}) if match else None
    if span is None or not timedelta(minutes=1) <= span <= MAX_WINDOW:
        needed = "a span from 1m to 366d like 15m, 1h, 24h or 7d is needed"
        mistakes.add(where, "window", f"{needed}, got {text!r}")
        return None
    return span


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _read_above(kind: object, spec: dict, where: str, mistakes: _Mistakes) -> float | None:
    value = spec.get("above")
    if kind == "no_runs":
        if "above" in spec:
            mistakes.add(where, "above", "no_runs takes no threshold: it fires on no runs at all")
        return None
    if kind == "failure_rate":
        rate = _number(value)
        if rate is None or not 0 <= rate <= 1:
            got = "missing" if value is None else f"got {value!r}"
            mistakes.add(where, "above", f"a rate from 0 to 1 is needed, {got}")
        return rate
    if kind == "slow":
        ms = _number(value)
        if ms is None or ms <= 0:
            got = "missing" if value is None else f"got {value!r}"
            mistakes.add(where, "above", f"a p95 duration in milliseconds > 0 is needed, {got}")
        return ms
    if kind in COUNT_KINDS:
        count = 0 if value is None else value
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            mistakes.add(where, "above", f"a whole number of runs >= 0 is needed, got {value!r}")
            return None
        return float(count)
    return None


def _read_min_runs(kind: object, spec: dict, where: str, mistakes: _Mistakes) -> int:
    if kind not in MIN_RUNS_KINDS:
        if "min_runs" in spec and kind in KINDS:
            mistakes.add(where, "min_runs", f"only {' and '.join(MIN_RUNS_KINDS)} take it")
        return 0
    value = spec.get("min_runs", DEFAULT_MIN_RUNS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        mistakes.add(where, "min_runs", f"a whole number of runs >= 1 is needed, got {value!r}")
        return DEFAULT_MIN_RUNS
    return value


def _read_names(
    spec: dict, key: str, where: str, mistakes: _Mistakes, required: bool
) -> tuple[str, ...]:
    value = spec.get(key)
    if value is None:
        if required:
            mistakes.add(where, key, "missing: a list of names is needed")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        mistakes.add(where, key, f"a list of names is needed, got {value!r}")
        return ()
    if required and not value:
        mistakes.add(where, key, "a list of one or more names is needed")
    return tuple(dict.fromkeys(value))


def _read_timezone(value: object, mistakes: _Mistakes) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        mistakes.add("", "timezone", f"an IANA zone like Europe/Paris is needed, got {value!r}")
        return "UTC"
    return str(value)


def flow_warnings(rules: RulesFile, known_flows: Iterable[str]) -> list[str]:
    """A line for each flow a rule names that has no runs in the store (likely a typo)."""
    known = set(known_flows)
    return [
        f"{rules.path}: rule {rule.name!r}: key 'flows': no runs of a flow named {flow!r} are "
        "in the store"
        for rule in rules.rules
        for flow in rule.flows
        if flow not in known
    ]
