"""mitoseg.metrics.volume with an ignore mask ``valid``, against voxel-by-voxel references."""

from __future__ import annotations

import numpy as np
import pytest

from mitoseg.errors import InputError
from mitoseg.metrics.volume import (
    confusion,
    mean_per_slice,
    per_slice_metrics,
    volume_metrics,
)
from tests.metrics.test_volume import KEYS, random_case


def bf_counts(gt, prob, valid, threshold=0.5):
    """(tp, fp, fn, tn) over the valid voxels only, in plain Python."""
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for g, p, v in zip(gt.ravel().tolist(), prob.ravel().tolist(), valid.ravel().tolist()):
        if v:
            key = {(True, True): "tp", (False, True): "fp", (True, False): "fn",
                   (False, False): "tn"}[(g == 1, p > threshold)]
            counts[key] += 1
    return counts["tp"], counts["fp"], counts["fn"], counts["tn"]


def bf_scores(tp, fp, fn, tn):
    def ratio(num, den):
        return 1.0 if den == 0 else num / den
    iou_fg, iou_bg = ratio(tp, tp + fp + fn), ratio(tn, tn + fp + fn)
    return {"iou_fg": iou_fg, "iou_bg": iou_bg, "iou_overall": (iou_fg + iou_bg) / 2,
            "dice": ratio(2 * tp, 2 * tp + fp + fn)}


def case(seed, shape=(5, 9, 8)):
    rng = np.random.default_rng(seed)
    gt, prob = random_case(rng, shape)
    valid = rng.random(shape) > 0.35
    valid[2] = False  # a slice without any valid voxel
    return gt, prob, valid


@pytest.mark.parametrize("seed", range(4))
def test_confusion_and_volume_metrics_count_valid_voxels_only(seed):
    gt, prob, valid = case(seed)
    counts = bf_counts(gt, prob, valid)
    assert confusion(gt, prob, valid=valid) == counts
    assert sum(counts) == valid.sum()
    out = volume_metrics(gt, prob, voxel_size=(30, 3, 3), valid=valid)
    assert {k: out[k] for k in KEYS} == pytest.approx(bf_scores(*counts), abs=1e-12)
    assert out["gt_volume_um3"] == pytest.approx((counts[0] + counts[2]) * 270e-9)
    assert out["pred_volume_um3"] == pytest.approx((counts[0] + counts[1]) * 270e-9)


@pytest.mark.parametrize("seed", range(4))
def test_per_slice_rows_and_means_leave_out_slices_without_valid_voxels(seed):
    gt, prob, valid = case(seed)
    rows = per_slice_metrics(gt, prob, valid=valid)
    assert [row["slice"] for row in rows] == [0, 1, 3, 4]
    for row in rows:
        z = row["slice"]
        assert {k: row[k] for k in KEYS} == pytest.approx(
            bf_scores(*bf_counts(gt[z], prob[z], valid[z])), abs=1e-12)
    means = mean_per_slice(gt, prob, valid=valid)
    for key in KEYS:
        assert means[key] == pytest.approx(np.mean([row[key] for row in rows]), abs=1e-12)
    assert means["n_slices"] == 4 and means["n_slices_ignored"] == 1


def test_what_ignored_voxels_hold_does_not_matter():
    gt, prob, valid = case(7)
    rng = np.random.default_rng(8)
    other_gt = np.where(valid, gt, rng.integers(0, 2, gt.shape)).astype(np.uint8)
    other_prob = np.where(valid, prob, rng.random(gt.shape))
    assert not np.array_equal(other_gt, gt) and not np.array_equal(other_prob, prob)
    for metric in (confusion, volume_metrics, per_slice_metrics, mean_per_slice):
        assert metric(other_gt, other_prob, valid=valid) == metric(gt, prob, valid=valid)


def test_all_valid_is_no_valid_and_2d_images_work():
    gt, prob, _ = case(9)
    every = np.ones(gt.shape, bool)
    for metric in (confusion, per_slice_metrics, mean_per_slice):
        assert metric(gt, prob, valid=every) == metric(gt, prob)
    assert volume_metrics(gt, prob, voxel_size=5, valid=every) == volume_metrics(gt, prob, voxel_size=5)
    assert mean_per_slice(gt, prob)["n_slices_ignored"] == 0
    valid = np.zeros(gt[0].shape, bool)
    valid[:4] = True
    assert confusion(gt[0], prob[0], valid=valid) == bf_counts(gt[0], prob[0], valid)
    assert len(per_slice_metrics(gt[0], prob[0], valid=valid)) == 1


def test_nothing_valid_has_zero_counts_but_no_scores():
    gt, prob, _ = case(10)
    nothing = np.zeros(gt.shape, bool)
    assert confusion(gt, prob, valid=nothing) == (0, 0, 0, 0)
    assert per_slice_metrics(gt, prob, valid=nothing) == []
    for metric in (volume_metrics, mean_per_slice):
        with pytest.raises(InputError, match="every voxel .* is ignored"):
            metric(gt, prob, valid=nothing)


@pytest.mark.parametrize("valid", [np.ones((5, 9, 8), np.uint8), np.ones((5, 9, 7), bool),
                                   np.ones((9, 8), bool)])
def test_valid_must_be_a_bool_array_of_the_labels_shape(valid):
    gt, prob, _ = case(11)
    with pytest.raises(InputError, match="valid: expected a bool array of the labels' shape"):
        confusion(gt, prob, valid=valid)
