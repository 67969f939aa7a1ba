"""AS, ABD, DAS and DDS over 630 mask quadruples of 200 x 200: ours against brute force.

Per mask A (procedural mitochondria): its deformation A_D (erosion by 1 or dilation by 1-3 px,
as paper 000), a "prediction" B (A smoothed and thresholded with smooth noise, so boundaries
move by a few pixels and small false objects appear) and B_D (the same noise on A_D).
Ours: mitoseg.metrics.segmentation.deformation_metrics, one quadruple at a time (and, timed
apart, the four single-metric functions, and the numpy search where numba is installed). Brute force:
boundaries by binary erosion, then scipy.spatial.distance.cdist between the two boundary pixel
sets. Also timed: two Euclidean distance transforms per ABD (what mitoseg used before).
All three must give the same values.

    python benchmarks/bench_metrics.py
    python benchmarks/bench_metrics.py --quick
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from _common import add_common_args, apply_threads, json_report, pick_device, rounded
from mitoseg.metrics import boundary_distance
from mitoseg.metrics.segmentation import (
    area_similarity,
    average_boundary_distance,
    deformation_area_similarity,
    deformation_distance_similarity,
    deformation_metrics,
)
from mitoseg.synth.fluorescence import deform
from mitoseg.synth.procedural_masks import ProceduralMaskConfig, generate_masks

DEFORMATIONS = (-1, 1, 2, 3)
METRICS = ("as", "abd", "das", "dds")
CROSS = ndimage.generate_binary_structure(2, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--masks", type=int, default=None, help="default 630 (paper 000)")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def predicted(mask: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(float), 1.5) + noise > 0.5


def quadruples(count: int, size: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    masks = generate_masks(seed, count, ProceduralMaskConfig(shape=(size, size)))
    out = []
    for i, a in enumerate(masks):
        rng = np.random.default_rng([seed, i])
        noise = ndimage.gaussian_filter(rng.standard_normal(a.shape), 3.0)
        noise *= 0.25 / noise.std()
        a_d = deform(a, DEFORMATIONS[i % len(DEFORMATIONS)])
        out.append((a, a_d, predicted(a, noise), predicted(a_d, noise)))
    return out


def ours(a: np.ndarray, a_d: np.ndarray, b: np.ndarray, b_d: np.ndarray) -> tuple[float, ...]:
    metrics = deformation_metrics(a, a_d, b, b_d)
    return metrics["as"], metrics["abd"], metrics["das"], metrics["dds"]


def ours_four_calls(a: np.ndarray, a_d: np.ndarray, b: np.ndarray,
                    b_d: np.ndarray) -> tuple[float, ...]:
    return (area_similarity(a, b), average_boundary_distance(a, b),
            deformation_area_similarity(a, a_d, b, b_d),
            deformation_distance_similarity(a, a_d, b, b_d))


def ours_numpy(a: np.ndarray, a_d: np.ndarray, b: np.ndarray, b_d: np.ndarray) -> tuple[float, ...]:
    """ours with the numpy search even where numba is installed."""
    saved = boundary_distance.USE_COMPILED
    boundary_distance.USE_COMPILED = False
    try:
        return ours(a, a_d, b, b_d)
    finally:
        boundary_distance.USE_COMPILED = saved


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, CROSS, border_value=0)


def abd_brute(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.argwhere(edge(a)), np.argwhere(edge(b))
    if len(pa) == 0 and len(pb) == 0:
        return 0.0
    if len(pa) == 0 or len(pb) == 0:
        return math.hypot(*a.shape)
    d = cdist(pa, pb)
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(pa) + len(pb)))


def abd_edt(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = edge(a), edge(b)
    na, nb = np.count_nonzero(sa), np.count_nonzero(sb)
    if na == 0 and nb == 0:
        return 0.0
    if na == 0 or nb == 0:
        return math.hypot(*a.shape)
    total = (ndimage.distance_transform_edt(~sb)[sa].sum()
             + ndimage.distance_transform_edt(~sa)[sb].sum())
    return float(total / (na + nb))


def with_abd(abd):
    def metrics(a, a_d, b, b_d) -> tuple[float, ...]:
        denominator = abd(a, a_d)
        dds = float("nan") if denominator == 0 else abd(b, b_d) / denominator
        return iou(a, b), abd(a, b), iou(a ^ a_d, b ^ b_d), dds
    return metrics


def run(fn, data: list[tuple[np.ndarray, ...]]) -> tuple[float, float, np.ndarray]:
    """(first call s, timed s, values): the first call (numba loads or compiles its kernels
    then) is timed apart, and every mask, the first included, is timed after it."""
    start = time.perf_counter()
    fn(*data[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    values = np.array([fn(*q) for q in data], dtype=float)
    return first, time.perf_counter() - start, values


def max_abs_diff(x: np.ndarray, y: np.ndarray) -> float:
    both_nan = np.isnan(x) & np.isnan(y)
    if (np.isnan(x) != np.isnan(y)).any():
        return float("inf")
    return float(np.abs(np.where(both_nan, 0.0, x - y)).max(initial=0.0))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    count = args.masks or (20 if args.quick else 630)
    settings = {"quick": args.quick, "masks": count, "size": [args.size, args.size],
                "deformations_px": list(DEFORMATIONS), "connectivity": 1, "seed": args.seed,
                "abd_evaluations_per_mask": 3,
                "abd_search": "numba" if (boundary_distance.USE_COMPILED and
                                          boundary_distance.compiled.AVAILABLE) else "numpy"}
    with json_report(settings, pick_device("cpu")) as report:
        started = time.perf_counter()
        data = quadruples(count, args.size, args.seed)
        report["data_seconds"] = rounded(time.perf_counter() - started)
        timings: dict[str, Any] = {}
        values = {}
        for name, fn in (("ours", ours), ("ours_four_calls", ours_four_calls),
                         ("ours_numpy_search", ours_numpy),
                         ("brute_force_cdist", with_abd(abd_brute)),
                         ("distance_transform", with_abd(abd_edt))):
            first, seconds, values[name] = run(fn, data)
            timings[name] = {"seconds": rounded(seconds),
                             "ms_per_mask": rounded(1000 * seconds / count),
                             "first_call_s": rounded(first)}
        brute = timings["brute_force_cdist"]["seconds"]
        timings["speedup_vs_brute_force"] = rounded(brute / timings["ours"]["seconds"], 3)
        timings["four_calls_speedup_vs_brute_force"] = rounded(
            brute / timings["ours_four_calls"]["seconds"], 3)
        timings["numpy_search_speedup_vs_brute_force"] = rounded(
            brute / timings["ours_numpy_search"]["seconds"], 3)
        timings["distance_transform_speedup_vs_brute_force"] = rounded(
            brute / timings["distance_transform"]["seconds"], 3)
        timings["target_speedup"] = 50
        report["results"] = timings
        brute_values = values["brute_force_cdist"]
        diffs = {f"{m}_max_abs_diff_vs_brute_force": max_abs_diff(values["ours"][:, i],
                                                                   brute_values[:, i])
                 for i, m in enumerate(METRICS)}
        diffs["four_calls_max_abs_diff_vs_ours"] = max_abs_diff(values["ours_four_calls"],
                                                                values["ours"])
        diffs["numpy_search_max_abs_diff_vs_brute_force"] = max_abs_diff(
            values["ours_numpy_search"], brute_values)
        diffs["distance_transform_max_abs_diff_vs_brute_force"] = max(
            max_abs_diff(values["distance_transform"][:, i], values["brute_force_cdist"][:, i])
            for i in range(len(METRICS)))
        worst = max(v for k, v in diffs.items() if not k.startswith("distance_transform"))
        diffs["identical"] = worst <= 1e-9
        report["exactness"] = diffs
        report["mean_values"] = {m: float(np.nanmean(values["ours"][:, i]))
                                 for i, m in enumerate(METRICS)}
        report["undefined_dds"] = int(np.isnan(values["ours"][:, 3]).sum())


if __name__ == "__main__":
    main()
