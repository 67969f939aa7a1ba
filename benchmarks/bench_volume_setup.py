"""The EM data module's setup on Zarr volumes, by how the volumes are chunked: seconds against
one plain read of the same volumes.

Setup opens the volumes with ``em_volume_files`` (``dataset=em_volumes``'s reader, every check
on: the label values, the per-slice counts) and runs ``EMDataModule.setup``, which adds the
train/test overlap guard (``check_no_overlap``), the split and the normalization (``scale``;
again with ``training_zscore``, which reads the training slices to fit it; and with
``foreground_weight=5`` and the foreground sampler's scan, which holds the foreground voxels'
positions). Peak RSS above the level before setup is reported too. Each
measurement runs in a fresh child process. The control reads every image and label slice once,
in slabs of 64 slices. Volumes: a training volume of ``depth`` slices of ``size`` x ``size``
and a test volume a quarter as deep (uint8 image, uint8 labels with ~7.5 % foreground blobs, as
``bench_patch_sampling.py`` writes them), chunked in slices (1 x size/2 x size/2) or in
64 x 64 x 64 cubes, Zarr v3 with zstd.

    python benchmarks/bench_volume_setup.py           # about 1 minute on 2 CPU cores
    python benchmarks/bench_volume_setup.py --quick   # tiny volumes (smoke test)

Why: read slice by slice, a volume in 64-slice chunks is decompressed 64 times over; the setup
reads in slabs of whole chunks (``mitoseg.data.slabs``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _child import parse_or_answer_child, peak_rss, rss_mib, run_child

HERE = Path(__file__).resolve().parent
# the plain read; setup with normalize=scale; with training_zscore; with foreground_weight=5
WHAT = ("read_once", "setup", "setup_zscore", "setup_foreground")


def child(task: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import numpy as np

    from mitoseg.data.em_datamodule import EMDataModule
    from mitoseg.data.em_volume_files import em_volume_files

    options = {"label_mapping": {"foreground": [1], "background": [0]},
               "voxel_size_nm": [5.0, 5.0, 5.0]}
    if task["what"] == "read_once":
        import zarr

        started = time.perf_counter()
        for path in (task["train"], task["test"]):
            group = zarr.open_group(path, mode="r")
            for name in ("image", "labels"):
                array = group[name]
                for start in range(0, array.shape[0], 64):
                    np.asarray(array[start:start + 64])
        return {"seconds": round(time.perf_counter() - started, 3)}

    def volumes() -> Any:
        return em_volume_files(
            train=[{"image": f"{task['train']}:/image", "labels": f"{task['train']}:/labels"}],
            test=[{"image": f"{task['test']}:/image", "labels": f"{task['test']}:/labels"}],
            **options)

    normalize = "training_zscore" if task["what"] == "setup_zscore" else "scale"
    weight = 5.0 if task["what"] == "setup_foreground" else 1.0
    module = EMDataModule(volumes, (task["patch"], task["patch"]), split_seed=0, seed=0,
                          batch_size=4, num_workers=0, normalize=normalize,
                          foreground_weight=weight)
    before = rss_mib()
    started = time.perf_counter()
    module.setup()
    if weight > 1:  # the foreground sampler's one scan (lazy: at the first patch otherwise)
        module.datasets["train"].sampler.foreground_count()
    return {"seconds": round(time.perf_counter() - started, 3), "rss_before_mib": before,
            **peak_rss()}


def main(argv: list[str] | None = None) -> None:
    import torch
    from _common import json_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny volumes (smoke test)")
    parser.add_argument("--depth", type=int, default=None, help="training slices (default 128)")
    parser.add_argument("--size", type=int, default=None, help="slice side (default 1024)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parse_or_answer_child(parser, argv, child)
    if args is None:
        return
    from bench_patch_sampling import write_volume

    depth = args.depth or (16 if args.quick else 128)
    size = args.size or (128 if args.quick else 1024)
    rounds = 1 if args.quick else args.rounds
    cube = min(64, size // 2, depth)
    chunkings = {"slices": (1, size // 2, size // 2), "cubes": (cube, cube, cube)}
    settings = {"train_volume": [depth, size, size], "test_volume": [depth // 4, size, size],
                "chunkings": {k: list(v) for k, v in chunkings.items()}, "rounds": rounds,
                "quick": args.quick, "patch": 256 if size >= 256 else size // 2,
                "timing": "each round: the plain read, then the setup, each in a fresh child "
                          "process; median over rounds"}
    with json_report(settings, torch.device("cpu")) as report, TemporaryDirectory() as tmp:
        results: dict[str, Any] = {}
        for name, chunks in chunkings.items():
            root = Path(tmp) / name
            root.mkdir()
            write_volume(root / "train.zarr", "zarr", depth, size, chunks, seed=1)
            write_volume(root / "test.zarr", "zarr", depth // 4, size, chunks, seed=99)
            task = {"train": str(root / "train.zarr"), "test": str(root / "test.zarr"),
                    "patch": settings["patch"]}
            runs: dict[str, list[float]] = {what: [] for what in WHAT}
            peaks: dict[str, list[float]] = {what: [] for what in WHAT[1:]}
            for _ in range(rounds):
                for what in WHAT:
                    result = run_child(__file__, task | {"what": what}, error_lines=5)
                    if "error" in result:
                        raise RuntimeError(f"{name} {what}: {result['error']}")
                    runs[what].append(result["seconds"])
                    if what in peaks:
                        peaks[what].append(result["peak_rss_mib"] - result["rss_before_mib"])
            medians = {what: statistics.median(values) for what, values in runs.items()}
            results[name] = {f"{what}_s": value for what, value in medians.items()} | {
                f"{what}_over_read_once": round(medians[what] / max(medians["read_once"], 1e-9), 2)
                for what in WHAT[1:]} | {"rounds_s": runs, "peak_rss_above_start_mib": {
                    what: max(values) for what, values in peaks.items()}}
        report["results"] = results
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
