"""Which files of a folder of masks or images share a region (``leakage.py``), as a command:

    python -m mitoseg.data.folder_leakage ../shared/data/fluo-masks --polarity inverted
    python -m mitoseg.data.folder_leakage my_images/ --kind image --min-area 900

Prints the pairs, the clusters (files that must stay on one side of a split) and the time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.console import console_logging, emit
from mitoseg.data.image_io import list_image_files, read_image, read_mask
from mitoseg.data.leakage import OverlapReport, OverlapRule, find_overlaps
from mitoseg.errors import InputError

log = logging.getLogger(__name__)


def folder_overlaps(folder: str | Path, kind: str = "mask", polarity: str = "auto",
                    rule: OverlapRule | None = None) -> tuple[list[str], OverlapReport]:
    """(file names, report) for every 2D mask or image file of ``folder``."""
    if kind not in ("mask", "image"):
        raise InputError(f"overlap search: kind must be 'mask' or 'image', got {kind!r}")
    files = list_image_files(folder, what=kind)
    if kind == "mask":
        arrays = [read_mask(path, polarity)[0] for path in files]
    else:
        arrays = [read_image(path) for path in files]
        for path, array in zip(files, arrays):
            if array.ndim != 2:
                raise InputError(f"'{path}': expected a 2D image, got shape {array.shape}")
    return [path.name for path in files], find_overlaps(arrays, rule)


def summary(names: list[str], report: OverlapReport) -> dict[str, Any]:
    clusters = [[names[i] for i in np.flatnonzero(report.clusters == c)]
                for c in range(int(report.clusters.max()) + 1 if names else 0)]
    return {**report.to_dict(),
            "clusters_of_several_files": [c for c in clusters if len(c) > 1],
            "pairs_found": [{"files": [names[p.moved], names[p.fixed]], "view": p.view,
                             "shift": [p.dy, p.dx], "size": [p.height, p.width],
                             "mismatches": p.mismatches, "informative": p.informative}
                            for p in report.pairs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--kind", default="mask", choices=["mask", "image"])
    parser.add_argument("--polarity", default="auto", choices=["auto", "normal", "inverted"])
    parser.add_argument("--min-area", type=int, default=None)
    parser.add_argument("--min-informative", type=int, default=100)
    parser.add_argument("--max-mismatch-fraction", type=float, default=0.0)
    parser.add_argument("--pairs", action="store_true", help="list every pair found")
    args = parser.parse_args(argv)
    console_logging()
    try:
        rule = OverlapRule(min_area=args.min_area, min_informative=args.min_informative,
                           max_mismatch_fraction=args.max_mismatch_fraction)
        names, report = folder_overlaps(args.folder, args.kind, args.polarity, rule)
    except InputError as error:
        log.error("mitoseg: error: %s", error)
        return 2
    result = summary(names, report)
    if not args.pairs:
        result.pop("pairs_found")
    emit(json.dumps(result, indent=1))
    sizes = sorted((len(c) for c in result["clusters_of_several_files"]), reverse=True)
    log.info("%d files, %d pairs share a region, %d clusters (of several files: %s), %.2f s",
             len(names), len(report.pairs), result["clusters"], sizes, report.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
