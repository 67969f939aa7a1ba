"""The shared-region detector against brute force, synthetic crops, and the real masks."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from mitoseg.data.leakage import (OverlapRule, clusters_of, dihedral_view, find_overlaps,
                                  find_overlaps_cached)
from mitoseg.errors import InputError
from tests.conftest import SHARED_DATA

REAL_MASKS = SHARED_DATA / "fluo-masks"


def _views(array: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations, written out independently of the code under test."""
    turns = [np.rot90(array, k) for k in range(4)]
    return turns + [np.rot90(np.fliplr(array), k) for k in range(4)]


def _brute_force(arrays, min_area, max_mismatch_fraction=0.0):
    """{pair: [(view, dy, dx, informative), ...]}: every view of the first array at every shift
    in the second, compared pixel by pixel on the whole overlap."""
    found: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for i, j in itertools.combinations(range(len(arrays)), 2):
        fixed = arrays[j].astype(np.int16)
        for view, moved in enumerate(_views(arrays[i])):
            h, w = moved.shape
            padded = np.full((fixed.shape[0] + 2 * (h - 1), fixed.shape[1] + 2 * (w - 1)), -1,
                             np.int16)
            padded[h - 1:h - 1 + fixed.shape[0], w - 1:w - 1 + fixed.shape[1]] = fixed
            windows = sliding_window_view(padded, (h, w))
            inside = windows >= 0
            area = inside.sum(axis=(2, 3))
            mismatches = ((windows != moved) & inside).sum(axis=(2, 3))
            ones = (moved.astype(bool) & inside).sum(axis=(2, 3))
            informative = np.minimum(ones, area - ones)
            ok = (area >= min_area) & (mismatches <= max_mismatch_fraction * area)
            for sy, sx in zip(*np.nonzero(ok)):
                found.setdefault((i, j), []).append(
                    (view, int(sy) - (h - 1), int(sx) - (w - 1), int(informative[sy, sx])))
    return found


def _blobby_scene(seed: int, shape: tuple[int, int], fraction: float, sigma: float
                  ) -> np.ndarray:
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return noise > np.quantile(noise, 1 - fraction)


def _crops(scene: np.ndarray, size: int, stride: int) -> tuple[list[np.ndarray], list[tuple]]:
    starts = range(0, scene.shape[0] - size + 1, stride)
    boxes = [(y, x) for y in starts for x in range(0, scene.shape[1] - size + 1, stride)]
    return [scene[y:y + size, x:x + size].copy() for y, x in boxes], boxes


# ---------------------------------------------------------------------------------------------
# Brute force
# ---------------------------------------------------------------------------------------------

def test_the_eight_views_are_distinct_and_match_an_independent_definition():
    array = np.arange(12).reshape(3, 4)
    views = [dihedral_view(array, view) for view in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in views}) == 8
    for mine, independent in zip(views, _views(array)):
        np.testing.assert_array_equal(mine, independent)
    with pytest.raises(ValueError, match="0..7"):
        dihedral_view(array, 8)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_detector_equals_brute_force_on_small_crops(seed):
    rng = np.random.default_rng(seed)
    scene = rng.random((24, 32)) < 0.35  # texture: every 4 x 4 tile is informative and rare
    crops, _ = _crops(scene, 16, 8)  # 2 x 3 crops: 8 x 16 strips, 8 x 8 corners
    arrays = [dihedral_view(crop, int(rng.integers(8))).copy() for crop in crops]
    arrays += [rng.random((16, 16)) < 0.35 for _ in range(2)]  # unrelated
    arrays.append(dihedral_view(arrays[1], 5).copy())  # a copy, flipped: array 8
    # a weak link at a grid shift: sparse crops sharing an 8-px strip with 3 foreground pixels
    sparse = np.zeros((16, 24), bool)
    sparse[[2, 9, 15], [9, 12, 14]] = True
    arrays += [sparse[:, :16].copy(), sparse[:, 8:].copy()]
    rule = OverlapRule(min_area=32, tile=4, min_informative=10, min_informative_on_grid=1)
    report = find_overlaps(arrays, rule)

    reference = _brute_force(arrays, rule.min_area)
    strong = {pair for pair, hits in reference.items()
              if any(hit[3] >= rule.min_informative for hit in hits)}
    on_grid = {pair for pair, hits in reference.items()
               if any(hit[3] >= 1 and (hit[1], hit[2]) in report.grid for hit in hits)}
    found = {overlap.pair for overlap in report.pairs}
    # 7 strips and 4 corners between the crops; array 1's copy and its 5 neighbours
    assert len(strong) == 11 + 1 + 5
    assert (9, 10) in on_grid - strong  # the weak link
    # Regions shared with a copy are listed for the first of the copies only (1, not 8).
    assert {p for p in found if 8 in p} == {(1, 8)}
    assert found == {p for p in strong | on_grid if 8 not in p} | {(1, 8)}
    expected_clusters = clusters_of(len(arrays), sorted(strong | on_grid))
    np.testing.assert_array_equal(report.clusters, expected_clusters)
    assert (0, 0) in report.grid and (0, 8) in report.grid and (8, 8) in report.grid
    for overlap in report.pairs:  # each reported overlap is a true one, as reported
        if overlap.moved < overlap.fixed:
            hit = (overlap.view, overlap.dy, overlap.dx, overlap.informative)
            assert hit in reference[overlap.pair]


def test_near_exact_overlaps_need_a_tolerance():
    scene = _blobby_scene(3, (120, 220), 0.25, 3)
    left, right = scene[:, :120].copy(), scene[:, 80:200].copy()  # a 40-px shared strip
    right[[5, 60, 100], [10, 20, 30]] ^= True  # three pixels differ in the strip
    assert not find_overlaps([left, right], OverlapRule(min_area=1600)).pairs
    tolerant = find_overlaps([left, right], OverlapRule(min_area=1600,
                                                        max_mismatch_fraction=0.01))
    (overlap,) = tolerant.pairs
    assert overlap.mismatches == 3 and overlap.area == 120 * 40


# ---------------------------------------------------------------------------------------------
# Synthetic crops of a larger image, like the real masks
# ---------------------------------------------------------------------------------------------

def _expected_pairs(boxes, size, min_area):
    pairs = set()
    for (i, (yi, xi)), (j, (yj, xj)) in itertools.combinations(enumerate(boxes), 2):
        if max(0, size - abs(yi - yj)) * max(0, size - abs(xi - xj)) >= min_area:
            pairs.add((i, j))
    return pairs


@pytest.mark.parametrize("kind", ["mask", "image"])
def test_overlapping_crops_of_a_larger_image_are_found_exactly(kind):
    rng = np.random.default_rng(11)
    if kind == "mask":
        scene = _blobby_scene(5, (250, 250), 0.3, 2.5)
    else:
        scene = ndimage.gaussian_filter(rng.normal(100, 10, (250, 250)), 1).astype(np.float32)
    crops, boxes = _crops(scene, 100, 75)  # 3 x 3 crops, 25-px strips and corners
    arrays = [dihedral_view(crop, int(rng.integers(8))).copy() for crop in crops]
    report = find_overlaps(arrays, OverlapRule(min_area=625))
    assert {o.pair for o in report.pairs} == _expected_pairs(boxes, 100, 625)
    assert len(set(report.clusters.tolist())) == 1
    strips = find_overlaps(arrays, OverlapRule(min_area=2500))  # corners left out
    assert {o.pair for o in strips.pairs} == _expected_pairs(boxes, 100, 2500)


def test_crops_that_do_not_overlap_give_no_pairs():
    scene = _blobby_scene(8, (300, 300), 0.3, 2.5)
    crops, _ = _crops(scene, 100, 100)
    arrays = crops + [_blobby_scene(9, (100, 100), 0.3, 2.5)]
    report = find_overlaps([dihedral_view(a, k % 8) for k, a in enumerate(arrays)])
    assert report.pairs == []
    assert report.clusters.tolist() == list(range(len(arrays)))


def test_small_coincidences_count_on_the_grid_only():
    """A small blob in empty background matches by chance; it counts only at a grid shift."""
    blob = np.zeros((5, 5), bool)
    blob[1:4, :] = blob[:, 1:4] = True  # 21 px
    scene = _blobby_scene(4, (80, 280), 0.3, 2.5)
    a, b = scene[:, :80].copy(), scene[:, 60:140].copy()  # neighbours: grid shift (0, 60)
    c, d = np.zeros((80, 80), bool), np.zeros((80, 80), bool)
    c[50:55, 10:15] = blob  # c and d share an empty 60 x 70 region with one blob...
    d[40:45, 20:25] = blob  # ...at shift (-10, 10): a coincidence, not on the grid
    e = np.zeros((80, 80), bool)
    e[50:55, 70:75] = blob  # e's right strip equals c's left strip at the grid shift (0, 60)
    report = find_overlaps([a, b, c, d, e], OverlapRule(min_area=400, min_informative=100))
    assert {o.pair for o in report.pairs} == {(0, 1), (2, 4)}
    assert (0, 60) in report.grid


def test_empty_masks_and_copies():
    empty = np.zeros((40, 40), bool)
    mask = _blobby_scene(2, (40, 40), 0.2, 2)
    arrays = [empty, empty.copy(), mask, np.rot90(mask).copy(), np.fliplr(mask).copy()]
    report = find_overlaps(arrays, OverlapRule(search="copies"))
    assert {o.pair for o in report.pairs} == {(2, 3), (2, 4), (3, 4)}  # empty ones: no content
    assert report.clusters.tolist() == [0, 1, 2, 2, 2]


def test_clusters_are_connected_components():
    assert clusters_of(6, [(4, 1), (1, 2), (5, 3)]).tolist() == [0, 1, 1, 2, 1, 2]
    assert clusters_of(3, []).tolist() == [0, 1, 2]


@pytest.mark.parametrize("options, message", [
    ({"tile": 2}, "tile"), ({"min_area": 10}, "min_area"), ({"search": "all"}, "search"),
    ({"min_informative_on_grid": 0}, "min_informative_on_grid"),
    ({"min_informative": 2, "min_informative_on_grid": 5}, "min_informative"),
    ({"max_mismatch_fraction": 0.5}, "max_mismatch_fraction"),
])
def test_bad_rules_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        OverlapRule(**options)


def test_bad_arrays_are_refused():
    with pytest.raises(InputError, match="array 1"):
        find_overlaps([np.zeros((20, 20), bool), np.zeros((4, 20, 20), bool)])
    with pytest.raises(InputError, match="smaller than the tile"):
        find_overlaps([np.zeros((20, 10), bool)])
    with pytest.raises(InputError, match="not a mix"):
        find_overlaps([np.zeros((20, 20), bool), np.zeros((20, 20))])
    with pytest.raises(InputError, match="NaN"):
        find_overlaps([np.full((20, 20), np.nan)])


def test_default_min_area_follows_the_array_size():
    assert OverlapRule().for_arrays([np.zeros((200, 200))]).min_area == 2500
    assert OverlapRule().for_arrays([np.zeros((64, 80))]).min_area == 256
    assert OverlapRule(min_area=900).for_arrays([np.zeros((64, 64))]).min_area == 900


# ---------------------------------------------------------------------------------------------
# The real masks
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_masks():
    if not REAL_MASKS.is_dir():
        pytest.skip(f"real masks not present at {REAL_MASKS} (see ../shared/data/README.md)")
    from mitoseg.data.mask_sources import folder_mask_set
    return folder_mask_set(str(REAL_MASKS), polarity="inverted", group_size=6)


def test_real_masks_overlap_in_clusters_of_crops(real_masks):
    started = time.perf_counter()
    report = find_overlaps_cached(list(real_masks.masks))
    seconds = time.perf_counter() - started
    groups = real_masks.groups
    between = {tuple(sorted((groups[o.moved], groups[o.fixed]))) for o in report.pairs
               if groups[o.moved] != groups[o.fixed]}
    # README: "at least 71 pairs of groups overlap ... clusters of up to 12 groups". There are
    # more: 123 share a 50 x 200 strip and 77 a 50 x 50 corner, in 8 clusters.
    assert len(between) == 200
    assert report.grid == [(a, b) for a in (-150, 0, 150) for b in (-150, 0, 150)]
    sizes = sorted(len(set(groups[report.clusters == c])) for c in set(report.clusters))
    assert sizes == [2, 4, 4, 5, 6, 8, 24, 37]
    for group in np.unique(groups):  # the six views of a crop are one cluster
        assert len(set(report.clusters[groups == group])) == 1
    assert seconds < 60  # about 1-3 s on two shared cores
