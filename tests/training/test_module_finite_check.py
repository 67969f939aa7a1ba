"""The non-finite loss check: at once on the CPU, in groups of steps on an accelerator."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from mitoseg.training.module import FINITE_CHECK_EVERY, SegmentationModule


def module() -> SegmentationModule:
    return SegmentationModule(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.BCEWithLogitsLoss(),
                              partial(torch.optim.SGD, lr=0.1))


def test_cpu_loss_is_checked_at_once() -> None:
    m = module()
    m._check_finite(torch.tensor(0.5), "train")
    with pytest.raises(FloatingPointError, match="train loss is nan at step 0"):
        m._check_finite(torch.tensor(float("nan")), "train")
    with pytest.raises(FloatingPointError, match="val loss is inf"):
        m._check_finite(torch.tensor(float("inf")), "val")


def test_deferred_check_names_the_first_bad_step() -> None:
    """What an accelerator run keeps: (step, loss) pairs, read back once per group."""
    m = module()
    m._unchecked_losses = [(7, torch.tensor(0.3)), (8, torch.tensor(float("inf"))),
                           (9, torch.tensor(float("nan")))]
    with pytest.raises(FloatingPointError, match="train loss is inf at step 8"):
        m.on_train_epoch_end()
    assert m._unchecked_losses == []
    m._unchecked_losses = [(s, torch.tensor(0.1)) for s in range(FINITE_CHECK_EVERY)]
    m.on_train_end()  # all finite: nothing raised, nothing left
    assert m._unchecked_losses == []
