"""Pixel offsets around a boundary pixel, nearest first: the near search of the ABD."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def sorted_offsets(spacing: tuple[float, float], radius_px: int
                   ) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets within radius_px times the smaller pixel side, by physical distance.

    Returns (reach_y, reach_x, dy, dx, distance): the largest offset along each axis, then
    int64 offsets and their float64 distances, sorted by distance and, among equal distances,
    by (dy, dx). Symmetric offsets get bit-identical distances.
    """
    sy, sx = spacing
    radius = radius_px * min(sy, sx)
    ry, rx = int(radius // sy), int(radius // sx)
    oy, ox = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    distance = np.hypot(oy * sy, ox * sx)
    keep = distance <= radius * (1 + 1e-12)
    order = np.argsort(distance[keep], kind="stable")  # mgrid is (dy, dx)-ordered: ties stay so
    return (ry, rx, oy[keep][order].astype(np.int64), ox[keep][order].astype(np.int64),
            distance[keep][order])
