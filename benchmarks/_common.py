"""Shared helpers of the benchmark scripts: environment, timing, peak memory, JSON output.

Every benchmark prints exactly one JSON object on stdout; anything else a library prints while
it runs is sent to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def add_common_args(parser) -> None:
    """--quick, --device and --threads, the same in every benchmark."""
    parser.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; 1 with --quick, which keeps "
                             "smoke tests steady on a busy machine)")


def apply_threads(args) -> None:
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    import scipy  # noqa: PLC0415

    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "hardware": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None,
            "torch_threads": torch.get_num_threads(),
            "memory_gib": memory_total_gib(),
            "gpu": None,
        },
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["hardware"]["gpu"] = {"name": props.name,
                                   "memory_gib": round(props.total_memory / 2**30, 1),
                                   "cuda": torch.version.cuda,
                                   "cudnn": torch.backends.cudnn.version()}
    return info


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of fn(), with the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a block: torch.cuda.max_memory_allocated on a GPU; on the CPU the peak
    resident set size above the level at entry, sampled every 5 ms from /proc, plus the
    process's lifetime maximum (resource ru_maxrss). Use as a context manager; read .result."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.result = device, {}
        self._peak, self._stop = 0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss_bytes() or 0
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.result = {"kind": "torch.cuda.max_memory_allocated",
                           "peak_mib": round(peak / 2**20, 1),
                           "above_start_mib": round((peak - self._base) / 2**20, 1)}
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.result = {"kind": "sampled RSS (5 ms) and ru_maxrss",
                           "peak_rss_above_start_mib": round((self._peak - self._base) / 2**20, 1),
                           "process_max_rss_mib": round(maxrss_kib / 1024, 1)}


@contextlib.contextmanager
def json_report(settings: dict[str, Any], device: torch.device) -> Iterator[dict[str, Any]]:
    """Yield the report dict; on exit print it as one JSON object on the real stdout.

    Everything printed inside the block goes to stderr, so stdout holds only the JSON.
    """
    report: dict[str, Any] = {"settings": settings, "environment": environment(device),
                              "load_average_start": load_average()}
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        yield report
    report["load_average_end"] = load_average()
    report["wall_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.device):
        return str(value)
    return str(value)


def rounded(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")
