"""The training loss in the logs: the values Lightning writes equal the losses of the steps
(recorded here as they are computed), the epoch value is their weighted mean, a progress bar
changes nothing in the files, and ``self.log`` is no longer called on every step."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from mitoseg.training.loss_log import EpochMean, ends_epoch
from mitoseg.training.module import SegmentationModule
from mitoseg.training.train import train
from tests.conftest import compose_config

BATCHES, EPOCHS, EVERY = 4, 2, 3


class StopAfter(pl.Callback):
    """Stops the run after optimizer step ``step``, as ``max_time`` would: in
    ``on_train_batch_end``, after the step's own logging decision was due."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            trainer.should_stop = True


def fit(tmp_path: Path, tiny_overrides: list[str], bar: bool, monkeypatch: pytest.MonkeyPatch,
        batches: int = BATCHES, every: int = EVERY, logger: str = "csv", extra: tuple = ()
        ) -> tuple[list[tuple[float, int]], list[dict[str, str]], int]:
    """Losses and batch sizes of the training steps, the CSV rows, and the ``self.log`` calls
    made while a batch trains."""
    overrides = [o for o in tiny_overrides if not o.startswith("logger=")] + [
        f"logger={logger}", f"trainer.max_epochs={EPOCHS}",
        f"trainer.limit_train_batches={batches}", f"trainer.log_every_n_steps={every}",
        f"trainer.enable_progress_bar={str(bar).lower()}", *extra]
    out = tmp_path / f"bar{bar}_{batches}_{logger}_{len(extra)}"
    losses, calls = [], [0]
    step = SegmentationModule._shared_step
    log = pl.LightningModule.log

    def recorded(self, batch, split):  # noqa: ANN001, ANN202
        loss, logits = step(self, batch, split)
        if split == "train":
            losses.append((float(loss.detach()), len(logits)))
        return loss, logits

    def counted(self, name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if self._current_fx_name in ("training_step", "on_train_batch_end"):
            calls[0] += 1
        return log(self, name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(SegmentationModule, "_shared_step", recorded)
        patch.setattr(pl.LightningModule, "log", counted)
        train(compose_config("train", overrides, out))
    rows = []
    if logger == "csv":
        with open(out / "csv" / "metrics.csv") as stream:
            rows = list(csv.DictReader(stream))
    return losses, rows, calls[0]


def test_written_values_are_the_steps_losses_and_their_epoch_mean(
        tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    losses, rows, _ = fit(tmp_path, tiny_overrides, False, monkeypatch)
    assert len(losses) == BATCHES * EPOCHS
    steps = {int(r["step"]): float(r["train/loss_step"]) for r in rows if r["train/loss_step"]}
    assert sorted(steps) == [k for k in range(BATCHES * EPOCHS) if (k + 1) % EVERY == 0]
    for step, value in steps.items():
        assert value == pytest.approx(losses[step][0], rel=1e-6)
    epochs = {int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r["train/loss_epoch"]}
    assert sorted(epochs) == list(range(EPOCHS))
    for epoch, value in epochs.items():
        part = losses[epoch * BATCHES:(epoch + 1) * BATCHES]
        mean = sum(loss * size for loss, size in part) / sum(size for _, size in part)
        assert value == pytest.approx(mean, rel=1e-6)
    shown, shown_rows, _ = fit(tmp_path, tiny_overrides, True, monkeypatch)
    assert shown == losses and shown_rows == rows  # a progress bar changes nothing written


def test_a_run_stopped_by_a_callback_writes_its_last_steps_own_loss(
        tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    stop = ("+callbacks.stop._target_=tests.training.test_training_loss_log.StopAfter",
            "+callbacks.stop.step=5")  # after the 5th step: not one of the steps written
    losses, rows, _ = fit(tmp_path, tiny_overrides, False, monkeypatch, extra=stop)
    assert len(losses) == 5
    steps = {int(r["step"]): float(r["train/loss_step"]) for r in rows if r["train/loss_step"]}
    assert sorted(steps) == [2, 4]  # written every 3 steps, and where the run stopped
    assert steps[4] == pytest.approx(losses[4][0], rel=1e-6) != losses[2][0]  # not step 2's
    epochs = {int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r["train/loss_epoch"]}
    part = losses[BATCHES:]  # the second epoch, cut short after 1 of its batches
    assert epochs[1] == pytest.approx(sum(v * n for v, n in part) / sum(n for _, n in part))


def test_training_logs_a_fixed_number_of_times_per_epoch_without_a_bar(
        tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [fit(tmp_path, tiny_overrides, False, monkeypatch, batches, 50, "none")[2]
             for batches in (2, 4)]
    assert calls == [2 * EPOCHS, 2 * EPOCHS]  # train/loss_epoch and train/loss, once an epoch


def test_the_epoch_mean_weighs_each_batch_by_the_images_that_count() -> None:
    mean = EpochMean()
    assert mean.pop() is None
    mean.add(torch.tensor(1.0), torch.tensor(2))
    mean.add(torch.tensor(0.0), torch.tensor(0))  # nothing counted: adds nothing
    mean.add(torch.tensor(4.0), torch.tensor(2))
    assert float(mean.pop()) == 2.5
    mean.add(torch.tensor(3.0), 4)
    mean.add(torch.tensor(1.0), 2)  # a short last batch weighs less
    assert float(mean.pop()) == pytest.approx(14 / 6) and mean.pop() is None


def trainer(batches: float, max_steps: int, global_step: int):  # noqa: ANN201
    return SimpleNamespace(num_training_batches=batches, max_steps=max_steps,
                           global_step=global_step)


def test_the_last_batch_of_an_epoch_is_known_once_it_has_trained() -> None:
    assert [ends_epoch(trainer(4, -1, i + 1), i) for i in range(4)] == [False, False, False, True]
    # max_steps ends the run (and its epoch) inside the loader; global_step counts the steps done
    assert [ends_epoch(trainer(10, 6, 5 + i), i) for i in range(2)] == [False, True]
    assert ends_epoch(trainer(math.inf, 3, 3), 7) and not ends_epoch(trainer(math.inf, -1, 9), 9)
    assert not ends_epoch(trainer(10, None, 3), 2)


def test_a_batch_with_no_voxel_that_counts_adds_nothing_to_the_epoch_loss() -> None:
    """Through the module: the epoch mean weighs each batch by its images with a valid voxel."""
    from mitoseg.training.losses import BCELoss  # takes "valid"

    module = SegmentationModule(torch.nn.Conv2d(1, 1, 3, padding=1), BCELoss(),
                                lambda params: torch.optim.SGD(params, lr=0.1))
    torch.manual_seed(0)
    image, mask = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    counted = module.training_step(
        {"image": image, "mask": mask, "valid": torch.ones_like(mask)}, 0)
    module.training_step({"image": image, "mask": mask, "valid": torch.zeros_like(mask)}, 1)
    assert float(module._epoch_loss.pop()) == pytest.approx(float(counted))
