"""Block-wise (chunked) prediction into OME-Zarr against one pass in memory, peak memory against
volume size, Dask workers against one process, and a volume larger than the memory allowed.

Every measurement runs in a fresh child process (clean peak RSS): this script calls itself with
``--child``. The network is paper 002's 2D U-Net (random weights; speed and memory do not depend
on them), full image, no TTA, z-median 5 (so blocks need a 2-slice halo along z); blocks are
slabs of 32 whole slices (segment.py's default), so the in-plane receptive field never crosses
a block border; the halo slices are predicted again by the neighbouring block (2 x 2 of 32:
12.5 % more network work, the price of independent blocks). The Dask scheduler's overhead per
block is timed with a network-free predict function on many small blocks.

    python benchmarks/bench_chunked.py           # about 4 minutes on 2 CPU cores
    python benchmarks/bench_chunked.py --quick   # seconds: a smoke test
    python benchmarks/bench_chunked.py --only dask --rounds 5   # Dask against 1 process only

Goals (issue 16): chunked / in-memory throughput >= 0.9; peak RSS of the 16x volume within
1.2x of the 1x volume's; Dask 2 workers x 1 thread >= 0.9 of 1 process x 2 threads; a volume
at least 4x larger than the memory allowed to the process completes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from _child import (
    limit_address_space,
    parse_or_answer_child,
    peak_rss,
    ratio,
    run_child,
)

HERE = Path(__file__).resolve().parent
SLAB, HALO, ZFILTER = 32, 2, 5  # slices per block (segment.py's default), z-median halo


@dataclass(frozen=True)
class NoNetwork:
    """Picklable: a predict function without a network (the scheduler's own cost)."""

    def __call__(self):
        return lambda block: block.astype(np.float32)


@dataclass(frozen=True)
class UNetFactory:
    """Picklable: builds the network once per process."""

    filters: tuple[int, ...] | None = None
    threads: int = 1

    def __call__(self):
        import torch

        from mitoseg.inference import median_z_filter, net_predictor, reconstruct
        from mitoseg.models.nets.unet_paper002 import UNetPaper002

        torch.set_num_threads(self.threads)
        torch.manual_seed(0)
        net = UNetPaper002(spatial_dims=2, filters=self.filters).eval()
        predict = net_predictor(net, "cpu", "32-true")

        def probabilities(block: np.ndarray) -> np.ndarray:
            out = reconstruct(predict, block.astype(np.float32) / 255.0, "full_image",
                              (256, 256), 2).probabilities.numpy()
            return median_z_filter(out, size=ZFILTER)

        return probabilities


def write_source(path: Path, depth: int, size: int) -> None:
    """A uint8 OME-Zarr volume written slab by slab (never whole in memory)."""
    from mitoseg.data.ome_zarr_output import OmeZarrOutput

    out = OmeZarrOutput.create(path, (depth, size, size), "uint8", (SLAB, size, size),
                               (5, 5, 5), {"source": True}, levels=1)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for start in range(0, depth, SLAB):
        stop = min(start + SLAB, depth)
        phase = rng.random((stop - start, 1, 1)) * 6.28
        slab = 128 + 60 * np.sin(xx / 9.0 + phase) * np.cos(yy / 13.0 + phase)
        slab = slab + rng.normal(0, 10, (stop - start, size, size))
        out.write((slice(start, stop), slice(None), slice(None)), np.clip(slab, 0, 255)
                  .astype(np.uint8))
    out.finish()


def child(task: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import torch

    from mitoseg.data.ome_zarr_output import OmeZarrOutput
    from mitoseg.data.volume_sources import open_volume
    from mitoseg.evaluation.chunked import BlockJob, dask_client, run_dask, run_local
    from mitoseg.inference.blocks import block_grid

    factory = NoNetwork() if task.get("no_network") else UNetFactory(
        tuple(task["filters"]) if task.get("filters") else None, int(task.get("threads", 1)))
    torch.set_num_threads(int(task.get("threads", 1)))
    source = open_volume(task["source"])
    if task["kind"] == "in_memory":
        predict = factory()
        started = time.perf_counter()
        result = predict(source[:])
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "voxels": int(result.size), **peak_rss()}
    slab = int(task.get("slab", SLAB))
    blocks = block_grid(source.shape, (slab, *source.shape[1:]), (HALO, 0, 0))
    output = OmeZarrOutput.create(task["output"], source.shape, "float32",
                                  (slab, *source.shape[1:]), source.voxel_size_nm, {"bench": 1},
                                  levels=1)
    job = BlockJob(task["source"], None, task["output"], factory)
    if task.get("limit_mib"):
        limit_address_space(int(task["limit_mib"]))
    if task["kind"] == "chunked":
        from mitoseg.evaluation.chunked import predict_function

        predict_function(factory)  # the network is built before the clock starts
        started = time.perf_counter()
        run_local(job, blocks, output, progress=False)
    else:  # dask
        if task.get("malloc_trim"):  # the state before the fix: workers inherit it
            os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
        client = dask_client("local", workers=int(task["workers"]), threads_per_worker=1)
        client.run(lambda: __import__("torch").set_num_threads(1))
        # warm the workers: each builds its network once, outside the clock
        client.run(_warm, factory)
        started, cpu = time.perf_counter(), _cpu_seconds()
        run_dask(job, blocks, output, client, progress=False)
        # this process holds the client, the scheduler and the nannies: were they busy?
        client_cpu = _cpu_seconds() - cpu
    seconds = time.perf_counter() - started
    output.finish()
    if task["kind"] == "dask":
        client.close()
        client.cluster.close()
        return {"seconds": seconds, "blocks": len(blocks), "client_cpu_s": round(client_cpu, 2),
                **peak_rss()}
    return {"seconds": seconds, "blocks": len(blocks), **peak_rss()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm(factory: Any) -> None:
    from mitoseg.evaluation.chunked import predict_function

    predict_function(factory)








def main(argv: list[str] | None = None) -> None:
    import torch
    from _common import json_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", choices=("all", "dask"), default="all",
                        help="dask: only Dask 2 x 1 against 1 process x 2 and the scheduler's "
                             "overhead")
    parser.add_argument("--rounds", type=int, default=1,
                        help="pairs (1 process, Dask) visited in turn; the median ratio")
    parser.add_argument("--before-fix", action="store_true",
                        help="each round also runs Dask with its default MALLOC_TRIM_THRESHOLD_ "
                             "in the workers (as before the fix), under the same load")
    args = parse_or_answer_child(parser, argv, child)
    if args is None:
        return
    size, base = (64, 32) if args.quick else (256, 32)
    # the larger-than-memory run: an output 4x the address space allowed (float32 probabilities)
    big_size, big_depth, limit = (128, 64, 64) if args.quick else (512, 1024, 256)
    settings = {"network": "paper 002 2D U-Net (random weights), full image, z-median 5",
                "slice": [size, size], "base_depth": base, "slab": SLAB, "halo": HALO,
                "quick": args.quick, "only": args.only, "rounds": args.rounds,
                "before_fix": args.before_fix}
    with json_report(settings, torch.device("cpu")) as report, TemporaryDirectory() as tmp:
        root = Path(tmp)
        for factor in (1, 4, 16):
            write_source(root / f"v{factor}.ome.zarr", base * factor, size)
        four = str(root / "v4.ome.zarr")
        if args.only == "all":
            in_memory = run_child(__file__, {"kind": "in_memory", "source": four, "threads": 2})
            chunked = run_child(__file__, {"kind": "chunked", "source": four, "threads": 2,
                                 "output": str(root / "c4.ome.zarr")})
            report["chunked_vs_in_memory"] = {
                "in_memory": in_memory, "chunked": chunked,
                "throughput_ratio": ratio(in_memory, chunked, "seconds"), "goal": 0.9}
            peaks = {factor: run_child(__file__, {"kind": "chunked",
                                        "source": str(root / f"v{factor}.ome.zarr"),
                                        "threads": 2, "output": str(root / f"p{factor}.ome.zarr")})
                     for factor in (1, 4, 16)}
            report["peak_memory_vs_volume_size"] = {
                f"{factor}x": peaks[factor] for factor in peaks} | {
                "ratio_16x_to_1x": ratio(peaks[16], peaks[1], "peak_rss_mib"),
                "goal": 1.2}
        report["dask_2x1_vs_process_1x2"] = dask_against_process(root, four, args.rounds,
                                                                     args.before_fix)
        small = run_child(__file__, {"kind": "dask", "source": four, "workers": 2, "no_network": True,
                           "slab": 1, "output": str(root / "noop.ome.zarr")})
        report["dask_overhead_per_block_ms"] = (
            round(1000 * small["seconds"] / small["blocks"], 2) if "seconds" in small else small)
        if args.only == "all":
            report["larger_than_memory"] = larger_than_memory(root, big_depth, big_size, limit)


def dask_against_process(root: Path, source: str, rounds: int,
                         before_fix: bool = False) -> dict[str, Any]:
    """1 process x 2 threads and Dask 2 workers x 1 thread on the same blocks, in turn for
    ``rounds`` rounds (the machine may be shared: the median of the per-round ratios);
    ``before_fix``: also Dask with MALLOC_TRIM_THRESHOLD_=65536 in its workers."""
    pairs = []
    for number in range(max(int(rounds), 1)):
        process = run_child(__file__, {"kind": "chunked", "source": source, "threads": 2,
                             "output": str(root / f"r{number}_process.ome.zarr")})
        dask = run_child(__file__, {"kind": "dask", "source": source, "workers": 2,
                          "output": str(root / f"r{number}_dask.ome.zarr")})
        pair = {"process_1x2": process, "dask_2x1": dask,
                "throughput_ratio": ratio(process, dask, "seconds")}
        if before_fix:
            before = run_child(__file__, {"kind": "dask", "source": source, "workers": 2,
                                "malloc_trim": True,
                                "output": str(root / f"r{number}_before.ome.zarr")})
            pair |= {"dask_2x1_before_fix": before,
                     "throughput_ratio_before_fix": ratio(process, before, "seconds")}
        pairs.append(pair | {"load_average_after": [round(v, 2) for v in os.getloadavg()]})
    ratios = [p["throughput_ratio"] for p in pairs if p["throughput_ratio"] is not None]
    return {"rounds": pairs,
            "process_1x2_s_median": _median([p["process_1x2"].get("seconds") for p in pairs]),
            "dask_2x1_s_median": _median([p["dask_2x1"].get("seconds") for p in pairs]),
            "throughput_ratio": round(statistics.median(ratios), 3) if ratios else None,
            **({"dask_2x1_before_fix_s_median": _median(
                [p["dask_2x1_before_fix"].get("seconds") for p in pairs]),
                "throughput_ratio_before_fix": _median(
                [p["throughput_ratio_before_fix"] for p in pairs])} if before_fix else {}),
            "goal": 0.9}


def larger_than_memory(root: Path, depth: int, size: int, limit: int) -> dict[str, Any]:
    write_source(root / "big.ome.zarr", depth, size)
    output_mib = depth * size * size * 4 / 2**20
    limited = run_child(__file__, {"kind": "chunked", "source": str(root / "big.ome.zarr"),
                         "filters": [4, 8, 8, 16, 16], "threads": 2, "limit_mib": limit,
                         "slab": 8, "output": str(root / "big_out.ome.zarr")})
    return {"volume": [depth, size, size], "output_mib": round(output_mib, 1),
            "address_space_allowed_mib": limit, "times_larger": round(output_mib / limit, 2),
            "network": "paper 002 2D U-Net with filters [4, 8, 8, 16, 16]",
            "completed": "seconds" in limited, **limited}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None




if __name__ == "__main__":
    main()
