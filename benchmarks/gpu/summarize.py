"""Summarize a GPU check's Lucchi results folder: python benchmarks/gpu/summarize.py <folder>.

One line per run: the yardstick's JSON (benchmarks/reference_lucchi.py) or the framework's
metrics.json (experiment=lucchi_fast), then mean and std over seeds of each.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys


def main(folder: str) -> None:
    groups: dict[str, list[float]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        name = os.path.basename(path)[:-5]
        try:
            data = json.load(open(path))
        except (OSError, ValueError) as error:
            print(f"{name}: no result ({error})")
            continue
        if "results" in data:
            results = data["results"]
            iou = results["iou_fg"]  # mean over the slices, as the framework's test/iou_fg
            protocols = {k: v["iou_fg"] for k, v in results["protocols"].items()}
            print(f"{name}: iou_fg {iou:.4f} (over the volume "
                  f"{results.get('iou_fg_over_volume', float('nan')):.4f})  train "
                  f"{results['train_seconds']} s  {results['images_per_second']} img/s  "
                  f"volume IoU per protocol {protocols}")
        elif "test" in data:
            iou = data["test"]["iou_fg"]["mean"]
            volume = (data["test"].get("iou_fg_over_volume") or {}).get("mean", float("nan"))
            print(f"{name}: iou_fg {iou:.4f} (over the volume {volume:.4f})  "
                  f"fit {data.get('fit_seconds')} s")
        else:
            continue
        group = name.rsplit("_s", 1)[0] if name.startswith(("ref_s", "fast_s", "both_s")) else name
        groups.setdefault(group.replace("_metrics", ""), []).append(iou)
    for group, values in groups.items():
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{group}: mean {statistics.mean(values):.4f} +- {spread:.4f} (std, n={len(values)})")


if __name__ == "__main__":
    main(sys.argv[1])
