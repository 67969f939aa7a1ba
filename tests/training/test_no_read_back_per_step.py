"""Training without a progress bar reads no logged value back from the device per step.

On a GPU every such read (``Tensor.item``) makes the CPU wait until the step has finished, so
the next batch is prepared while the GPU idles. Lightning reads back every value logged with
``prog_bar=True`` after every batch, bar shown or not; the module asks for the bar only when
one is shown. The CPU has no device queue, so the test counts the reads Lightning makes: with
twice the steps there must be no more of them.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from mitoseg.training.module import SegmentationModule
from mitoseg.training.train import train
from tests.conftest import compose_config

LIGHTNING = ("pytorch_lightning", "lightning_fabric", "lightning")


def lightning_reads(monkeypatch: pytest.MonkeyPatch, run) -> int:  # noqa: ANN001
    """``Tensor.item`` calls made by Lightning's own code while ``run()`` runs."""
    calls = [0]
    item = torch.Tensor.item

    def counted(self: torch.Tensor):  # noqa: ANN202
        if sys._getframe(1).f_globals.get("__name__", "").split(".")[0] in LIGHTNING:
            calls[0] += 1
        return item(self)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "item", counted)
        run()
    return calls[0]


def test_reads_do_not_grow_with_the_steps_when_no_bar_is_shown(
        tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def fit(steps: int) -> int:
        cfg = compose_config("train", [*tiny_overrides, "trainer.max_epochs=2",
                                       f"trainer.limit_train_batches={steps}",
                                       "trainer.enable_progress_bar=false"], tmp_path / str(steps))
        return lightning_reads(monkeypatch, lambda: train(cfg))

    assert fit(4) == fit(2)  # batches per epoch, 2 epochs


def test_the_bar_shows_the_loss_when_there_is_one() -> None:
    module = SegmentationModule(torch.nn.Conv2d(1, 1, 3, padding=1),
                                torch.nn.BCEWithLogitsLoss(), partial(torch.optim.SGD, lr=0.1))
    assert module._bar_shown()  # not attached to a trainer: as Lightning's default
    for shown in (True, False):
        module.trainer = pl.Trainer(enable_progress_bar=shown, logger=False,
                                    enable_checkpointing=False, enable_model_summary=False)
        assert module._bar_shown() is shown
