"""Why is a block slower in a Dask worker than in a plain process? Per-block time, split into
read / predict / write, with the page faults, torch threads and network builds seen inside
the task, for the same blocks in four settings, visited in turn over rounds (medians):

- ``plain``: a fresh plain process, 1 torch thread (what a worker should match);
- ``plain_trim``: the same with ``MALLOC_TRIM_THRESHOLD_=65536`` in its environment, the value
  a Dask nanny puts into every worker's environment by default
  (``distributed.nanny.pre-spawn-environ``);
- ``dask``: one Dask local worker x 1 thread, Dask's default worker environment;
- ``dask_notrim``: the same worker without ``MALLOC_TRIM_THRESHOLD_``.

One block at a time, one worker: the per-block cost alone, with no second worker sharing the
cores. Blocks are bench_chunked.py's (paper 002's 2D U-Net, 256 x 256 slices, slabs of 32 with a
2-slice halo, z-median 5).

    python benchmarks/diagnose_dask_worker.py            # about 4 minutes on 2 CPU cores
    python benchmarks/diagnose_dask_worker.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_chunked import HALO, SLAB, UNetFactory, write_source

ARMS = ("plain", "plain_trim", "dask", "dask_notrim")


def timed_block(job: Any, block: Any) -> dict[str, Any]:
    """``chunked.run_block`` with its sections timed (runs in a worker or a plain process)."""
    import torch

    from mitoseg.data.ome_zarr_output import OmeZarrOutput
    from mitoseg.data.volume_sources import open_volume
    from mitoseg.evaluation import chunked

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cached = job.factory in chunked._CACHE
    t0 = time.perf_counter()
    source = open_volume(job.source, job.level)
    output = OmeZarrOutput.open(job.output)
    predict = chunked.predict_function(job.factory)
    t1 = time.perf_counter()
    raw = source[block.read]
    t2 = time.perf_counter()
    probabilities = predict(raw)
    t3 = time.perf_counter()
    output.write(block.core, probabilities[block.core_in_read])
    output.mark_done(block.key)
    t4 = time.perf_counter()
    return {"open_s": t1 - t0, "read_s": t2 - t1, "predict_s": t3 - t2, "write_s": t4 - t3,
            "total_s": t4 - t0, "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            - faults, "network_cached": cached, "torch_threads": torch.get_num_threads(),
            "malloc_trim_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "pid": os.getpid()}


def arm(name: str, source: str, output: str, blocks: int) -> list[dict[str, Any]]:
    """Time ``blocks`` blocks (after one untimed warm-up block) in the setting ``name``."""
    from mitoseg.data.ome_zarr_output import OmeZarrOutput
    from mitoseg.data.volume_sources import open_volume
    from mitoseg.evaluation.chunked import BlockJob
    from mitoseg.inference.blocks import block_grid

    volume = open_volume(source)
    grid = block_grid(volume.shape, (SLAB, *volume.shape[1:]), (HALO, 0, 0))
    OmeZarrOutput.create(output, volume.shape, "float32", (SLAB, *volume.shape[1:]), None,
                         {"diagnose": name}, levels=1, overwrite=True)
    job = BlockJob(source, None, output, UNetFactory(None, 1))
    chosen = [grid[i % len(grid)] for i in range(1, blocks + 2)]  # the first is the warm-up
    if name.startswith("plain"):
        import torch

        torch.set_num_threads(1)
        return [timed_block(job, block) for block in chosen][1:]
    import dask
    from distributed import Client, LocalCluster

    environ = {"MALLOC_TRIM_THRESHOLD_": None} if name == "dask_notrim" else {}
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v
                          for k, v in environ.items()}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        return [client.submit(timed_block, job, block, pure=False).result()
                for block in chosen][1:]


def run_arm(name: str, source: str, output: str, blocks: int) -> list[dict[str, Any]]:
    """``arm`` in a fresh child process (malloc reads its environment once, at start)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    if name == "plain_trim":
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    task = json.dumps([name, source, output, blocks])
    done = subprocess.run([sys.executable, __file__, "--child", task], env=env, check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"arm {name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    import torch
    from _common import json_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the four settings")
    parser.add_argument("--blocks", type=int, default=2, help="timed blocks per setting and round")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(arm(*json.loads(args.child))))
        return
    size, rounds, blocks = (64, 1, 1) if args.quick else (256, args.rounds, args.blocks)
    settings = {"slice": [size, size], "slab": SLAB, "halo": HALO, "rounds": rounds,
                "blocks_per_round": blocks, "quick": args.quick, "torch_threads": 1}
    with json_report(settings, torch.device("cpu")) as report, TemporaryDirectory() as tmp:
        source = str(Path(tmp) / "v.ome.zarr")
        write_source(Path(source), 4 * SLAB, size)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ARMS}
        for _ in range(rounds):
            for name in ARMS:
                runs[name] += run_arm(name, source, str(Path(tmp) / f"{name}.ome.zarr"), blocks)
        report["per_block"] = {name: _summary(values) for name, values in runs.items()}
        plain = report["per_block"]["plain"]["total_s"]
        report["ratio_to_plain"] = {name: round(s["total_s"] / plain, 3)
                                    for name, s in report["per_block"].items()}
        report["runs"] = runs


def _summary(values: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("open_s", "read_s", "predict_s", "write_s", "total_s", "minor_faults")
    out: dict[str, Any] = {k: round(statistics.median(v[k] for v in values), 4) for k in keys}
    for k in ("network_cached", "torch_threads", "malloc_trim_env"):
        out[k] = sorted({str(v[k]) for v in values})
    return out


if __name__ == "__main__":
    main()
