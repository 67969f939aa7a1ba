"""Blending weight windows for overlapping-patch inference (2D or 3D, separable).

A window weighs each pixel of a predicted patch before the overlapping patches are summed and
divided by the summed weights. Down-weighting patch borders hides the jagged seams that appear
where a network sees little context (paper 002, Fig. 4). All windows are products of 1D
windows, sampled at pixel centres, scaled to a maximum of exactly 1 and floored at a small
positive value so every pixel of the image keeps a positive total weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mitoseg.errors import InputError

WINDOW_KINDS = ("constant", "gaussian", "spline")


def _triangle(size: int) -> np.ndarray:
    """Triangle in (0, 1] at pixel centres: 1/size at the edges, 1 at the centre (odd sizes).

    For even sizes this equals scipy.signal.windows.triang, the base of paper 002's window.
    """
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    return 1.0 - np.abs(2.0 * centres - 1.0)


def spline_1d(size: int) -> np.ndarray:
    """Paper 002's second-order spline window (unscaled, float64).

    Two quadratic pieces on the triangle t: ``2 t^2`` for t < 1/2 (rising from ~0 at the patch
    edge) and ``1 - 2 (1 - t)^2`` above (flat top). Both pieces meet at t = 1/2 with value 1/2
    and slope 2, so the window is C1-smooth, which is why it blends without visible steps.
    """
    t = _triangle(size)
    return np.where(t < 0.5, 2.0 * t**2, 1.0 - 2.0 * (1.0 - t) ** 2)


def gaussian_1d(size: int, sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian centred on the patch with sigma = sigma_scale * size (nnU-Net / MONAI: 1/8)."""
    sigma = sigma_scale * size
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    return np.exp(-0.5 * (offsets / sigma) ** 2)


def window_1d(size: int, kind: str = "spline", *, sigma_scale: float = 0.125,
              floor: float = 1e-4) -> np.ndarray:
    """One axis of a window: scaled to max 1, then floored at ``floor`` (float64)."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"window size must be a positive int, got {size!r}")
    if kind == "constant":
        return np.ones(size, dtype=np.float64)
    if kind == "gaussian":
        if not sigma_scale > 0:
            raise InputError(f"window option 'sigma_scale' must be > 0, got {sigma_scale}")
        values = gaussian_1d(int(size), sigma_scale)
    elif kind == "spline":
        values = spline_1d(int(size))
    else:
        raise InputError(f"window 'kind' must be one of {WINDOW_KINDS}, got {kind!r}")
    if not 0.0 < floor <= 1.0:
        raise InputError(f"window option 'floor' must be in (0, 1], got {floor}")
    return np.maximum(values / values.max(), floor)


def window(shape: Sequence[int], kind: str = "spline", *, sigma_scale: float = 0.125,
           floor: float = 1e-4) -> torch.Tensor:
    """Separable weight window of the given patch shape (any number of axes), float32.

    Args:
        shape: patch size per spatial axis, e.g. (256, 256) or (80, 80, 80).
        kind: "constant" (plain averaging), "gaussian" (sigma = size/8 per axis by default, as
            in nnU-Net / MONAI) or "spline" (paper 002's second-order spline window).
        sigma_scale: Gaussian sigma as a fraction of the axis size.
        floor: smallest weight per axis; keeps border pixels of the image positively weighted
            even where only one patch covers them.

    Returns:
        Tensor of ``shape`` with maximum 1 (reached at the centre) and all values > 0.

    Example:
        >>> window((5, 7), "spline").shape
        torch.Size([5, 7])
    """
    shape = tuple(shape)
    if len(shape) == 0:
        raise InputError("window 'shape' must have at least one axis, got ()")
    result = np.ones((), dtype=np.float64)
    for size in shape:
        result = np.multiply.outer(result, window_1d(size, kind, sigma_scale=sigma_scale,
                                                     floor=floor))
    return torch.from_numpy(result.astype(np.float32))
