"""The per-epoch log line that replaces the per-step progress bar on a GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mitoseg.training.progress import epoch_line
from mitoseg.training.train import train
from tests.conftest import compose_config


def test_epoch_line_formats_known_metrics_and_skips_missing_ones() -> None:
    metrics = {"train/loss_epoch": torch.tensor(0.41234), "val/as": 0.875, "other": 1.0}
    line = epoch_line(2, 8, metrics, ("train/loss_epoch", "val/loss", "val/as"), 12.34)
    assert line == "epoch 3/8: train/loss_epoch 0.4123, val/as 0.875 (12.3 s)"
    assert epoch_line(0, -1, {"val/loss": float("nan")}, ("val/loss",), 1.0) == \
        "epoch 1: val/loss nan (1.0 s)"
    assert epoch_line(0, 1, {}, ("val/loss",), 0.0) == "epoch 1/1: no metrics yet (0.0 s)"


def test_gpu_trainer_turns_the_step_bar_off_and_training_logs_each_epoch(
        tmp_path: Path, tiny_overrides: list[str], caplog: pytest.LogCaptureFixture) -> None:
    assert compose_config("train", ["trainer=gpu"]).trainer.enable_progress_bar is False
    overrides = [*tiny_overrides, "trainer.max_epochs=2"]
    with caplog.at_level(logging.INFO, logger="mitoseg.training.progress"):
        train(compose_config("train", overrides, tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == "mitoseg.training.progress"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val/loss" in line and "train/loss_epoch" in line for line in lines)


def test_an_epoch_without_validation_shows_no_validation_values(
        tmp_path: Path, tiny_overrides: list[str], caplog: pytest.LogCaptureFixture) -> None:
    """Lightning keeps the last validation's values in ``callback_metrics``: with validation
    every 2nd epoch, the line of epoch 1 showed them again as if validation had run."""
    overrides = [*tiny_overrides, "trainer.max_epochs=3", "++trainer.check_val_every_n_epoch=2"]
    with caplog.at_level(logging.INFO, logger="mitoseg.training.progress"):
        train(compose_config("train", overrides, tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == "mitoseg.training.progress"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "val/" not in lines[0] and "val/" not in lines[2]
    assert all(key in lines[1] for key in ("val/loss", "val/as"))
