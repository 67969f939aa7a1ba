"""Synthetic fluorescence images per second, against what the training loop consumes.

Images of 200 x 200 at SNR 4 with space-variant blur 1~4, made from procedural masks with a
random flip/rotation and z-score normalization, as the training set makes them:
- CPU, numpy (mitoseg.synth.fluorescence): the training DataLoader over the training dataset
  with 1 and 2 worker processes (and in the main process);
- torch (mitoseg.synth.fluorescence_torch, the same image model in batches): on the GPU when
  there is one, and on the CPU.
The consumption rate is bench_training's framework images/s for paper 000's U-Net on this
data (run here in a subprocess on the same device, or read from --training-json).

    python benchmarks/bench_generator.py
    python benchmarks/bench_generator.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from _common import (
    add_common_args,
    apply_threads,
    json_report,
    pick_device,
    rounded,
    synchronize,
)
from mitoseg.data.augment import Compose, RandomDihedral
from mitoseg.data.fluo_dataset import SyntheticFluorescenceDataset
from mitoseg.data.loaders import make_loader
from mitoseg.data.mask_sources import procedural_mask_set
from mitoseg.synth.fluorescence import FluorescenceParams
from mitoseg.synth.fluorescence_torch import random_dihedral, synthesize_batch, zscore

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--masks", type=int, default=None, help="procedural masks (default 630)")
    parser.add_argument("--images", type=int, default=None,
                        help="images per CPU configuration, worker start-up included "
                             "(default 2000)")
    parser.add_argument("--batch", type=int, default=32, help="DataLoader batch size")
    parser.add_argument("--torch-batch", type=int, default=256, help="torch generator batch")
    parser.add_argument("--training-json", default=None,
                        help="a saved bench_training output to compare with (default: run it)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def loader_rate(dataset: Dataset, batch: int, workers: int) -> dict[str, Any]:
    """Images/s of the training DataLoader over the whole dataset, worker start-up included."""
    start = time.perf_counter()
    done = sum(len(item["image"]) for item in make_loader(dataset, batch, False, workers))
    seconds = time.perf_counter() - start
    return {"workers": workers, "images": done, "seconds": rounded(seconds),
            "images_per_s": rounded(done / seconds)}


def torch_rate(masks: np.ndarray, params: FluorescenceParams, batch: int, rounds: int,
               device: torch.device, seed: int, per_image: bool = True) -> dict[str, Any]:
    """Images/s of the batched torch generator (augment + synthesize + z-score) on device,
    with one generator per image made for every batch, as the data module's ``synthesis:
    device`` does (each training sample's image is then fixed, whatever its batch); with
    ``per_image=False`` one generator draws the whole batch (what it did before)."""
    pool = torch.from_numpy(masks).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    seeds = iter(range(seed, seed + 2**40))

    def one_batch() -> torch.Tensor:
        pick = torch.randint(0, len(pool), (batch,), generator=generator, device=device)
        draws = ([torch.Generator(device=device).manual_seed(next(seeds)) for _ in range(batch)]
                 if per_image else generator)
        return zscore(synthesize_batch(random_dihedral(pool[pick], generator), params, draws))

    one_batch()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        one_batch()
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"device": str(device), "batch": batch, "generators": "per image" if per_image
            else "one per batch", "images": batch * rounds,
            "seconds": rounded(seconds), "images_per_s": rounded(batch * rounds / seconds)}


def training_rate(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """bench_training's figures for paper 000's U-Net on this data, on this device."""
    if args.training_json:
        report = json.loads(Path(args.training_json).read_text())
        source = args.training_json
    else:
        command = [sys.executable, str(HERE / "bench_training.py"), "--dataset",
                   "fluo_procedural", "--model", "unet_paper000", "--device", str(device)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.quick:
            command.append("--quick")
        elif device.type == "cuda":
            command += ["--batch", "32", "--precision", "bf16-mixed", "--channels-last"]
        else:
            command += ["--batch", "8", "--steps", "4"]
        run = subprocess.run(command, capture_output=True, text=True, check=True)
        report = json.loads(run.stdout)
        source = " ".join(["python", "benchmarks/bench_training.py", *command[2:]])
    results = report["results"]
    return {"source": source, "model": report["settings"]["model"],
            "batch": report["settings"]["batch"], "precision": report["settings"]["precision"],
            "framework_images_per_s": results["framework_images_per_s"],
            "bare_images_per_s": results["bare_images_per_s"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    params = FluorescenceParams(snr=4.0, blur="variant", blur_max_sigma=4.0)
    settings = {"quick": args.quick, "image": [200, 200], "condition": params.to_dict(),
                "masks": args.masks or (16 if args.quick else 630),
                "images_per_cpu_config": args.images or (64 if args.quick else 2000),
                "loader_batch": args.batch,
                "torch_batch": 8 if args.quick else args.torch_batch,
                "torch_rounds": 1 if args.quick else 8, "seed": args.seed}
    with json_report(settings, device) as report:
        mask_set = procedural_mask_set(count=settings["masks"], seed=args.seed)
        images = settings["images_per_cpu_config"]
        dataset = SyntheticFluorescenceDataset(mask_set, [params], args.seed, "train",
                                               repeats=-(-images // len(mask_set)),
                                               augment=Compose([RandomDihedral()]))
        dataset = Subset(dataset, range(images))
        for index in range(min(images, 2 * args.batch)):  # warm-up: first calls are slow
            dataset[index]
        cpu = {f"numpy_workers_{w}": loader_rate(dataset, args.batch, w) for w in (0, 1, 2)}
        generators = dict(cpu)
        generators["torch_cpu"] = torch_rate(mask_set.masks, params, settings["torch_batch"],
                                             settings["torch_rounds"], torch.device("cpu"),
                                             args.seed)
        threads = torch.get_num_threads()
        if threads > 1:  # on a busy machine one thread can beat several
            torch.set_num_threads(1)
            generators["torch_cpu_1_thread"] = torch_rate(
                mask_set.masks, params, settings["torch_batch"], settings["torch_rounds"],
                torch.device("cpu"), args.seed)
            torch.set_num_threads(threads)
        if device.type == "cuda":
            generators["torch_gpu"] = torch_rate(mask_set.masks, params, settings["torch_batch"],
                                                 settings["torch_rounds"] * 4, device, args.seed)
        # what one generator per image costs: the same batches drawn by one generator
        where = device if device.type == "cuda" else torch.device("cpu")
        generators["torch_one_generator_per_batch"] = torch_rate(
            mask_set.masks, params, settings["torch_batch"],
            settings["torch_rounds"] * (4 if where.type == "cuda" else 1), where, args.seed,
            per_image=False)
        report["generators"] = generators
        consumer = training_rate(args, device)
        report["training_consumption"] = consumer
        need = consumer["framework_images_per_s"]
        report["outpaces_training"] = {name: {"ratio": rounded(g["images_per_s"] / need, 3),
                                              "outpaces": g["images_per_s"] > need}
                                       for name, g in generators.items()}


if __name__ == "__main__":
    main()
