"""Takes the README's screenshots: the real app on a generated store, in headless Chromium.

`python docs/take_screenshots.py [--out docs/screenshots]` builds a store with the sample
generator (fixed seed, ending now), starts `streamlit run app.py` on it, and saves a full-page
PNG of each page. Needs Debian's chromium (tests/setup_browser.sh installs it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import CHROMIUM, build_db, start_server, wait_for_app  # noqa: E402
from runs_store.store.database import open_db  # noqa: E402

VIEWPORT = {"width": 1440, "height": 1000}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def failed_run_id(db: Path) -> str:
    """The newest failed run whose failing step has a recorded error, for the run page."""
    with open_db(db, read_only=True) as con:
        return con.execute(
            "SELECT r.id FROM runs r "
            "JOIN run_steps s ON s.run_id = r.id AND s.name = r.failed_step "
            "WHERE r.status = 'FAILED' AND s.error IS NOT NULL AND r.archived_at IS NULL "
            "ORDER BY r.started_at DESC LIMIT 1"
        ).fetchall()[0][0]


def shoot(page, url: str, target: Path) -> None:
    page.set_viewport_size(VIEWPORT)
    page.goto(url)
    wait_for_app(page)
    # Streamlit scrolls inside its main area, so the window is made as tall as the page, again
    # while the page still grows (tables and charts drawn after the script run).
    height = 0
    while True:
        now = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
        if now == height:
            break
        height = now
        page.set_viewport_size(
            {"width": VIEWPORT["width"], "height": max(height, VIEWPORT["height"])}
        )
        wait_for_app(page)
        page.wait_for_function("!document.querySelector('[data-testid=stSkeleton]')")
        page.wait_for_load_state("networkidle")
    page.screenshot(path=str(target), full_page=True)
    print(f"wrote {target}")


def shoot_sources(browser, out: Path) -> None:
    """The Sources page after Pull now from an engine (the tests' contract-faithful fake API, on
    127.0.0.1), and a pulled run with the newer engine's timeline and its own error."""
    from fake_engine_api import FakeEngine
    from test_pull_api import TOKEN, engine_runs
    from test_sources import api_source

    folder = Path(tempfile.mkdtemp())
    runs = engine_runs(400, seed=81, days=1)
    pulled = next(
        run for run in runs if run.get("timeline") and run["status"] == "FAILED" and run["steps"]
    )
    with FakeEngine(runs, token=TOKEN) as engine:
        sources = folder / "sources.toml"
        sources.write_text(api_source(engine.base_url))
        environment = {
            "RUNS_SOURCES": str(sources),
            "AP_TEST_TOKEN": TOKEN,
            "RUNS_LOAD_SAMPLE": "0",
        }
        process, url = start_server(folder / "pulled.duckdb", environment)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{url}/sources")
            wait_for_app(page)
            page.get_by_role("button", name="Pull now").click()
            page.get_by_text("Pulled api ").wait_for(timeout=60_000)
            shoot(page, f"{url}/sources", out / "sources.png")
            shoot(page, f"{url}/run?id={pulled['id']}", out / "pulled-run.png")
        finally:
            process.terminate()


def shoot_clickhouse(browser, out: Path) -> None:
    """The app on a chdb store (`RUNS_DB=chdb:...`) loaded by the README's `sample` command and
    kept 7 days (RUNS_RETENTION_DAYS=7, pruned): the Runs page, Insights for all time (counts from
    rollups before the retention boundary), and the Runs page on days past retention."""
    import os
    import subprocess
    from datetime import date, timedelta

    store = f"chdb:{Path(tempfile.mkdtemp()) / 'runs.chdb'}"
    env = {**os.environ, "RUNS_RETENTION_DAYS": "7"}
    for command in (["sample", "--runs", "5000", "--days", "30"], ["prune"]):
        subprocess.run(
            [sys.executable, "-m", "runs_store", *command, "--db", store],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    process, url = start_server(store, {"RUNS_RETENTION_DAYS": "7"})  # type: ignore[arg-type]
    try:
        page = browser.new_page(viewport=VIEWPORT)
        shoot(page, f"{url}/", out / "runs-chdb.png")
        shoot(page, f"{url}/insights?range=all", out / "insights-chdb-rollups.png")
        first, last = date.today() - timedelta(days=20), date.today() - timedelta(days=14)
        shoot(page, f"{url}/?from={first}&to={last}", out / "runs-chdb-past-retention.png")
        page.close()
    finally:
        process.terminate()


def shoot_agents(browser, out: Path) -> None:
    """Insights' Agents view on the bundled sample (what `python -m streamlit run app.py` loads
    into an empty store), and the run page of an agent that stopped at its step limit, with its
    agent summary."""
    from runs_store.queries.filters import RunFilter
    from runs_store.services.agents import max_steps_runs

    db = Path(tempfile.mkdtemp()) / "runs.duckdb"
    process, url = start_server(db, {"RUNS_LOAD_SAMPLE": "1"})
    try:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/")  # the first start loads the sample; /insights resolves after it
        page.get_by_text("You are looking at").wait_for(timeout=120_000)
        shoot(page, f"{url}/insights?view=Agents", out / "agents.png")
        with open_db(db, read_only=True) as con:
            stopped = max_steps_runs(con, RunFilter()).iloc[0]
        run = f"{url}/run?id={stopped['run_id']}&step={stopped['step_name']}"
        shoot(page, run, out / "run-agent.png")
        page.close()
    finally:
        process.terminate()


def shoot_alerts(browser, out: Path) -> None:
    """docs/alerts.md's demo: the bundled sample, docs/alerts.example.toml and one `alerts check`
    telling a Slack-style webhook and an email (the tests' real receivers, on free ports); the
    Alerts page after it, and the two messages as they arrived (docs/render_received.py)."""
    from render_received import render

    from conftest import now_utc
    from receivers import HttpReceiver, SmtpReceiver
    from runs_store.ingest.sample_loader import load_bundled_sample
    from runs_store.services.alerts.check import run_check
    from runs_store.services.alerts.outbox import transport_sender
    from runs_store.services.alerts.rules import load_rules

    folder = Path(tempfile.mkdtemp())
    db = folder / "runs.duckdb"
    load_bundled_sample(str(db), now=now_utc())
    hook, mail = HttpReceiver().start(), SmtpReceiver().start()
    try:
        rules = folder / "alerts.toml"
        example = (ROOT / "docs" / "alerts.example.toml").read_text(encoding="utf-8")
        rules.write_text(example.replace("smtp://127.0.0.1:8025", mail.url), encoding="utf-8")
        env = {"RUNS_ALERTS": str(rules), "SLACK_WEBHOOK_URL": f"{hook.url}/slack"}
        run_check(lambda: open_db(db), load_rules(rules), now_utc(), transport_sender(env))
        (folder / "mail.html").write_text(mail.wait_for(1)[0].part("text/html"), encoding="utf-8")
        (folder / "slack.json").write_bytes(hook.wait_for(1)[0].body)
        render(folder / "mail.html", out / "alert-email.png", browser)
        render(folder / "slack.json", out / "alert-slack.png", browser)
        process, url = start_server(db, env)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            shoot(page, f"{url}/alerts", out / "alerts.png")
            page.close()
        finally:
            process.terminate()
    finally:
        hook.stop()
        mail.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    db = build_db(Path(tempfile.mkdtemp()) / "runs.duckdb", runs=5_000)
    run_id = failed_run_id(db)
    process, url = start_server(db)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            shoot(page, f"{url}/", out / "runs.png")
            shoot(page, f"{url}/run?id={run_id}", out / "run.png")
            shoot(page, f"{url}/insights", out / "insights.png")
            shoot(page, f"{url}/import", out / "import.png")
            shoot_agents(browser, out)
            shoot_sources(browser, out)
            shoot_clickhouse(browser, out)
            shoot_alerts(browser, out)
            browser.close()
    finally:
        process.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
