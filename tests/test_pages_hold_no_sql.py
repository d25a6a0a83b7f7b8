"""Pages hold no SQL: every query lives in runs_store, and a page only calls it (like datasette's
views, which delegate to Filters and Facet).

The app's scripts are read as Python syntax trees, not as text, so a caption that says "select a
row" is no finding, while `store.con.execute(...)`, `con.sql(...)`, any use of duckdb or a string
of SQL is one, wherever it hides.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from factories import ROOT

SQL_CALLS = {"execute", "executemany", "sql"}
SQL_TEXT = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\b[\s\S]*\bSET|DELETE\s+FROM"
    r"|CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?(TABLE|VIEW)"
    r"|DROP\s+(TABLE|VIEW))\b"
)


def app_scripts() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py"))]


def sql_findings(source: str) -> list[str]:
    """What in this script runs or holds SQL: `line: what`, in source order."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            found.append((line, f".{node.func.attr}() call"))
        elif isinstance(node, ast.Import):
            found += [
                (line, f"import {alias.name}")
                for alias in node.names
                if alias.name.split(".")[0] == "duckdb"
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "duckdb":
            found.append((line, f"from {node.module} import"))
        elif isinstance(node, ast.Name) and node.id == "duckdb":
            found.append((line, "duckdb used"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_TEXT.search(node.value)
        ):
            found.append((line, f"SQL text {node.value.strip()[:40]!r}"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_the_app_has_scripts_to_check():
    names = {path.relative_to(ROOT).as_posix() for path in app_scripts()}
    assert {
        "app.py",
        "pages/runs.py",
        "pages/run.py",
        "pages/insights.py",
        "pages/common/data.py",
    } <= names


@pytest.mark.parametrize(
    "script", app_scripts(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_no_page_runs_or_holds_sql(script):
    assert sql_findings(script.read_text()) == [], (
        f"{script.relative_to(ROOT)} holds SQL: move it into a runs_store function and call that"
    )


@pytest.mark.parametrize(
    "source",
    [
        'store.con.execute("SELECT count(*) FROM runs")',
        "con.execute(query, params)",
        "con.executemany(query, rows)",
        'con.sql("FROM runs").df()',
        "import duckdb",
        "import duckdb as db",
        "from duckdb import connect",
        "duckdb.connect(path)",
        'query = """\n    SELECT id\n    FROM runs WHERE status = ?"""',
        'helper("DELETE FROM runs")',
        'helper(f"UPDATE runs SET archived_at = {now}")',
        'helper("CREATE OR REPLACE TEMP TABLE t AS SELECT 1")',
    ],
    ids=[
        "execute on the page's connection",
        "execute",
        "executemany",
        "relation API",
        "import",
        "import as",
        "from import",
        "duckdb used",
        "SQL string",
        "delete",
        "update",
        "create",
    ],
)
def test_the_check_finds_sql_in_a_page(source):
    assert sql_findings(source) != []


@pytest.mark.parametrize(
    "source",
    [
        'st.caption("Select a row to open those runs.")',
        'st.caption("Select the runs to archive, then update the view from the toolbar.")',
        "store.cached(insights.headline, run_filter)",
        'st.query_params["step"] = name',
        "share = store.cached(sample_share)",
    ],
    ids=["caption", "words that are SQL keywords", "store call", "URL", "cached store call"],
)
def test_the_check_leaves_pages_without_sql_alone(source):
    assert sql_findings(source) == []
