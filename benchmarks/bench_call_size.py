"""Network images/s against images per call: why TTA copies share a call on a GPU only.

Paper 002's 2D U-Net in eval mode on random 256 x 256 inputs. Each call size runs for
``--seconds`` after one warm-up call, and the sizes are visited ``--rounds`` times in turn,
so drift on a shared machine touches every size; the median rate is reported. On a CPU, one
image per call keeps the activations in cache; on a GPU, large calls keep it busy.

    python benchmarks/bench_call_size.py              # sizes 1, 2, 4, 8; 3 rounds of 6 s
    python benchmarks/bench_call_size.py --quick      # seconds: 64 x 64, sizes 1 and 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from _common import add_common_args, apply_threads, json_report, pick_device, rounded, synchronize
from mitoseg.inference.network import net_predictor
from mitoseg.inference.tta import batch_tta_by_default
from mitoseg.models.nets.unet_paper002 import UNetPaper002


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="images per call (default 1 2 4 8)")
    parser.add_argument("--window", type=int, default=None, help="default 256")
    parser.add_argument("--seconds", type=float, default=None, help="per size and round (6)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    return parser.parse_args(argv)


def images_per_second(predict, size: int, window: int, seconds: float,
                      device: torch.device) -> float:
    batch = torch.randn(size, 1, window, window, device=device)
    predict(batch)  # warm-up: allocator, cuDNN plans
    synchronize(device)
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predict(batch)
        images += size
    synchronize(device)
    return images / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    quick = args.quick
    s: dict[str, Any] = {
        "quick": quick, "sizes": args.sizes or ([1, 2] if quick else [1, 2, 4, 8]),
        "window": args.window or (64 if quick else 256),
        "seconds": args.seconds or (0.2 if quick else 6.0),
        "rounds": max(1, args.rounds or (1 if quick else 3)), "precision": args.precision,
        "network": "UNetPaper002(spatial_dims=2), 1.94 M parameters, eval mode",
        "batch_tta_by_default": batch_tta_by_default(device),
    }
    if any(size < 1 for size in s["sizes"]):
        raise SystemExit(f"--sizes must be positive, got {s['sizes']}")
    with json_report(s, device) as report:
        torch.manual_seed(0)
        predict = net_predictor(UNetPaper002(spatial_dims=2), device, s["precision"])
        rates: dict[int, list[float]] = {size: [] for size in s["sizes"]}
        for _ in range(s["rounds"]):
            for size in s["sizes"]:
                rates[size].append(images_per_second(predict, size, s["window"],
                                                     s["seconds"], device))
        medians = {size: statistics.median(r) for size, r in rates.items()}
        best = max(medians, key=medians.get)
        report["images_per_s"] = {str(size): {"median": rounded(medians[size]),
                                              "rounds": [rounded(r) for r in rates[size]]}
                                  for size in s["sizes"]}
        report["fastest_size"] = best
        report["relative_to_fastest"] = {str(size): rounded(medians[size] / medians[best], 3)
                                         for size in s["sizes"]}


if __name__ == "__main__":
    main()
