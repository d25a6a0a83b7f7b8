"""Runs Explorer's benchmark: speed and memory at 100k, 1M and 10M runs, against a naive baseline.

Run it with `python -m benchmarks` (see benchmarks/README.md). It is a benchmark, not a test: it
builds large stores once (cached under benchmarks/stores/), times the real app through AppTest and
a real server, and writes medians to benchmarks/results/. Each measurement is a plain function so
it can be re-run on its own while the app changes.
"""
