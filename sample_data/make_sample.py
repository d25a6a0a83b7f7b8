"""Regenerates sample_data/sample-runs.jsonl.gz, the small sample the app loads on first start.

Run from the repository root: `python sample_data/make_sample.py`. The runs come from the sample
generator (sample_data/generator.py) with fixed arguments and a fixed end, so the same code gives
the
same runs; the gzip header carries no timestamp, so the same runs give the same bytes.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sample_data.generator import generate_runs, write_jsonl  # noqa: E402

TARGET = ROOT / "sample_data" / "sample-runs.jsonl.gz"
RUNS, DAYS, SEED, LEGACY_SHARE, TEST_SHARE = 4_000, 45, 2026, 0.05, 0.01
END = datetime(2026, 11, 24, tzinfo=UTC)  # the app moves the runs so the newest is now


def make_sample(target: Path = TARGET) -> int:
    runs = generate_runs(
        RUNS, days=DAYS, seed=SEED, end=END, legacy_share=LEGACY_SHARE, test_share=TEST_SHARE
    )
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "runs.jsonl"
        count = write_jsonl(plain, runs, gzip=False)
        with (
            open(plain, "rb") as source,
            open(target, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out,
        ):
            shutil.copyfileobj(source, out)
    return count


if __name__ == "__main__":
    written = make_sample()
    print(f"{TARGET.relative_to(ROOT)}: {written:,} runs, {TARGET.stat().st_size / 1e6:.2f} MB")
