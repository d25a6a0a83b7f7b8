"""The engines a team pulls from, named once in a TOML file (`RUNS_SOURCES`), for the Sources page,
the Runs page's Live mode and `pull --source NAME`.

```toml
[[sources]]
name = "Production"
api = "https://ap.example.com/api"       # the engine's API root
projects = ["9GbMlXLpUdj1QJx2mxxkK"]
token = "env:AP_PROD_TOKEN"              # optional: the variable holding the token
                                         # (default RUNS_API_TOKEN)
[[sources]]
name = "Self-hosted database"
postgres = "postgresql://runs_reader@db.example.com:5432/activepieces"
projects = []                            # empty or absent: every project
password = "env:AP_DB_PASSWORD"          # optional (default RUNS_PG_PASSWORD)
since = "2026-11-01"                     # optional: how far back a first pull goes
[sources.s3]                             # optional: the bucket of the logs kept in S3 (default
bucket = "activepieces-logs"             # RUNS_S3_*); endpoint, region, and the variables
access_key_id = "env:AP_S3_KEY_ID"       # holding a key (none: boto3's default credentials)
secret_access_key = "env:AP_S3_SECRET"
```

Secrets never sit in the file: `token`, `password` and the S3 key only name an environment
variable, and a DSN or URL holding a password is refused. Each mistake is one line naming the
file, the source and the key.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runs_store import settings
from runs_store.domain.errors import StoreError
from runs_store.domain.run_fields import RecordRejected, parse_time
from runs_store.ingest.engine.pull import PullProgress, pull, stored_versions
from runs_store.ingest.engine.source import EngineSource, PullRefused

if TYPE_CHECKING:  # the S3 client's module loads boto3: only a pull that reads S3 needs it
    from runs_store.ingest.engine.object_storage import S3Config

KINDS = ("api", "postgres")
KEYS = {"name", "api", "postgres", "projects", "token", "password", "since", "s3"}
DEFAULT_SECRET = {"api": "RUNS_API_TOKEN", "postgres": "RUNS_PG_PASSWORD"}
DEFAULT_KEY_NAMES = ("RUNS_S3_ACCESS_KEY_ID", "RUNS_S3_SECRET_ACCESS_KEY")
S3_KEYS = {"bucket", "endpoint", "region", "access_key_id", "secret_access_key"}


class SourcesFileError(StoreError):
    """The sources file cannot be used; one line per mistake."""


@dataclass(frozen=True)
class S3Entry:
    """A postgres source's `[sources.s3]` table: the bucket of the logs the engine keeps in S3,
    and the variables holding its key (both None: boto3's default credentials)."""

    bucket: str
    endpoint: str = ""
    region: str = ""
    key_id_env: str = DEFAULT_KEY_NAMES[0]
    secret_env: str = DEFAULT_KEY_NAMES[1]

    def config(self) -> S3Config:
        from runs_store.ingest.engine.object_storage import S3Config

        return S3Config(
            bucket=self.bucket,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=os.environ.get(self.key_id_env, "").strip(),
            secret_access_key=settings.Secret(os.environ.get(self.secret_env, "")),
            key_names=(self.key_id_env, self.secret_env),
        )


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str  # api | postgres
    address: str  # the API root, or the DSN without a password
    projects: tuple[str, ...]
    secret_env: str  # the environment variable holding the token or password
    since: datetime | None = None
    s3: S3Entry | None = None  # None: RUNS_S3_* (a postgres source)

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) or None

    def s3_config(self) -> S3Config | None:
        """The engine's bucket: the source's own, else RUNS_S3_* (None when no bucket is set)."""
        from runs_store.ingest.engine.object_storage import S3Config

        if self.s3 is not None:
            return self.s3.config()
        return S3Config.from_settings(settings.current())


def read_sources(path: Path) -> list[SourceConfig]:
    """Every source in the file; SourcesFileError naming each mistake."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourcesFileError(
            f"RUNS_SOURCES={str(path)!r}: no such file (see docs/sources.md)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SourcesFileError(f"{path}: not a readable TOML file: {error}") from None
    entries = document.get("sources", [])
    problems: list[str] = []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SourcesFileError(f"{path}: `sources` must be a list of [[sources]] tables")
    for key in sorted(set(document) - {"sources"}):
        problems.append(f"{path}: unknown key {key!r} at the top (only [[sources]] tables)")
    configs: list[SourceConfig] = []
    for number, entry in enumerate(entries, 1):
        config = _read_entry(entry, f"{path}: sources[{number}]", problems)
        if config is not None:
            configs.append(config)
    names = [config.name for config in configs]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.append(f"{path}: the name {name!r} is given to more than one source")
    if problems:
        raise SourcesFileError("\n".join(problems))
    return configs


def _read_entry(entry: dict, where: str, problems: list[str]) -> SourceConfig | None:
    before = len(problems)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: `name` must be a text naming the source")
        name = "?"
    where = f"{where} ({name})"
    for key in sorted(set(entry) - KEYS):
        problems.append(f"{where}: unknown key {key!r}; use {', '.join(sorted(KEYS))}")
    kinds = [kind for kind in KINDS if kind in entry]
    if len(kinds) != 1:
        problems.append(f"{where}: give exactly one of `api` (a URL) or `postgres` (a DSN)")
        return None
    kind = kinds[0]
    address = _address(kind, entry[kind], where, problems)
    projects = entry.get("projects", [])
    if not isinstance(projects, list) or not all(isinstance(p, str) and p for p in projects):
        problems.append(f"{where}: `projects` must be a list of project ids")
        projects = []
    if kind == "api" and not projects:
        problems.append(f"{where}: an `api` source needs `projects` (the API lists one at a time)")
    secret_key = "token" if kind == "api" else "password"
    secret_env = _secret_env(entry.get(secret_key), DEFAULT_SECRET[kind])
    if secret_env is None:
        problems.append(
            f"{where}: `{secret_key}` must name an environment variable, as "
            f'"env:NAME": secrets are never written in this file'
        )
    since = _since(entry.get("since"), where, problems)
    s3 = _s3_entry(kind, entry.get("s3"), where, problems)
    if len(problems) > before:
        return None
    return SourceConfig(name, kind, address, tuple(projects), secret_env or "", since, s3)


def _address(kind: str, value, where: str, problems: list[str]) -> str:
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if kind == "api" and (parts.scheme not in ("http", "https") or not parts.netloc):
        problems.append(f"{where}: `api` must be the engine's API root, e.g. https://HOST/api")
    if kind == "postgres" and parts.scheme not in ("postgres", "postgresql"):
        problems.append(f"{where}: `postgres` must be a DSN: postgresql://USER@HOST:PORT/DB")
    if parts.password:
        problems.append(
            f"{where}: `{kind}` holds a password: remove it and name its variable in "
            f"`{'token' if kind == 'api' else 'password'}`"
        )
    return text


def _secret_env(value, default: str) -> str | None:
    if value is None:
        return default
    if isinstance(value, str) and value.startswith("env:") and value[4:].strip():
        return value[4:].strip()
    return None


def _s3_entry(kind: str, table, where: str, problems: list[str]) -> S3Entry | None:
    """The `[sources.s3]` table of a postgres source, checked key by key."""
    if table is None:
        return None
    where = f"{where} s3"
    if kind != "postgres" or not isinstance(table, dict):
        problems.append(f"{where}: `s3` is a table of a `postgres` source ([sources.s3])")
        return None
    before = len(problems)
    for key in sorted(set(table) - S3_KEYS):
        problems.append(f"{where}: unknown key {key!r}; use {', '.join(sorted(S3_KEYS))}")
    bucket = _s3_value(table, "bucket", "RUNS_S3_BUCKET", where, problems)
    if not table.get("bucket"):
        problems.append(f"{where}: `bucket` must name the engine's bucket (its AP_S3_BUCKET)")
    endpoint = _s3_value(table, "endpoint", "RUNS_S3_ENDPOINT", where, problems)
    region = _s3_value(table, "region", "RUNS_S3_REGION", where, problems)
    if ("access_key_id" in table) != ("secret_access_key" in table):
        problems.append(f"{where}: give both `access_key_id` and `secret_access_key`, or neither")
    key_id_env = _s3_key_env(table, "access_key_id", DEFAULT_KEY_NAMES[0], where, problems)
    secret_env = _s3_key_env(table, "secret_access_key", DEFAULT_KEY_NAMES[1], where, problems)
    if len(problems) > before:
        return None
    return S3Entry(bucket, endpoint, region, key_id_env, secret_env)


def _s3_value(table: dict, key: str, setting: str, where: str, problems: list[str]) -> str:
    """A text of the s3 table, read as the setting of the same meaning reads it."""
    kind = settings.declared(setting).kind
    value = table.get(key, "")
    try:
        if isinstance(value, str):
            return str(kind.parse(value))
    except ValueError:
        pass
    problems.append(f"{where}: `{key}` must be {kind.allowed}")
    return ""


def _s3_key_env(table: dict, key: str, default: str, where: str, problems: list[str]) -> str:
    """The variable holding the access key id or its secret."""
    env = _secret_env(table.get(key), default)
    if env is None:
        problems.append(
            f"{where}: `{key}` must name an environment variable, as "
            f'"env:NAME": secrets are never written in this file'
        )
    return env or ""


def _since(value, where: str, problems: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, "since")
    except RecordRejected:
        problems.append(f"{where}: `since` must be a date like 2026-11-01")
        return None


def configured_sources() -> list[SourceConfig]:
    """The sources named by RUNS_SOURCES (none when it is empty)."""
    path = settings.current().sources
    return read_sources(path) if path else []


def find_source(name: str) -> SourceConfig:
    configs = configured_sources()
    for config in configs:
        if config.name == name:
            return config
    known = ", ".join(repr(config.name) for config in configs) or "none (set RUNS_SOURCES)"
    raise SourcesFileError(f"no source named {name!r} in RUNS_SOURCES; known: {known}")


def open_source(
    config: SourceConfig,
    stored_check: Callable[[dict[str, datetime]], set[str]] | None = None,
    need_secret: bool = True,
) -> EngineSource:
    """The configured engine as a source to pull; PullRefused when its token is not set (a
    Postgres password may also come from the DSN's service file or trust). Makes no request."""
    secret = config.secret()
    current = settings.current()
    if config.kind == "api":
        from runs_store.ingest.engine.api import ApiSource

        if not secret and need_secret:
            raise PullRefused(
                f"{config.secret_env} is not set: export the engine token (a user token or a "
                "platform API key sk-...) in it; it is never taken from the command line or a file"
            )
        return ApiSource(
            config.address,
            secret or "",
            concurrency=current.pull_concurrency,
            max_payload_bytes=int(current.max_record_mb * 1024 * 1024),
            stored_check=stored_check,
            token_name=config.secret_env,
        )
    from runs_store.ingest.engine.postgres import PostgresSource

    return PostgresSource(
        config.address,
        password=secret,
        s3=config.s3_config(),
        s3_concurrency=current.pull_concurrency,
    )


def source_key(config: SourceConfig) -> str:
    """The key the store keeps the source's pull state under (no secret in it)."""
    return open_source(config, need_secret=False).key


@dataclass
class PullOutcome:
    name: str
    line: str | None = None  # the pull's summary
    error: str | None = None  # one line
    changed: int = 0  # runs new or updated


# One pull at a time in this process: the app's sessions (Live refreshes, Pull now) share it.
_PULLING = threading.Lock()


def pull_configured(
    con,
    names: list[str] | None = None,
    progress: PullProgress | None = None,
    wait: bool = True,
) -> list[PullOutcome]:
    """Pulls the configured sources (or those named) once each; a source that fails gives its
    line and the others still pull. Without `wait`, returns [] when another pull is running."""
    if not _PULLING.acquire(blocking=wait):
        return []
    try:
        outcomes = []
        for config in configured_sources():
            if names is not None and config.name not in names:
                continue
            outcomes.append(_pull_one(con, config, progress))
        return outcomes
    finally:
        _PULLING.release()


def _pull_one(con, config: SourceConfig, progress: PullProgress | None) -> PullOutcome:
    try:
        source = open_source(config, stored_versions(con))
        with closing(source):
            summary = pull(con, source, list(config.projects), config.since, progress)
    except StoreError as error:  # a PullError, a busy store, a bad setting
        return PullOutcome(config.name, error=str(error).splitlines()[0])
    changed = summary.ingest.new + summary.ingest.updated
    return PullOutcome(config.name, line=summary.line(), changed=changed)
