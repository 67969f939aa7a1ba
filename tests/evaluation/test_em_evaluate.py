"""Rows of several test volumes and their mean row (``em_evaluate.mean_over_volumes``), the
columns a headline reads (``headline_columns``); a test volume's overlap with the checkpoint's
training slices, named by the recording's numbers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from mitoseg.data.em_volume_files import em_volume_files
from mitoseg.evaluation.em_evaluate import headline_columns, mean_over_volumes
from mitoseg.evaluation.training_overlap import volume_training_overlap


def _row(volume: str, iou: float, **extra) -> dict:
    return {"test_volume": volume, "protocol": "full_image", "tta": True, "zfilter": 5,
            "iou_fg": iou, "card_test_set": "x", **extra}


@pytest.mark.parametrize("first_ignores", [True, False])
def test_the_mean_row_sums_ignored_slices_over_volumes_with_and_without_an_ignore_mask(
        first_ignores: bool) -> None:
    """A volume whose mapping ignores nothing has no ``n_slices_ignored``: its count is 0, and
    the mean row holds the total (it failed with a KeyError when the first row had it)."""
    rows = [_row("a", 0.8, n_slices_ignored=3), _row("b", 0.6)]
    mean, = mean_over_volumes(rows if first_ignores else rows[::-1])
    assert mean["test_volume"] == "mean" and mean["volumes"] == 2
    assert mean["iou_fg"] == pytest.approx(0.7) and mean["iou_fg_std"] == pytest.approx(
        np.std([0.8, 0.6], ddof=1))
    assert mean["n_slices_ignored"] == 3 and "n_slices_ignored_std" not in mean
    assert "n_slices_ignored" not in mean_over_volumes([_row("a", 0.8), _row("b", 0.6)])[0]


def test_a_3d_headline_reads_each_volumes_pooled_score_and_keeps_the_per_slice_mean() -> None:
    """'volumes' (a 3D network's overlap / full image): the bare pooled columns, whose mean row
    is the mean over the volumes; 'images' (2D): the means over slices, as before."""
    assert headline_columns("volumes") == {
        "iou_fg": "iou_fg", "iou_bg": "iou_bg", "iou_overall": "iou_overall", "dice": "dice",
        "iou_fg_over_volume": "iou_fg", "iou_fg_mean_per_slice": "iou_fg_mean_per_slice"}
    assert headline_columns("images")["iou_fg"] == "iou_fg_mean_per_slice"
    assert headline_columns("patches")["dice"] == "dice_mean_per_patch"
    mean, = mean_over_volumes([_row("a", 0.9), _row("b", 0.8)])
    assert mean[headline_columns("volumes")["iou_fg"]] == pytest.approx(0.85)


def test_overlap_examples_name_slices_by_their_recording_numbers(tmp_path: Path) -> None:
    """A test volume cut from slices 10-13 of the training stack (shifted by a pixel: near
    copies) is reported as test slice 10 ~ training slice 10, not as its position 0."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8)
    labels = (rng.random((20, 48, 48)) < 0.2).astype(np.uint8)
    for name, (a, b) in {"train": (image, labels),
                         "shifted": (np.roll(image, 1, 2), np.roll(labels, 1, 2))}.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", a)
        tifffile.imwrite(tmp_path / f"{name}_labels.tif", b)
    common = {"label_mapping": {"foreground": [1], "background": [0]},
              "voxel_size_nm": [5, 5, 5], "root": str(tmp_path)}
    train = [{"image": "train.tif", "labels": "train_labels.tif"}]
    stored = {"dataset": {"_target_": "mitoseg.data.em_datamodule.EMDataModule",
                          "patch_size": [32, 32], "split_seed": 0, "seed": 0,
                          "volumes": {"_target_": "mitoseg.data.em_volume_files.em_volume_files",
                                      "_partial_": True, "train": train,
                                      "test": [{"image": "train.tif", "labels": "train_labels.tif",
                                                "z_range": [0, 2]}], **common}}}
    tested = em_volume_files(train=train, test=[{"image": "shifted.tif",
                                                 "labels": "shifted_labels.tif",
                                                 "z_range": [10, 14]}], **common)
    record = volume_training_overlap(stored, SimpleNamespace(volumes=tested), allow=True)
    assert record["near_copies"] == 4 and record["exact_copies"] == 0
    assert [example[:2] for example in record["examples"]] == [[z, z] for z in range(10, 14)]
    assert "test slice 10 ~ training slice 10" in record["warning"]
