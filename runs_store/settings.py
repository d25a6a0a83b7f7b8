"""Every setting of Runs Explorer, declared once with its default and help.

Settings come from environment variables; the CLI's `--db` overrides `RUNS_DB`. The README's
settings table is checked against `SETTINGS` by a test, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("RUNS_DB", "data/runs.duckdb",
            "DuckDB file holding the runs. Relative paths are relative to the working directory. "
            "The CLI's --db overrides it."),
    Setting("RUNS_LOAD_SAMPLE", "1",
            "1: when the database has no runs, the app builds one from sample_data/ (shifted so "
            "its newest run is now). 0: start empty."),
    Setting("RUNS_EDIT_FLOW_URL", "",
            "URL template of your workflow editor for the run page's Edit flow button, with "
            "{flow_id} and {flow_version_id}, e.g. https://cloud.example.com/flows/{flow_id}."),
    Setting("RUNS_MASK_SECRETS", "1",
            "1: values that look like secrets (Authorization, api keys, tokens, passwords, "
            "cookies, keys by their shape, passwords in URLs and DSNs, private keys) are masked "
            "in step input and output, including JSON and form bodies held in strings, and in "
            "error messages wherever they are shown or exported. "
            "0: show and export them as recorded."),
    Setting("RUNS_LIVE_SECONDS", "15",
            "How often the Runs page refreshes while Live is on (seconds)."),
    Setting("RUNS_PAYLOAD_PREVIEW_KB", "256",
            "Step payloads larger than this are shown cut, with their size and a download."),
    Setting("RUNS_MEMORY_LIMIT", "1GB",
            "DuckDB memory limit for the app and the CLI (DuckDB spills to disk beyond it)."),
    Setting("RUNS_INGEST_MEMORY_LIMIT", "512MB",
            "DuckDB memory limit while loading a file: staging spills to disk beyond it, so "
            "loading a large file takes about the same memory as a small one. JSONL is read on "
            "every core when the limit allows it (about 250MB with 2 threads), else on one."),
    Setting("RUNS_LOCK_WAIT_SECONDS", "30",
            "How long the CLI waits for another process (such as the app, between two page "
            "renders) to release the database file before giving up with a message. The app "
            "waits at most 3 s, then says so and offers to try again."),
    Setting("RUNS_MAX_RECORD_MB", "64",
            "The largest record read, unpacked: a JSONL line, a CSV or Parquet row, a whole .json "
            "document. A larger one is rejected with its reason (its first 64 KB kept) and the "
            "rest of the file loads; memory stays bounded whatever the input."),
    Setting("RUNS_MAX_FILE_GB", "10",
            "The most one file may unpack to (a .gz is unpacked as it streams, never whole). A "
            "file past it is rejected whole with its reason; the other files still load."),
)

_BY_ENV = {s.env: s for s in SETTINGS}


def get(env: str) -> str:
    """The value of a declared setting: the environment's, else its default."""
    return os.environ.get(env, _BY_ENV[env].default)


def default(env: str) -> str:
    return _BY_ENV[env].default


def get_bool(env: str) -> bool:
    return get(env).strip().lower() not in ("0", "false", "no", "off", "")


def get_number(env: str) -> float:
    try:
        return float(get(env))
    except ValueError:
        return float(_BY_ENV[env].default)


def database_path(override: str | os.PathLike | None = None) -> Path:
    return Path(override) if override else Path(get("RUNS_DB"))
