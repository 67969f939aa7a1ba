"""Which arrays (masks or images) share a region: the same rectangle, exactly or nearly, under
any of the 8 flips/rotations and a shift. Crops cut every 150 px from one larger image share
50-px strips; a flipped copy of a crop shares all of it. Files that share a region must stay
on one side of a train/test split, or ground truth leaks into the test set.

Rule (``OverlapRule``). Two arrays share a region at a view and shift if, on the whole
rectangle where they then overlap, at least ``min_area`` px, the rectangle is not trivial:
enough of its pixels differ from its most common value ("informative" pixels; in a mask its
foreground, so two empty corners never count), and at most ``max_mismatch_fraction`` times
that many pixels differ (by more than ``value_tolerance``; relative to the content, since 1 %
of a sparse mask's area can be all of its foreground). How many is enough depends on the shift:

- any shift: ``min_informative`` (100). Little content matches by chance: among the 90 crops of
  the real masks, 306 pairs of crops that were never neighbours coincide exactly on >= 2500 px
  at some shift, holding up to 43 foreground px (a small blob in empty background).
- a grid shift: ``min_informative_on_grid`` (1). The grid is (0, 0) (a copy, or a flip/rotation
  of one) and the shifts of the pairs found at any shift, each with its signs and axes swapped.
  Crops cut on a regular grid show it at once ((0, +-150), (+-150, +-150) for the real masks),
  and there a single shared foreground pixel counts.

``search``: "regions" finds all of the above; "copies" only whole arrays equal under a view
(fast; for sources that cannot overlap otherwise, like independently generated masks).

Search. 0) Copies: whole arrays hashed under every view and joined; the region search then runs
on one array of each set of copies (what it finds holds for every copy). 1) Any shift, seeded:
every ``tile`` x ``tile`` window of every array is hashed at every position; every view of every
array is cut into tiles every ``tile // 2`` px (and at its far borders), and each informative
tile (a mask tile holding each value >= ``tile`` times, an image tile that is not constant) is
looked up; a view and shift on which >= 2 tiles agree is verified pixel by pixel. Tiles seen
at more than 16 positions (a straight edge) are left out. So a shared rectangle at least
``tile + tile // 2 - 1`` px a side is found if two of its grid tiles are informative, rare and
identical in both arrays (with mismatches allowed: left intact). 2) Grid shifts, exhaustive:
the whole overlapping rectangles of all views of all arrays are hashed and joined (exact
matches). tests/data/test_leakage.py checks all of it against a brute-force search.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from mitoseg.data.overlap_candidates import grid_candidates, seeded_candidates
from mitoseg.data.region_hashes import dihedral_view, pixel_codes
from mitoseg.errors import InputError

__all__ = ["Overlap", "OverlapReport", "OverlapRule", "clusters_of", "dihedral_view",
           "find_overlaps", "find_overlaps_cached"]


SEARCHES = ("regions", "copies")


@dataclass(frozen=True)
class OverlapRule:
    """What counts as a shared region (see the module docstring). ``min_area`` None: a square
    a quarter of the shortest side of the arrays, 50 * 50 = 2500 px for paper 000's 200 x 200
    crops: a neighbour shares a 50 x 200 strip, a diagonal neighbour a 50 x 50 corner."""

    min_area: int | None = None
    min_informative: int = 100
    min_informative_on_grid: int = 1
    tile: int = 16
    max_mismatch_fraction: float = 0.0
    value_tolerance: float = 0.0
    search: str = "regions"

    def __post_init__(self) -> None:
        def bad(option: str, expected: str) -> InputError:
            return InputError(f"overlap rule: '{option}' must be {expected}, got "
                              f"{getattr(self, option)!r}")
        if self.search not in SEARCHES:
            raise bad("search", f"one of {list(SEARCHES)}")
        if self.tile < 4:
            raise bad("tile", ">= 4")
        if self.min_area is not None and self.min_area < self.tile * self.tile:
            raise bad("min_area", f">= tile**2 = {self.tile ** 2} (or null)")
        if self.min_informative_on_grid < 1:
            raise bad("min_informative_on_grid", ">= 1 (empty regions are shared by all crops)")
        if self.min_informative < self.min_informative_on_grid:
            raise bad("min_informative", ">= min_informative_on_grid")
        if not 0.0 <= self.max_mismatch_fraction < 0.5:
            raise bad("max_mismatch_fraction", "in [0, 0.5)")
        if self.value_tolerance < 0:
            raise bad("value_tolerance", ">= 0")

    def for_arrays(self, arrays: Sequence[np.ndarray]) -> OverlapRule:
        """This rule with ``min_area`` set for ``arrays`` when it was left to None."""
        if self.min_area is not None or not arrays:
            return self
        side = min(min(np.shape(array)) for array in arrays)
        return replace(self, min_area=max(self.tile * self.tile, (side // 4) ** 2))


@dataclass(frozen=True)
class Overlap:
    """``dihedral_view(arrays[moved], view)`` with its origin at (dy, dx) of ``arrays[fixed]``
    matches it on a ``height`` x ``width`` rectangle: ``mismatches`` pixels differ,
    ``informative`` pixels differ from the rectangle's most common value."""

    moved: int
    fixed: int
    view: int
    dy: int
    dx: int
    height: int
    width: int
    mismatches: int
    informative: int

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def pair(self) -> tuple[int, int]:
        return min(self.moved, self.fixed), max(self.moved, self.fixed)


@dataclass(frozen=True)
class OverlapReport:
    """All pairs that share a region (one ``Overlap`` per pair), the grid of shifts, and the
    clusters the pairs link: ``clusters[i]`` is array i's, numbered by first array."""

    count: int
    rule: OverlapRule
    pairs: list[Overlap]
    grid: list[tuple[int, int]]
    clusters: np.ndarray
    seconds: float = field(compare=False, default=0.0)

    def to_dict(self) -> dict:
        return {"rule": asdict(self.rule), "arrays": self.count, "pairs": len(self.pairs),
                "clusters": int(self.clusters.max()) + 1 if self.count else 0,
                "grid_shifts": [list(shift) for shift in self.grid],
                "seconds": round(self.seconds, 3)}


def clusters_of(count: int, links: Sequence[tuple[int, int]]) -> np.ndarray:
    """Connected components (union-find) of ``count`` items linked by ``links``, numbered in
    order of their first item."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(count)], dtype=int)
    return np.unique(roots, return_inverse=True)[1].astype(int)  # a root is its first item


def find_overlaps(arrays: Sequence[np.ndarray], rule: OverlapRule | None = None) -> OverlapReport:
    """Every pair of ``arrays`` (2D, any shapes; all masks or all images) sharing a region."""
    started = time.perf_counter()
    arrays = [np.asarray(array) for array in arrays]
    rule = (rule or OverlapRule()).for_arrays(arrays)
    codes = [pixel_codes(array, f"array {i}") for i, array in enumerate(arrays)]
    for i, array in enumerate(arrays):
        if min(array.shape) < rule.tile:
            raise InputError(f"overlap search: array {i} has shape {array.shape}, smaller than "
                             f"the tile of {rule.tile} px (lower the rule's 'tile')")
    kinds = {array.dtype == bool for array in arrays}
    if len(kinds) > 1:
        raise InputError("overlap search: give all masks (bool) or all images, not a mix")
    is_mask = kinds == {True}
    found = _Found(arrays, rule)
    for candidate in grid_candidates(codes, [(0, 0)], rule.min_area,
                                     rule.min_informative_on_grid, is_mask):
        found.check(candidate, rule.min_informative_on_grid)
    grid = [(0, 0)]
    if rule.search == "regions" and arrays:
        copies = clusters_of(len(arrays), [o.pair for o in found.pairs.values() if
                                           o.area == arrays[o.moved].size == arrays[o.fixed].size])
        kept = np.unique(copies, return_index=True)[1]  # the first array of each set of copies
        searched = _Found([arrays[i] for i in kept], rule)
        kept_codes = [codes[i] for i in kept]
        for candidate in seeded_candidates(kept_codes, rule.tile, is_mask):
            searched.check(candidate, rule.min_informative)
        grid = _grid_shifts(searched.pairs.values())
        for candidate in grid_candidates(kept_codes, grid, rule.min_area,
                                         rule.min_informative_on_grid, is_mask):
            searched.check(candidate, rule.min_informative_on_grid)
        for o in searched.pairs.values():
            found.add(replace(o, moved=int(kept[o.moved]), fixed=int(kept[o.fixed])))
    pairs = [found.pairs[key] for key in sorted(found.pairs)]
    clusters = clusters_of(len(arrays), [p.pair for p in pairs])
    return OverlapReport(len(arrays), rule, pairs, grid, clusters, time.perf_counter() - started)


class _Found:
    """Verified overlaps, one per pair of arrays; candidates for a known pair are skipped."""

    def __init__(self, arrays: list[np.ndarray], rule: OverlapRule) -> None:
        self.arrays, self.rule = arrays, rule
        self.pairs: dict[tuple[int, int], Overlap] = {}
        self._views: dict[tuple[int, int], np.ndarray] = {}

    def add(self, overlap: Overlap) -> None:
        self.pairs.setdefault(overlap.pair, overlap)

    def check(self, candidate: tuple[int, int, int, int, int], needed: int) -> None:
        query, view, target, dy, dx = candidate
        if (min(query, target), max(query, target)) in self.pairs:
            return
        if (query, view) not in self._views:
            self._views[(query, view)] = dihedral_view(self.arrays[query], view)
        overlap = _verify(self._views[(query, view)], self.arrays[target], dy, dx, self.rule,
                          needed)
        if overlap is not None:
            self.add(Overlap(query, target, view, dy, dx, *overlap))


def content_key(arrays: Sequence[np.ndarray], rule: OverlapRule | None = None) -> str:
    """A digest of the arrays' contents and the rule: what a remembered report is keyed by."""
    digest = hashlib.sha256(repr(rule or OverlapRule()).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


_REMEMBERED: dict[str, OverlapReport] = {}


def find_overlaps_cached(arrays: Sequence[np.ndarray], rule: OverlapRule | None = None
                         ) -> OverlapReport:
    """``find_overlaps``, remembered in this process by content: a study builds the same split
    for every condition, evaluation rebuilds the training split."""
    key = content_key(arrays, rule)
    if key not in _REMEMBERED:
        if len(_REMEMBERED) >= 8:
            _REMEMBERED.pop(next(iter(_REMEMBERED)))
        _REMEMBERED[key] = find_overlaps(arrays, rule)
    return _REMEMBERED[key]


def _grid_shifts(overlaps) -> list[tuple[int, int]]:
    """(0, 0) and every shift found, with signs and axes swapped (a grid is symmetric)."""
    shifts = {(0, 0)}
    for o in overlaps:
        for a, b in ((o.dy, o.dx), (o.dx, o.dy)):
            shifts |= {(a, b), (-a, b), (a, -b), (-a, -b)}
    return sorted(shifts)


def _verify(a: np.ndarray, b: np.ndarray, dy: int, dx: int, rule: OverlapRule, needed: int
            ) -> tuple[int, int, int, int] | None:
    """(height, width, mismatches, informative) of the overlap of ``a`` placed at (dy, dx) of
    ``b``, or None if that is not a shared region with ``needed`` informative pixels."""
    y0, y1 = max(0, -dy), min(a.shape[0], b.shape[0] - dy)
    x0, x1 = max(0, -dx), min(a.shape[1], b.shape[1] - dx)
    height, width = y1 - y0, x1 - x0
    if height <= 0 or width <= 0 or height * width < rule.min_area:
        return None
    part_a, part_b = a[y0:y1, x0:x1], b[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    if a.dtype == bool:
        mismatches = int(np.count_nonzero(part_a != part_b))
    else:
        difference = np.abs(part_a.astype(np.float64) - part_b.astype(np.float64))
        mismatches = int(np.count_nonzero(difference > rule.value_tolerance))
    if mismatches > rule.max_mismatch_fraction * height * width:
        return None  # cheap first test; the tolerance is relative to the content, below
    informative = _informative_count(part_a)
    if informative < needed or mismatches > rule.max_mismatch_fraction * informative:
        return None
    return height, width, mismatches, informative


def _informative_count(region: np.ndarray) -> int:
    """Pixels that differ from the region's most common value (in a mask: its minority)."""
    if region.dtype == bool:
        ones = int(np.count_nonzero(region))
        return min(ones, region.size - ones)
    return int(region.size - np.unique(region, return_counts=True)[1].max())
