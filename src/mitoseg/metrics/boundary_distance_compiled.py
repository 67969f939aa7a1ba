"""The nearest-boundary search compiled with numba: a grid of cells searched ring by ring.

The pixels of the other boundary are sorted into square cells of `CELL_PX` pixels. For a query
pixel the cells are visited in rings of growing Chebyshev distance around its own cell; every
pixel of a visited cell is measured, and the search stops once the nearest pixel any further
ring could hold, ((ring - 1) * CELL_PX + 1) times the smaller pixel side away, is no nearer
than the best found. Near pixels stop after one or two rings; far ones (missed or spurious
objects) after about distance / CELL_PX rings, never visiting the whole boundary. The values
equal brute force.

numba is optional (`pip install -e ".[metrics]"`, part of `.[dev]`); without it
`mitoseg.metrics.boundary_distance` uses its numpy search, with the same values.
"""

from __future__ import annotations

import numpy as np

from mitoseg.metrics.offsets import sorted_offsets

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

AVAILABLE = numba is not None


CELL_PX = 8
NEAR_PX = 3  # offsets looked up in the target image before the cell search


def _cells(image: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of a boundary image sorted by cell (one scan, then a counting sort):
    (start of each cell, rows, cols); cells are numbered row-major over a grid of
    ceil(height / cell) x ceil(width / cell)."""
    height, width = image.shape
    grid_w = (width + cell - 1) // cell
    grid_h = (height + cell - 1) // cell
    starts = np.zeros(grid_h * grid_w + 1, dtype=np.int64)
    found_rows = np.empty(height * width, dtype=np.int64)
    found_cols = np.empty(height * width, dtype=np.int64)
    count = 0
    for y in range(height):
        for x in range(width):
            if image[y, x]:
                found_rows[count], found_cols[count] = y, x
                starts[(y // cell) * grid_w + x // cell + 1] += 1
                count += 1
    for index in range(grid_h * grid_w):
        starts[index + 1] += starts[index]
    fill = starts[:-1].copy()
    rows = np.empty(count, dtype=np.int64)
    cols = np.empty(count, dtype=np.int64)
    for k in range(count):
        slot = (found_rows[k] // cell) * grid_w + found_cols[k] // cell
        rows[fill[slot]], cols[fill[slot]] = found_rows[k], found_cols[k]
        fill[slot] += 1
    return starts, rows, cols


def _directed_sum(query_rows: np.ndarray, query_cols: np.ndarray, target: np.ndarray,
                  starts: np.ndarray, rows: np.ndarray, cols: np.ndarray, cell: int,
                  near_dy: np.ndarray, near_dx: np.ndarray, near_distance: np.ndarray,
                  dy: float, dx: float) -> float:
    """Sum over the query pixels of the distance to the nearest target pixel.

    First the offsets of `near_*` (sorted by distance) are looked up in the target image: the
    first hit is the nearest pixel. Pixels with none that near search the cells (see _cells).
    """
    height, width = target.shape
    grid_w = (width + cell - 1) // cell
    grid_h = (height + cell - 1) // cell
    unit = min(dy, dx)
    last_ring = max(grid_h, grid_w)
    total = 0.0
    for index in range(query_rows.shape[0]):
        y, x = query_rows[index], query_cols[index]
        found = -1.0
        for k in range(near_dy.shape[0]):
            ty, tx = y + near_dy[k], x + near_dx[k]
            if 0 <= ty < height and 0 <= tx < width and target[ty, tx]:
                found = near_distance[k]
                break
        if found >= 0.0:
            total += found
            continue
        cy, cx = y // cell, x // cell
        best = np.inf
        for ring in range(last_ring + 1):
            if ring > 0:
                gap = ((ring - 1) * cell + 1) * unit
                if gap * gap >= best:
                    break
            for gy in range(cy - ring, cy + ring + 1):
                if gy < 0 or gy >= grid_h:
                    continue
                edge_row = gy == cy - ring or gy == cy + ring
                step = 1 if edge_row else max(1, 2 * ring)
                for gx in range(cx - ring, cx + ring + 1, step):
                    if gx < 0 or gx >= grid_w:
                        continue
                    slot = gy * grid_w + gx
                    for t in range(starts[slot], starts[slot + 1]):
                        row_gap = (rows[t] - y) * dy
                        col_gap = (cols[t] - x) * dx
                        squared = row_gap * row_gap + col_gap * col_gap
                        if squared < best:
                            best = squared
        total += np.sqrt(best)
    return total


def _all_sums(images: np.ndarray, pairs: np.ndarray, cell: int, near_dy: np.ndarray,
              near_dx: np.ndarray, near_distance: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Both directed sums of every pair (indices into `images`, a (k, H, W) stack), in one
    compiled call: each boundary is indexed once however many pairs it is in."""
    count = images.shape[0]
    indexed = []
    for index in range(count):
        indexed.append(_cells(images[index], cell))
    totals = np.empty(pairs.shape[0])
    for index in range(pairs.shape[0]):
        a, b = pairs[index, 0], pairs[index, 1]
        starts_a, rows_a, cols_a = indexed[a]
        starts_b, rows_b, cols_b = indexed[b]
        totals[index] = (
            _directed_sum(rows_a, cols_a, images[b], starts_b, rows_b, cols_b, cell,
                          near_dy, near_dx, near_distance, dy, dx)
            + _directed_sum(rows_b, cols_b, images[a], starts_a, rows_a, cols_a, cell,
                            near_dy, near_dx, near_distance, dy, dx))
    return totals


if AVAILABLE:
    _cells = numba.njit(cache=True, nogil=True)(_cells)
    _directed_sum = numba.njit(cache=True, nogil=True)(_directed_sum)
    _all_sums = numba.njit(cache=True, nogil=True)(_all_sums)


def boundary_distance_sums(pairs, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Compiled twin of ``mitoseg.metrics.boundary_distance.boundary_distance_sums``."""
    if not AVAILABLE:
        raise RuntimeError("numba is not installed: pip install -e '.[metrics]'")
    dy, dx = float(spacing[0]), float(spacing[1])
    slots: dict[int, int] = {}
    edges = []
    for edge in (edge for pair in pairs for edge in pair):
        if id(edge) not in slots:
            slots[id(edge)] = len(edges)
            edges.append(edge)
    images = np.stack(edges).astype(np.bool_, copy=False)
    index = np.array([(slots[id(a)], slots[id(b)]) for a, b in pairs], dtype=np.int64)
    near = sorted_offsets((dy, dx), NEAR_PX)[2:]
    return _all_sums(images, index, CELL_PX, *near, dy, dx)
