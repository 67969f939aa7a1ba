"""Segmentation metrics of paper 000 (robustness and sensitivity of CNNs, fluorescence images).

Area similarity (AS, eq. 5), average boundary distance (ABD, eq. 6-7), and the two
deformation metrics built on them (DAS, eq. 8; DDS, eq. 9). All functions take 2D binary
masks (bool, or numeric arrays holding only 0 and 1) and are pure numpy/scipy.

Conventions (chosen so every metric is defined for every input, see each docstring):
- Pixels outside the image count as background, so foreground touching the image edge
  has boundary there. This makes a non-empty mask always have a non-empty boundary.
- Empty masks get fixed values instead of errors, because empty predictions (and empty
  ground-truth crops) do occur in evaluation loops and must not abort them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Union

import numpy as np
from scipy.spatial import cKDTree

from mitoseg.errors import InputError

Sampling = Union[float, tuple[float, float], None]

__all__ = [
    "area_similarity",
    "boundary",
    "average_boundary_distance",
    "deformation_area_similarity",
    "deformation_distance_similarity",
    "image_metrics",
    "mean_sem",
]


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Validate one mask and return it as a bool array; silent casts would hide bugs like probability maps."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2D mask, got an array of shape {arr.shape} ({arr.ndim}D)")
    if arr.size == 0:
        raise InputError(f"{name}: expected a non-empty 2D mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: expected a bool or 0/1 numeric mask, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise InputError(f"{name}: expected mask values in {{0, 1}}, got other values {found} (dtype {arr.dtype})")
    return arr == 1


def _pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Validate two masks that are compared pixel by pixel, so their shapes must agree."""
    ma, mb = _as_mask(a, names[0]), _as_mask(b, names[1])
    if ma.shape != mb.shape:
        raise InputError(
            f"{names[0]} and {names[1]}: expected masks of the same shape, got {ma.shape} and {mb.shape}"
        )
    return ma, mb


def _sampling(sampling: Sampling) -> tuple[float, float]:
    """Normalise the pixel size to (dy, dx); a wrong size would silently scale every distance."""
    if sampling is None:
        return (1.0, 1.0)
    vals = np.atleast_1d(np.asarray(sampling, dtype=float)).ravel()
    if vals.size == 1:
        vals = np.repeat(vals, 2)
    if vals.size != 2 or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        raise InputError(f"sampling: expected a positive pixel size (scalar or (dy, dx)), got {sampling!r}")
    return (float(vals[0]), float(vals[1]))


def _check_connectivity(connectivity: int) -> None:
    if connectivity not in (1, 2):
        raise InputError(f"connectivity: expected 1 (4-neighbourhood) or 2 (8-neighbourhood), got {connectivity!r}")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0  # nothing in either: perfect agreement
    return np.count_nonzero(a & b) / union


def area_similarity(gt: np.ndarray, pred: np.ndarray) -> float:
    """AS = |A ∩ B| / |A ∪ B| (eq. 5), the foreground IoU.

    Both masks empty -> 1.0: the prediction agrees perfectly with an empty ground truth.
    """
    a, b = _pair(gt, pred, ("gt", "pred"))
    return float(_iou(a, b))


def boundary(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Inner boundary, one pixel thick: mask pixels with a neighbour outside the mask.

    connectivity=1 uses the 4-neighbourhood (cross), 2 the full 3x3. Pixels outside the
    image count as background (border_value=0), so foreground on the image edge is
    boundary: an object cut by the field of view is treated as ending there.
    """
    m = _as_mask(mask, "mask")
    _check_connectivity(connectivity)
    # The binary erosion by the cross (or 3x3) written as shifted ANDs of a zero-padded copy:
    # the same result as ndimage.binary_erosion(border_value=0), several times faster.
    h, w = m.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = m
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1]
    inner &= padded[1:-1, :-2]
    inner &= padded[1:-1, 2:]
    if connectivity == 2:
        for rows, cols in ((slice(None, -2), slice(None, -2)), (slice(None, -2), slice(2, None)),
                           (slice(2, None), slice(None, -2)), (slice(2, None), slice(2, None))):
            inner &= padded[rows, cols]
    return m & ~inner


# Nearest-boundary search (exact): offsets around each boundary pixel are scanned in stages of
# increasing distance, so the many pixels that lie within a few pixels of the other boundary cost
# a handful of look-ups; the few with nothing within _SEARCH_RADIUS_PX are measured against every
# pixel of the other boundary (or a k-d tree of it). On 200 x 200 crops this is about 4x faster
# than the two Euclidean distance transforms of the whole image it replaces, with the same
# distances (benchmarks/bench_metrics.py).
_SEARCH_RADIUS_PX = 8
_STAGE_ENDS_PX = (0.0, math.sqrt(2), math.sqrt(5), math.sqrt(10), 4.0, math.sqrt(32), 8.0)
_KDTREE_ABOVE = 20_000  # far pixels x boundary pixels above which a k-d tree beats cdist
_LOOKUPS_PER_CHUNK = 2_000_000  # bounds the memory of one stage on large images


@functools.lru_cache(maxsize=16)
def _search_stages(spacing: tuple[float, float]) -> tuple[int, int, tuple]:
    """Pixel offsets within the search radius, sorted by physical distance, in stages.

    Returns (pad_y, pad_x, stages), each stage a (dy, dx, distance) triple of arrays.
    """
    sy, sx = spacing
    radius = _SEARCH_RADIUS_PX * min(sy, sx)
    ry, rx = int(radius // sy), int(radius // sx)
    dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    dist = np.hypot(dy * sy, dx * sx)
    keep = dist <= radius
    order = np.argsort(dist[keep], kind="stable")
    dy, dx, dist = dy[keep][order], dx[keep][order], dist[keep][order]
    stages, start = [], 0
    for end in _STAGE_ENDS_PX:
        stop = int(np.searchsorted(dist, end * min(sy, sx) * (1 + 1e-12), side="right"))
        if stop > start:
            stages.append((dy[start:stop], dx[start:stop], dist[start:stop]))
            start = stop
    return ry, rx, tuple(stages)


def _far_distances(query: np.ndarray, target: np.ndarray, width: int,
                   spacing: tuple[float, float]) -> np.ndarray:
    """Exact nearest distances from query to target pixels (flat indices, row length width)."""
    scale = np.asarray(spacing, dtype=float)
    q = np.stack(np.divmod(query, width), axis=1) * scale
    t = np.stack(np.divmod(target, width), axis=1) * scale
    if len(q) * len(t) > _KDTREE_ABOVE:
        return cKDTree(t).query(q)[0]
    return np.sqrt(((q[:, None, :] - t[None, :, :]) ** 2).sum(axis=2).min(axis=1))


def _boundary_distance_sum(sa: np.ndarray, sb: np.ndarray, spacing: tuple[float, float]) -> float:
    """Sum over both boundaries of the distance from each pixel to the other boundary."""
    ry, rx, stages = _search_stages(spacing)
    h, w = sa.shape
    width = w + 2 * rx
    frames = np.zeros((2, h + 2 * ry, width), dtype=bool)  # A's boundary, then B's
    frames[0, ry:ry + h, rx:rx + w] = sa
    frames[1, ry:ry + h, rx:rx + w] = sb
    size = frames[0].size
    flat = frames.ravel()
    pixels = np.flatnonzero(flat)
    lookup = np.where(pixels < size, pixels + size, pixels - size)  # the other frame
    total = 0.0
    for dy, dx, dist in stages:  # sorted within a stage too: the first hit is the nearest
        steps = dy * width + dx
        rows = max(1, _LOOKUPS_PER_CHUNK // len(steps))
        found = np.empty(len(lookup), dtype=bool)
        for start in range(0, len(lookup), rows):
            hits = flat[lookup[start:start + rows, None] + steps]
            first = hits.argmax(axis=1)
            found[start:start + rows] = hit = hits[np.arange(len(hits)), first]
            total += dist[first[hit]].sum()
        lookup = lookup[~found]
        if lookup.size == 0:
            return float(total)
    in_b = lookup >= size  # pending pixels of A look into B's frame
    edges = np.searchsorted(pixels, size)
    if in_b.any():
        total += _far_distances(lookup[in_b] - size, pixels[edges:] - size, width, spacing).sum()
    if not in_b.all():
        total += _far_distances(lookup[~in_b], pixels[:edges], width, spacing).sum()
    return float(total)


def _abd(a: np.ndarray, b: np.ndarray, connectivity: int, spacing: tuple[float, float]) -> float:
    """ABD on validated bool masks (see average_boundary_distance)."""
    sa, sb = boundary(a, connectivity), boundary(b, connectivity)
    na, nb = np.count_nonzero(sa), np.count_nonzero(sb)
    if na == 0 and nb == 0:
        return 0.0
    if na == 0 or nb == 0:
        h, w = a.shape
        return math.hypot(h * spacing[0], w * spacing[1])
    return _boundary_distance_sum(sa, sb, spacing) / (na + nb)


def average_boundary_distance(
    a: np.ndarray, b: np.ndarray, connectivity: int = 1, sampling: Sampling = None
) -> float:
    """Symmetric average boundary distance (eq. 6-7), in pixels or in units of `sampling`.

    ABD = (sum_{s in S(A)} d(s, S(B)) + sum_{s in S(B)} d(s, S(A))) / (|S(A)| + |S(B)|),
    with d the Euclidean distance to the nearest boundary pixel of the other mask.
    `sampling` is the pixel size (scalar or (dy, dx)), e.g. 0.0645 to get µm.

    Conventions: both empty -> 0.0. Exactly one empty -> the image diagonal
    sqrt((H*dy)^2 + (W*dx)^2), larger than any real boundary distance in the image, so a
    total miss scores worst instead of being undefined or dropped from averages.
    """
    ma, mb = _pair(a, b)
    return _abd(ma, mb, connectivity, _sampling(sampling))


def deformation_area_similarity(
    a: np.ndarray, a_d: np.ndarray, b: np.ndarray, b_d: np.ndarray
) -> float:
    """DAS (eq. 8): IoU of the ground-truth change (A xor A_D) and the prediction change (B xor B_D).

    A_D is the ground truth after a deformation (erosion/dilation), B and B_D the predictions
    on the original and deformed image: DAS asks whether the prediction changed where the
    truth changed. Both changes empty -> 1.0 (nothing changed, and nothing was predicted to).
    """
    names = ("a", "a_d", "b", "b_d")
    masks = [_as_mask(m, n) for m, n in zip((a, a_d, b, b_d), names)]
    for m, n in zip(masks[1:], names[1:]):
        if m.shape != masks[0].shape:
            raise InputError(f"a and {n}: expected masks of the same shape, got {masks[0].shape} and {m.shape}")
    ma, mad, mb, mbd = masks
    return float(_iou(ma ^ mad, mb ^ mbd))


def deformation_distance_similarity(
    a: np.ndarray,
    a_d: np.ndarray,
    b: np.ndarray,
    b_d: np.ndarray,
    connectivity: int = 1,
    sampling: Sampling = None,
) -> float:
    """DDS (eq. 9) = ABD(B, B_D) / ABD(A, A_D): how far the prediction moved relative to the truth.

    1 means the prediction boundary moved as much as the ground truth, 0 that it did not move.
    ABD(A, A_D) == 0 -> nan: the ground truth did not move, so the ratio is undefined.
    """
    ma, mad = _pair(a, a_d, ("a", "a_d"))
    mb, mbd = _pair(b, b_d, ("b", "b_d"))
    if ma.shape != mb.shape:
        raise InputError(f"a and b: expected masks of the same shape, got {ma.shape} and {mb.shape}")
    spacing = _sampling(sampling)
    denom = _abd(ma, mad, connectivity, spacing)
    if denom == 0.0:
        return float("nan")
    return _abd(mb, mbd, connectivity, spacing) / denom


def image_metrics(
    gt: np.ndarray, pred: np.ndarray, pixel_size_um: float, connectivity: int = 1
) -> dict[str, float]:
    """Per-image metrics in one dict, ready for a results table.

    Keys: as, abd_px, abd_um, gt_fraction / pred_fraction (foreground share of the image),
    gt_empty / pred_empty (1.0 or 0.0), so empty-mask conventions can be filtered later.
    """
    a, b = _pair(gt, pred, ("gt", "pred"))
    if np.ndim(pixel_size_um) != 0:
        raise InputError(f"pixel_size_um: expected a scalar pixel size in µm, got {pixel_size_um!r}")
    px = _sampling(pixel_size_um)[0]
    abd_px = _abd(a, b, connectivity, (1.0, 1.0))
    return {
        "as": float(_iou(a, b)),
        "abd_px": abd_px,
        "abd_um": abd_px * px,  # isotropic, so scaling afterwards equals sampling=px
        "gt_fraction": float(a.mean()),
        "pred_fraction": float(b.mean()),
        "gt_empty": float(not a.any()),
        "pred_empty": float(not b.any()),
    }


def mean_sem(values: Iterable[float]) -> dict[str, float]:
    """Mean and standard error over finite values, as reported in the paper's tables (mean ± SEM).

    NaN/inf (e.g. undefined DDS) are ignored; `n` counts the finite values used.
    std uses ddof=1; sem = std / sqrt(n); n < 2 -> std and sem are nan (no spread estimable).
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    mean = float(finite.mean()) if n > 0 else float("nan")
    std = float(finite.std(ddof=1)) if n > 1 else float("nan")
    sem = std / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "sem": sem, "n": n, "std": std}
