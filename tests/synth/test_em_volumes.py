"""Procedural EM volumes: reproducible, plausible (dark mitochondria with a membrane, a few
percent of the voxels), learnable but not solvable by a threshold, and anisotropy-aware."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from mitoseg.errors import InputError
from mitoseg.synth.em_volumes import synthetic_em_volume

SHAPE = (48, 128, 128)  # big enough that one large capsule does not swamp the fraction


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_em_volume(SHAPE, seed=0)


def _best_threshold_iou(values: np.ndarray, labels: np.ndarray) -> float:
    """Best IoU of ``values < t`` against the labels over all thresholds (mitochondria are
    dark, so the dark side is the candidate foreground)."""
    order = np.argsort(values, axis=None, kind="stable")
    hits = np.cumsum(labels.ravel()[order])  # true positives when the k darkest are foreground
    predicted = np.arange(1, order.size + 1)
    return float((hits / (predicted + labels.sum() - hits)).max())


def test_same_seed_same_volume_other_seed_other_volume() -> None:
    image, labels = synthetic_em_volume((8, 48, 48), seed=0)
    again, again_labels = synthetic_em_volume((8, 48, 48), seed=0)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(labels, again_labels)
    other, _ = synthetic_em_volume((8, 48, 48), seed=1)
    assert (other != image).mean() > 0.5


def test_types_shape_and_speed() -> None:
    start = time.perf_counter()
    image, labels = synthetic_em_volume((64, 128, 128), seed=3)
    elapsed = time.perf_counter() - start
    assert image.dtype == np.uint8 and labels.dtype == bool
    assert image.shape == labels.shape == (64, 128, 128)
    assert elapsed < 3.0, f"64 x 128 x 128 took {elapsed:.2f} s"


@pytest.mark.parametrize("seed", range(4))
def test_foreground_fraction_in_range(seed: int) -> None:
    _, labels = synthetic_em_volume(SHAPE, seed=seed)
    assert 0.03 <= labels.mean() <= 0.15


def test_density_is_a_knob() -> None:
    sparse = synthetic_em_volume(SHAPE, seed=0, mito_density=0.03)[1].mean()
    dense = synthetic_em_volume(SHAPE, seed=0, mito_density=0.15)[1].mean()
    assert 0.02 < sparse < 0.06 and 0.13 < dense < 0.22


def test_labels_are_separate_convex_bodies(volume) -> None:
    _, labels = volume
    components, count = ndimage.label(labels)
    assert count >= 4
    # Each body is a capsule: filled (no holes) and not touching another (a gap is kept).
    np.testing.assert_array_equal(ndimage.binary_fill_holes(labels), labels)
    sizes = ndimage.sum_labels(labels, components, range(1, count + 1))
    assert sizes.min() > 0 and np.median(sizes) > 200


def test_mitochondria_are_darker_with_a_darker_membrane(volume) -> None:
    image, labels = volume
    image = image.astype(np.float32)
    inner = ndimage.binary_erosion(labels, iterations=4)
    rim = labels & ~ndimage.binary_erosion(labels, iterations=3)
    outside = ~ndimage.binary_dilation(labels, iterations=3)
    assert image[inner].mean() < image[outside].mean() - 20  # darker matrix
    assert image[rim].mean() < image[inner].mean()  # the double membrane is darker still
    # Cristae: more texture inside mitochondria than a flat fill would give.
    smooth = ndimage.gaussian_filter(image, 1.0)
    assert smooth[inner].std() > 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_is_not_enough_but_context_helps(seed: int) -> None:
    image, labels = synthetic_em_volume(SHAPE, seed=seed)
    raw = _best_threshold_iou(image.astype(np.float32), labels)
    smoothed = _best_threshold_iou(ndimage.gaussian_filter(image.astype(np.float32), 2.0),
                                   labels)
    chance = labels.mean()  # IoU of a random guess with the right fraction, about
    assert raw < 0.6, f"a global threshold reaches IoU {raw:.2f}: the task is trivial"
    assert smoothed > max(3 * chance, raw), (smoothed, raw, chance)


def test_anisotropy_shortens_objects_along_z() -> None:
    def extents(anisotropy: float) -> tuple[float, float]:
        _, labels = synthetic_em_volume((48, 96, 96), seed=5, anisotropy=anisotropy)
        boxes = ndimage.find_objects(ndimage.label(labels)[0])
        z = np.mean([b[0].stop - b[0].start for b in boxes])
        y = np.mean([b[1].stop - b[1].start for b in boxes])
        return z, y

    (z1, y1), (z5, y5) = extents(1.0), extents(5.0)
    assert z5 < 0.4 * z1  # the same physical sizes span ~5x fewer slices
    assert 0.7 < y5 / y1 < 1.4  # in-plane sizes do not change


@pytest.mark.parametrize("change,option", [
    ({"shape": (8, 32)}, "shape"),
    ({"shape": (0, 32, 32)}, "shape"),
    ({"seed": 1.5}, "seed"),
    ({"anisotropy": 0}, "anisotropy"),
    ({"anisotropy": float("nan")}, "anisotropy"),
    ({"mito_density": 0.5}, "mito_density"),
    ({"mito_radius_px": (8.0, 4.0)}, "mito_radius_px"),
    ({"mito_aspect": (0.5, 2.0)}, "mito_aspect"),
    ({"noise_sigma": -1.0}, "noise_sigma"),
])
def test_bad_arguments_name_the_option(change: dict, option: str) -> None:
    kwargs = {"shape": (8, 32, 32), "seed": 0, **change}
    with pytest.raises(InputError, match=option):
        synthetic_em_volume(**kwargs)
