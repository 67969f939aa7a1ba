"""Where ground-truth masks come from: the embedded procedural generator or a folder of files.

Both give a ``MaskSet``: the masks, an id per mask, and a group per mask. Masks of one group
are views of the same crop (paper 000 adds five flips/rotations of every manual crop), so
train/val/test splits are made by group, never by mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mitoseg.data.image_io import list_image_files, read_mask
from mitoseg.errors import InputError
from mitoseg.runs.paths import display_path
from mitoseg.synth.procedural_masks import ProceduralMaskConfig, generate_masks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskSet:
    masks: np.ndarray  # bool (N, H, W), mitochondria True
    ids: list[str]
    groups: np.ndarray  # int (N,)
    description: str
    notes: dict = field(default_factory=dict)
    # int (N,) or None: the split's clusters (groups joined with every pair of files that share
    # a region, mitoseg.data.leak_free_split), set once a split has been made
    clusters: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (len(self.masks) == len(self.ids) == len(self.groups)):
            raise ValueError("MaskSet: masks, ids and groups must have the same length")
        if self.clusters is not None and len(self.clusters) != len(self.groups):
            raise ValueError("MaskSet: clusters and groups must have the same length")

    def __len__(self) -> int:
        return len(self.masks)

    def subset(self, indices: np.ndarray) -> MaskSet:
        indices = np.asarray(indices, dtype=int)
        return MaskSet(self.masks[indices], [self.ids[i] for i in indices],
                       self.groups[indices], self.description, self.notes,
                       None if self.clusters is None else self.clusters[indices])


def procedural_mask_set(count: int = 630, seed: int = 0, shape: tuple[int, int] = (200, 200),
                        foreground_fraction: tuple[float, float] = (0.03, 0.25),
                        width_px: tuple[float, float] = (4.0, 10.0),
                        kind_weights: dict[str, float] | None = None) -> MaskSet:
    """The embedded default: ``count`` seeded mitochondria-like masks, each its own group."""
    if count < 1:
        raise InputError(f"procedural masks: 'count' must be >= 1, got {count}")
    options = dict(shape=tuple(shape), foreground_fraction=tuple(foreground_fraction),
                   width_px=tuple(width_px))
    if kind_weights is not None:
        options["kind_weights"] = dict(kind_weights)
    masks = generate_masks(int(seed), int(count), ProceduralMaskConfig(**options))
    ids = [f"procedural-{seed}-{index}" for index in range(count)]
    return MaskSet(masks, ids, np.arange(count), f"procedural masks (seed {seed}, n={count})")


def folder_mask_set(path: str, polarity: str = "auto", group_size: int = 1,
                    limit: int | None = None) -> MaskSet:
    """Binary masks from a folder of TIF/PNG files, all of one shape.

    group_size > 1 groups files whose numeric names n share (n - 1) // group_size: the layout
    of paper 000's published masks, where files 1-6 are one crop and its five flips/rotations.
    Every group must then be complete, or the folder is not in that layout.
    """
    files = list_image_files(Path(path).expanduser(), what="mask")
    if limit is not None:
        files = files[: int(limit)]
    masks, inverted_files = [], 0
    for file in files:
        mask, inverted = read_mask(file, polarity)
        if masks and mask.shape != masks[0].shape:
            raise InputError(f"mask '{file}' has shape {mask.shape}, expected {masks[0].shape} "
                             f"like '{files[0]}' (all masks of a folder must match)")
        masks.append(mask)
        inverted_files += inverted
    groups = _groups_from_names(files, group_size)
    shown = display_path(path)
    message = (f"read {len(files)} masks from '{shown}' ({len(set(groups.tolist()))} groups); "
               f"polarity={polarity}: {inverted_files} inverted so that mitochondria are True; "
               f"foreground fraction {np.mean(masks):.3f}")
    log.info(message)
    return MaskSet(np.stack(masks), [f.stem for f in files], groups, f"mask folder '{shown}'",
                   {"polarity": polarity, "inverted_files": inverted_files, "message": message})


def _groups_from_names(files: list[Path], group_size: int) -> np.ndarray:
    if group_size < 1:
        raise InputError(f"mask folder: 'group_size' must be >= 1, got {group_size}")
    if group_size == 1:
        return np.arange(len(files))
    try:
        numbers = np.array([int(f.stem) for f in files])
    except ValueError as error:
        raise InputError(f"mask folder: group_size={group_size} needs numeric file names "
                         f"(1.tif, 2.tif, ...); {error}") from error
    groups = (numbers - 1) // group_size
    _, counts = np.unique(groups, return_counts=True)
    if np.any(counts != group_size):
        incomplete = np.unique(groups)[counts != group_size][:5]
        raise InputError(f"mask folder: groups of {group_size} consecutive numbers expected, "
                         f"but groups starting at {(incomplete * group_size + 1).tolist()} are "
                         "incomplete (set group_size: 1 if the files are independent)")
    return groups


def split_by_group(groups: np.ndarray, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Indices of train/val/test, made of whole groups, shuffled by ``seed``.

    ``sizes`` gives the number of masks wanted in 'val' and 'test' (paper 000: 500/100/30 of
    630); everything else is 'train'. Groups are taken in a seeded order, 'test' first,
    skipping any group that would overshoot the number wanted; if the number is not reached
    then, the remaining group that overshoots least is added. So a split has at least the
    number wanted, at least one group, and more only by less than its last group (groups of
    6 and 100 wanted: 102). Groups larger than the number wanted stay in training unless
    nothing else is left.
    """
    unknown = set(sizes) - {"val", "test"}
    if unknown:
        raise InputError(f"split sizes: unknown split(s) {sorted(unknown)}; give 'val' and 'test'")
    unique, counts = np.unique(groups, return_counts=True)
    available = [int(unit) for unit in np.random.default_rng(seed).permutation(len(unique))]
    taken: dict[str, list[int]] = {}
    for split in ("test", "val"):
        wanted, have, chosen = int(sizes.get(split, 0)), 0, []
        for unit in list(available):
            if have + counts[unit] <= wanted:
                chosen.append(unit)
                available.remove(unit)
                have += counts[unit]
        if (have < wanted or not chosen) and available:
            closest = min(available, key=lambda unit: counts[unit])  # first of the smallest
            chosen.append(closest)
            available.remove(closest)
        taken[split] = chosen
    if not available or not taken["test"] or not taken["val"]:
        raise InputError(f"split sizes {dict(sizes)} leave no training data: only "
                         f"{len(unique)} groups ({len(groups)} masks) are available")
    result = {}
    for split, chosen in (("train", available), ("val", taken["val"]), ("test", taken["test"])):
        result[split] = np.flatnonzero(np.isin(groups, unique[np.asarray(chosen, int)]))
    return result
