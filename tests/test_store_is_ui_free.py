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
names = sorted(m.name for m in pkgutil.iter_modules(runs_store.__path__) if m.name != "__main__")
for name in names:
    importlib.import_module("runs_store." + name)
print(json.dumps({"modules": names, "streamlit": sorted(
    m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))}))
"""


def test_importing_every_store_module_in_a_fresh_interpreter_loads_no_streamlit():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120)
    found = json.loads(done.stdout)
    expected = sorted(m.name for m in pkgutil.iter_modules(runs_store.__path__)
                      if m.name != "__main__")
    assert found["modules"] == expected and {"ingest", "cli", "db", "export"} <= set(expected)
    assert found["streamlit"] == []


def test_no_store_module_mentions_streamlit_in_an_import():
    for module in pkgutil.iter_modules(runs_store.__path__):
        source = (ROOT / "runs_store" / f"{module.name}.py").read_text()
        lines = [line for line in source.splitlines()
                 if line.strip().startswith(("import ", "from ")) and "streamlit" in line]
        assert lines == [], f"runs_store/{module.name}.py imports streamlit: {lines}"
