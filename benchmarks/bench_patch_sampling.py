"""Training patches drawn lazily from Zarr and HDF5 volumes through the EM data module: peak
memory and patches/s against volume size, uniform and foreground-weighted, against the same
volume in memory, and under an address-space limit smaller than the volume.

Every measurement runs in a fresh child process (clean peak RSS): this script calls itself with
``--child``. Each child opens the volumes with ``em_volume_files`` (``dataset=em_volumes``'s
reader, every check on), sets up ``EMDataModule`` (volumes read lazily, window by window:
``hold_in_memory_mib=0``; 2D patches 256 x 256, batch 8, no loader
workers, paper 002's 2D augmentation from conf/augmentation/paper2d.yaml, run by the module's own
``on_after_batch_transfer``) and draws batches from its training loader: warm-up, then rounds
of batches alternating the loader alone (the lazy reads) and loader + augmentation; median
patches/s and median CPU ms per patch (this process, all threads) of each. Peak RSS
(ru_maxrss) is read after setup, after the foreground scan and at the end. The volumes (uint8
image, uint8 labels with ~7.5 % foreground blobs) are written 8 slices at a time, so the writer
stays small too.

    python benchmarks/bench_patch_sampling.py           # about 6 minutes on 2 CPU cores
    python benchmarks/bench_patch_sampling.py --quick   # tiny volumes; 12 child processes of
                                                        # ~10 s each, mostly imports

Goal (issue 16): the 16x volume's peak RSS within 1.2x of the 1x volume's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from _child import (
    limit_address_space,
    parse_or_answer_child,
    peak_rss,
    ratio,
    rss_mib,
    run_child,
)

HERE = Path(__file__).resolve().parent
FOREGROUND = 0.075  # share of foreground voxels in the written labels
BANK = 8  # distinct label / noise slices, rolled per slice (cheap to write, never repeated)


def _bank(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(BANK, size, size) blob labels (~FOREGROUND foreground) and uint8 noise."""
    from scipy.ndimage import gaussian_filter, zoom

    rng = np.random.default_rng(seed)
    coarse = max(size // 8, 4)
    smooth = gaussian_filter(rng.normal(size=(BANK, coarse, coarse)), (0, 2, 2), mode="wrap")
    fine = zoom(smooth, (1, size / coarse, size / coarse), order=1, mode="grid-wrap")
    labels = (fine > np.quantile(fine, 1 - FOREGROUND, axis=(1, 2), keepdims=True))
    noise = rng.normal(0, 20, (BANK, size, size)).clip(-100, 100).astype(np.int16)
    return labels.astype(np.uint8), noise


def _slab(bank: tuple[np.ndarray, np.ndarray], start: int, stop: int
          ) -> tuple[np.ndarray, np.ndarray]:
    labels_bank, noise_bank = bank
    size = labels_bank.shape[-1]
    labels = np.empty((stop - start, size, size), np.uint8)
    image = np.empty_like(labels)
    for i, z in enumerate(range(start, stop)):
        shift = (z * 37 % size, z * 91 % size)
        labels[i] = np.roll(labels_bank[z % BANK], shift, (0, 1))
        noise = np.roll(noise_bank[(z * 3 + 1) % BANK], (shift[1], shift[0]), (0, 1))
        image[i] = (150 - 70 * labels[i].astype(np.int16) + noise).clip(0, 255)
    return image, labels


def write_volume(path: Path, kind: str, depth: int, size: int, chunks: tuple[int, int, int],
                 seed: int) -> dict[str, str]:
    """An image and its labels in one Zarr group or HDF5 file, written 8 slices at a time;
    returns the entry for ``em_volume_files``."""
    bank = _bank(size, seed)
    if kind == "zarr":
        import zarr

        group = zarr.open_group(str(path), mode="w")
        arrays = [group.create_array(name, shape=(depth, size, size), dtype="uint8",
                                     chunks=chunks) for name in ("image", "labels")]
        closing = None
    else:
        import h5py

        closing = h5py.File(path, "w")
        arrays = [closing.create_dataset(name, (depth, size, size), "uint8", chunks=chunks)
                  for name in ("image", "labels")]
    for start in range(0, depth, 8):
        stop = min(start + 8, depth)
        for array, part in zip(arrays, _slab(bank, start, stop)):
            array[start:stop] = part
    if closing is not None:
        closing.close()
    return {"image": f"{path}:/image", "labels": f"{path}:/labels"}


def child(task: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from types import SimpleNamespace

    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mitoseg.data.em_datamodule import EMDataModule
    from mitoseg.data.em_volume_files import em_volume_files
    from mitoseg.data.volume_set import LabelledVolume, VolumeSet

    torch.set_num_threads(int(task["threads"]))
    augmentation = (instantiate(OmegaConf.load(HERE.parent / "conf" / "augmentation" /
                                               "paper2d.yaml")) if task["augment"] else None)
    options = {"label_mapping": {"foreground": [1], "background": [0]},
               "voxel_size_nm": [5.0, 5.0, 5.0]}

    def volumes() -> VolumeSet:
        found = em_volume_files(train=[task["train"]], test=[task["test"]], **options)
        if not task.get("in_memory"):
            return found
        volume = found.train[0]  # the control: the same volume in numpy arrays, filled 8
        image = np.empty(volume.shape, volume.image.dtype)  # slices at a time
        labels = np.empty(volume.shape, bool)
        for start in range(0, volume.depth, 8):
            image[start:start + 8] = volume.image[start:start + 8]
            labels[start:start + 8] = volume.labels[start:start + 8]
        whole = LabelledVolume(volume.name, image, labels)
        return VolumeSet(train=[whole], test=found.test, voxel_size_nm=found.voxel_size_nm,
                         description=found.description)

    module = EMDataModule(volumes, tuple(task["patch"]), split_seed=0, seed=0,
                          batch_size=int(task["batch"]), num_workers=0,
                          augmentation=augmentation,
                          foreground_weight=float(task["foreground_weight"]),
                          hold_in_memory_mib=float(task.get("hold_mib", 0)))
    if task.get("limit_mib"):  # libraries are loaded; everything from here runs under it
        limit_address_space(int(task["limit_mib"]))
    started = time.perf_counter()
    module.setup()  # opens and checks every volume (labels, overlap), splits, builds datasets
    setup_s = time.perf_counter() - started
    out: dict[str, Any] = {"setup_s": round(setup_s, 2), "rss_after_setup_mib": rss_mib(),
                           "peak_rss_through_setup_mib": peak_rss()["peak_rss_mib"]}
    sampler = module.datasets["train"].sampler
    if task.get("coords_limit") is not None:
        sampler.coords_limit = int(task["coords_limit"])
    if sampler.fg_weight > 1.0:  # the one scan of the labels, lazy: timed on its own
        started = time.perf_counter()
        count = sampler.foreground_count()
        out |= {"foreground_scan_s": round(time.perf_counter() - started, 2),
                "foreground_voxels": count, "coords_limit": sampler.coords_limit,
                "foreground_path": "coordinates held" if sampler.holds_coordinates
                else "slice by slice", "rss_after_scan_mib": rss_mib(),
                "peak_rss_through_scan_mib": peak_rss()["peak_rss_mib"]}
    torch.manual_seed(0)
    batches = _batches(module)
    for _ in range(int(task["warmup"])):
        next(batches)
    # rounds alternate: the loader alone (the lazy reads), then loader + augmentation, so both
    # medians see the same drift of a shared machine
    # wall clock gives patches/s; this process's CPU time (all its threads) per patch is the
    # steadier figure on a shared machine, where other jobs take the cores in turns
    kinds = ("read", "read_and_augment")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu_ms: dict[str, list[float]] = {kind: [] for kind in kinds}
    foreground = []
    patches = int(task["batches"]) * int(task["batch"])
    for _ in range(int(task["rounds"])):
        for kind in kinds:
            module.trainer = SimpleNamespace(training=kind == "read_and_augment" and
                                             augmentation is not None)
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(int(task["batches"])):
                batch = next(batches)
                foreground.append(float(batch["mask"].mean()))
            rates[kind].append(patches / (time.perf_counter() - started))
            cpu_ms[kind].append(1000 * (time.process_time() - cpu) / patches)
    drawn = int(task["warmup"]) + 2 * int(task["rounds"]) * int(task["batches"])
    for kind in kinds:
        out[f"patches_per_s_{kind}"] = round(statistics.median(rates[kind]), 1)
        out[f"cpu_ms_per_patch_{kind}"] = round(statistics.median(cpu_ms[kind]), 2)
    return out | {
        "rounds_patches_per_s": {kind: [round(r, 1) for r in v] for kind, v in rates.items()},
        "patch_foreground_share": round(float(np.mean(foreground)), 4),
        "batches_drawn": drawn, **peak_rss()}


def _batches(module: Any):
    """Training batches as a Trainer sees them (loader, then the module's batch hook), epoch
    after epoch."""
    while True:
        for batch in module.train_dataloader():
            yield module.on_after_batch_transfer(batch, 0)










def main(argv: list[str] | None = None) -> None:
    import torch
    from _common import json_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: "
                        "steadier figures on a shared machine)")
    parser.add_argument("--no-augment", action="store_true", help="draw patches without "
                        "paper 002's 2D augmentation")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parse_or_answer_child(parser, argv, child)
    if args is None:
        return
    if args.quick:
        base, size, chunks, patch, batch = 4, 128, (1, 64, 64), 32, 4
        warmup, rounds, count, small_limit, limit_mib = 1, 2, 2, 100, 256
    else:
        base, size, chunks, patch, batch = 32, 1024, (1, 512, 512), 256, 8
        warmup, rounds, count, small_limit, limit_mib = 2, 7, 3, 100_000, 256
    common = {"patch": [patch, patch], "batch": batch, "threads": args.threads,
              "augment": not args.no_augment, "warmup": warmup, "rounds": rounds,
              "batches": count}
    settings = {"base_volume": [base, size, size], "chunks": list(chunks),
                "factors": [1, 4, 16], "foreground_share_written": FOREGROUND,
                "zarr": "zarr v3 group, arrays 'image' and 'labels', zstd (zarr's default)",
                "hdf5": "h5py, same chunks, no compression",
                "test_volume": [4, size, size], **common, "quick": args.quick,
                "augmentation": "none" if args.no_augment else "conf/augmentation/paper2d.yaml",
                "timing": f"{warmup} warm-up batches, then {rounds} x (loader alone, loader + "
                          f"augmentation) rounds of {count} batches each; median patches/s"}
    with json_report(settings, torch.device("cpu")) as report, TemporaryDirectory() as tmp:
        root = Path(tmp)
        written = time.perf_counter()
        test = write_volume(root / "test.zarr", "zarr", 4, size, chunks, seed=99)
        zarr_volumes = {f: write_volume(root / f"v{f}.zarr", "zarr", base * f, size, chunks,
                                        seed=f) for f in (1, 4, 16)}
        hdf5 = write_volume(root / "v4.h5", "hdf5", base * 4, size, chunks, seed=4)
        report["write_s"] = round(time.perf_counter() - written, 1)
        report["volume_mib"] = {f"{f}x": round(base * f * size * size / 2**20, 1)
                                for f in (1, 4, 16)}  # image alone; the labels as much again

        def measure(name: str, train: dict[str, str], weight: float, **extra: Any) -> dict:
            task = {**common, "name": name, "train": train, "test": test,
                    "foreground_weight": weight, **extra}
            return run_child(__file__, task, error_lines=3, echo=True)

        for weight in (1, 5):
            runs = {f"{f}x": measure(f"zarr {f}x w{weight}", zarr_volumes[f], weight)
                    for f in (1, 4, 16)}
            report[f"zarr_foreground_weight_{weight}"] = runs | {
                "ratio_16x_to_1x": ratio(runs["16x"], runs["1x"], "peak_rss_mib"), "goal": 1.2}
        report["zarr_16x_foreground_weight_5_small_coords_limit"] = measure(
            "zarr 16x w5 small limit", zarr_volumes[16], 5, coords_limit=small_limit)
        report["hdf5_4x"] = {f"foreground_weight_{w}": measure(f"hdf5 4x w{w}", hdf5, w)
                             for w in (1, 5)}
        report["in_memory_1x"] = {f"foreground_weight_{w}": measure(
            f"in memory 1x w{w}", zarr_volumes[1], w, in_memory=True) for w in (1, 5)}
        limited = measure("zarr 16x w1 limited", zarr_volumes[16], 1, limit_mib=limit_mib)
        report["zarr_16x_under_address_space_limit"] = {
            "address_space_allowed_mib": limit_mib, "limit_applied": "before setup (the "
            "checks, the split and every batch run under it), libraries already loaded",
            "volume_mib_image_and_labels": 2 * report["volume_mib"]["16x"],
            "completed": "patches_per_s_read" in limited, **limited}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")




if __name__ == "__main__":
    main()
