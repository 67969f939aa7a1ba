"""Statistics of procedural masks: they must look like real mitochondria masks (200x200 crops of
COS-7 cells, 3-25 % foreground, objects 4-10 px wide) and be reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from mitoseg.errors import InputError
from mitoseg.synth.procedural_masks import (
    ProceduralMaskConfig,
    generate_mask,
    generate_masks,
)

LOW, HIGH = ProceduralMaskConfig().foreground_fraction
# Few objects that may not overlap: shapes then come from the object kind, not from crossings.
SPARSE = {"foreground_fraction": (0.03, 0.06), "max_overlap": 0.0}


def _only(kind: str, **changes) -> ProceduralMaskConfig:
    return ProceduralMaskConfig(kind_weights={kind: 1.0}, **changes)


def _skeleton_widths(masks: np.ndarray) -> np.ndarray:
    """Width at every skeleton pixel: twice its distance to the background."""
    widths = [2.0 * ndimage.distance_transform_edt(m)[skeletonize(m)] for m in masks]
    return np.concatenate(widths)


def _branch_points(mask: np.ndarray) -> int:
    """Skeleton pixels with >= 3 skeleton neighbours (8-connectivity)."""
    skel = skeletonize(mask)
    neighbours = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
    return int(np.count_nonzero(skel & (neighbours >= 3)))


def _holes(mask: np.ndarray) -> int:
    """Number of background regions enclosed by foreground."""
    return int(ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)[1])


def _length_to_width(masks: np.ndarray) -> np.ndarray:
    """Per connected component: skeleton length / mean width, with width = area / length."""
    ratios = []
    for mask in masks:
        labels, n = ndimage.label(mask)
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        length = np.bincount(labels[skeletonize(mask)], minlength=n + 1)[1:]
        ratios.append(length.astype(float) ** 2 / area)
    return np.concatenate(ratios)


@pytest.fixture(scope="module")
def default_masks() -> np.ndarray:
    return generate_masks(seed=123, count=100)


# -- reproducibility -------------------------------------------------------------------------

def test_same_seed_gives_identical_masks() -> None:
    assert np.array_equal(generate_masks(7, 4), generate_masks(7, 4))
    a = generate_mask(np.random.default_rng(5))
    assert np.array_equal(a, generate_mask(np.random.default_rng(5)))


def test_different_seeds_and_indices_differ() -> None:
    a, b = generate_masks(7, 3), generate_masks(8, 3)
    assert all(not np.array_equal(a[i], b[i]) for i in range(3))
    assert not np.array_equal(a[0], a[1])


def test_mask_i_does_not_depend_on_count() -> None:
    ten, twenty = generate_masks(3, 10), generate_masks(3, 20)
    assert np.array_equal(ten, twenty[:10])
    assert np.array_equal(twenty[4], generate_mask(np.random.default_rng([3, 4])))


def test_output_type_and_shape(default_masks: np.ndarray) -> None:
    assert default_masks.dtype == bool and default_masks.shape == (100, 200, 200)
    assert generate_masks(0, 0).shape == (0, 200, 200)


# -- foreground fraction ----------------------------------------------------------------------

def test_every_fraction_within_bounds(default_masks: np.ndarray) -> None:
    fractions = default_masks.mean(axis=(1, 2))
    # The upper bound is strict (objects that would exceed it are rejected); the lower bound holds
    # because placement stops only once the drawn target (>= LOW) is reached.
    assert fractions.min() >= LOW, fractions.min()
    assert fractions.max() <= HIGH, fractions.max()


def test_fraction_distribution_is_realistic(default_masks: np.ndarray) -> None:
    fractions = default_masks.mean(axis=(1, 2))
    # Targets are uniform on [0.03, 0.25] (mean 0.14); the last object overshoots a little.
    assert 0.11 <= fractions.mean() <= 0.18, fractions.mean()
    assert fractions.std() > 0.04  # the target really varies from mask to mask
    assert np.mean(fractions < 0.08) > 0.1 and np.mean(fractions > 0.2) > 0.1


def test_objects_are_cut_by_the_border(default_masks: np.ndarray) -> None:
    edges = default_masks[:, [0, -1], :].any(axis=(1, 2)) | default_masks[:, :, [0, -1]].any(
        axis=(1, 2))
    assert edges.mean() > 0.5  # like real crops, most masks have objects leaving the field


def test_custom_fraction_range_is_respected() -> None:
    cfg = ProceduralMaskConfig(foreground_fraction=(0.05, 0.06))
    fractions = generate_masks(1, 20, cfg).mean(axis=(1, 2))
    assert fractions.min() >= 0.05 and fractions.max() <= 0.06


# -- widths and shapes ------------------------------------------------------------------------

def test_tubule_widths_match_the_configured_range() -> None:
    widths = _skeleton_widths(generate_masks(11, 30, _only("tubule")))
    assert 4.0 <= np.median(widths) <= 10.0, np.median(widths)
    assert np.mean((widths >= 3.0) & (widths <= 12.0)) >= 0.9


def test_width_config_changes_widths() -> None:
    thin = _skeleton_widths(generate_masks(11, 20, _only("tubule", width_px=(4.0, 5.0))))
    thick = _skeleton_widths(generate_masks(11, 20, _only("tubule", width_px=(9.0, 10.0))))
    assert np.median(thin) <= 6.0 < 9.0 <= np.median(thick)


def test_tubules_are_elongated_and_fragments_are_not() -> None:
    tubules = _length_to_width(generate_masks(2, 20, _only("tubule")))
    fragments = _length_to_width(generate_masks(2, 20, _only("fragment")))
    assert np.median(tubules) > 2.5 > 1.5 > np.median(fragments), (tubules, fragments)


def test_rings_have_holes() -> None:
    rings = generate_masks(4, 20, _only("ring", **SPARSE))
    assert all(_holes(m) > 0 for m in rings)
    # Tubules enclose a hole only where they happen to cross or curl: much more rarely.
    tubules = generate_masks(4, 20, _only("tubule", **SPARSE))
    per_pixel = [sum(_holes(m) for m in ms) / ms.sum() for ms in (rings, tubules)]
    assert per_pixel[0] > 5.0 * per_pixel[1], per_pixel


def test_networks_have_branch_points() -> None:
    networks = generate_masks(5, 20, _only("network", **SPARSE))
    assert all(_branch_points(m) > 0 for m in networks)
    # Isolated tubules branch only where they touch; networks branch by construction.
    tubules = generate_masks(5, 20, _only("tubule", **SPARSE))
    per_pixel = [sum(_branch_points(m) for m in ms) / ms.sum() for ms in (networks, tubules)]
    assert per_pixel[0] > 2.0 * per_pixel[1], per_pixel


def test_fragments_are_small_components() -> None:
    areas = []
    for mask in generate_masks(6, 20, _only("fragment")):
        labels, n = ndimage.label(mask)
        areas.extend(np.bincount(labels.ravel())[1:].tolist())
    # An ellipse of minor axis <= 10 px and aspect <= 2.5 covers at most ~200 px.
    assert np.median(areas) < 150 and np.percentile(areas, 90) < 300, np.median(areas)


def test_shape_is_respected() -> None:
    cfg = ProceduralMaskConfig(shape=(64, 96))
    masks = generate_masks(9, 10, cfg)
    assert masks.shape == (10, 64, 96)
    fractions = masks.mean(axis=(1, 2))
    assert fractions.min() >= LOW and fractions.max() <= HIGH


# -- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"foreground_fraction": (0.3, 0.1)}, "foreground_fraction"),
        ({"foreground_fraction": (0.0, 0.1)}, "foreground_fraction"),
        ({"foreground_fraction": (0.1, 1.0)}, "foreground_fraction"),
        ({"width_px": (0.5, 4.0)}, "width_px"),
        ({"width_px": (10.0, 4.0)}, "width_px"),
        ({"kind_weights": {"tubule": 1.0, "blob": 1.0}}, "kind_weights"),
        ({"kind_weights": {"tubule": -1.0, "ring": 2.0}}, "kind_weights"),
        ({"kind_weights": {"tubule": 0.0}}, "kind_weights"),
        ({"shape": (200,)}, "shape"),
        ({"shape": (4, 200)}, "shape"),
        ({"tubule_length_px": (80.0, 15.0)}, "tubule_length_px"),
        ({"network_branches": (2, 4)}, "network_branches"),
        ({"ring_diameter_px": (30.0, 12.0)}, "ring_diameter_px"),
        ({"max_overlap": 1.5}, "max_overlap"),
    ],
)
def test_bad_config_raises_input_error(changes: dict, field: str) -> None:
    with pytest.raises(InputError, match=field):
        ProceduralMaskConfig(**changes)


def test_negative_count_raises_input_error() -> None:
    with pytest.raises(InputError, match="count"):
        generate_masks(0, -1)


def test_lists_from_yaml_are_accepted() -> None:
    cfg = ProceduralMaskConfig(shape=[32, 48], width_px=[4, 6])  # type: ignore[arg-type]
    assert cfg.shape == (32, 48) and generate_masks(0, 1, cfg).shape == (1, 32, 48)
