"""Exact nearest-boundary distance sums, the inner loop of the ABD (paper 000, eq. 6-7).

For a pair of one-pixel boundaries (S_A, S_B) the ABD needs, for every pixel of either, the
Euclidean distance to the nearest pixel of the other. Brute force compares every pixel with
every other (about 1,500 x 1,500 per 200 x 200 mask pair); distance transforms visit the whole
image twice. Here, several pairs are searched at once (all the ABDs of one DAS/DDS
quadruple share the calls):

1. Near pixels (the vast majority: boundaries that agree or moved by a few pixels) look up
   the other boundary at offsets of increasing distance, one ring of equal distance at a
   time, up to `_RING_RADIUS_PX`. A pixel is settled at the first ring that holds a pixel of
   the other boundary, so its distance is exact.
2. Far pixels (missed or spurious objects) are measured against every pixel of the other
   boundary with one matrix product per chunk: squared distances |q|^2 + min_t(|t|^2 - 2 q.t)
   of integer coordinates, exact in float32 while they stay below 2**24 (float64 beyond, and
   for non-square pixels). On large images an upper bound from one pixel of the other
   boundary per 8 x 8 cell limits each chunk to the rows that can hold the nearest pixel.

The values equal brute force (benchmarks/bench_metrics.py, tests/metrics). Where numba is
installed, `boundary_distance_sums` runs the compiled row scan of
`mitoseg.metrics.boundary_distance_compiled` instead (same values, 1.9x faster on 200 x 200
masks: 0.62 against 1.18 ms per quadruple in benchmarks/bench_metrics.py); set `USE_COMPILED = False` (or MITOSEG_METRICS_NUMPY=1) for this numpy
search.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from mitoseg.metrics import boundary_distance_compiled as compiled
from mitoseg.metrics.offsets import sorted_offsets

USE_COMPILED = os.environ.get("MITOSEG_METRICS_NUMPY", "") not in ("1", "true", "yes")

_RING_RADIUS_PX = 4  # rings searched one distance at a time; beyond, the far path
_DIRECT_PAIRS = 2_000_000  # far x other-boundary pixels measured without the row bound
_CELL_PX = 8  # one pixel of the other boundary per cell of this size bounds the far distances
_CHUNK_PIXELS = 256  # far pixels per matrix product (with the bound: one band of rows)
_MAX_PRODUCT = 262_144  # elements of one distance matrix (stays in cache, bounds memory)
_FLOAT32_EXACT_COORD = 1024  # |centred coordinate| below which float32 squared distances are exact


@functools.lru_cache(maxsize=16)
def search_rings(spacing: tuple[float, float]) -> tuple[int, int, tuple]:
    """Offsets within the ring radius, grouped in rings of equal physical distance.

    Returns (pad_y, pad_x, rings); each ring is (dy, dx, distance), in increasing distance.
    The radius is `_RING_RADIUS_PX` times the smaller pixel side.
    """
    ry, rx, dy, dx, dist = sorted_offsets(spacing, _RING_RADIUS_PX)
    edges = np.flatnonzero(np.diff(dist)) + 1
    rings = tuple((ddy, ddx, float(d[0])) for ddy, ddx, d in
                  zip(np.split(dy, edges), np.split(dx, edges), np.split(dist, edges)))
    return ry, rx, rings


def boundary_distance_sums(pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                           spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """For each (S_A, S_B): sum over S_A of d(p, S_B) plus sum over S_B of d(p, S_A).

    `pairs` hold non-empty 2D bool boundary images, all of one shape; `spacing` is the pixel
    size (dy, dx). Returns one float64 sum per pair, in units of `spacing`.
    """
    if USE_COMPILED and compiled.AVAILABLE:
        return compiled.boundary_distance_sums(pairs, spacing)
    ry, rx, rings = search_rings(spacing)
    count = len(pairs)
    h, w = pairs[0][0].shape
    width = w + 2 * rx
    frames = np.zeros((2 * count, h + 2 * ry, width), dtype=bool)  # S_A, S_B, S_A, S_B, ...
    for index, (sa, sb) in enumerate(pairs):
        frames[2 * index, ry:ry + h, rx:rx + w] = sa
        frames[2 * index + 1, ry:ry + h, rx:rx + w] = sb
    size = frames[0].size
    flat = frames.ravel()
    pixels = np.flatnonzero(flat)
    lookup = pixels + np.where((pixels // size) % 2 == 0, size, -size)  # same place, other frame
    totals = np.zeros(count)
    for dy, dx, dist in rings:
        steps = dy * width + dx
        hit = flat[lookup + steps[0]]
        for step in steps[1:]:  # one gather per offset: far cheaper than a 2D gather + any
            hit |= flat[lookup + step]
        if dist > 0:
            totals += dist * np.bincount(lookup[hit] // (2 * size), minlength=count)
        lookup = lookup[~hit]
        if lookup.size == 0:
            return totals
    _add_far_distances(totals, lookup, pixels, size, width, spacing)
    return totals


def _add_far_distances(totals: np.ndarray, pending: np.ndarray, pixels: np.ndarray, size: int,
                       width: int, spacing: tuple[float, float]) -> None:
    """Add the exact distances of the pixels no ring reached (flat look-up positions)."""
    target_frame = pending // size
    frame_ends = np.searchsorted(pixels, np.arange(int(target_frame.max()) + 2) * size)
    runs = np.flatnonzero(np.diff(target_frame)) + 1  # each run looks into one frame
    for start, stop in zip(np.r_[0, runs], np.r_[runs, len(pending)]):
        frame = int(target_frame[start])
        query = pending[start:stop] - frame * size
        target = pixels[frame_ends[frame]:frame_ends[frame + 1]] - frame * size
        totals[frame // 2] += nearest_distances(query, target, width, spacing).sum()


def nearest_distances(query: np.ndarray, target: np.ndarray, width: int,
                      spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Exact distance from each query pixel to the nearest target pixel, by matrix products.

    query and target are flat pixel indices of one image with rows of `width` pixels, target
    sorted. Squared distances are |q|^2 + min_t (|t|^2 - 2 q.t): with square pixels they are
    computed in integer pixel units (exact in float32 while coordinates stay small, float64
    beyond), with other pixel sizes in float64 physical units.
    """
    sy, sx = spacing
    qy, qx = np.divmod(query, width)
    ty, tx = np.divmod(target, width)
    centre = (int(ty[len(ty) // 2]), width // 2)
    square = sy == sx
    if square:
        extent = max(abs(int(qy.min()) - centre[0]), abs(int(qy.max()) - centre[0]),
                     abs(int(ty[0]) - centre[0]), abs(int(ty[-1]) - centre[0]), width)
        dtype, scale = (np.float32 if extent < _FLOAT32_EXACT_COORD else np.float64), (1.0, 1.0)
    else:
        dtype, scale = np.float64, (sy, sx)
    lhs = np.ones((len(qy), 3), dtype=dtype)
    lhs[:, 0] = (qy - centre[0]) * scale[0]
    lhs[:, 1] = (qx - centre[1]) * scale[1]
    rhs = np.empty((3, len(ty)), dtype=dtype)
    rhs[0] = (ty - centre[0]) * scale[0]
    rhs[1] = (tx - centre[1]) * scale[1]
    rhs[2] = rhs[0].astype(np.float64) ** 2 + rhs[1].astype(np.float64) ** 2
    rhs[:2] *= -2
    query_norm = lhs[:, 0].astype(np.float64) ** 2 + lhs[:, 1].astype(np.float64) ** 2
    if len(qy) * len(ty) <= _DIRECT_PAIRS:
        low_rows = high_rows = None
    else:  # bound each pixel's distance, then scan only the rows within that bound
        cells = (ty // _CELL_PX) * (width // _CELL_PX + 1) + tx // _CELL_PX
        representatives = np.unique(cells, return_index=True)[1]  # one target per occupied cell
        bound = (lhs @ rhs[:, representatives]).min(axis=1) + query_norm  # >= true squared distance
        reach = np.ceil(np.sqrt(np.maximum(bound, 0.0)) / scale[0] + 1e-6).astype(np.int64)
        low_rows, high_rows = qy - reach, qy + reach
    best = np.empty(len(qy))
    chunk = max(1, min(_CHUNK_PIXELS, _MAX_PRODUCT // len(ty)))
    for start in range(0, len(qy), chunk):
        part = slice(start, start + chunk)
        low, high = 0, len(ty)
        if low_rows is not None:  # ty is sorted: the rows in reach are one slice
            low = np.searchsorted(ty, low_rows[part].min(), side="left")
            high = np.searchsorted(ty, high_rows[part].max(), side="right")
        best[part] = (lhs[part] @ rhs[:, low:high]).min(axis=1)
    squared = np.maximum(best + query_norm, 0.0)
    return np.sqrt(squared) * (sy if square else 1.0)
