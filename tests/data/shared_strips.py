"""An independent check for the test suite: do two sets of 200 x 200 crops, cut every 150 px,
share a strip? Compares the bytes of the 50-px edge strips and 50 x 50 corners of every view
of one crop with the matching strips of the other (no hashing, no code under test)."""

from __future__ import annotations

import numpy as np

GRID = [(dy, dx) for dy in (-150, 0, 150) for dx in (-150, 0, 150)]


def _views(mask: np.ndarray) -> list[np.ndarray]:
    turns = [np.rot90(mask, k) for k in range(4)]
    return turns + [np.rot90(np.fliplr(mask), k) for k in range(4)]


def _region(mask: np.ndarray, dy: int, dx: int, moved: bool) -> np.ndarray:
    """The part of ``mask`` that overlaps when a moved crop sits at (dy, dx) of a fixed one."""
    size = mask.shape[0]
    if not moved:
        dy, dx = -dy, -dx
    return mask[max(0, -dy):size - max(0, dy), max(0, -dx):size - max(0, dx)]


def shared_strips(first: np.ndarray, second: np.ndarray) -> list[tuple[int, int]]:
    """(i, j): crop ``first[i]`` shares a grid strip or corner holding foreground with
    ``second[j]`` (or is a flip/rotation of it)."""
    keys: dict[tuple[int, int, bytes], set[int]] = {}
    for j, mask in enumerate(second):
        for dy, dx in GRID:
            region = _region(mask, dy, dx, moved=False)
            if region.any():
                keys.setdefault((dy, dx, np.packbits(region).tobytes()), set()).add(j)
    found = set()
    for i, mask in enumerate(first):
        for view in _views(mask):
            for dy, dx in GRID:
                region = np.ascontiguousarray(_region(view, dy, dx, moved=True))
                for j in keys.get((dy, dx, np.packbits(region).tobytes()), ()):
                    found.add((i, j))
    return sorted(found)
