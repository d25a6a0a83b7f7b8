"""Shared fixtures: real DuckDB files built from the sample generator, the app, a real browser.

No store is mocked. A session-wide database is generated once with a fixed seed; tests that
change data get their own copy. Browser tests run the real server (`streamlit run app.py`) and
drive Debian's Chromium with Playwright.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runs_store.ingest.pipeline import ingest_items, records_as_items  # noqa: E402
from runs_store.store.database import open_db  # noqa: E402

# Real receivers for the alert transports (an SMTP server, an HTTP server, a test CA) as fixtures.
pytest_plugins = ("receivers",)

SEED = 11
SAMPLE_RUNS = 3_000
SAMPLE_DAYS = 30
CHROMIUM = "/usr/bin/chromium"


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def build_db(
    path: Path,
    runs: int = SAMPLE_RUNS,
    days: float = SAMPLE_DAYS,
    seed: int = SEED,
    end: datetime | None = None,
    **generator_options,
) -> Path:
    """A real database file generated from the sample generator."""
    from sample_data.generator import generate_runs

    records = generate_runs(runs, days=days, seed=seed, end=end or now_utc(), **generator_options)
    with open_db(path) as con:
        ingest_items(con, records_as_items(records), f"test-sample(seed={seed})")
    return path


@pytest.fixture(scope="session")
def shared_end() -> datetime:
    """When the shared sample ends: now, once per test session."""
    return now_utc()


@pytest.fixture(scope="session")
def shared_db(tmp_path_factory, shared_end) -> Path:
    """Generated once per test session, ending now; never modify it (use `db_copy`)."""
    return build_db(tmp_path_factory.mktemp("shared") / "runs.duckdb", end=shared_end)


@pytest.fixture(scope="session")
def shared_chdb(shared_db, shared_end, tmp_path_factory):
    """The shared database's runs, steps and rejects in a chdb store (a ChdbLocation), loaded from
    the same records by the real ingest; never modify it."""
    from backends import ingest_to_chdb
    from runs_store.store.location import ChdbLocation
    from sample_data.generator import generate_runs

    records = generate_runs(SAMPLE_RUNS, days=SAMPLE_DAYS, seed=SEED, end=shared_end)
    location = ChdbLocation(tmp_path_factory.mktemp("chdb") / "store", database="shared")
    return ingest_to_chdb(records, location, f"test-sample(seed={SEED})")


@pytest.fixture(params=["duckdb", "chdb"])
def store_con(request, shared_db):
    """A connection to the shared sample store on each backend (the very same runs): DuckDB's,
    read-only, and chdb's."""
    if request.param == "duckdb":
        with open_db(shared_db, read_only=True) as con:
            yield con
        return
    from runs_store.store.backend import open_location

    with open_location(request.getfixturevalue("shared_chdb")) as con:
        yield con


@pytest.fixture
def db_copy(shared_db, tmp_path) -> Path:
    """A private copy of the shared database that a test may change."""
    target = tmp_path / "runs.duckdb"
    shutil.copy(shared_db, target)
    return target


@pytest.fixture
def empty_db(tmp_path) -> Path:
    path = tmp_path / "empty.duckdb"
    with open_db(path):
        pass
    return path


@pytest.fixture
def app_env(monkeypatch):
    """Points the app (run in-process by AppTest) at a database; returns a setter."""
    monkeypatch.setenv("RUNS_LOAD_SAMPLE", "0")
    monkeypatch.chdir(ROOT)

    def use(path: Path) -> Path:
        monkeypatch.setenv("RUNS_DB", str(path))
        return path

    return use


def app_test(page: str | None = None, query: dict | None = None, timeout: float = 30):
    """An AppTest of app.py, optionally on a page and with URL parameters, already run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        at.run()
    return at


# ------------------------------------------------------------------ real server and browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the span of a with-block: bound but not
    listening, so nothing else (a server another test worker starts meanwhile) can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a health endpoint, not waiting for a guess
    raise RuntimeError("streamlit did not become healthy in time")


def start_server(db: Path, extra_env: dict | None = None):
    port = _free_port()
    env = {**os.environ, "RUNS_DB": str(db), "RUNS_LOAD_SAMPLE": "0", **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
    except Exception:
        process.kill()
        raise
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running_server(db: Path, extra_env: dict | None = None) -> Iterator[str]:
    """The real app on `db` for the span of a with-block; yields its URL."""
    process, url = start_server(db, extra_env)
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="session")
def browser_db(tmp_path_factory, shared_db) -> Path:
    """A copy of the shared database for the browser tests' server (they may archive runs)."""
    target = tmp_path_factory.mktemp("browser") / "runs.duckdb"
    shutil.copy(shared_db, target)
    return target


@pytest.fixture(scope="session")
def server_url(browser_db):
    with running_server(browser_db) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless=new",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(
        viewport={"width": 1440, "height": 1000}, timezone_id="Europe/Paris"
    )
    tab = context.new_page()
    yield tab
    context.close()


def wait_for_app(tab, timeout: float = 30_000) -> None:
    """Waits until the current script run has finished."""
    tab.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout
    )


# ------------------------------------------------------------------ layers

LAYERS = ("unit", "store", "app", "browser")
_BROWSER_FIXTURES = {"browser", "page", "server_url", "browser_db"}
_STORE_FIXTURES = {"shared_db", "db_copy", "empty_db", "tmp_path", "tmp_path_factory"}


def test_layer(item) -> str:
    """Which layer a test exercises, from what it uses: a real browser, the app in AppTest, a
    real store or files, or nothing but code (`pytest -m "not browser"` is the quick answer)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    module = item.module.__name__ if getattr(item, "module", None) else ""
    source = item.module.__dict__ if getattr(item, "module", None) else {}
    if fixtures & _BROWSER_FIXTURES or module.startswith("test_browser"):
        return "browser"
    if "app_env" in fixtures or "AppTest" in source or "app_test" in source:
        return "app"
    if fixtures & _STORE_FIXTURES or "store" in fixtures or "db" in fixtures:
        return "store"
    return "unit"


test_layer.__test__ = False  # a helper, not a test


def pytest_addoption(parser, pluginmanager) -> None:
    """Without pytest-xdist (`-p no:xdist`), the `--numprocesses=auto --dist=loadfile` of
    pyproject.toml's addopts are accepted and do nothing: the tests run in this one process."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "pytest-xdist is not loaded: these do nothing")
    group.addoption("--numprocesses", default=None, help="ignored without pytest-xdist")
    group.addoption("--dist", default="no", help="ignored without pytest-xdist")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        item.add_marker(getattr(pytest.mark, test_layer(item)))
