"""Child processes the benchmark measures: wall time and peak memory of a command, and servers.

Peak memory of a command comes from GNU time's "Maximum resident set size" when /usr/bin/time
exists, else from getrusage(RUSAGE_CHILDREN) (which is a maximum over all children so far, so it
is only exact for the first large child). A server's peak is VmHWM from /proc/PID/status.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float | None
    returncode: int
    output: str


def run_measured(
    args: list[str], env: dict | None = None, timeout: float = 3600, cwd: Path = ROOT
) -> Measured:
    """Runs a command to its end (in `cwd`, this tree by default); its wall time and peak
    resident memory."""
    use_time = os.path.exists(GNU_TIME)
    command = [GNU_TIME, "-v", *args] if use_time else args
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    if use_time:
        match = _MAX_RSS.search(done.stderr)
        peak = int(match.group(1)) / 1024 if match else None
    else:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Measured(seconds, peak, done.returncode, done.stdout + done.stderr)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a live process, in MB."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling the health endpoint until it answers
    raise RuntimeError(f"server at {url} did not become healthy in {timeout:.0f} s")


def start_streamlit(script: str, env: dict, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """`streamlit run script` on a free local port; (process, base URL) once healthy."""
    port = free_port()
    process = subprocess.Popen(
        python_module(
            "streamlit",
            "run",
            script,
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, timeout)
    except Exception:
        stop_process(process)
        raise
    return process, url


def stop_process(process: subprocess.Popen) -> None:
    """Stops one process this benchmark started (by its own handle, never by name)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
