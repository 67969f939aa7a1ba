"""Tests for mitoseg.metrics.segmentation against brute-force references and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import (
    area_similarity,
    average_boundary_distance,
    boundary,
    deformation_area_similarity,
    deformation_distance_similarity,
    deformation_metrics,
    image_metrics,
    mean_sem,
)

# ---------------------------------------------------------------- brute-force references

N4 = [(-1, 0), (1, 0), (0, -1), (0, 1)]
N8 = N4 + [(-1, -1), (-1, 1), (1, -1), (1, 1)]


def bf_boundary(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Loop over foreground pixels; a pixel is boundary if any neighbour is off-image or background."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    offsets = N4 if connectivity == 1 else N8
    for r in range(h):
        for c in range(w):
            if not mask[r, c]:
                continue
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                if not (0 <= rr < h and 0 <= cc < w) or not mask[rr, cc]:
                    out[r, c] = True
                    break
    return out


def bf_abd(a: np.ndarray, b: np.ndarray, connectivity: int = 1, sampling=(1.0, 1.0)) -> float:
    """All pairwise Euclidean distances between the two boundary point sets."""
    sa, sb = bf_boundary(a, connectivity), bf_boundary(b, connectivity)
    pa = np.argwhere(sa) * np.asarray(sampling, dtype=float)
    pb = np.argwhere(sb) * np.asarray(sampling, dtype=float)
    if len(pa) == 0 and len(pb) == 0:
        return 0.0
    if len(pa) == 0 or len(pb) == 0:
        return math.hypot(a.shape[0] * sampling[0], a.shape[1] * sampling[1])
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(pa) + len(pb)))


def bf_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = union = 0
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist()):
        inter += x and y
        union += x or y
    return 1.0 if union == 0 else inter / union


def blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random blobs: threshold smoothed noise at a random level (fraction ~10-60 %)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.5, 3.5))
    return field > np.quantile(field, rng.uniform(0.4, 0.9))


SHAPES = [(40, 40), (37, 53)]
# 25 seeds x 2 shapes = 50 random mask pairs
CASES = [(seed, shape) for seed in range(25) for shape in SHAPES]


@pytest.fixture(scope="module")
def random_pairs():
    pairs = []
    for seed, shape in CASES:
        rng = np.random.default_rng(seed)
        pairs.append((blob(rng, shape), blob(rng, shape)))
    return pairs


# ---------------------------------------------------------------- boundary

@pytest.mark.parametrize("connectivity", [1, 2])
def test_boundary_matches_brute_force(random_pairs, connectivity):
    for a, _ in random_pairs:
        np.testing.assert_array_equal(boundary(a, connectivity), bf_boundary(a, connectivity))


def test_boundary_connectivities_differ_on_diagonal_neighbour():
    # the centre of a plus shape has all 4-neighbours inside but diagonal ones outside
    plus = np.zeros((5, 5), bool)
    plus[2, 1:4] = True
    plus[1:4, 2] = True
    assert not boundary(plus, 1)[2, 2]
    assert boundary(plus, 2)[2, 2]


def test_boundary_image_edge_counts_as_background():
    full = np.ones((5, 5), bool)
    expected = np.ones((5, 5), bool)
    expected[1:4, 1:4] = False
    np.testing.assert_array_equal(boundary(full), expected)
    np.testing.assert_array_equal(boundary(full, 2), expected)


# ---------------------------------------------------------------- AS and ABD vs brute force

def test_area_similarity_matches_brute_force(random_pairs):
    for a, b in random_pairs:
        assert area_similarity(a, b) == pytest.approx(bf_iou(a, b), abs=1e-12)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_abd_matches_brute_force(random_pairs, connectivity):
    for a, b in random_pairs:
        got = average_boundary_distance(a, b, connectivity=connectivity)
        assert got == pytest.approx(bf_abd(a, b, connectivity), abs=1e-9)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_abd_anisotropic_sampling_matches_brute_force(random_pairs, connectivity):
    sampling = (0.7, 1.3)
    for a, b in random_pairs[:20]:
        got = average_boundary_distance(a, b, connectivity=connectivity, sampling=sampling)
        assert got == pytest.approx(bf_abd(a, b, connectivity, sampling), abs=1e-9)


def test_abd_scalar_sampling_scales_pixels(random_pairs):
    a, b = random_pairs[0]
    px = average_boundary_distance(a, b)
    assert average_boundary_distance(a, b, sampling=0.0645) == pytest.approx(px * 0.0645, abs=1e-12)


def test_abd_is_symmetric(random_pairs):
    a, b = random_pairs[3]
    assert average_boundary_distance(a, b) == pytest.approx(average_boundary_distance(b, a), abs=1e-12)


# ---------------------------------------------------------------- hand-computed cases

def test_identical_masks(random_pairs):
    a, _ = random_pairs[1]
    assert area_similarity(a, a) == 1.0
    assert average_boundary_distance(a, a) == 0.0
    assert average_boundary_distance(a, a, connectivity=2) == 0.0


@pytest.mark.parametrize("connectivity", [1, 2])
def test_square_shifted_by_one_pixel(connectivity):
    a = np.zeros((30, 30), bool)
    a[10:20, 10:20] = True
    b = np.zeros((30, 30), bool)
    b[10:20, 11:21] = True
    # intersection 10x9, union 10x11
    assert area_similarity(a, b) == pytest.approx(9 / 11, abs=1e-12)
    # each 36-pixel ring: 18 pixels at distance 1 (left/right columns and two corners), rest 0
    assert average_boundary_distance(a, b, connectivity) == pytest.approx(36 / 72, abs=1e-12)
    # shifting along x scales with dx only
    assert average_boundary_distance(a, b, connectivity, sampling=(5.0, 0.5)) == pytest.approx(0.25, abs=1e-12)


def test_disk_vs_dilated_disk():
    yy, xx = np.mgrid[:41, :41]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2
    fp = np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) <= 4
    dilated = ndimage.binary_dilation(disk, structure=fp)
    got = average_boundary_distance(disk, dilated)
    assert got == pytest.approx(bf_abd(disk, dilated), abs=1e-9)
    assert abs(got - 2.0) < 0.3
    assert area_similarity(disk, dilated) == pytest.approx(disk.sum() / dilated.sum(), abs=1e-12)


def test_empty_conventions():
    empty = np.zeros((30, 40), bool)
    some = np.zeros((30, 40), bool)
    some[5:9, 5:9] = True
    assert area_similarity(empty, empty) == 1.0
    assert average_boundary_distance(empty, empty) == 0.0
    assert area_similarity(empty, some) == 0.0
    assert average_boundary_distance(empty, some) == pytest.approx(50.0, abs=1e-12)
    assert average_boundary_distance(some, empty) == pytest.approx(50.0, abs=1e-12)
    assert average_boundary_distance(some, empty, sampling=(0.5, 2.0)) == pytest.approx(
        math.hypot(15.0, 80.0), abs=1e-12
    )



def test_empty_abd_option_diagonal_or_exclude():
    """The one-empty-mask convention is an explicit option: the diagonal (default) or exclude (nan), so a
    study can leave total misses out of ABD means (and count them) instead of scoring them
    282.8 px on 200 x 200 images."""
    empty = np.zeros((30, 40), bool)
    some = np.zeros((30, 40), bool)
    some[5:9, 5:9] = True
    assert average_boundary_distance(some, empty, empty="diagonal") == pytest.approx(50.0)
    assert math.isnan(average_boundary_distance(some, empty, empty="exclude"))
    assert math.isnan(average_boundary_distance(empty, some, empty="exclude"))
    assert average_boundary_distance(empty, empty, empty="exclude") == 0.0  # both empty agree
    assert average_boundary_distance(some, some, empty="exclude") == 0.0
    m = image_metrics(some, empty, pixel_size_um=0.1, empty_abd="exclude")
    assert math.isnan(m["abd_px"]) and math.isnan(m["abd_um"]) and m["pred_empty"] == 1.0
    assert m["as"] == 0.0  # AS needs no convention
    with pytest.raises(InputError, match="empty_abd.*'diagonal' or 'exclude'.*'zero'"):
        image_metrics(some, empty, pixel_size_um=0.1, empty_abd="zero")
    with pytest.raises(InputError, match="empty.*'diagonal' or 'exclude'"):
        average_boundary_distance(some, empty, empty="nan")


def test_dds_inherits_the_empty_abd_option(random_pairs):
    a, a_d = random_pairs[7]
    b = a.copy()
    empty = np.zeros_like(a)
    diagonal = deformation_metrics(a, a_d, b, empty)  # the prediction vanished when deformed
    moved = average_boundary_distance(a, a_d)
    assert diagonal["dds"] == pytest.approx(math.hypot(*a.shape) / moved)
    assert deformation_distance_similarity(a, a_d, b, empty) == pytest.approx(diagonal["dds"])
    excluded = deformation_metrics(a, a_d, b, empty, empty_abd="exclude")
    assert math.isnan(excluded["dds"]) and excluded["das"] == diagonal["das"]
    assert math.isnan(deformation_distance_similarity(a, a_d, b, empty, empty_abd="exclude"))
    assert math.isnan(deformation_metrics(a, a_d, empty, b, empty_abd="exclude")["abd"])

def test_masks_touching_image_edge():
    gt = np.ones((6, 6), bool)
    pred = np.zeros((6, 6), bool)
    pred[:, :5] = True
    # S(gt) = 20-pixel ring: only column 5 (6 px) is off S(pred), each at distance 1.
    # S(pred) = 18 px: column 4 rows 1-4 are at distance 1 from S(gt), the rest lie on it.
    assert average_boundary_distance(gt, pred) == pytest.approx(10 / 38, abs=1e-12)
    assert area_similarity(gt, pred) == pytest.approx(30 / 36, abs=1e-12)
    assert average_boundary_distance(gt, gt) == 0.0


def test_integer_masks_equal_bool(random_pairs):
    a, b = random_pairs[2]
    assert area_similarity(a.astype(np.uint8), b.astype(np.int64)) == area_similarity(a, b)
    assert average_boundary_distance(a.astype(np.uint8), b.astype(np.int32)) == average_boundary_distance(a, b)


# ---------------------------------------------------------------- DAS / DDS

def _deformed(a: np.ndarray, erode: bool, it: int = 2) -> np.ndarray:
    op = ndimage.binary_erosion if erode else ndimage.binary_dilation
    return op(a, iterations=it)


@pytest.mark.parametrize("erode", [True, False])
def test_perfect_prediction_gives_das_and_dds_one(random_pairs, erode):
    a, _ = random_pairs[4]
    a_d = _deformed(a, erode)
    assert deformation_area_similarity(a, a_d, a, a_d) == 1.0
    assert deformation_distance_similarity(a, a_d, a, a_d) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("erode", [True, False])
def test_static_prediction_gives_das_and_dds_zero(random_pairs, erode):
    a, b = random_pairs[5]
    a_d = _deformed(a, erode)
    assert deformation_area_similarity(a, a_d, b, b) == 0.0
    assert deformation_distance_similarity(a, a_d, b, b) == 0.0


def test_das_matches_brute_force(random_pairs):
    for i, (a, b) in enumerate(random_pairs[:20]):
        a_d = _deformed(a, erode=i % 2 == 0, it=1)
        b_d = _deformed(b, erode=i % 3 == 0, it=1)
        expected = bf_iou(a ^ a_d, b ^ b_d)
        assert deformation_area_similarity(a, a_d, b, b_d) == pytest.approx(expected, abs=1e-12)


def test_dds_matches_brute_force_ratio(random_pairs):
    for a, b in random_pairs[:6]:
        a_d, b_d = _deformed(a, True, 1), _deformed(b, False, 3)
        expected = bf_abd(b, b_d) / bf_abd(a, a_d)
        assert deformation_distance_similarity(a, a_d, b, b_d) == pytest.approx(expected, abs=1e-9)


def test_das_both_changes_empty_and_dds_undefined(random_pairs):
    a, b = random_pairs[6]
    assert deformation_area_similarity(a, a, b, b) == 1.0
    assert math.isnan(deformation_distance_similarity(a, a, b, _deformed(b, True)))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_deformation_metrics_equal_brute_force_and_the_single_metrics(random_pairs, connectivity):
    """One call for AS, ABD, DAS and DDS: the brute-force values, and exactly the single calls."""
    sampling = (0.8, 1.1)
    for i, (a, b) in enumerate(random_pairs[:8]):
        a_d, b_d = _deformed(a, i % 2 == 0, 1), _deformed(b, i % 3 == 0, 2)
        got = deformation_metrics(a, a_d, b, b_d, connectivity, sampling)
        assert got["as"] == bf_iou(a, b)
        assert got["abd"] == pytest.approx(bf_abd(a, b, connectivity, sampling), abs=1e-9)
        assert got["das"] == pytest.approx(bf_iou(a ^ a_d, b ^ b_d), abs=1e-12)
        dds = bf_abd(b, b_d, connectivity, sampling) / bf_abd(a, a_d, connectivity, sampling)
        assert got["dds"] == pytest.approx(dds, abs=1e-9)
        assert got == {
            "as": area_similarity(a, b),
            "abd": average_boundary_distance(a, b, connectivity, sampling),
            "das": deformation_area_similarity(a, a_d, b, b_d),
            "dds": deformation_distance_similarity(a, a_d, b, b_d, connectivity, sampling)}


def test_deformation_metrics_conventions_for_empty_and_unmoved_masks(random_pairs):
    a, _ = random_pairs[7]
    empty = np.zeros_like(a)
    got = deformation_metrics(a, a, empty, empty)
    assert got["as"] == 0.0 and got["das"] == 1.0 and math.isnan(got["dds"])
    assert got["abd"] == pytest.approx(math.hypot(*a.shape))
    with pytest.raises(InputError, match=r"a and b_d.*\(37, 53\).*\(3, 3\)"):
        deformation_metrics(a, a, a, np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="connectivity"):
        deformation_metrics(a, a, a, a, connectivity=3)


# ---------------------------------------------------------------- image_metrics

def test_image_metrics_keys_and_values():
    gt = np.zeros((30, 30), bool)
    gt[10:20, 10:20] = True
    pred = np.zeros((30, 30), bool)
    pred[10:20, 11:21] = True
    m = image_metrics(gt, pred, pixel_size_um=0.0645)
    assert set(m) == {"as", "abd_px", "abd_um", "gt_fraction", "pred_fraction", "gt_empty", "pred_empty"}
    assert m["as"] == pytest.approx(9 / 11)
    assert m["abd_px"] == pytest.approx(0.5)
    assert m["abd_um"] == pytest.approx(0.5 * 0.0645)
    assert m["gt_fraction"] == pytest.approx(100 / 900)
    assert m["gt_empty"] == 0.0 and m["pred_empty"] == 0.0
    e = image_metrics(gt, np.zeros_like(gt), pixel_size_um=0.1)
    assert e["pred_empty"] == 1.0 and e["pred_fraction"] == 0.0
    assert e["abd_um"] == pytest.approx(math.hypot(30, 30) * 0.1)


# ---------------------------------------------------------------- bad input

def test_shape_mismatch_raises_with_shapes():
    with pytest.raises(InputError, match=r"\(4, 4\).*\(4, 5\)"):
        area_similarity(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(InputError, match=r"\(4, 4\).*\(5, 4\)"):
        average_boundary_distance(np.zeros((4, 4), bool), np.zeros((5, 4), bool))
    with pytest.raises(InputError, match=r"\(4, 4\).*\(3, 3\)"):
        deformation_area_similarity(*[np.zeros((4, 4), bool)] * 3, np.zeros((3, 3), bool))


def test_non_binary_values_raise_with_values():
    a = np.zeros((4, 4), np.uint8)
    a[0, 0] = 2
    with pytest.raises(InputError, match=r"\{0, 1\}.*\[2\]"):
        area_similarity(a, np.zeros((4, 4), bool))
    with pytest.raises(InputError, match=r"0\.5"):
        boundary(np.full((3, 3), 0.5))


def test_3d_array_raises_with_shape():
    with pytest.raises(InputError, match=r"2D.*\(2, 3, 4\)"):
        area_similarity(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 4), bool))
    with pytest.raises(InputError, match=r"2D.*\(2, 3, 4\)"):
        boundary(np.zeros((2, 3, 4), bool))


def test_bad_connectivity_and_sampling_raise():
    m = np.ones((3, 3), bool)
    with pytest.raises(InputError, match="connectivity"):
        boundary(m, connectivity=3)
    with pytest.raises(InputError, match="sampling"):
        average_boundary_distance(m, m, sampling=-1.0)
    with pytest.raises(InputError, match="sampling"):
        average_boundary_distance(m, m, sampling=(1.0, 2.0, 3.0))


# ---------------------------------------------------------------- mean_sem

def test_mean_sem_hand_computed():
    r = mean_sem([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # ddof=1
    assert r["n"] == 4
    assert r["mean"] == pytest.approx(2.5)
    assert r["std"] == pytest.approx(std)
    assert r["sem"] == pytest.approx(std / 2)


def test_mean_sem_ignores_nan():
    r = mean_sem(np.array([1.0, np.nan, 3.0]))
    assert r["n"] == 2
    assert r["mean"] == pytest.approx(2.0)
    assert r["std"] == pytest.approx(math.sqrt(2))
    assert r["sem"] == pytest.approx(1.0)


def test_mean_sem_too_few_values():
    one = mean_sem([float("nan"), 5.0])
    assert one["n"] == 1 and one["mean"] == 5.0
    assert math.isnan(one["sem"]) and math.isnan(one["std"])
    none = mean_sem([])
    assert none["n"] == 0 and math.isnan(none["mean"]) and math.isnan(none["sem"])
