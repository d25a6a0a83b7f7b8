"""The status facts the pages draw from: finished states, a run's tone, step and tool-call
labels and colours. Each is declared once in the store (runs_store.domain.statuses,
runs_store.domain.step_tree); these tests pin what the pages used to decide for themselves."""

from __future__ import annotations

import pytest

from runs_store.domain.statuses import (
    FAILED_STATES,
    FINISHED_STATES,
    STATUS_NAMES,
    STATUSES,
    UNFINISHED,
    in_order,
    step_status_badge,
    step_status_label,
    tone,
)
from runs_store.domain.step_tree import TimelineEntry


def test_finished_states_are_every_status_but_queued_running_and_paused():
    assert {s.name for s in STATUSES if s.finished} == FINISHED_STATES
    assert set(STATUS_NAMES) == FINISHED_STATES | UNFINISHED
    assert not FINISHED_STATES & UNFINISHED and FAILED_STATES <= FINISHED_STATES


def test_in_order_gives_statuses_in_the_usual_order_and_drops_the_rest():
    assert in_order({"TIMEOUT", "SUCCEEDED", "nonsense"}) == ["SUCCEEDED", "TIMEOUT"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("SUCCEEDED", "success"),
        ("CANCELED", "warning"),
        *[(name, "error") for name in sorted(FAILED_STATES)],
        *[(name, "info") for name in sorted(UNFINISHED)],
        (None, "info"),
        ("SOMETHING_NEW", "info"),
    ],
)
def test_a_runs_tone_follows_its_outcome(name, expected):
    assert tone(name) == expected


@pytest.mark.parametrize(
    "name, label, badge",
    [
        ("SUCCEEDED", "Succeeded", "green"),
        ("STOPPED", "Succeeded", "green"),
        ("FAILED", "Failed", "red"),
        ("PAUSED", "Paused", "gray"),
        ("RUNNING", "Running", "blue"),
        (None, "Unknown", "gray"),
        ("", "Unknown", "gray"),
        ("SKIPPED", "Skipped", "gray"),
    ],
)
def test_a_step_status_has_one_label_and_badge_colour(name, label, badge):
    assert step_status_label(name) == label and step_status_badge(name) == badge


@pytest.mark.parametrize(
    "status, badge",
    [
        ("SUCCESS", ("Succeeded", "green")),
        ("completed", ("Completed", "green")),
        ("FAILED", ("Failed", "red")),
        ("in-progress", ("In progress", "blue")),
        ("queued-by-tool", ("queued-by-tool", "gray")),
        ("", ("Unknown", "gray")),
    ],
)
def test_a_tool_calls_status_reads_as_a_label_and_colour(status, badge):
    assert TimelineEntry("tool_call", status=status).status_badge == badge
