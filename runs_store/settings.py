"""Every setting of Runs Explorer, declared once with its type, default and help, and read into
one validated `Settings` object.

Settings come from environment variables; the CLI's `--db` overrides `RUNS_DB`. Each declaration
names the kind of value it takes (a path, a yes/no, a number with its bounds, a memory size, a URL
template); a value outside it raises `SettingError` with one line per bad variable naming it, the
value and what is allowed, e.g. ``RUNS_LOCK_WAIT_SECONDS='abc' is not allowed: use a number of
seconds >= 0, e.g. RUNS_LOCK_WAIT_SECONDS=30``. Nothing falls back to a default in silence.

`load_settings(environ)` reads and checks them all. `current()` is that for `os.environ`, read on
every call and parsed once per distinct set of values: a changed environment (a test's
monkeypatch.setenv) is seen at the next call, at the cost of a dozen dictionary lookups. The CLI
checks them before any work; the app's pages check them before they open the store.

The README's settings table is checked against `SETTINGS` by a test, so a new setting cannot go
undocumented.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from urllib.parse import urlsplit

from runs_store.domain.errors import SettingError

# ---------------------------------------------------------------- kinds of value


@dataclass(frozen=True)
class Kind:
    """How a setting's text is read: `parse` gives the typed value or raises ValueError;
    `allowed` says what may be set, as it reads after "use"."""

    parse: Callable[[str], object]
    allowed: str


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(text)
    return word in _TRUE


def _parse_path(text: str) -> Path:
    if not text.strip() or "\0" in text:
        raise ValueError(text)
    return Path(text).expanduser()


def number(unit: str, minimum: float = 0.0, inclusive: bool = False) -> Kind:
    """A finite number of `unit`, above `minimum` (or equal to it, when inclusive)."""

    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise ValueError(text)
        return value

    if minimum == 0 and not inclusive:
        return Kind(parse, f"a positive number of {unit}")
    return Kind(parse, f"a number of {unit} {'>=' if inclusive else '>'} {minimum:g}")


@dataclass(frozen=True)
class MemorySize:
    """A DuckDB memory limit: `text` as DuckDB takes it (e.g. 1.5GiB), and its bytes."""

    text: str
    bytes: int

    def __str__(self) -> str:
        return self.text


_MEMORY_UNITS = {
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_MEMORY_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]i?B)\s*", re.I)
# DuckDB cannot even open a database in much less.
_MIN_MEMORY_BYTES = 1000**2


def _parse_memory_size(text: str) -> MemorySize:
    match = _MEMORY_SIZE.fullmatch(text)
    if not match:
        raise ValueError(text)
    unit = next(name for name in _MEMORY_UNITS if name.lower() == match["unit"].lower())
    amount = match["number"]
    size = MemorySize(f"{amount}{unit}", int(float(amount) * _MEMORY_UNITS[unit]))
    if size.bytes < _MIN_MEMORY_BYTES:
        raise ValueError(text)
    return size


# The run page's Edit flow link fills these in (run_detail.edit_flow_url).
URL_PLACEHOLDERS = ("flow_id", "flow_version_id", "project_id")


def _parse_url_template(text: str) -> str:
    """An empty value (no Edit flow link), or an http(s) URL with only the known placeholders."""
    template = text.strip()
    if not template:
        return ""
    for _, name, spec, conversion in Formatter().parse(template):  # ValueError on a lone brace
        if name is not None and (name not in URL_PLACEHOLDERS or spec or conversion):
            raise ValueError(text)
    url = urlsplit(template.format(**dict.fromkeys(URL_PLACEHOLDERS, "x")))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(text)
    return template


class Secret:
    """A token or password from the environment: its repr and str never show it."""

    def __init__(self, text: str):
        self._text = text

    def reveal(self) -> str:
        return self._text

    def __bool__(self) -> bool:
        return bool(self._text)

    def __repr__(self) -> str:
        return "Secret(set)" if self._text else "Secret(unset)"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


def _parse_optional_path(text: str) -> Path | None:
    return _parse_path(text) if text.strip() else None


def _parse_optional_url(text: str) -> str:
    """An empty value (none), or an http(s) URL with a host."""
    url = text.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(text)
    return url


_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")


def _matching(pattern: re.Pattern[str]) -> Callable[[str], str]:
    """The text, stripped, when empty or matching `pattern` whole."""

    def parse(text: str) -> str:
        value = text.strip()
        if value and not pattern.fullmatch(value):
            raise ValueError(text)
        return value

    return parse


def _refuse(text: str):
    raise ValueError(text)


def _parse_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise ValueError(text)
    return value


def _parse_commit_runs(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1_000_000:
        raise ValueError(text)
    return value


def _parse_days(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100_000:
        raise ValueError(text)
    return value


def _parse_optional_days(text: str) -> int | None:
    return None if not text.strip() else _parse_days(text)


PATH = Kind(_parse_path, "a file path")
OPTIONAL_PATH = Kind(_parse_optional_path, "a file path, or an empty value for none")
SECRET = Kind(Secret, "any text")
TEXT = Kind(str.strip, "any text")
BUCKET = Kind(
    _matching(_BUCKET),
    "a bucket name (3 to 255 letters, digits, dots, hyphens or underscores), or an empty value "
    "for none",
)
REGION = Kind(
    _matching(_REGION),
    "a region name such as eu-west-1 (letters, digits and hyphens), or an empty value for the "
    "default",
)
OPTIONAL_URL = Kind(
    _parse_optional_url,
    "an http:// or https:// URL, or an empty value for AWS itself",
)
APP_URL = Kind(
    lambda text: _parse_optional_url(text) or _refuse(text),
    "an http:// or https:// URL",
)
CONCURRENCY = Kind(_parse_count, "a whole number from 1 to 64")
COMMIT_RUNS = Kind(_parse_commit_runs, "a whole number from 1 to 1000000")
DAYS = Kind(_parse_days, "a whole number of days from 1 to 100000")
OPTIONAL_DAYS = Kind(
    _parse_optional_days,
    "a whole number of days from 1 to 100000, or an empty value to keep every run",
)
BOOL = Kind(_parse_bool, "1/true/yes/on or 0/false/no/off")
MEMORY = Kind(
    _parse_memory_size,
    "a memory size of at least 1MB: a number with KB, MB, GB, TB or KiB, MiB, GiB, TiB",
)
URL_TEMPLATE = Kind(
    _parse_url_template,
    "an http:// or https:// URL whose only placeholders are {flow_id}, "
    "{flow_version_id} and {project_id}, or an empty value for no Edit flow link",
)


# ---------------------------------------------------------------- the declarations


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str
    kind: Kind
    example: str = ""  # shown in the message about a bad value; the default when empty

    @property
    def attribute(self) -> str:
        """Its name on `Settings`: RUNS_LOCK_WAIT_SECONDS -> lock_wait_seconds."""
        return self.env.removeprefix("RUNS_").lower()

    def read(self, environ: Mapping[str, str]):
        """The typed value set in `environ`, else the default's; SettingError when not allowed."""
        text = environ.get(self.env, self.default)
        try:
            return self.kind.parse(text)
        except ValueError:
            raise SettingError(self.problem(text)) from None

    def problem(self, text: str) -> str:
        """The one line that says `text` is not allowed, and what is."""
        return (
            f"{self.env}={text!r} is not allowed: use {self.kind.allowed}, "
            f"e.g. {self.env}={self.example or self.default}"
        )


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "RUNS_DB",
        "data/runs.duckdb",
        "The store holding the runs: a DuckDB file (relative paths are relative to the working "
        "directory), chdb:PATH (ClickHouse's engine in this process) or "
        "clickhouse://USER@HOST:PORT/DATABASE (a ClickHouse server). The CLI's --db overrides it.",
        PATH,
    ),
    Setting(
        "RUNS_LOAD_SAMPLE",
        "1",
        "1: when the database has no runs, the app builds one from sample_data/ (shifted so "
        "its newest run is now). 0: start empty.",
        BOOL,
    ),
    Setting(
        "RUNS_EDIT_FLOW_URL",
        "",
        "URL template of your workflow editor for the run page's Edit flow button, with "
        "{flow_id} and {flow_version_id}, e.g. https://cloud.example.com/flows/{flow_id}.",
        URL_TEMPLATE,
        example="https://cloud.example.com/flows/{flow_id}",
    ),
    Setting(
        "RUNS_MASK_SECRETS",
        "1",
        "1: values that look like secrets (Authorization, api keys, tokens, passwords, "
        "cookies, keys by their shape, passwords in URLs and DSNs, private keys) are masked "
        "in step input and output, including JSON and form bodies held in strings, and in "
        "error messages wherever they are shown or exported. "
        "0: show and export them as recorded.",
        BOOL,
    ),
    Setting(
        "RUNS_LIVE_SECONDS",
        "15",
        "How often the Runs page refreshes while Live is on (seconds).",
        number("seconds", 2, inclusive=True),
    ),
    Setting(
        "RUNS_PAYLOAD_PREVIEW_KB",
        "256",
        "Step payloads larger than this are shown cut, with their size and a download.",
        number("kilobytes"),
    ),
    Setting(
        "RUNS_MEMORY_LIMIT",
        "1GB",
        "DuckDB memory limit for the app and the CLI (DuckDB spills to disk beyond it).",
        MEMORY,
    ),
    Setting(
        "RUNS_INGEST_MEMORY_LIMIT",
        "512MB",
        "DuckDB memory limit while loading a file: staging spills to disk beyond it, so "
        "loading a large file takes about the same memory as a small one. JSONL is read on "
        "every core when the limit allows it (about 250MB with 2 threads), else on one.",
        MEMORY,
    ),
    Setting(
        "RUNS_LOCK_WAIT_SECONDS",
        "30",
        "How long the CLI waits for another process (such as the app, between two page "
        "renders) to release the database file before giving up with a message. The app "
        "waits at most 3 s, then says so and offers to try again.",
        number("seconds", 0, inclusive=True),
    ),
    Setting(
        "RUNS_MAX_RECORD_MB",
        "64",
        "The largest record read, unpacked: a JSONL line, a CSV or Parquet row, a whole .json "
        "document. A larger one is rejected with its reason (its first 64 KB kept) and the "
        "rest of the file loads; memory stays bounded whatever the input.",
        number("megabytes"),
    ),
    Setting(
        "RUNS_MAX_FILE_GB",
        "10",
        "The most one file may unpack to (a .gz is unpacked as it streams, never whole). A "
        "file past it is rejected whole with its reason; the other files still load.",
        number("gigabytes"),
    ),
    Setting(
        "RUNS_API_TOKEN",
        "",
        "The token `pull --api` sends to the engine (Authorization: Bearer): a user's token "
        "or a platform API key (sk-...). Read from the environment only; never stored, logged "
        "or shown.",
        SECRET,
        example="sk-...",
    ),
    Setting(
        "RUNS_PG_PASSWORD",
        "",
        "The password `pull --postgres` uses when the DSN has none. Read from the environment "
        "only; never stored, logged or shown.",
        SECRET,
        example="...",
    ),
    Setting(
        "RUNS_CLICKHOUSE_PASSWORD",
        "",
        "The password for a ClickHouse server named by RUNS_DB or --db "
        "(clickhouse://USER@HOST:PORT/DATABASE), which never holds one. Read from the "
        "environment only; never stored, logged or shown.",
        SECRET,
        example="...",
    ),
    Setting(
        "RUNS_S3_BUCKET",
        "",
        "The bucket the engine keeps run logs in when AP_FILE_STORAGE_LOCATION=S3 (its "
        "AP_S3_BUCKET): `pull --postgres` reads the logs and sliced outputs stored there. "
        "Empty: such runs load without steps and are counted.",
        BUCKET,
        example="activepieces-logs",
    ),
    Setting(
        "RUNS_S3_ENDPOINT",
        "",
        "The S3-compatible endpoint (MinIO, Cloudflare R2, ...; the engine's AP_S3_ENDPOINT); "
        "empty: AWS S3 itself.",
        OPTIONAL_URL,
        example="https://minio.example.com:9000",
    ),
    Setting(
        "RUNS_S3_REGION",
        "",
        "The bucket's region (the engine's AP_S3_REGION); empty: boto3's default "
        "(AWS_REGION, the profile).",
        REGION,
        example="eu-west-1",
    ),
    Setting(
        "RUNS_S3_ACCESS_KEY_ID",
        "",
        "The access key id `pull --postgres` reads S3 with, with RUNS_S3_SECRET_ACCESS_KEY; "
        "both empty: boto3's default credential chain (AWS_* variables, a profile, an "
        "instance or IRSA role).",
        TEXT,
        example="AKIA...",
    ),
    Setting(
        "RUNS_S3_SECRET_ACCESS_KEY",
        "",
        "The secret of RUNS_S3_ACCESS_KEY_ID. Read from the environment only; never stored, "
        "logged or shown.",
        SECRET,
        example="...",
    ),
    Setting(
        "RUNS_PULL_CONCURRENCY",
        "8",
        "How many runs `pull --api` fetches from the engine at once, and how many objects "
        "`pull --postgres` reads from S3 at once.",
        CONCURRENCY,
    ),
    Setting(
        "RUNS_PULL_COMMIT_RUNS",
        "20000",
        "How many pulled runs are committed to the store together (or what 5 seconds bring): "
        "fewer show a pull's runs sooner and lose less to an interrupted pull (it reads them "
        "again); more pull faster, each commit costing about 0.3 s.",
        COMMIT_RUNS,
    ),
    Setting(
        "RUNS_ROLLUP_DAYS",
        "400",
        "How many days the hourly rollups (counts per flow, version, status and failed step, "
        "and duration sketches) are kept; Insights reads them where raw runs are gone.",
        DAYS,
    ),
    Setting(
        "RUNS_RETENTION_DAYS",
        "",
        "How many days raw runs and their steps are kept (pruned after each ingest and pull, "
        "and by `prune`); empty: keep every run. Insights counts older ranges from the rollups.",
        OPTIONAL_DAYS,
        example="90",
    ),
    Setting(
        "RUNS_SOURCES",
        "",
        "A TOML file naming the engines the Sources page pulls from (see docs/sources.md); "
        "empty: none.",
        OPTIONAL_PATH,
        example="sources.toml",
    ),
    Setting(
        "RUNS_ALERTS",
        "",
        "A TOML file of alert rules and the channels they tell (Slack, webhooks, email; see "
        "docs/alerts.md), read by `alerts check`, `alerts watch`, `digest` and the Alerts page; "
        "the CLI's --rules overrides it. Empty: none.",
        OPTIONAL_PATH,
        example="alerts.toml",
    ),
    Setting(
        "RUNS_APP_URL",
        "http://localhost:8501",
        "Where people open this app: alert and digest messages link to its Runs page from here.",
        APP_URL,
        example="https://runs.example.com",
    ),
    Setting(
        "RUNS_AGENT_PRICES",
        "",
        "A TOML file of model prices per million tokens, for the cost figures of Insights' Agents "
        "view (see docs/agents.md); empty: token counts are shown without a cost.",
        OPTIONAL_PATH,
        example="agent-prices.toml",
    ),
)

_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed and checked; one field per declaration, named by its `attribute`."""

    db: Path
    load_sample: bool
    edit_flow_url: str
    mask_secrets: bool
    live_seconds: float
    payload_preview_kb: float
    memory_limit: MemorySize
    ingest_memory_limit: MemorySize
    lock_wait_seconds: float
    max_record_mb: float
    max_file_gb: float
    api_token: Secret
    pg_password: Secret
    clickhouse_password: Secret
    s3_bucket: str
    s3_endpoint: str
    s3_region: str
    s3_access_key_id: str
    s3_secret_access_key: Secret
    pull_concurrency: int
    pull_commit_runs: int
    rollup_days: int
    retention_days: int | None
    sources: Path | None
    alerts: Path | None
    app_url: str
    agent_prices: Path | None


# ---------------------------------------------------------------- reading them


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Every setting read from `environ` and checked; SettingError with one line per variable set
    to a value that is not allowed."""
    values, problems = {}, []
    for setting in SETTINGS:
        try:
            values[setting.attribute] = setting.read(environ)
        except SettingError as error:
            problems.append(str(error))
    if problems:
        raise SettingError("\n".join(problems))
    return Settings(**values)


def current() -> Settings:
    """The settings of this process's environment as it is now (parsed once per set of values)."""
    return _load_values(tuple(os.environ.get(s.env) for s in SETTINGS))


@functools.lru_cache(maxsize=8)
def _load_values(values: tuple[str | None, ...]) -> Settings:
    given = zip(SETTINGS, values, strict=True)
    return load_settings({s.env: text for s, text in given if text is not None})


def declared(env: str) -> Setting:
    return _BY_ENV[env]


def value(env: str):
    """The typed value of one declared setting (every setting checked)."""
    return getattr(current(), _BY_ENV[env].attribute)


def get(env: str) -> str:
    """The text of a declared setting, the environment's else its default, once every setting
    has been checked."""
    current()
    return os.environ.get(env, _BY_ENV[env].default)


def default(env: str) -> str:
    return _BY_ENV[env].default


def get_bool(env: str) -> bool:
    found = value(env)
    if not isinstance(found, bool):
        raise TypeError(f"{env} is not a yes/no setting")
    return found


def get_number(env: str) -> float:
    found = value(env)
    if not isinstance(found, float):
        raise TypeError(f"{env} is not a number setting")
    return found


def database_path(override: str | os.PathLike | None = None) -> Path:
    """`override` (the CLI's --db) when given, else RUNS_DB."""
    return Path(override) if override else current().db
