"""Train/val/test splits that keep files sharing a region on one side (``leakage.py``).

The unit of a split is a cluster: the declared groups (paper 000's six views of a crop) joined
with every pair of files that share a region. ``split_by_group`` deals out whole clusters, and
``check_split`` then refuses any split in which two files on different sides are linked, so a
split that leaks never reaches training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitoseg.data.leakage import OverlapReport, OverlapRule, clusters_of, find_overlaps_cached
from mitoseg.data.mask_sources import split_by_group
from mitoseg.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LeakFreeSplit:
    """Indices per split, the clusters they were dealt from, and what data.json records."""

    indices: dict[str, np.ndarray]
    clusters: np.ndarray
    record: dict[str, Any]


def overlap_rule(options: Mapping[str, Any] | None, where: str) -> OverlapRule:
    """An ``OverlapRule`` from config options, naming the config node in errors."""
    known = set(OverlapRule.__dataclass_fields__)
    unknown = set(options or {}) - known
    if unknown:
        raise InputError(f"{where}: unknown option(s) {sorted(unknown)}; expected some of "
                         f"{sorted(known)}")
    return OverlapRule(**dict(options or {}))


def _links(groups: np.ndarray, report: OverlapReport) -> list[tuple[int, int]]:
    links = [pair.pair for pair in report.pairs]
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        links += [(int(members[0]), int(other)) for other in members[1:]]
    return links


def split_without_leaks(arrays: Sequence[np.ndarray], ids: Sequence[str], groups: np.ndarray,
                        sizes: Mapping[str, int], seed: int, rule: OverlapRule) -> LeakFreeSplit:
    """Split ``arrays`` (masks) by clusters of files that share a region; see module docs."""
    report = find_overlaps_cached(list(arrays), rule)
    links = _links(np.asarray(groups), report)
    clusters = clusters_of(len(arrays), links)
    try:
        indices = split_by_group(clusters, dict(sizes), seed)
    except InputError as error:
        largest = sorted(np.bincount(clusters).tolist(), reverse=True)[:6]
        raise InputError(f"{error}. Files that share a region (overlapping crops, flipped "
                         f"copies) must stay on one side: the {len(arrays)} files form "
                         f"{clusters.max() + 1} such clusters (largest: {largest} files); "
                         "use more files (e.g. a larger dataset.masks.limit) or smaller "
                         "split sizes") from error
    check_split(indices, links, ids)
    return LeakFreeSplit(indices, clusters, _record(report, clusters, indices, ids, groups,
                                                    len(links)))


def check_split(indices: Mapping[str, np.ndarray], links: Sequence[tuple[int, int]],
                ids: Sequence[str]) -> None:
    """Refuse a split in which linked files (same group, or sharing a region) differ in side."""
    side: dict[int, str] = {}
    for split, chosen in indices.items():
        side.update({int(i): split for i in chosen})
    crossing = [(a, b) for a, b in links if side.get(a) != side.get(b)]
    if crossing:
        shown = ", ".join(f"'{ids[a]}' ({side.get(a)}) with '{ids[b]}' ({side.get(b)})"
                          for a, b in crossing[:5])
        raise InputError(f"refusing a split that leaks: {len(crossing)} pair(s) of files that "
                         f"share a region are on different sides, e.g. {shown}")


def _record(report: OverlapReport, clusters: np.ndarray, indices: Mapping[str, np.ndarray],
            ids: Sequence[str], groups: np.ndarray, checked: int) -> dict[str, Any]:
    """For data.json: the search, the clusters of more than one group, the check's result."""
    members = [np.flatnonzero(clusters == c) for c in range(int(clusters.max()) + 1)]
    joined = [m for m in members if len(np.unique(groups[m])) > 1]
    return {
        "search": report.to_dict(),
        "clusters": {
            "count": len(members),
            "per_split": {split: len(np.unique(clusters[indices[split]])) for split in SPLITS},
            "of_several_groups": [[ids[i] for i in m] for m in joined],
        },
        "check": (f"passed: no file of one split shares a region with a file of another "
                  f"({checked} links between files checked)"),
    }
