"""Median Z-filtering (paper 002): a 1D median along Z across consecutive slices.

Each voxel is replaced by the median of the ``size`` voxels at the same (y, x) position in the
neighbouring slices, so a detection present in a single slice disappears while anything that
persists across slices, however thin in-plane, survives. This is deliberately not a 2D median
in (z, y) planes, which would also erode thin in-plane structures.

Earlier public code for this step ran OpenCV's 2D medianBlur on each (z, y) plane (the trap);
later versions use scipy.ndimage.median_filter with size (k, 1, 1), as done here.

Border mode: 'reflect' by default (scipy's default, as in that corrected code): past the ends
the slices are mirrored including the edge slice, so with size 5 the first slice's window is
[s1, s0, s0, s1, s2]. 'nearest' (repeat the edge slice) and 'mirror' are available.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from mitoseg.errors import InputError

BORDER_MODES = ("reflect", "nearest", "mirror")


def median_z_filter(volume: np.ndarray | torch.Tensor, size: int = 5, mode: str = "reflect"
                    ) -> np.ndarray | torch.Tensor:
    """Median over a window of ``size`` slices along axis 0 of (D, ...); other axes untouched.

    Args:
        volume: (D, H, W) probabilities or a binary mask (any axes after the first are
            treated independently).
        size: odd window length >= 1; 1 returns an unchanged copy.
        mode: border handling along Z, one of BORDER_MODES (scipy.ndimage semantics).

    Returns:
        Same type (numpy array or tensor), shape and dtype as ``volume``.
    """
    if not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise InputError(f"z-filter 'size' must be an odd int >= 1, got {size!r}")
    if mode not in BORDER_MODES:
        raise InputError(f"z-filter 'mode' must be one of {BORDER_MODES}, got {mode!r}")
    is_tensor = isinstance(volume, torch.Tensor)
    array = volume.detach().cpu().numpy() if is_tensor else np.asarray(volume)
    if array.ndim < 1:
        raise InputError("z-filter 'volume' must have a Z axis, got a scalar")
    footprint_size = (int(size),) + (1,) * (array.ndim - 1)
    # bool through uint8: the median of 0/1 values is a majority vote either way
    work = array.astype(np.uint8) if array.dtype == bool else array
    filtered = ndimage.median_filter(work, size=footprint_size, mode=mode).astype(array.dtype)
    if is_tensor:
        return torch.from_numpy(filtered).to(volume.device)
    return filtered
