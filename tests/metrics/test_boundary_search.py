"""The staged nearest-boundary search of the ABD against brute force, fallbacks included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

import mitoseg.metrics.segmentation as seg
from mitoseg.metrics.segmentation import average_boundary_distance, boundary


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
def test_near_and_far_boundaries_match_brute_force(sampling: tuple) -> None:
    """Unrelated blobs: many pixels lie beyond the search radius (k-d tree fallback)."""
    for seed in range(6):
        a, b = blobs(seed), blobs(seed + 100, level=0.85)
        got = average_boundary_distance(a, b, sampling=sampling)
        assert got == pytest.approx(brute_abd(a, b, sampling), abs=1e-9)


def test_far_pixels_through_either_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    a = np.zeros((120, 120), bool)
    b = np.zeros((120, 120), bool)
    a[10:30, 10:30] = True
    b[80:110, 70:115] = True  # every boundary pixel is far from the other boundary
    b[12:20, 12:20] = True  # and some are near
    expected = brute_abd(a, b)
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(seg, "_KDTREE_ABOVE", 0)  # always the k-d tree
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(seg, "_KDTREE_ABOVE", math.inf)  # always all pairwise distances
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)
    monkeypatch.setattr(seg, "_LOOKUPS_PER_CHUNK", 7)  # stages split into many small chunks
    assert average_boundary_distance(a, b) == pytest.approx(expected, abs=1e-9)


def test_search_stages_cover_the_radius_in_distance_order() -> None:
    for spacing in [(1.0, 1.0), (0.7, 1.3), (0.1, 1.0)]:
        ry, rx, stages = seg._search_stages(spacing)
        dist = np.concatenate([d for _, _, d in stages])
        assert (np.diff(dist) >= 0).all() and dist[0] == 0
        radius = seg._SEARCH_RADIUS_PX * min(spacing)
        dy, dx = np.mgrid[-ry - 1:ry + 2, -rx - 1:rx + 2]
        inside = np.hypot(dy * spacing[0], dx * spacing[1]) <= radius
        assert inside.sum() == len(dist)  # every offset within the radius, once
