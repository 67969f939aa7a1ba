"""Tests for mitoseg.metrics.volume (paper 002's IoU metrics) against brute-force counting."""

from __future__ import annotations

import numpy as np
import pytest

from mitoseg.errors import InputError
from mitoseg.metrics.volume import (
    background_iou,
    confusion,
    dice,
    foreground_iou,
    mean_per_slice,
    overall_iou,
    per_slice_metrics,
    scores_from_counts,
    volume_metrics,
)
from tests.conftest import SHARED_DATA

KEYS = ("iou_fg", "iou_bg", "iou_overall", "dice")


def bf_confusion(gt, prob, threshold):
    """Voxel by voxel, in plain Python."""
    tp = fp = fn = tn = 0
    for g, p in zip(np.asarray(gt).ravel().tolist(), np.asarray(prob).ravel().tolist()):
        positive_gt = g in (1, 255, True)
        positive_pred = p > threshold
        if positive_gt and positive_pred:
            tp += 1
        elif positive_pred:
            fp += 1
        elif positive_gt:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def random_case(rng, shape, fg=0.3):
    gt = (rng.random(shape) < fg).astype(np.uint8)
    # imperfect (some FP and FN), rounded so that some values sit exactly on the thresholds
    prob = np.round(0.4 * gt + 0.6 * rng.random(shape), 2)
    return gt, prob


# ------------------------------------------------------------------- counts and scores

@pytest.mark.parametrize("shape", [(17, 23), (4, 9, 11)])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_confusion_matches_brute_force(shape, threshold):
    rng = np.random.default_rng(sum(shape) + int(threshold * 10))
    gt, prob = random_case(rng, shape)
    counts = confusion(gt, prob, threshold)
    assert counts == bf_confusion(gt, prob, threshold)
    assert all(type(c) is int for c in counts) and sum(counts) == gt.size


def test_scores_match_formulas_on_random_volume():
    rng = np.random.default_rng(1)
    gt, prob = random_case(rng, (5, 20, 20))
    tp, fp, fn, tn = bf_confusion(gt, prob, 0.5)
    fg, bg = tp / (tp + fp + fn), tn / (tn + fn + fp)
    assert foreground_iou(gt, prob) == pytest.approx(fg)
    assert background_iou(gt, prob) == pytest.approx(bg)
    assert overall_iou(gt, prob) == pytest.approx((fg + bg) / 2)
    assert dice(gt, prob) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert volume_metrics(gt, prob) == pytest.approx(
        {"iou_fg": fg, "iou_bg": bg, "iou_overall": (fg + bg) / 2, "dice": 2 * tp / (2 * tp + fp + fn)})
    assert bg > fg  # the background share inflates IoU_B (paper 002's remark on overall IoU)


def test_hand_computed_example():
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=bool)  # tp 3, fp 1, fn 1, tn 3
    assert confusion(gt, pred) == (3, 1, 1, 3)
    assert volume_metrics(gt, pred) == pytest.approx(
        {"iou_fg": 0.6, "iou_bg": 0.6, "iou_overall": 0.6, "dice": 0.75})


def test_threshold_is_strict():
    gt = np.array([[1, 1, 0, 0]])
    prob = np.array([[0.5, np.nextafter(0.5, 1.0), 0.3, 0.0]])
    assert confusion(gt, prob) == (1, 0, 1, 2)  # exactly 0.5 is background
    assert confusion(gt, prob, threshold=0.25) == (2, 1, 0, 1)
    assert confusion(gt, prob, threshold=0.9) == (0, 0, 2, 2)


def test_mask_and_probability_predictions_agree():
    rng = np.random.default_rng(2)
    gt, prob = random_case(rng, (3, 12, 12))
    mask = prob > 0.5
    expected = confusion(gt, prob)
    for pred in (mask, mask.astype(np.uint8), mask.astype(np.uint8) * 255, mask.astype(np.float32)):
        assert confusion(gt, pred) == expected


def test_lucchi_style_0_255_labels_equal_0_1_labels():
    rng = np.random.default_rng(3)
    gt, prob = random_case(rng, (3, 16, 16))
    for labels in (gt.astype(np.uint8) * 255, gt.astype(bool), gt.astype(np.int64), gt.astype(np.float32)):
        assert volume_metrics(labels, prob) == volume_metrics(gt, prob)
    only_255 = np.full((4, 4), 255, np.uint8)  # all foreground, still the 255 convention
    assert confusion(only_255, np.ones((4, 4))) == (16, 0, 0, 0)


def test_real_lucchi_labels_if_present():
    path = SHARED_DATA / "lucchi" / "training_groundtruth.tif"
    if not path.is_file():
        pytest.skip(f"Lucchi labels not present at {path}")
    import tifffile

    labels = tifffile.imread(path, key=range(3))
    assert labels.dtype == np.uint8 and labels.ndim == 3
    n_fg = int(np.count_nonzero(labels == 255))
    assert confusion(labels, labels) == (n_fg, 0, 0, labels.size - n_fg)
    shifted = np.roll(labels, 5, axis=2)
    assert 0.0 < volume_metrics(labels, shifted)["iou_fg"] < 1.0


# --------------------------------------------------------------------------- empty cases

def test_both_empty_scores_one():
    empty = np.zeros((2, 5, 5), np.uint8)
    assert volume_metrics(empty, np.zeros((2, 5, 5))) == {k: 1.0 for k in KEYS}


def test_both_full_background_iou_is_one():
    full = np.ones((5, 5), np.uint8)
    assert volume_metrics(full, np.ones((5, 5))) == {k: 1.0 for k in KEYS}


def test_one_side_empty_scores_zero():
    gt = np.zeros((6, 6), np.uint8)
    gt[1:3, 1:3] = 1
    missed = volume_metrics(gt, np.zeros((6, 6)))
    assert missed["iou_fg"] == 0.0 and missed["dice"] == 0.0
    assert missed["iou_bg"] == pytest.approx(32 / 36)
    false_alarm = volume_metrics(np.zeros((6, 6), np.uint8), gt.astype(float))
    assert false_alarm["iou_fg"] == 0.0 and false_alarm["dice"] == 0.0


# --------------------------------------------------------------- pooled versus per slice

def test_pooled_and_per_slice_differ_with_unequal_foreground():
    gt = np.zeros((2, 20, 20), np.uint8)
    pred = np.zeros((2, 20, 20), bool)
    gt[0, :10, :10] = 1          # 100 voxels, 90 found -> IoU 0.9
    pred[0, :9, :10] = True
    gt[1, 0, :10] = 1            # 10 voxels, 5 found -> IoU 0.5
    pred[1, 0, :5] = True
    rows = per_slice_metrics(gt, pred)
    assert [row["slice"] for row in rows] == [0, 1]
    assert [row["iou_fg"] for row in rows] == pytest.approx([0.9, 0.5])
    assert mean_per_slice(gt, pred)["iou_fg"] == pytest.approx(0.7)
    assert mean_per_slice(gt, pred)["n_slices"] == 2
    assert volume_metrics(gt, pred)["iou_fg"] == pytest.approx(95 / 110)  # pooled counts


def test_per_slice_counts_add_up_to_pooled_counts():
    rng = np.random.default_rng(4)
    gt, prob = random_case(rng, (6, 10, 12))
    summed = np.sum([confusion(gt[z], prob[z]) for z in range(6)], axis=0)
    assert tuple(summed) == confusion(gt, prob)
    assert scores_from_counts(*summed.tolist()) == volume_metrics(gt, prob)
    rows = per_slice_metrics(gt, prob)
    for z, row in enumerate(rows):
        assert row == {"slice": z, **volume_metrics(gt[z], prob[z])}
    means = mean_per_slice(gt, prob)
    for key in KEYS:
        assert means[key] == pytest.approx(np.mean([row[key] for row in rows]))


def test_2d_input_is_one_slice():
    gt = np.eye(5, dtype=np.uint8)
    rows = per_slice_metrics(gt, gt.astype(float))
    assert len(rows) == 1 and rows[0]["slice"] == 0 and rows[0]["iou_fg"] == 1.0


# -------------------------------------------------------------------------- voxel size

def test_voxel_size_reports_physical_volume_only():
    rng = np.random.default_rng(5)
    gt, prob = random_case(rng, (4, 8, 8))
    plain = volume_metrics(gt, prob)
    out = volume_metrics(gt, prob, voxel_size=(30, 3, 3))  # Kasthuri++: z 30 nm, y/x 3 nm
    assert {k: out[k] for k in KEYS} == plain
    assert (out["voxel_size_z_nm"], out["voxel_size_y_nm"], out["voxel_size_x_nm"]) == (30.0, 3.0, 3.0)
    assert out["gt_volume_um3"] == pytest.approx(gt.sum() * 270e-9)
    assert out["pred_volume_um3"] == pytest.approx((prob > 0.5).sum() * 270e-9)
    iso = volume_metrics(gt, prob, voxel_size=5)  # Lucchi: isotropic 5 nm
    assert iso["gt_volume_um3"] == pytest.approx(gt.sum() * 125e-9)
    area = volume_metrics(gt[0], prob[0], voxel_size=(5, 5))
    assert area["gt_area_um2"] == pytest.approx(gt[0].sum() * 25e-6)


@pytest.mark.parametrize("voxel_size", [(30, 3), (30, 3, 3, 3), (0, 3, 3), (-5, 5, 5),
                                        (float("nan"), 1, 1), "5nm", [[1, 2], [3, 4]]])
def test_bad_voxel_size(voxel_size):
    gt = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(InputError, match="voxel_size"):
        volume_metrics(gt, gt.astype(float), voxel_size=voxel_size)


# -------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("gt", [
    np.array([[0, 1], [255, 0]], np.uint8),      # mixed conventions
    np.array([[0, 2], [2, 0]], np.int32),
    np.array([[0.0, 0.7], [0.2, 1.0]]),           # probabilities passed as labels
    np.array([[0.0, 255.0], [0.0, 0.0]]),         # 255 only for integer labels
    np.array([["a", "b"], ["c", "d"]]),
])
def test_bad_label_values(gt):
    with pytest.raises(InputError, match="gt"):
        confusion(gt, np.zeros((2, 2)))


@pytest.mark.parametrize("pred", [
    np.array([[-1.5, 2.0], [0.0, 0.3]]),          # logits
    np.array([[np.nan, 0.0], [0.0, 0.3]]),
    np.array([[0, 3], [0, 1]], np.uint8),
])
def test_bad_prediction_values(pred):
    with pytest.raises(InputError, match="pred"):
        confusion(np.zeros((2, 2), np.uint8), pred)


@pytest.mark.parametrize("gt_shape,pred_shape", [((4, 4), (4, 5)), ((2, 4, 4), (4, 4)),
                                                 ((4,), (4,)), ((1, 2, 4, 4), (1, 2, 4, 4)),
                                                 ((0, 4), (0, 4))])
def test_bad_shapes(gt_shape, pred_shape):
    with pytest.raises(InputError):
        volume_metrics(np.zeros(gt_shape, np.uint8), np.zeros(pred_shape))


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1, True, "0.5", None])
def test_bad_threshold(threshold):
    with pytest.raises(InputError, match="threshold"):
        confusion(np.zeros((2, 2), np.uint8), np.zeros((2, 2)), threshold)


@pytest.mark.parametrize("counts", [(-1, 0, 0, 1), (1.5, 0, 0, 1), (True, 0, 0, 1)])
def test_bad_counts(counts):
    with pytest.raises(InputError, match="counts"):
        scores_from_counts(*counts)


def test_scores_from_counts_pools_volumes():
    rng = np.random.default_rng(6)
    (g1, p1), (g2, p2) = random_case(rng, (3, 8, 8)), random_case(rng, (5, 8, 8), fg=0.05)
    pooled = np.add(confusion(g1, p1), confusion(g2, p2)).tolist()
    assert scores_from_counts(*pooled) == volume_metrics(np.concatenate([g1, g2]), np.concatenate([p1, p2]))
