"""The Insights page in a real browser: its drill-downs land on the Runs page with exactly the runs
the clicked number counted."""

from __future__ import annotations

import re

from conftest import wait_for_app

RUN_COUNT = re.compile(r"of ([\d,]+) runs?\b")
ROW_HEIGHT = 35


def open_insights(page, server_url: str, tab: str) -> None:
    # The first request a fresh server gets is served before app.py has declared its pages
    # (st.navigation); opening the app's root first makes /insights resolve through app.py.
    page.goto(f"{server_url}/")
    wait_for_app(page)
    page.goto(f"{server_url}/insights?view={tab.replace(' ', '+')}")
    wait_for_app(page)


def cell_text(page, table_key: str, column: int, row: int) -> str:
    cell = page.locator(f".st-key-{table_key} td[data-testid='glide-cell-{column}-{row}']")
    cell.wait_for(state="attached")
    return cell.text_content()


def runs_page_total(page) -> int:
    """Waits for the Runs page's position text ("1-25 of 1,234 runs") and reads its total."""
    text = page.get_by_text(RUN_COUNT).first
    text.wait_for()
    return int(RUN_COUNT.search(text.text_content()).group(1).replace(",", ""))


def test_a_failed_step_row_opens_the_runs_page_on_the_runs_it_counted(page, server_url):
    open_insights(page, server_url, "Failed steps")
    row = 1
    flow = cell_text(page, "failed_steps", 1, row)
    count = int(cell_text(page, "failed_steps", 3, row))
    table = page.locator(".st-key-failed_steps [data-testid='stDataFrame']").bounding_box()
    page.mouse.click(table["x"] + 15, table["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)
    page.wait_for_url(lambda url: all(key in url for key in ("failed_step=", "flow=", "status=")))
    wait_for_app(page)
    assert "/insights" not in page.url
    assert re.search(r"flow=" + re.escape(flow.replace(" ", "+")), page.url)
    assert runs_page_total(page) == count


def test_a_bar_of_runs_over_time_opens_that_days_runs_of_that_status(page, server_url):
    open_insights(page, server_url, "Trends")
    chart = ".st-key-runs_over_time .js-plotly-plot"
    page.wait_for_selector(f"{chart} .barlayer .trace .point path")
    trace, point = 0, 3  # Succeeded (drawn first), a whole day in the middle of the week
    shown = page.evaluate(
        "([selector, trace, point]) => { const chart = document.querySelector(selector);"
        " return {y: chart.calcdata[trace][point].s, name: chart.data[trace].name}; }",
        [chart, trace, point],
    )
    bar = page.locator(f"{chart} .barlayer .trace").nth(trace).locator(".point path").nth(point)
    box = bar.bounding_box()  # plotly's drag layer takes the click, as it does for a user
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(lambda url: f"status={shown['name']}" in url and "from=" in url)
    wait_for_app(page)
    assert runs_page_total(page) == shown["y"]
