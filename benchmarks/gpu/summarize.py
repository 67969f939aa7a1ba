"""Summarize a GPU check's Lucchi results folders: python benchmarks/gpu/summarize.py <folder>...

One line per run: the yardstick's JSON (benchmarks/reference_lucchi.py) or the framework's
metrics.json (experiment=lucchi_fast), then mean and std over seeds of each, then the speed of
the framework against the yardstick for each seed that has both. Other JSON files are left out.

Each line gives the test IoU fg (full image, 8-fold TTA, z-median 5) both ways: the mean over
the slices (paper 002's, the headline since 2026-12-05, which the means over seeds use) and
the voxels pooled over the volume, and their difference. Results from before then, whose
headline ``iou_fg`` was the pooled one, read the same: each IoU is taken where both formats
name it.

The times are not like for like. The yardstick's ``train`` is its loop only, timed after CUDA
has started and the volumes are on the GPU. The framework's ``fit`` is all of trainer.fit:
Lightning's start-up, the upload of the volumes, cuDNN's first steps and the checkpoint
writes. So yardstick train / framework fit is a lower bound on the framework's relative speed.
``epochs``, the sum of the epoch times train.py logs (``<run>.log`` beside
``<run>_metrics.json``, as call2.sh writes them), leaves out the start-up and the checkpoint
writes; epoch 1 still holds the upload and the first steps, so it is a closer, still lower,
bound. Runs that shared the GPU (call2.sh's seeds 1 and up) time the sharing, not the code: only
runs made alone (seed 0) compare speeds.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics

EPOCH_LINE = re.compile(r" - epoch \d+(?:/\d+)?: .*\((\d+(?:\.\d+)?) s\)\s*$")
SEEDED = ("ref_s", "fast_s", "both_s")


def epoch_seconds(log_path: str) -> list[float]:
    """The epoch times of a train.py log (mitoseg.training.progress lines); [] without one."""
    try:
        with open(log_path) as stream:
            return [float(m.group(1)) for line in stream if (m := EPOCH_LINE.search(line))]
    except OSError:
        return []


def ious(data: dict) -> tuple[float, float] | None:
    """(mean over the slices, pooled) test IoU fg of a yardstick JSON or a framework
    metrics.json, old or new; None for any other JSON."""
    results = data.get("results")
    if isinstance(results, dict) and "full_image_tta_z5" in results.get("protocols", {}):
        headline = results["protocols"]["full_image_tta_z5"]
        return headline["iou_fg_mean_per_slice"], headline["iou_fg"]
    test = data.get("test")
    if isinstance(test, dict) and "iou_fg_mean_per_slice" in test:
        pooled = test.get("iou_fg_over_volume") or test["iou_fg"]  # older: iou_fg was pooled
        return test["iou_fg_mean_per_slice"]["mean"], pooled["mean"]
    return None


def summarize(folder: str) -> None:
    groups: dict[str, list[float]] = {}
    loop_seconds: dict[str, dict[str, float]] = {}  # seed -> yardstick run -> train seconds
    framework_seconds: dict[str, dict[str, float]] = {}  # seed -> "fit" / "epochs" -> seconds
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        name = os.path.basename(path)[:-5]
        try:
            data = json.load(open(path))
        except (OSError, ValueError) as error:
            print(f"{name}: no result ({error})")
            continue
        group = name.rsplit("_s", 1)[0] if name.startswith(SEEDED) else name
        seed = name.rsplit("_s", 1)[1].replace("_metrics", "") if name.startswith(SEEDED) \
            else None
        both = ious(data)
        if both is None:
            continue
        iou, pooled = both
        scores = f"{name}: iou_fg per slice {iou:.4f}, pooled {pooled:.4f} (per slice - " \
                 f"pooled {iou - pooled:+.4f})"
        if "results" in data:
            results = data["results"]
            protocols = {k: v["iou_fg"] for k, v in results["protocols"].items()}
            print(f"{scores}  train "
                  f"{results['train_seconds']} s (its loop only, after start-up and upload)  "
                  f"{results['images_per_second']} img/s  volume IoU per protocol {protocols}")
            if seed is not None:
                loop_seconds.setdefault(seed, {})[name] = results["train_seconds"]
        else:
            epochs = epoch_seconds(os.path.join(folder, name.replace("_metrics", "") + ".log"))
            timed = f"  epochs {sum(epochs):.1f} s (sum of the {len(epochs)} epoch times in " \
                    "the log)" if epochs else ""
            print(f"{scores}  fit {data.get('fit_seconds')} s (all of trainer.fit: start-up, volume "
                  f"upload, checkpoints){timed}")
            if seed is not None and data.get("fit_seconds"):
                framework_seconds[seed] = {"fit": data["fit_seconds"]}
                if epochs:
                    framework_seconds[seed]["epochs"] = sum(epochs)
        groups.setdefault(group.replace("_metrics", ""), []).append(iou)
    for group, values in groups.items():
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{group}: mean {statistics.mean(values):.4f} +- {spread:.4f} (std, n={len(values)})")
    for seed in sorted(set(loop_seconds) & set(framework_seconds)):
        framework = framework_seconds[seed]
        for name, train in loop_seconds[seed].items():
            closer = f"; train / framework epochs {train / framework['epochs']:.3f} (closer, " \
                     "still a lower bound)" if "epochs" in framework else ""
            print(f"speed, seed {seed}: {name} train / framework fit "
                  f"{train / framework['fit']:.3f} (a lower bound: fit also holds start-up, "
                  f"upload and checkpoints){closer}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="folders of results (call2.sh: $OUT/c2)")
    for number, folder in enumerate(parser.parse_args(argv).folders):
        if number:
            print()
        print(f"== {folder}")
        summarize(folder)


if __name__ == "__main__":
    main()
