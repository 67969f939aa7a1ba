"""Hashes of rectangles of 2D arrays, for finding identical regions fast (``leakage.py``).

A rectangle's hash is sum(code[y, x] * C**(y - top) * R**(x - left)) modulo 2**64, where codes
are the pixel values as unsigned integers (equal values, equal codes). It depends on the
rectangle's content only, not on where it lies, so equal content gives equal hashes; unequal
content rarely does, and every match is verified pixel by pixel afterwards anyway.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from mitoseg.errors import InputError

_MASK64 = (1 << 64) - 1
_ROW_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_COLUMN_BASE = 0xC2B2AE3D27D4EB4F


def dihedral_view(array: np.ndarray, view: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """View 0-3: ``view`` quarter turns (np.rot90); 4-7: the same after a left-right flip.
    A numpy view, not a copy."""
    if not 0 <= view < 8:
        raise ValueError(f"dihedral view must be 0..7, got {view}")
    flipped = np.flip(array, axes[1]) if view >= 4 else array
    return np.rot90(flipped, view % 4, axes)


def pixel_codes(array: np.ndarray, where: str) -> np.ndarray:
    """Pixel values as codes: uint8 for masks, uint64 otherwise; ``where`` names the array."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise InputError(f"overlap search: {where} has shape {array.shape}; expected a 2D array")
    if array.dtype == bool:
        return array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64).view(np.uint64)
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise InputError(f"overlap search: {where} must be bool, integer or finite float, got "
                         f"{array.dtype} (NaN/inf pixels cannot be compared)")
    return (array.astype(np.float64) + 0.0).view(np.uint64)  # + 0.0: -0.0 and 0.0 agree


@functools.lru_cache(maxsize=64)
def _powers(base: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """base**k and base**-k modulo 2**64 for k < count (read-only: they are shared)."""
    inverse = pow(base, -1, 1 << 64)
    forward, backward, f, b = [], [], 1, 1
    for _ in range(count):
        forward.append(f)
        backward.append(b)
        f, b = (f * base) & _MASK64, (b * inverse) & _MASK64
    forward_array, backward_array = np.array(forward, np.uint64), np.array(backward, np.uint64)
    forward_array.flags.writeable = backward_array.flags.writeable = False
    return forward_array, backward_array


def window_hashes(codes: np.ndarray, size: int) -> np.ndarray:
    """Hash of every ``size`` x ``size`` window of (..., H, W) codes, indexed by the window's
    top-left corner, from 2D prefix sums of the weighted codes (a few passes over the data)."""
    height, width = codes.shape[-2:]
    rows, rows_inverse = _powers(_ROW_BASE, width)
    columns, columns_inverse = _powers(_COLUMN_BASE, height)
    with np.errstate(over="ignore"):
        weighted = codes * (columns[:, None] * rows[None, :])
        prefix = np.zeros((*codes.shape[:-2], height + 1, width + 1), np.uint64)
        prefix[..., 1:, 1:] = weighted.cumsum(-2, dtype=np.uint64).cumsum(-1, dtype=np.uint64)
        window = (prefix[..., size:, size:] - prefix[..., :-size, size:]
                  - prefix[..., size:, :-size] + prefix[..., :-size, :-size])
        ny, nx = window.shape[-2:]
        return window * (columns_inverse[:ny, None] * rows_inverse[None, :nx])


@functools.lru_cache(maxsize=64)
def _weights(height: int, width: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        weights = _powers(_COLUMN_BASE, height)[0][:, None] * _powers(_ROW_BASE, width)[0]
    weights.flags.writeable = False
    return weights


def rectangle_hashes(rectangles: np.ndarray) -> np.ndarray:
    """One hash per stacked rectangle of codes (N, h, w); strided views are fine."""
    return weighted_hashes(rectangles, _weights(*rectangles.shape[1:]))


@functools.lru_cache(maxsize=512)
def viewed_rectangle(view: int, shape: tuple[int, int], rows: tuple[int, int],
                     columns: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
    """Where rectangle [rows) x [columns) of ``dihedral_view(array, view)`` lies in ``array`` of
    ``shape``, and the weights that hash it there: ``rectangle_hashes`` of the viewed
    rectangle equals the sum of ``array[ys, xs] * weights``, with no copy of the view."""
    flat = dihedral_view(np.arange(shape[0] * shape[1]).reshape(shape), view)
    source = flat[rows[0]:rows[1], columns[0]:columns[1]]
    ys, xs = source // shape[1], source % shape[1]
    top, left = int(ys.min()), int(xs.min())
    weights = np.empty((int(ys.max()) - top + 1, int(xs.max()) - left + 1), np.uint64)
    weights[ys - top, xs - left] = _weights(*source.shape)
    weights.flags.writeable = False
    return slice(top, top + weights.shape[0]), slice(left, left + weights.shape[1]), weights


def weighted_hashes(rectangles: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum(rectangle * weights) modulo 2**64 per stacked rectangle (N, h, w)."""
    with np.errstate(over="ignore"):
        return np.einsum("nij,ij->n", rectangles, weights, dtype=np.uint64)


def content(rectangles: np.ndarray, is_mask: bool) -> np.ndarray:
    """Per stacked rectangle (N, h, w): a mask's minority count; 0 or 1 for an image (constant
    or not), a cheap lower bound of the pixels off its most common value."""
    if is_mask:
        ones = rectangles.sum(axis=(1, 2), dtype=np.int64)
        return np.minimum(ones, rectangles.shape[1] * rectangles.shape[2] - ones)
    flat = rectangles.reshape(len(rectangles), -1)
    return (flat != flat[:, :1]).any(axis=1).astype(np.int64)


def informative_windows(codes: np.ndarray, size: int, is_mask: bool) -> np.ndarray:
    """Windows of (..., H, W) codes worth a seed, by top-left corner: a mask window holding
    each value at least ``size`` times (a piece of a boundary), an image window that is not
    constant."""
    ny, nx = codes.shape[-2] - size + 1, codes.shape[-1] - size + 1
    if is_mask:
        prefix = np.zeros((*codes.shape[:-2], codes.shape[-2] + 1, codes.shape[-1] + 1), np.int32)
        prefix[..., 1:, 1:] = codes.astype(np.int32).cumsum(-2).cumsum(-1)
        count = (prefix[..., size:, size:] - prefix[..., :-size, size:]
                 - prefix[..., size:, :-size] + prefix[..., :-size, :-size])
        return (count >= size) & (count <= size * size - size)
    values = codes.view(np.int64)
    # The filters centre their window; this origin puts it at [y, y + size) x [x, x + size).
    footprint = (1,) * (codes.ndim - 2) + (size, size)
    origin = (0,) * (codes.ndim - 2) + (-(size // 2),) * 2
    high = ndimage.maximum_filter(values, footprint, mode="nearest", origin=origin)
    low = ndimage.minimum_filter(values, footprint, mode="nearest", origin=origin)
    return (high != low)[..., :ny, :nx]


def grid_positions(length: int, size: int, step: int) -> np.ndarray:
    """Window starts every ``step`` px, plus the last one, so the far border is covered."""
    starts = np.arange(0, length - size + 1, step)
    return starts if starts[-1] == length - size else np.append(starts, length - size)
