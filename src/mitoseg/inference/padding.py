"""Pad the spatial axes of a tensor up to a size, and crop back: the one padding helper.

Networks pad inputs whose size is not a multiple of their stride (centred, ``pad_to_multiple``
/ ``crop_to``); sliding-window and whole-image inference pad inputs smaller than a patch or
than a divisor at the far end (``pad_spatial(..., centred=False, short="repeat")``). It lives
in ``inference`` because the networks of ``models`` may import it, while ``inference`` never
imports ``models``.

Padding mirrors the border (reflection about the edge voxel, numpy's 'reflect'): it keeps
image statistics at the border, where zero padding would look like a dark frame. The only
choice is what happens when an axis is too short to mirror its padding once (``short``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SHORT_AXES = ("replicate", "repeat")


def pad_spatial(x: torch.Tensor, target: Sequence[int], *, centred: bool = True,
                short: str = "replicate") -> torch.Tensor:
    """Pad the trailing ``len(target)`` axes of ``x`` up to ``target`` by reflection.

    Args:
        x: a tensor whose last ``len(target)`` axes are spatial.
        target: the size per spatial axis, each >= the axis' length.
        centred: split each axis' padding as (missing // 2 before, the rest after), which
            ``crop_to`` undoes; False pads at the far end only (crop with ``[..., :n]``).
        short: what happens when the padding is too long to mirror the input once:
            "replicate": if every spatial axis is longer than the widest padding, reflection;
            otherwise every axis is padded by replicating its edge value (the networks' rule);
            "repeat": per axis, the reflection repeats with period 2 (n - 1) as numpy's
            'reflect' does, and an axis of length 1 is repeated (inference's rule).
    """
    if short not in SHORT_AXES:
        raise ValueError(f"pad_spatial: short must be one of {SHORT_AXES}, got {short!r}")
    size = tuple(x.shape[x.ndim - len(target):])
    splits = []
    for length, want in zip(size, target):
        missing = want - length
        splits.append((missing // 2, missing - missing // 2) if centred else (0, missing))
    if short == "repeat":
        return _reflect_repeatedly(x, splits)
    pads = [p for split in reversed(splits) for p in split]  # F.pad: last axis first
    if not any(pads):
        return x
    return F.pad(x, pads, mode="reflect" if min(size) > max(pads) else "replicate")


def _reflect_repeatedly(x: torch.Tensor, splits: Sequence[tuple[int, int]]) -> torch.Tensor:
    """numpy's 'reflect' by index reflection, so padding longer than the axis works."""
    offset = x.ndim - len(splits)
    for axis, (before, after) in enumerate(splits, start=offset):
        if before <= 0 and after <= 0:
            continue
        n = x.shape[axis]
        idx = np.arange(-before, n + after)
        if n > 1:
            period = 2 * (n - 1)
            idx = np.abs(idx) % period
            idx = np.where(idx < n, idx, period - idx)
        else:
            idx = np.zeros(n + before + after, dtype=np.int64)
        x = x.index_select(axis, torch.as_tensor(idx, device=x.device))
    return x


def pad_to_multiple(x: torch.Tensor,
                    multiple: int | Sequence[int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial dims of ``x`` (N, C, *spatial), centred, up to a multiple of ``multiple``
    (one number for every axis, or one per spatial axis).

    Returns the padded tensor and the original spatial size, for ``crop_to``.
    """
    size = tuple(x.shape[2:])
    multiples = ([int(multiple)] * len(size) if isinstance(multiple, numbers.Integral)
                 else [int(m) for m in multiple])
    if len(multiples) != len(size):
        raise ValueError(f"pad_to_multiple: {len(multiples)} multiples for {len(size)} "
                         "spatial axes")
    return pad_spatial(x, [-(-n // m) * m for n, m in zip(size, multiples)]), size


def crop_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Undo a centred ``pad_spatial``: take the centred window of the original size."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]
