"""Peak memory of the app's server process while a real browser session renders its pages.

Starts `streamlit run` (the app or the baseline) against a store, opens each view in Debian's
Chromium through Playwright, waits until each has rendered, then reads the server's VmHWM (its
peak resident set) from /proc. AppTest alone would not do: it runs the script in the benchmark's
own process, without the server's session, websocket and serialisation.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

from benchmarks.drivers import APP, BASELINE_APP, FILTER_STATUS, RUN_ID_PARAMS
from benchmarks.procs import memory_status, start_streamlit, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDERED = (
    "[data-testid='stDataFrame'], [data-testid='stMetric'], [data-testid='stAlert'], "
    "[data-testid='stJson'], [data-testid='stPlotlyChart'], [data-testid='stHeading']"
)
NOT_RUNNING = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _url(path: str, **params) -> str:
    return path + ("?" + urlencode(params, doseq=True) if params else "")


def views(app: str, handmade: dict) -> list[tuple[str, str]]:
    """(name, path with query) of the views a session opens, heaviest last."""
    common = [
        ("runs", "/"),
        ("runs, status filter", _url("/", status=FILTER_STATUS)),
        ("runs, page 2", _url("/", page=2)),
        ("runs, all time", _url("/", range="all")),
    ]
    if app == "baseline":
        return [
            *common,
            ("insights", _url("/", view="Insights")),
            ("insights, all time", _url("/", view="Insights", range="all")),
        ]
    run_ids = [
        (name, handmade[name]) for name in ("run_20_steps", "run_5mb_output") if name in handmade
    ]
    return [
        *common,
        ("insights", "/insights"),
        ("insights, all time", _url("/insights", range="all")),
        *((name, _url("/run", **dict.fromkeys(RUN_ID_PARAMS, run_id))) for name, run_id in run_ids),
    ]


def _render(tab, url: str, timeout_ms: float) -> float:
    started = time.perf_counter()
    tab.goto(url)
    tab.wait_for_selector(RENDERED, timeout=timeout_ms)
    tab.wait_for_selector(NOT_RUNNING, timeout=timeout_ms)
    return time.perf_counter() - started


def browse(base_url: str, pages: list[tuple[str, str]], timeout_ms: float = 300_000) -> dict:
    """Renders each view in one browser tab; seconds per view as the browser saw it."""
    from playwright.sync_api import sync_playwright

    seconds = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1440, "height": 1000})
            for name, path in pages:
                seconds[name] = round(_render(tab, base_url + path, timeout_ms), 2)
        finally:
            browser.close()
    return seconds


def measure_server_memory(app: str, db: Path, handmade: dict) -> dict:
    """Peak and final resident memory (MB) of one server process that rendered every view."""
    script = APP if app == "ours" else BASELINE_APP
    process, url = start_streamlit(
        str(script.relative_to(APP.parent)), {"RUNS_DB": str(db), "RUNS_LOAD_SAMPLE": "0"}
    )
    try:
        idle = memory_status(process.pid)["VmRSS"]
        seconds = browse(url, views(app, handmade))
        status = memory_status(process.pid)
    finally:
        stop_process(process)
    return {
        "peak_rss_mb": round(status["VmHWM"]),
        "rss_after_mb": round(status["VmRSS"]),
        "rss_idle_before_mb": round(idle),
        "views_seconds": seconds,
    }
