"""In a real browser on the real server: a team names its engine in RUNS_SOURCES, presses Pull now
on the Sources page, and finds the pulled runs on the Runs page and one of them, steps and all, on
the Run page. The engine is the contract-faithful fake over real HTTP; the token is never on any
page."""

from __future__ import annotations

from playwright.sync_api import expect

from conftest import running_server, wait_for_app
from factories import rows
from fake_engine_api import FakeEngine
from test_pull_api import TOKEN, engine_runs, production
from test_sources import api_source, sources_file


def test_pull_now_then_the_runs_and_a_run_with_its_steps(tmp_path, page):
    runs = engine_runs(200, seed=71, days=1)
    failed = next(run for run in production(runs) if run["status"] == "FAILED" and run["steps"])
    db = tmp_path / "pulled.duckdb"
    with FakeEngine(runs, token=TOKEN, slice_threshold=4096) as engine:
        path = sources_file(tmp_path, api_source(engine.base_url))
        environment = {
            "RUNS_SOURCES": str(path),
            "AP_TEST_TOKEN": TOKEN,
            "RUNS_LOAD_SAMPLE": "0",
        }
        with running_server(db, environment) as url:
            page.goto(f"{url}/sources")
            wait_for_app(page)
            expect(page.get_by_text("Not pulled yet.")).to_be_visible()
            page.get_by_role("button", name="Pull now").click()
            expect(page.get_by_text("Pulled api ")).to_be_visible(timeout=60_000)
            wait_for_app(page)
            expect(page.locator("[data-testid='stDataFrame']").first).to_be_visible()
            assert TOKEN not in page.content()

            page.goto(f"{url}/?range=all")
            wait_for_app(page)
            shown_runs = [run for run in production(runs) if not run.get("archivedAt")]
            total = f" of {len(shown_runs):,} runs"  # archived runs are hidden by default
            shown = page.locator("[data-testid='stMarkdownContainer']", has_text=" of ")
            expect(shown.first).to_contain_text(total, timeout=30_000)

            page.goto(f"{url}/run?id={failed['id']}")
            wait_for_app(page)
            expect(page.get_by_text("Run Failed", exact=False).first).to_be_visible()
            first_step = next(iter(failed["steps"]))
            expect(page.get_by_text(first_step, exact=False).first).to_be_visible()
    assert rows(db, "SELECT count(*) FROM runs") == [(len(production(runs)),)]
