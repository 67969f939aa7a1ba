"""What the benchmarks that measure in fresh child processes share (bench_chunked.py,
bench_patch_sampling.py): running the script itself with ``--child`` (a clean peak RSS), an
address-space limit, the peak RSS, and ratios of their results. No torch here: a child imports
only what its measurement needs."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"


def run_child(script: str, task: dict[str, Any], error_lines: int = 1,
              echo: bool = False) -> dict[str, Any]:
    """Run ``script --child <task as JSON>`` in a fresh process and return the JSON its last
    line prints, or {"error": the last ``error_lines`` lines of its stderr}. One malloc arena:
    each extra arena reserves 64 MiB of address space per thread, which an address-space limit
    would count although nothing is stored there."""
    env = {**os.environ, "MALLOC_ARENA_MAX": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, script, "--child", json.dumps(task)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-error_lines:]
                or [f"exit {done.returncode}"]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if echo:
        print(f"{task.get('name')}: {result} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    return result


def limit_address_space(limit_mib: int) -> None:
    """Allow this process only ``limit_mib`` MiB of address space beyond what it holds now
    (the libraries, and whatever else is already loaded)."""
    with open("/proc/self/status") as stream:
        vm_kib = next(int(line.split()[1]) for line in stream if line.startswith("VmSize"))
    limit = vm_kib * 1024 + limit_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def parse_or_answer_child(parser: argparse.ArgumentParser, argv: list[str] | None,
                          child: Any) -> argparse.Namespace | None:
    """Parse ``argv`` with a hidden ``--child <task as JSON>`` option. Given it, this process is
    one measurement (``run_child``): print ``child(task)`` as JSON and return None; else return
    the parsed arguments."""
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return None
    return args


def rss_mib() -> float:
    """This process's resident set size now, MiB."""
    with open("/proc/self/statm") as stream:
        return round(int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss() -> dict[str, float]:
    """{"peak_rss_mib": this process's lifetime maximum resident set size}."""
    return {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def ratio(top: dict[str, Any], bottom: dict[str, Any], key: str) -> float | None:
    """top[key] / bottom[key] rounded to 3 digits; None when either run has no such figure."""
    if key not in top or key not in bottom:
        return None
    return round(top[key] / bottom[key], 3)
