"""Fuzzing every reader with hypothesis: random bytes, random JSON and real run records with a
field replaced by random JSON, in every format, plain and gzipped, into a real store.

Whatever arrives, ingest either loads it, rejects records with a reason, or says in one
StoreError why the file cannot be read; no other exception escapes, and nothing already stored
changes.
"""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_db
from runs_store.domain.errors import StoreError
from runs_store.ingest.pipeline import ingest_file
from runs_store.ingest.readers import SourceFile
from runs_store.store.database import open_db
from sample_data.generator import generate_runs

EXAMPLES = 40
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUFFIXES = [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)
REAL_RUNS = list(generate_runs(20, days=1, seed=5))
FIELDS = sorted({key for run in REAL_RUNS for key in run})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    original = build_db(folder / "original.duckdb", runs=300, seed=3)
    db = folder / "runs.duckdb"
    shutil.copy(original, db)
    with open_db(db) as con:
        yield con, folder


def fingerprint(con) -> tuple:
    """The runs and steps stored before fuzzing, as hashes (runs added since do not count)."""
    return con.execute("""
        SELECT (SELECT sum(hash(id, status, flow_name, started_at, updated_at, duration_ms,
                                failed_step, error_message, archived_at))
                FROM runs WHERE id IN (SELECT id FROM original.runs)),
               (SELECT sum(hash(run_id, position, name, status, input, output, error))
                FROM run_steps WHERE run_id IN (SELECT id FROM original.runs))""").fetchall()[0]


@pytest.fixture(scope="module")
def ingest_fuzzed(store):
    con, folder = store
    con.execute("ATTACH ? AS original (READ_ONLY)", [str(folder / "original.duckdb")])
    before = fingerprint(con)
    counter = iter(range(10**9))

    def ingest(data: bytes, suffix: str) -> None:
        path = folder / f"fuzz-{next(counter)}{suffix}"
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        try:
            ingest_file(con, SourceFile(path))
        except StoreError:
            pass  # said in one line: what the CLI prints with exit 2
        finally:
            path.unlink()
        assert fingerprint(con) == before

    return ingest


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_never_escape_as_an_exception(ingest_fuzzed, data, suffix):
    ingest_fuzzed(data, suffix)


@FUZZ
@given(
    values=st.lists(json_values, min_size=1, max_size=4),
    suffix=st.sampled_from([".jsonl", ".json", ".jsonl.gz"]),
)
def test_random_json_never_escapes_as_an_exception(ingest_fuzzed, values, suffix):
    text = (
        "\n".join(json.dumps(value) for value in values)
        if "jsonl" in suffix
        else json.dumps(values)
    )
    ingest_fuzzed(text.encode(), suffix)


@FUZZ
@given(
    run=st.sampled_from(REAL_RUNS),
    field=st.sampled_from(FIELDS),
    value=json_values,
    suffix=st.sampled_from([".jsonl", ".json"]),
)
def test_a_real_run_with_one_field_made_random_never_escapes(
    ingest_fuzzed, run, field, value, suffix
):
    fuzzed = (
        dict(run, id=f"fuzz-{field}", **{field: value}) if field != "id" else dict(run, id=value)
    )
    ingest_fuzzed(json.dumps(fuzzed).encode(), suffix)


@FUZZ
@given(lines=st.lists(st.text(max_size=200), min_size=1, max_size=5))
def test_random_csv_rows_never_escape(ingest_fuzzed, lines):
    header = "id,flow,status,started_at,finished_at,duration_ms,failed_step,archived\n"
    ingest_fuzzed((header + "\n".join(lines)).encode(), ".csv")


def test_the_fuzzing_reaches_both_readers_and_rejects(store, ingest_fuzzed):
    """The fuzzed files are really read: a fuzzed real run lands in rejects with a reason."""
    con, _ = store
    bad = dict(REAL_RUNS[0], id="fuzz-check", status={"not": "a status"})
    ingest_fuzzed(json.dumps(bad).encode(), ".jsonl")
    reasons = [row[0] for row in con.execute("SELECT reason FROM rejects").fetchall()]
    assert any("status" in reason for reason in reasons)


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=5000),
    opener=st.sampled_from(['{"a":', "["]),
    suffix=st.sampled_from([".jsonl", ".json", ".jsonl.gz"]),
    run=st.sampled_from(REAL_RUNS),
)
def test_json_nested_to_any_depth_never_escapes(ingest_fuzzed, depth, opener, suffix, run):
    closer = "}" if opener.startswith("{") else "]"
    deep = opener * depth + "1" + closer * depth
    fuzzed = json.dumps(
        dict(
            run,
            id=f"deep-{depth}",
            steps={"trigger": {"type": "EMPTY", "status": "SUCCEEDED", "output": "@DEEP@"}},
        )
    )
    ingest_fuzzed(fuzzed.replace('"@DEEP@"', deep).encode(), suffix)
