"""Training patches from Zarr volumes read lazily, window by window, against the same volumes
held in memory (``dataset.hold_in_memory_mib``), by how the volumes are chunked.

A lazy 2D patch decompresses every chunk its window touches, whole: with chunks of one slice
(1 x 512 x 512) a 256 x 256 window decompresses up to 4 chunks of 256 KiB; with 64 x 64 x 64
cubes, 16-25 of them (4-6 MiB for 64 KiB), every time. Holding the volumes reads each chunk
once, at setup, in slabs of whole chunks (``mitoseg.data.held_volumes``).

Each measurement runs ``bench_patch_sampling.py``'s child in a fresh process (the same
reader, data module, batch hook and timing; no augmentation here, so that the reads are what is
timed): patches/s and CPU ms per patch from the training loader, setup seconds, peak RSS.
Volumes: a training volume of ``depth`` x ``size`` x ``size`` and a test volume of 4 slices
(uint8 image, uint8 labels with ~7.5 % foreground blobs), Zarr v3 with zstd.

    python benchmarks/bench_held_volumes.py           # about 3 minutes on 2 CPU cores
    python benchmarks/bench_held_volumes.py --quick   # tiny volumes (smoke test)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from _child import parse_or_answer_child, run_child
from bench_patch_sampling import child, write_volume

HERE = Path(__file__).resolve().parent
HELD_MIB = 2048  # conf/dataset/_em_base.yaml's default


def main(argv: list[str] | None = None) -> None:
    import torch
    from _common import json_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parse_or_answer_child(parser, argv, child)
    if args is None:
        return
    if args.quick:
        depth, size, patch, batch, layouts = 8, 128, 32, 4, {"slices": (1, 64, 64),
                                                              "cubes": (8, 32, 32)}
        warmup, rounds, count = 1, 2, 2
    else:
        depth, size, patch, batch, layouts = 128, 1024, 256, 8, {"slices": (1, 512, 512),
                                                                  "cubes": (64, 64, 64)}
        warmup, rounds, count = 2, 5, 5
    common = {"patch": [patch, patch], "batch": batch, "threads": args.threads,
              "augment": False, "warmup": warmup, "rounds": rounds, "batches": count,
              "foreground_weight": 1.0}
    settings = {"train_volume": [depth, size, size], "test_volume": [4, size, size],
                "chunks": {k: list(v) for k, v in layouts.items()}, **common,
                "quick": args.quick, "held_mib": HELD_MIB,
                "timing": f"{warmup} warm-up batches, then {rounds} rounds of {count} batches; "
                          "median patches/s (the loader alone, no augmentation)"}
    with json_report(settings, torch.device("cpu")) as report, TemporaryDirectory() as tmp:
        root = Path(tmp)
        for layout, chunks in layouts.items():
            written = time.perf_counter()
            train = write_volume(root / f"{layout}.zarr", "zarr", depth, size, chunks, seed=1)
            test = write_volume(root / f"{layout}_test.zarr", "zarr", 4, size, chunks, seed=99)
            runs = {}
            for held, hold_mib in (("lazy", 0), ("held", HELD_MIB)):
                task = {**common, "name": f"{layout} {held}", "train": train, "test": test,
                        "hold_mib": hold_mib}
                run = run_child(__file__, task, error_lines=3, echo=True)
                runs[held] = {k: run[k] for k in ("setup_s", "patches_per_s_read",
                                                  "cpu_ms_per_patch_read", "peak_rss_mib")
                              if k in run} or run
                if "rounds_patches_per_s" in run:
                    runs[held]["rounds_patches_per_s"] = run["rounds_patches_per_s"]["read"]
            runs["speedup_held_to_lazy"] = round(runs["held"]["patches_per_s_read"]
                                                 / runs["lazy"]["patches_per_s_read"], 2) \
                if "patches_per_s_read" in runs["held"] and "patches_per_s_read" in \
                runs["lazy"] else None
            report[layout] = {"write_s": round(time.perf_counter() - written, 1), **runs}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
