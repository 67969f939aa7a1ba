"""The Predictor's speed options: channels-last and torch.compile, one slice at a time.

Paper 002's 2D U-Net predicts (768 x 1024) slices through ``mitoseg.evaluation.predictor``
as segment.py, evaluate.py and the test after training do, with full images and with blended
50 % overlap of 256 x 256 windows (no TTA, which multiplies every row alike). Every option pair
(channels_last x compile) is built and warmed up on one slice first (compiling, and the
backend's choice of kernels for the shape), then each runs ``--rounds`` times over the slices
in rotated order; the median seconds per slice is reported, and each option's probabilities
against the plain run's (max abs difference).

    python benchmarks/bench_predictor_speed.py            # 2 slices of 768 x 1024, 5 rounds
    python benchmarks/bench_predictor_speed.py --quick    # seconds: 1 slice of 64 x 96
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time
from typing import Any

import numpy as np
import torch

from _common import (
    add_common_args,
    apply_threads,
    json_report,
    pick_device,
    rounded,
    synchronize,
)

from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.reconstruction import ReconstructionSettings
from mitoseg.models.nets.unet_paper002 import UNetPaper002
from mitoseg.postproc.binarize import Binarize

MODES = ("full_image", "overlap_blend")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--slices", type=int, default=None, help="default 2 (1 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (1 with --quick)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    quick = args.quick
    s = {"quick": quick, "slices": args.slices or (1 if quick else 2),
         "shape": [64, 96] if quick else [768, 1024], "window": [32, 32] if quick else [256, 256],
         "rounds": args.rounds or (1 if quick else 5), "precision": args.precision,
         "network": "UNetPaper002(spatial_dims=2), 1.94 M parameters, eval mode"}
    with json_report(s, device) as report:
        torch.manual_seed(0)
        net = UNetPaper002(spatial_dims=2).eval()
        stack = np.random.default_rng(0).random((s["slices"], *s["shape"])).astype(np.float32)
        predictors, warmup_s = {}, {}
        for mode, channels_last, compile in itertools.product(MODES, (False, True), (False, True)):
            settings = ReconstructionSettings(mode, patch_size=tuple(s["window"]),
                                              precision=s["precision"],
                                              channels_last=channels_last, compile=compile)
            # each predictor its own copy: a predictor puts its network in its memory format
            # (channels-last) in place, which would reach every other predictor's too
            predictor = Predictor.from_module(copy.deepcopy(net), Normalization("none"), 2,
                                              settings, Binarize(0.5), device=device)
            predictor.progress = False
            started = time.perf_counter()
            predictor.probabilities(stack[:1])
            synchronize(device)
            key = f"{mode}{'_channels_last' if channels_last else ''}{'_compiled' if compile else ''}"
            predictors[key], warmup_s[key] = predictor, time.perf_counter() - started
        times: dict[str, list[float]] = {key: [] for key in predictors}
        outputs: dict[str, np.ndarray] = {}
        keys = list(predictors)
        for r in range(s["rounds"]):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                synchronize(device)
                started = time.perf_counter()
                out = predictors[key].probabilities(stack)
                synchronize(device)
                times[key].append((time.perf_counter() - started) / len(stack))
                outputs.setdefault(key, out)
        results: dict[str, Any] = {}
        for key in keys:
            mode = key.split("_channels_last")[0].split("_compiled")[0]
            plain = times[mode]
            results[key] = {
                "s_per_slice": rounded(statistics.median(times[key])),
                "rounds_s": [rounded(t) for t in times[key]],
                "first_slice_s": rounded(warmup_s[key]),
                "speedup_vs_plain": rounded(statistics.median(plain)
                                            / statistics.median(times[key]), 3),
                "max_abs_diff_vs_plain": float(np.abs(outputs[key] - outputs[mode]).max())}
        report["results"] = results


if __name__ == "__main__":
    main()
