"""What the newer engine says about a run, on the Run page: where its time went (timeline legs),
the engine's own error (masked like other errors), step data the engine cut, who triggered it."""

from __future__ import annotations

import pytest

from factories import engine_run
from markdown_text import as_read
from run_records import build_run_db
from test_run_page import open_run

TIMELINE = {
    "legs": [
        [{"name": "QUEUE", "durationMs": 1200}, {"name": "RUN", "durationMs": 830}],
        [
            {"name": "PROVISION", "durationMs": 40},
            {"name": "BOOT", "durationMs": 2500},
            {"name": "RUN", "durationMs": 90},
            {"name": "ODD"},
        ],
    ]
}
SECRET = "sk_live_51HxQ2eKj3kq9ZP0a1b2c3d4e5f6g7h8"


def newer_engine_run() -> dict:
    return engine_run(
        "newer-engine-run",
        timeline=TIMELINE,
        triggeredBy="USERa1b2c3d4e5f6g7h8i9",
        internalError={
            "source": "WORKER",
            "code": "ENGINE_CRASH",
            "message": f"sandbox died while calling stripe with {SECRET}",
        },
        stepsDataTruncated=True,
        logsFileId="LOGa1b2c3d4e5f6g7h8i9j",
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    older = engine_run("older-engine-run")
    return build_run_db(
        tmp_path_factory.mktemp("engine_fields") / "runs.duckdb", [newer_engine_run(), older]
    )


@pytest.fixture(autouse=True)
def page_db(app_env, db, monkeypatch):
    monkeypatch.delenv("RUNS_MASK_SECRETS", raising=False)
    return app_env(db)


def texts(elements) -> list[str]:
    return [as_read(element.value).replace("**", "") for element in elements]


def test_the_timeline_shows_each_attempts_legs_in_the_engines_order():
    at = open_run({"id": "newer-engine-run"})
    line = next(text for text in texts(at.markdown) if text.startswith("Timeline"))
    assert line == (
        "Timeline attempt 1: Queued 1.2 s · Running 830 ms; "
        "attempt 2: Provisioning 40 ms · Booting 2.5 s · Running 90 ms"
    )


def test_the_engines_own_error_is_shown_with_its_secret_masked():
    at = open_run({"id": "newer-engine-run"})
    error = next(text for text in texts(at.error) if text.startswith("Engine error"))
    assert error.startswith("Engine error (WORKER ENGINE_CRASH): sandbox died while calling")
    assert SECRET not in error and "sk_live" not in error


def test_cut_step_data_and_the_trigger_are_said():
    at = open_run({"id": "newer-engine-run"})
    assert any("The engine cut this run's step data" in text for text in texts(at.warning))
    assert any("Triggered by USERa1b2c3d4e5f6g7h8i9" in text for text in texts(at.markdown))


def test_a_run_from_an_older_engine_shows_none_of_them():
    at = open_run({"id": "older-engine-run"})
    assert not any(text.startswith("Timeline") for text in texts(at.markdown))
    assert not any(text.startswith("Engine error") for text in texts(at.error))
    assert not any("cut this run's step data" in text for text in texts(at.warning))
