"""Both nearest-boundary searches of the ABD against brute force: numpy (rings, then matrix
products) and, where numba is installed, the compiled one (near look-ups, then a cell grid)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

import mitoseg.metrics.boundary_distance as bd
import mitoseg.metrics.boundary_distance_compiled as compiled
from mitoseg.metrics.segmentation import average_boundary_distance, boundary

SEARCHES = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not compiled.AVAILABLE, reason="numba not installed (pip install -e '.[metrics]')"))]


@pytest.fixture(params=SEARCHES)
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with each search (the default picks numba where it is installed)."""
    monkeypatch.setattr(bd, "USE_COMPILED", request.param == "numba")
    return request.param


@pytest.fixture
def numpy_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bd, "USE_COMPILED", False)


def brute_abd(a: np.ndarray, b: np.ndarray, sampling=(1.0, 1.0)) -> float:
    cross = ndimage.generate_binary_structure(2, 1)
    pa = np.argwhere(a & ~ndimage.binary_erosion(a, cross, border_value=0)) * np.asarray(sampling)
    pb = np.argwhere(b & ~ndimage.binary_erosion(b, cross, border_value=0)) * np.asarray(sampling)
    d = cdist(pa, pb)
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(pa) + len(pb)))


def blobs(seed: int, shape=(90, 120), level=0.6) -> np.ndarray:
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 3)
    return field > np.quantile(field, level)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_boundary_equals_binary_erosion(connectivity: int) -> None:
    structure = ndimage.generate_binary_structure(2, connectivity)
    for seed in range(10):
        mask = blobs(seed, (31, 47), 0.3 + 0.05 * seed)
        mask[0, :5] = mask[:, -1] = True  # foreground on the image edge
        expected = mask & ~ndimage.binary_erosion(mask, structure, border_value=0)
        np.testing.assert_array_equal(boundary(mask, connectivity), expected)


@pytest.mark.parametrize("sampling", [(1.0, 1.0), (0.7, 1.3), (0.1, 1.0), (2.0, 0.25)])
def test_near_and_far_boundaries_match_brute_force(sampling: tuple, search: str) -> None:
    """Unrelated blobs: many pixels lie beyond the near search, some far beyond."""
    for seed in range(6):
        a, b = blobs(seed), blobs(seed + 100, level=0.85)
        got = average_boundary_distance(a, b, sampling=sampling)
        assert got == pytest.approx(brute_abd(a, b, sampling), abs=1e-9)


def test_far_pixels_through_every_numpy_path(monkeypatch: pytest.MonkeyPatch, numpy_search: None) -> None:
    a = np.zeros((120, 120), bool)
    b = np.zeros((120, 120), bool)
    a[10:30, 10:30] = True
    b[80:110, 70:115] = True  # every boundary pixel is far from the other boundary
    b[12:20, 12:20] = True  # and some are near
    expected = brute_abd(a, b)
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(bd, "_DIRECT_PAIRS", 0)  # the row bound from one pixel per cell
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(bd, "_CHUNK_PIXELS", 3)  # many small chunks, each with its own rows
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(bd, "_FLOAT32_EXACT_COORD", 0)  # float64 products
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("radius", [0, 1, 2, 7])
def test_any_ring_radius_gives_the_same_distances(monkeypatch: pytest.MonkeyPatch, radius: int,
                                                  numpy_search: None) -> None:
    """The split between ring search and matrix products must not change a value."""
    monkeypatch.setattr(bd, "_RING_RADIUS_PX", radius)
    bd.search_rings.cache_clear()
    try:
        for seed in range(4):
            a, b = blobs(seed), blobs(seed + 50, level=0.7)
            for sampling in [(1.0, 1.0), (0.7, 1.3)]:
                got = average_boundary_distance(a, b, sampling=sampling)
                assert got == pytest.approx(brute_abd(a, b, sampling), abs=1e-9)
    finally:
        bd.search_rings.cache_clear()


def test_nearest_distances_match_brute_force_on_a_large_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Coordinates past the float32-exact range, and chunked products, on scattered pixels."""
    rng = np.random.default_rng(3)
    width = 3000
    target = np.sort(rng.choice(2500 * width, 900, replace=False))
    query = rng.choice(2500 * width, 400, replace=False)
    expected = cdist(np.stack(np.divmod(query, width), 1), np.stack(np.divmod(target, width), 1)).min(1)
    np.testing.assert_allclose(bd.nearest_distances(query, target, width), expected, rtol=0, atol=1e-9)
    monkeypatch.setattr(bd, "_DIRECT_PAIRS", 0)
    monkeypatch.setattr(bd, "_MAX_PRODUCT", 1000)
    np.testing.assert_allclose(bd.nearest_distances(query, target, width), expected, rtol=0, atol=1e-9)
    spacing = (0.3, 1.7)
    scaled = cdist(np.stack(np.divmod(query, width), 1) * spacing,
                   np.stack(np.divmod(target, width), 1) * spacing).min(1)
    np.testing.assert_allclose(bd.nearest_distances(query, target, width, spacing), scaled,
                               rtol=1e-12, atol=1e-9)


def test_search_rings_cover_the_radius_in_distance_order() -> None:
    for spacing in [(1.0, 1.0), (0.7, 1.3), (0.1, 1.0)]:
        ry, rx, rings = bd.search_rings(spacing)
        assert (np.diff([d for _, _, d in rings]) > 0).all()  # one ring per distance, increasing
        per_offset = np.concatenate([np.full(len(dy), d) for dy, _, d in rings])
        assert (np.diff(per_offset) >= 0).all() and per_offset[0] == 0
        for dy, dx, d in rings:  # every offset of a ring lies at the ring's distance
            np.testing.assert_array_equal(np.hypot(dy * spacing[0], dx * spacing[1]), d)
        radius = bd._RING_RADIUS_PX * min(spacing)
        dy, dx = np.mgrid[-ry - 1:ry + 2, -rx - 1:rx + 2]
        inside = np.hypot(dy * spacing[0], dx * spacing[1]) <= radius * (1 + 1e-12)
        assert inside.sum() == len(per_offset)  # every offset within the radius, once


@pytest.mark.skipif(not compiled.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize(("cell", "near"), [(1, 0), (3, 0), (8, 3), (64, 1), (5, 9)])
def test_compiled_search_is_exact_for_any_cell_and_near_radius(
        monkeypatch: pytest.MonkeyPatch, cell: int, near: int) -> None:
    """The grid only decides the visiting order; the stopping rule keeps every value exact."""
    monkeypatch.setattr(bd, "USE_COMPILED", True)
    monkeypatch.setattr(compiled, "CELL_PX", cell)
    monkeypatch.setattr(compiled, "NEAR_PX", near)
    for seed in range(3):
        a, b = blobs(seed, (70, 95)), blobs(seed + 30, (70, 95), level=0.8)
        a[0, :] = True  # boundary on the image edge, and pixels in the last partial cell
        for sampling in [(1.0, 1.0), (0.7, 1.3), (3.0, 0.5)]:
            got = average_boundary_distance(a, b, sampling=sampling)
            assert got == pytest.approx(brute_abd(a, b, sampling), abs=1e-9)


def test_both_searches_give_the_same_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    if not compiled.AVAILABLE:
        pytest.skip("numba not installed")
    pairs = [(boundary(blobs(s)), boundary(blobs(s + 7, level=0.75))) for s in range(4)]
    monkeypatch.setattr(bd, "USE_COMPILED", True)
    fast = bd.boundary_distance_sums(pairs, (0.9, 1.1))
    monkeypatch.setattr(bd, "USE_COMPILED", False)
    np.testing.assert_allclose(bd.boundary_distance_sums(pairs, (0.9, 1.1)), fast, rtol=1e-13)
