"""val/iou_fg: the foreground IoU of all of an epoch's validation voxels pooled (TP, FP, FN
summed over every batch), beside val/as, the mean AS per validation image.

On Lucchi's 128 x 128 validation tiles about half hold no mitochondria; each scores AS 1 when
nothing is predicted in it and 0 for one false voxel, so val/as read 0.44 for a network that
predicted nothing and fell to 0.23 as it learned (lucchi_unet2d_cpu, epochs 2 and 4). The
pooled IoU of the same predictions is 0 and then rises.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from mitoseg.metrics.batch import foreground_counts, pooled_foreground_iou
from mitoseg.training.losses import BCELoss
from mitoseg.training.module import SegmentationModule


def validate(batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Run the module's validation hooks over ``batches`` (logits as images, an identity
    network) and return what it logged at the epoch's end."""
    module = SegmentationModule(torch.nn.Identity(), BCELoss(), partial(torch.optim.SGD, lr=0.1))
    logged: dict[str, float] = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    module._trainer = type("Trainer", (), {"world_size": 1, "progress_bar_callback": None})()
    module.on_validation_epoch_start()
    for number, batch in enumerate(batches):
        module.validation_step(batch, number)
    module.on_validation_epoch_end()
    return logged


def brute_force_pooled_iou(batches: list[dict[str, torch.Tensor]]) -> float:
    tp = fp = fn = 0
    for batch in batches:
        truth = batch["mask"].numpy() > 0.5
        predicted = batch["image"].numpy() > 0.0  # sigmoid(logit) > 0.5
        valid = batch["valid"].numpy() > 0.5 if "valid" in batch else np.ones_like(truth)
        tp += int((truth & predicted & valid).sum())
        fp += int((~truth & predicted & valid).sum())
        fn += int((truth & ~predicted & valid).sum())
    return tp / (tp + fp + fn)


def random_batches(seed: int, with_valid: bool) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    batches = []
    for size in (3, 2, 4):
        batch = {"image": torch.from_numpy(rng.normal(0, 2, (size, 1, 9, 13)).astype(np.float32)),
                 "mask": torch.from_numpy((rng.random((size, 1, 9, 13)) > 0.7).astype(np.float32))}
        if with_valid:
            batch["valid"] = torch.from_numpy((rng.random((size, 1, 9, 13)) > 0.2)
                                              .astype(np.float32))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("with_valid", [False, True])
def test_val_iou_fg_pools_every_voxel_of_the_epoch(with_valid: bool) -> None:
    batches = random_batches(5, with_valid)
    logged = validate(batches)
    assert logged["val/iou_fg"] == pytest.approx(brute_force_pooled_iou(batches), rel=1e-6)


def test_empty_tiles_move_val_as_but_not_the_pooled_iou() -> None:
    """Six tiles: two hold a mitochondrion, four are empty. A network that predicts nothing
    has val/as 4/6 and val/iou_fg 0; one that finds both mitochondria exactly but puts one
    false voxel in each empty tile has val/as 2/6, and val/iou_fg 32/36."""
    mask = torch.zeros(6, 1, 8, 8)
    mask[:2, :, 2:6, 2:6] = 1.0
    nothing = {"image": torch.full((6, 1, 8, 8), -5.0), "mask": mask}
    found = torch.where(mask > 0, 5.0, -5.0)
    found[2:, :, 0, 0] = 5.0
    learned = {"image": found, "mask": mask}
    before, after = validate([nothing]), validate([learned])
    assert before["val/as"] == pytest.approx(4 / 6) and before["val/iou_fg"] == 0.0
    assert after["val/as"] == pytest.approx(2 / 6)
    assert after["val/iou_fg"] == pytest.approx(32 / 36)


def test_pooled_iou_empty_rules() -> None:
    none = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    assert float(pooled_foreground_iou(foreground_counts(none, none))) == 1.0
    counts = foreground_counts(none, none, valid=torch.zeros_like(none))
    assert counts.tolist() == [0, 0, 0, 0] and np.isnan(float(pooled_foreground_iou(counts)))


def test_each_epoch_starts_its_own_counts() -> None:
    module = SegmentationModule(torch.nn.Identity(), BCELoss(), partial(torch.optim.SGD, lr=0.1))
    logged: list[float] = []
    module.log = lambda name, value, **kwargs: logged.append(float(value)) \
        if name == "val/iou_fg" else None
    module._trainer = type("Trainer", (), {"world_size": 1, "progress_bar_callback": None})()
    mask = torch.ones(1, 1, 4, 4)
    for logit in (5.0, -5.0):  # all found, then nothing found
        module.on_validation_epoch_start()
        module.validation_step({"image": torch.full((1, 1, 4, 4), logit), "mask": mask}, 0)
        module.on_validation_epoch_end()
    assert logged == [1.0, 0.0]
