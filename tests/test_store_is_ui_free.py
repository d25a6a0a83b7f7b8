"""The store never imports Streamlit: usable and testable on its own (like harlequin's core)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import runs_store
from factories import ROOT

PROBE = """
import importlib, json, pkgutil, sys
import runs_store
names = sorted(m.name for m in pkgutil.walk_packages(runs_store.__path__, "runs_store.")
               if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "streamlit": sorted(
    m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))}))
"""


def test_importing_every_store_module_in_a_fresh_interpreter_loads_no_streamlit():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = json.loads(done.stdout)
    expected = store_modules()
    assert found["modules"] == expected
    assert {
        "runs_store.ingest.pipeline",
        "runs_store.cli",
        "runs_store.store.database",
        "runs_store.services.export",
        "runs_store.domain.records",
    } <= set(expected)
    assert found["streamlit"] == []


def store_modules() -> list[str]:
    """Every module of runs_store, in its subpackages too (but __main__, which runs the CLI)."""
    return sorted(
        m.name
        for m in pkgutil.walk_packages(runs_store.__path__, "runs_store.")
        if not m.name.endswith("__main__")
    )


def test_no_store_module_mentions_streamlit_in_an_import():
    for path in sorted((ROOT / "runs_store").rglob("*.py")):
        lines = [
            line
            for line in path.read_text().splitlines()
            if line.strip().startswith(("import ", "from ")) and "streamlit" in line
        ]
        assert lines == [], f"{path.relative_to(ROOT)} imports streamlit: {lines}"
