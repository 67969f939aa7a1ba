"""Training/validation split of an EM training volume, and slice lists written as ranges.

2D: validation is a random 10 % of the slices (paper 002). 3D: validation is one contiguous
block of slices, and training uses every other slice, on both sides of the block; a 3D patch
never crosses the block. The block is placed (seeded) only where each side left for training
is either empty or at least one patch deep, so no training slice is dropped and every seed
works.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mitoseg.errors import InputError


def contiguous_runs(indices: Iterable[int]) -> list[list[int]]:
    """Sorted, distinct ``indices`` cut into runs of consecutive values."""
    runs: list[list[int]] = []
    for z in sorted(set(int(i) for i in indices)):
        if runs and z == runs[-1][-1] + 1:
            runs[-1].append(z)
        else:
            runs.append([z])
    return runs


def slice_ranges(indices: Iterable[int]) -> list[list[int]]:
    """``[[first, last], ...]`` (inclusive) of the runs of consecutive slices in ``indices``."""
    return [[run[0], run[-1]] for run in contiguous_runs(indices)]


def validation_block_starts(depth: int, n_val: int, patch_depth: int) -> list[int]:
    """First slices where an ``n_val``-slice validation block may start in a ``depth``-slice
    volume so that each training side is empty or holds a ``patch_depth``-slice patch."""
    left_over = depth - n_val
    if left_over < patch_depth:
        raise InputError(f"3D split: {depth} training slices less {n_val} for validation leave "
                         f"{left_over}, fewer than the patch depth {patch_depth}; lower "
                         "dataset.patch_size[0] or dataset.val_fraction")
    return [start for start in range(left_over + 1)
            if all(side == 0 or side >= patch_depth for side in (start, left_over - start))]


def validation_split(depth: int, val_fraction: float, patch_size: Sequence[int],
                     seed: int) -> tuple[list[int], list[int]]:
    """``(train_z, val_z)`` of a ``depth``-slice training volume: every slice is in exactly one.

    ``patch_size`` of 2 values: ``val_z`` is a random set; of 3 values: a contiguous block.
    ``val_fraction`` 0: no validation, every slice trains.
    """
    if val_fraction <= 0:
        return list(range(depth)), []
    n_val = max(1, int(round(val_fraction * depth)))
    if n_val >= depth:
        raise InputError(f"validation split: {depth} training slice(s) cannot give {n_val} to "
                         f"validation (dataset.val_fraction = {val_fraction}) and keep any")
    rng = np.random.default_rng(seed)
    if len(patch_size) == 2:
        val_z = sorted(rng.choice(depth, n_val, replace=False).tolist())
    else:
        starts = validation_block_starts(depth, n_val, int(patch_size[0]))
        start = starts[int(rng.integers(len(starts)))]
        val_z = list(range(start, start + n_val))
    held = set(val_z)
    return [z for z in range(depth) if z not in held], val_z
