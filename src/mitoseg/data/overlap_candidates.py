"""Candidate (moved, view, fixed, dy, dx) for ``leakage.find_overlaps``: where two arrays may
share a region, found by hashing; each candidate is verified pixel by pixel afterwards.

``seeded_candidates``: any shift, from identical informative tiles. ``grid_candidates``: the
given shifts, from the hashes of the whole overlapping rectangles (exhaustive, exact only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mitoseg.data.region_hashes import (content, dihedral_view, grid_positions,
                                        informative_windows, rectangle_hashes, viewed_rectangle,
                                        weighted_hashes, window_hashes)

Candidate = tuple[int, int, int, int, int]
VIEWS = 8
SEED_VOTES = 2  # identical tiles that must agree on a view and shift
COMMON_TILE = 16  # a tile seen at more positions than this is a common pattern, not a seed
_CHUNK = 64  # arrays hashed at a time (memory: about 1 MB per 200 x 200 array)


def _by_shape(codes: Sequence[np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    groups: dict[tuple[int, int], list[int]] = {}
    for index, code in enumerate(codes):
        groups.setdefault(code.shape, []).append(index)
    return {shape: np.array(members) for shape, members in groups.items()}


def _chunks(codes: Sequence[np.ndarray], size: int = _CHUNK
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, stacked codes) of same-shape arrays, ``size`` at a time."""
    for members in _by_shape(codes).values():
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            yield chunk, np.stack([codes[i] for i in chunk])


def seeded_candidates(codes: Sequence[np.ndarray], tile: int, is_mask: bool) -> list[Candidate]:
    """Every view of every array is cut into tiles on a grid (step ``tile // 2``, far borders
    included); each informative tile is looked up among all windows of all arrays (stored
    orientation, every position). A candidate needs ``SEED_VOTES`` tiles that agree on it;
    most votes first. Tiles seen at more than ``COMMON_TILE`` positions (a straight edge, a
    small round blob) are patterns, not seeds, and are left out."""
    keys, owners = _window_index(codes, tile, is_mask)
    span = 2 * max(max(code.shape) for code in codes) + 1
    found = [np.empty(0, np.int64)]
    for chunk, stack in _chunks(codes):
        for view in range(VIEWS):
            viewed = np.ascontiguousarray(dihedral_view(stack, view, axes=(1, 2)))
            query, target, dy, dx = _tile_hits(viewed, chunk, keys, owners, tile, is_mask)
            # one int64 per (query, view, target, dy, dx): np.unique on rows is much slower
            found.append(np.ravel_multi_index((query, np.full(len(query), view), target,
                                               dy + span // 2, dx + span // 2),
                                              (len(codes), VIEWS, len(codes), span, span)))
    proposals, votes = np.unique(np.concatenate(found), return_counts=True)
    proposals = proposals[votes >= SEED_VOTES][np.argsort(-votes[votes >= SEED_VOTES],
                                                           kind="stable")]
    query, view, target, dy, dx = np.unravel_index(proposals, (len(codes), VIEWS, len(codes),
                                                               span, span))
    return list(zip(query.tolist(), view.tolist(), target.tolist(),
                    (dy - span // 2).tolist(), (dx - span // 2).tolist()))


def _window_index(codes: Sequence[np.ndarray], tile: int, is_mask: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted hashes of the informative, not too common windows, with (array, y, x) of each
    packed in one int64 (see ``_unpack``)."""
    keys, owners = [], []
    for chunk, stack in _chunks(codes):
        n, ys, xs = np.nonzero(informative_windows(stack, tile, is_mask))
        keys.append(window_hashes(stack, tile)[n, ys, xs])
        owners.append((chunk[n].astype(np.int64) << 40) | (ys.astype(np.int64) << 20) | xs)
    keys_all, owners_all = np.concatenate(keys), np.concatenate(owners)
    order = np.argsort(keys_all)
    keys_all, owners_all = keys_all[order], owners_all[order]
    starts = np.flatnonzero(np.r_[True, keys_all[1:] != keys_all[:-1]])
    repeats = np.diff(np.r_[starts, len(keys_all)])
    rare = np.repeat(repeats <= COMMON_TILE, repeats)
    return keys_all[rare], owners_all[rare]


def _unpack(owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return owners >> 40, (owners >> 20) & 0xFFFFF, owners & 0xFFFFF


def _tile_hits(viewed: np.ndarray, chunk: np.ndarray, keys: np.ndarray, owners: np.ndarray,
               tile: int, is_mask: bool) -> tuple[np.ndarray, ...]:
    """(query, target, dy, dx), one per grid tile of ``viewed`` found in ``keys``."""
    step = max(1, tile // 2)
    gy = grid_positions(viewed.shape[1], tile, step)
    gx = grid_positions(viewed.shape[2], tile, step)
    tiles = sliding_window_view(viewed, (tile, tile), axis=(1, 2))[:, gy[:, None], gx]
    n, iy, ix = np.nonzero(_informative_tiles(tiles, tile, is_mask))
    tile_keys = rectangle_hashes(tiles[n, iy, ix])
    order = np.argsort(tile_keys)  # sorted needles: searchsorted walks the index once
    n, iy, ix, tile_keys = n[order], iy[order], ix[order], tile_keys[order]
    left = np.searchsorted(keys, tile_keys, "left")
    counts = np.searchsorted(keys, tile_keys, "right") - left
    tile_of_hit = np.repeat(np.arange(len(tile_keys)), counts)
    target, ty, tx = _unpack(owners[np.repeat(left - np.cumsum(counts) + counts, counts)
                                    + np.arange(counts.sum())])
    query = chunk[n[tile_of_hit]]
    keep = target != query
    tile_of_hit = tile_of_hit[keep]
    return (query[keep], target[keep], ty[keep] - gy[iy[tile_of_hit]],
            tx[keep] - gx[ix[tile_of_hit]])


def _informative_tiles(tiles: np.ndarray, tile: int, is_mask: bool) -> np.ndarray:
    """The rule of ``informative_windows`` on (n, gy, gx, tile, tile) tiles."""
    if is_mask:
        ones = tiles.sum(axis=(-2, -1), dtype=np.int32)
        return (ones >= tile) & (ones <= tile * tile - tile)
    return (tiles != tiles[..., :1, :1]).any(axis=(-2, -1))


def grid_candidates(codes: Sequence[np.ndarray], shifts: Sequence[tuple[int, int]],
                    min_area: int, min_content: int, is_mask: bool) -> list[Candidate]:
    """(query, view, target, dy, dx) for every view and shift in ``shifts`` at which the whole
    overlap (>= ``min_area`` px, ``content`` >= ``min_content``) hashes the same in both."""
    stacks = {shape: (members, np.stack([codes[i] for i in members]))
              for shape, members in _by_shape(codes).items()}
    candidates: list[Candidate] = []
    for moved_shape, (moved, moved_stack) in stacks.items():
        for view in range(VIEWS):
            height, width = moved_shape if view % 2 == 0 else moved_shape[::-1]
            for fixed_shape, (fixed, fixed_stack) in stacks.items():
                for dy, dx in shifts:
                    y0, y1 = max(0, -dy), min(height, fixed_shape[0] - dy)
                    x0, x1 = max(0, -dx), min(width, fixed_shape[1] - dx)
                    if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) < min_area:
                        continue
                    ys, xs, weights = viewed_rectangle(view, moved_shape, (y0, y1), (x0, x1))
                    part = moved_stack[:, ys, xs]
                    full = np.flatnonzero(content(part, is_mask) >= min_content)
                    moved_keys = weighted_hashes(part[full], weights)
                    fixed_keys = rectangle_hashes(fixed_stack[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx])
                    for m, f in _equal_pairs(moved_keys, fixed_keys):
                        if moved[full[m]] != fixed[f]:
                            candidates.append((int(moved[full[m]]), view, int(fixed[f]), dy, dx))
    return candidates


def _equal_pairs(left: np.ndarray, right: np.ndarray) -> list[tuple[int, int]]:
    """(i, j) with left[i] == right[j]."""
    order = np.argsort(right, kind="stable")
    start = np.searchsorted(right[order], left, "left")
    stop = np.searchsorted(right[order], left, "right")
    return [(int(i), int(order[k])) for i in np.flatnonzero(stop > start)
            for k in range(start[i], stop[i])]
