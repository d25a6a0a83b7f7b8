"""The README documents every setting, and CI runs exactly the test command the README gives."""

from __future__ import annotations

import re

import pytest

from factories import ROOT
from runs_store.settings import SETTINGS

TEST_COMMAND_START = "python -m pip install -q -r requirements-dev.txt"


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def settings_rows() -> dict[str, str]:
    """Variable -> its README table row."""
    found = {}
    for line in readme().splitlines():
        match = re.match(r"\|\s*`(RUNS_[A-Z0-9_]+)`\s*\|", line)
        if match:
            found[match.group(1)] = line
    return found


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.env for s in SETTINGS])
def test_the_readme_documents_every_setting_with_its_default(setting):
    documented = settings_rows()
    assert setting.env in documented, f"README has no settings row for {setting.env}"
    default_cell = documented[setting.env].split("|")[2]
    shown = f"`{setting.default}`" if setting.default else "(empty)"
    assert shown in default_cell, f"{setting.env}: README default {default_cell!r}"


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.env for s in SETTINGS])
def test_the_readme_says_what_each_setting_allows(setting):
    cells = [cell.strip() for cell in settings_rows()[setting.env].split("|")[1:-1]]
    assert len(cells) == 4 and cells[2], f"{setting.env}: no 'allowed' cell in {cells}"


def test_the_readme_lists_no_setting_that_does_not_exist():
    assert set(settings_rows()) <= {s.env for s in SETTINGS}


def test_the_readme_starts_the_app_with_streamlit_run():
    assert "streamlit run app.py" in readme()


def fenced_lines() -> list[str]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_ci_runs_the_readme_test_command_verbatim():
    commands = [line for line in fenced_lines() if line.startswith(TEST_COMMAND_START)]
    assert len(commands) == 1, f"expected one test command in the README, found {commands}"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci_lines
    assert "pytest" in commands[0]
