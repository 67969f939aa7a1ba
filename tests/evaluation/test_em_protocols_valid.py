"""protocol_matrix with an ignore mask: the network sees every voxel, every score (per patch
included) counts only valid ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.evaluation.em_protocols import protocol_matrix
from mitoseg.inference.sliding import per_patch_tiles
from mitoseg.metrics.volume import mean_per_slice, volume_metrics

SHAPE, PATCH = (4, 40, 48), (16, 16)


def case(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    labels = rng.random(SHAPE) > 0.6
    valid = rng.random(SHAPE) > 0.3
    valid[1] = False                      # a slice without a valid voxel
    valid[:, :16, :16] = False            # per-patch tiles without a valid voxel on every slice
    return image, labels, valid


def run(image, labels, valid, seen: list, masks: list, protocols=("per_patch", "full_image")):
    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return batch

    def postprocess(probabilities: np.ndarray) -> np.ndarray:
        masks.append(probabilities > 0.5)
        return masks[-1]

    return protocol_matrix(predict, image, labels, 2, PATCH, postprocess, protocols=list(protocols),
                           tta=[False], zfilter=[0, 3], voxel_size_nm=(30, 3, 3), valid=valid)


def bf_patch_iou(labels, mask, valid, foreground: bool = True) -> float:
    """Brute force: the mean IoU of the foreground (or the background) over the patches."""
    scores = []
    for z in range(SHAPE[0]):
        for tile in per_patch_tiles(SHAPE[1:], PATCH):
            keep = valid[(z, *tile)]
            if keep.any():
                g, p = labels[(z, *tile)][keep], mask[(z, *tile)][keep]
                if not foreground:
                    g, p = ~g, ~p
                union = (g | p).sum()
                scores.append((g & p).sum() / union if union else 1.0)
    return float(np.mean(scores))


def test_every_score_counts_valid_voxels_only() -> None:
    image, labels, valid = case()
    seen, masks = [], []
    rows = run(image, labels, valid, seen, masks)
    assert len(rows) == len(masks) == 4
    for row, mask in zip(rows, masks):
        expected = volume_metrics(labels, mask, voxel_size=(30, 3, 3), valid=valid)
        assert {k: row[k] for k in expected} == expected
        per_slice = mean_per_slice(labels, mask, valid=valid)
        assert row["iou_fg_mean_per_slice"] == per_slice["iou_fg"]
        assert row["dice_mean_per_slice"] == per_slice["dice"]
        assert row["n_slices_ignored"] == 1
        if row["protocol"] == "per_patch":
            fg, bg = bf_patch_iou(labels, mask, valid), bf_patch_iou(labels, mask, valid, False)
            assert row["iou_fg_mean_per_patch"] == pytest.approx(fg, abs=1e-12)
            assert row["iou_bg_mean_per_patch"] == pytest.approx(bg, abs=1e-12)
    # the scores differ from those of every voxel, so the mask was applied
    assert rows[0]["iou_fg"] != volume_metrics(labels, masks[0])["iou_fg"]


def test_prediction_sees_every_voxel_and_ignored_labels_do_not_matter() -> None:
    image, labels, valid = case(1)
    seen_plain, seen_valid, masks_plain, masks_valid = [], [], [], []
    run(image, labels, None, seen_plain, masks_plain)
    noisy = np.where(valid, labels, ~labels)  # labels at ignored voxels flipped
    with_valid = run(image, noisy, valid, seen_valid, masks_valid)
    assert len(seen_plain) == len(seen_valid)
    assert all(torch.equal(a, b) for a, b in zip(seen_plain, seen_valid))
    assert all(np.array_equal(a, b) for a, b in zip(masks_plain, masks_valid))
    again = run(image, labels, valid, [], [])
    assert [{k: v for k, v in r.items() if k != "inference_seconds"} for r in with_valid] == \
        [{k: v for k, v in r.items() if k != "inference_seconds"} for r in again]


def test_all_valid_gives_the_rows_of_no_valid() -> None:
    image, labels, _ = case(2)
    plain = run(image, labels, None, [], [])
    every = run(image, labels, np.ones(SHAPE, bool), [], [])
    for a, b in zip(plain, every):
        assert "n_slices_ignored" not in a and b.pop("n_slices_ignored") == 0
        a.pop("inference_seconds"), b.pop("inference_seconds")
        assert a == b


@pytest.mark.parametrize("valid, message", [
    (np.zeros(SHAPE, bool), "every voxel of the .* test volume is ignored"),
    (np.ones(SHAPE[1:], bool), "valid: expected a bool array"),
    (np.ones(SHAPE, np.uint8), "valid: expected a bool array"),
])
def test_bad_valid_stops_before_any_prediction(valid, message) -> None:
    image, labels, _ = case(3)
    seen: list = []
    with pytest.raises(InputError, match=message):
        run(image, labels, valid, seen, [])
    assert seen == []
