"""Overlapped inference with 8-fold TTA: ours vs MONAI's sliding_window_inference.

Paper 002's 2D U-Net predicts a (depth, 768, 1024) volume slice by slice with 256 x 256
windows at 50 % overlap, blended with the spline window, under the 8 dihedral TTA transforms.
Timed: ours (``sliding_window_predict_stack`` with TTA batched as ``reconstruct`` does it: the
8 copies of a window share a call on a GPU, one call each on the CPU); MONAI with the same
network, window weights, overlap, transforms and images per call (TTA over the whole volume, 8
passes, as a MONAI user would write it; and our TTA inside MONAI's predictor, which isolates the
sliding-window machinery); the network alone on the same calls (a bound: no tool that
runs these windows through this network is faster); each method once per round, in rotated order, median reported; and a
plain reference loop (one window and one transform per network call) on a few slices.
Exactness: ours in fp32 against the reference loop (float64 accumulation), max abs difference.

    python benchmarks/bench_inference.py            # GPU: 165 slices; CPU: 2 slices
    python benchmarks/bench_inference.py --quick    # seconds: 1 x 128 x 192, 64 x 64 windows
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Any

import torch

from _common import (
    PeakMemory,
    add_common_args,
    apply_threads,
    json_report,
    pick_device,
    rounded,
    synchronize,
    timed,
)
from mitoseg.inference.network import net_predictor
from mitoseg.inference.sliding import sliding_window_predict_stack
from mitoseg.inference.tta import batch_tta_by_default, predict_with_tta, tta_transforms
from mitoseg.inference.windows import window as make_window
from mitoseg.models.nets.unet_paper002 import UNetPaper002

FULL_DEPTH = 165
MONAI_EXTRA = "pip install 'monai>=1.3'  (a `benchmarks` extra: benchmarks = [\"monai>=1.3\"])"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--depth", type=int, default=None,
                        help=f"slices (default {FULL_DEPTH} on a GPU, 2 on the CPU)")
    parser.add_argument("--height", type=int, default=None, help="default 768")
    parser.add_argument("--width", type=int, default=None, help="default 1024")
    parser.add_argument("--window", type=int, default=None, help="default 256")
    parser.add_argument("--batch", type=int, default=None,
                        help="windows per call (x8 network images with --batch-tta; default 64 "
                             "on a GPU; 1 on the CPU, where small calls keep activations in "
                             "cache)")
    parser.add_argument("--batch-tta", action=argparse.BooleanOptionalAction, default=None,
                        help="the 8 TTA copies of a window in one call (default: on a GPU, "
                             "as reconstruct does)")
    parser.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed"],
                        help="default bf16-mixed on a GPU, 32-true on the CPU")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed runs of every method, order rotated each round; the "
                             "median is reported (default 3, 1 with --quick)")
    parser.add_argument("--ref-depth", type=int, default=1,
                        help="slices checked against the reference loop")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    gpu = device.type == "cuda"
    quick = args.quick
    depth = args.depth or (1 if quick else FULL_DEPTH if gpu else 2)
    return {
        "quick": quick, "depth": depth,
        "height": args.height or (128 if quick else 768),
        "width": args.width or (192 if quick else 1024),
        "window": args.window or (64 if quick else 256),
        "overlap": 0.5, "blend": "spline", "tta": 8,
        "batch_windows": args.batch or (4 if quick else 64 if gpu else 1),
        "batch_tta": batch_tta_by_default(device) if args.batch_tta is None else args.batch_tta,
        "precision": args.precision or ("bf16-mixed" if gpu else "32-true"),
        "channels_last": args.channels_last, "compile": args.compile,
        "rounds": max(1, args.rounds or (1 if quick else 3)),
        "ref_depth": max(1, min(args.ref_depth, depth)), "seed": args.seed,
        "cudnn_benchmark": gpu,
        "network": "UNetPaper002(spatial_dims=2), 1.94 M parameters, eval mode",
    }


def ref_starts(size: int, patch: int, stride: int) -> list[int]:
    starts, s = [], 0
    while s + patch < size:
        starts.append(s)
        s += stride
    return starts + [size - patch]


def reference_loop(predict, volume: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """The straightforward version: every window, every transform, one network call each;
    float64 sums of prediction x window and of the window, divided at the end."""
    transforms = tta_transforms(2)
    weight = make_window((patch, patch), "spline").double()
    out = torch.zeros(volume.shape, dtype=torch.float64)
    for z in range(volume.shape[0]):
        num = torch.zeros(volume.shape[1:], dtype=torch.float64)
        den = torch.zeros(volume.shape[1:], dtype=torch.float64)
        for y in ref_starts(volume.shape[1], patch, stride):
            for x in ref_starts(volume.shape[2], patch, stride):
                tile = volume[z, y:y + patch, x:x + patch][None, None]
                mean = sum(t.inverse(predict(t.forward(tile))).double().cpu()
                           for t in transforms) / len(transforms)
                num[y:y + patch, x:x + patch] += mean[0, 0] * weight
                den[y:y + patch, x:x + patch] += weight
        out[z] = num / den
    return out


def ours_fn(predict, patch: int, batch: int, device: torch.device, batch_tta: bool):
    tta = partial(predict_with_tta, predict, spatial_dims=2, batched=batch_tta)

    def run(volume: torch.Tensor) -> torch.Tensor:
        return sliding_window_predict_stack(tta, volume[:, None], (patch, patch), 0.5, "spline",
                                            batch_size=batch, device=device)[:, 0]
    return run


def network_only_fn(predict, patch: int, batch: int, device: torch.device, batch_tta: bool,
                    windows_per_slice: int):
    """The network alone: as many calls, with as many images each, as ours makes, on one batch
    made beforehand. No tool that runs these windows through this network can be faster, so
    (MONAI's seconds / these seconds) bounds what any sliding-window code can gain over MONAI."""
    per_call = batch * 8 if batch_tta else batch
    inputs = torch.rand((per_call, 1, patch, patch), generator=torch.Generator().manual_seed(1))
    inputs = inputs.to(device)

    def run(volume: torch.Tensor) -> None:
        full, rest = divmod(windows_per_slice * 8 * volume.shape[0], per_call)
        for _ in range(full):
            predict(inputs)
        if rest:
            predict(inputs[:rest])
    return run


def monai_fns(predict, patch: int, batch: int, device: torch.device, batch_tta: bool
              ) -> dict[str, Any]:
    """MONAI with the same images per network call as ours: ``batch`` windows x 8 copies when
    TTA is batched, ``batch`` windows otherwise."""
    from monai.inferers import sliding_window_inference  # noqa: PLC0415 (optional extra)

    weight = make_window((patch, patch), "spline").to(device)
    transforms = tta_transforms(2)

    def swi(volume: torch.Tensor, predictor, sw_batch: int) -> torch.Tensor:
        return sliding_window_inference(volume, (patch, patch), sw_batch, predictor,
                                        overlap=0.5, mode="constant", roi_weight_map=weight,
                                        sw_device=device, device=device)

    per_call = batch * len(transforms) if batch_tta else batch

    def volume_tta(volume: torch.Tensor) -> torch.Tensor:  # 8 sliding-window passes
        total = None
        for t in transforms:
            out = t.inverse(swi(t.forward(volume[:, None]), predict, per_call))
            total = out if total is None else total + out
        return (total / len(transforms))[:, 0]

    def window_tta(volume: torch.Tensor) -> torch.Tensor:  # our TTA as the predictor
        tta = partial(predict_with_tta, predict, spatial_dims=2, batched=batch_tta)
        return swi(volume[:, None], tta, batch)[:, 0]

    return {"monai_volume_tta": volume_tta, "monai_window_tta": window_tta}


def measure(fn, volume: torch.Tensor, device: torch.device) -> tuple[float, dict, torch.Tensor]:
    with PeakMemory(device) as memory:
        seconds, out = timed(lambda: fn(volume), device)
    return seconds, memory.result, out


def summary(times: list[float], memory: dict[str, Any], depth: int, windows_per_slice: int
            ) -> dict[str, Any]:
    """Median seconds over rounds, and the throughput and extrapolation from it."""
    seconds = statistics.median(times)
    per_slice = seconds / depth
    return {"seconds": rounded(seconds), "rounds_s": [rounded(t) for t in times],
            "per_slice_s": rounded(per_slice),
            f"extrapolated_{FULL_DEPTH}_slices_s": rounded(per_slice * FULL_DEPTH),
            "network_images_per_s": rounded(windows_per_slice * 8 * depth / seconds),
            "memory": memory}


def run_rounds(methods: dict[str, Any], volume: torch.Tensor, warmup: torch.Tensor,
               device: torch.device, rounds: int) -> tuple[dict[str, list[float]],
                                                           dict[str, dict], dict[str, Any]]:
    """Every method once per round, the order rotated each round, so drift on a shared
    machine spreads over all methods instead of favouring the one that runs first. Returns
    seconds per method and round, the memory of each method's first round, and each method's
    output (from its first round; the runs are deterministic)."""
    names = list(methods)
    for fn in methods.values():
        fn(warmup)
    times: dict[str, list[float]] = {name: [] for name in names}
    memory: dict[str, dict] = {}
    outputs: dict[str, Any] = {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds, mem, out = measure(methods[name], volume, device)
            times[name].append(seconds)
            memory.setdefault(name, mem)
            if name not in outputs:
                outputs[name] = out
            del out
    return times, memory, outputs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    s = settings_from(args, device)
    with json_report(s, device) as report:
        torch.backends.cudnn.benchmark = s["cudnn_benchmark"]  # for every method alike
        torch.manual_seed(s["seed"])
        net = UNetPaper002(spatial_dims=2)
        generator = torch.Generator().manual_seed(s["seed"])
        volume = torch.rand((s["depth"], s["height"], s["width"]), generator=generator)
        volume = volume.to(device)
        patch, stride = s["window"], s["window"] // 2
        tiles = len(ref_starts(s["height"], patch, stride)) * len(ref_starts(s["width"], patch,
                                                                               stride))
        s["windows_per_slice"] = tiles
        # warm-up: cuDNN/compile on the real shapes on a GPU; one window on the CPU
        warmup = volume[:min(4, s["depth"])] if device.type == "cuda" else \
            volume[:1, :patch, :patch]
        predict = net_predictor(net, device, s["precision"], s["channels_last"], s["compile"])
        methods = {"ours": ours_fn(predict, patch, s["batch_windows"], device, s["batch_tta"]),
                   "network_only": network_only_fn(predict, patch, s["batch_windows"], device,
                                                   s["batch_tta"], tiles)}
        # with --compile, the same network uncompiled too: what compiling gains, and MONAI as
        # its documentation runs it (an eager network)
        eager = net_predictor(net, device, s["precision"], s["channels_last"]) \
            if s["compile"] else None
        if eager is not None:
            methods["network_only_eager"] = network_only_fn(eager, patch, s["batch_windows"],
                                                            device, s["batch_tta"], tiles)
        try:
            methods.update(monai_fns(predict, patch, s["batch_windows"], device, s["batch_tta"]))
            if eager is not None:
                methods["monai_volume_tta_eager"] = monai_fns(
                    eager, patch, s["batch_windows"], device, s["batch_tta"])["monai_volume_tta"]
            import monai  # noqa: PLC0415
            report["monai"] = {"available": True, "version": monai.__version__,
                               "note": "MONAI clamps window weights below 1e-3 (ours floor at "
                                       "1e-8 in the corners), so it differs slightly near "
                                       "window borders"}
        except ImportError as error:
            report["monai"] = {"available": False, "reason": str(error),
                               "install": MONAI_EXTRA}
        times, memory, outputs = run_rounds(methods, volume, warmup, device, s["rounds"])
        ours_out = outputs["ours"]
        results = {name: summary(times[name], memory[name], s["depth"], tiles)
                   for name in methods}
        network = results["network_only"]["seconds"]
        for name in methods:
            if not name.startswith("network_only"):
                results[name]["network_share"] = rounded(network / results[name]["seconds"], 3)
            if name == "ours" or name.startswith("network_only"):
                continue
            diff = float((outputs[name] - ours_out).abs().max())
            results[name]["max_abs_diff_vs_ours"] = rounded(diff)
            results[name]["ours_speedup"] = rounded(results[name]["seconds"]
                                                    / results["ours"]["seconds"], 3)
            results[name]["largest_possible_speedup"] = rounded(
                results[name]["seconds"] / network, 3)
            results[name]["ours_speedup_per_round"] = [
                rounded(theirs / ours, 3) for theirs, ours in zip(times[name], times["ours"])]
        del outputs
        if "network_only_eager" in results:
            results["compile_gain_network"] = rounded(
                results["network_only_eager"]["seconds"] / network, 3)
        report["results"] = results
        report["exactness"] = exactness(net, volume, ours_out, s, device)
        report["reference_loop"] = report["exactness"].pop("reference_timing")


def exactness(net, volume: torch.Tensor, ours_out: torch.Tensor, s: dict[str, Any],
              device: torch.device) -> dict[str, Any]:
    """Ours in fp32 (TF32 off) against the reference loop on the first ref_depth slices."""
    depth, patch = s["ref_depth"], s["window"]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    plain = net_predictor(net, device, "32-true")
    part = volume[:depth]
    # the timed output is reused only where it was made in true fp32: on a GPU it was made with
    # TF32 convolutions (cuDNN's default), which are off only from here on
    reuse = device.type == "cpu" and s["precision"] == "32-true" and not s["channels_last"] \
        and not s["compile"]
    fp32 = ours_out[:depth] if reuse else ours_fn(plain, patch, s["batch_windows"], device,
                                                          s["batch_tta"])(part)
    seconds, reference = timed(lambda: reference_loop(plain, part, patch, patch // 2), device)
    synchronize(device)
    diff = float((fp32.double().cpu() - reference).abs().max())
    result = {"slices": depth, "ours_fp32_vs_reference_max_abs": diff, "target": 1e-5,
              "within_target": diff <= 1e-5,
              "reference_timing": {"slices": depth, "seconds": rounded(seconds),
                                   "per_slice_s": rounded(seconds / depth),
                                   "note": "one window and one transform per network call"}}
    if not reuse:
        timed_part = ours_out[:depth].double().cpu()
        result[f"{s['precision']}_vs_fp32_max_abs"] = float((timed_part - fp32.double().cpu())
                                                            .abs().max())
    return result


if __name__ == "__main__":
    main()
