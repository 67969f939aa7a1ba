"""Every model config trains a few steps through the real training function: the 2D ones on
synthetic fluorescence images and on synthetic EM, the 3D ones on synthetic EM subvolumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitoseg.models.table import dims_of, model_names
from mitoseg.training.train import train
from tests.conftest import TINY, compose_config

MODELS = model_names()
FAST = ["trainer=cpu", "+trainer.max_steps=2", "+trainer.limit_val_batches=1",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger=none"]
FLUO = [o for o in TINY if not o.startswith(("model.", "trainer", "+trainer", "logger"))]
EM = ["dataset=synthetic_em", "dataset.volumes.train_shape=[16,96,96]",
      "dataset.volumes.test_shape=[4,96,96]", "dataset.batch_size=2", "dataset.eval_batch_size=2",
      "augmentation=none", "postproc=em_default", "inference=em_quick",
      "optimized_metric=test/iou_fg"]
EM_2D = ["dataset.patch_size=[64,64]"]
EM_3D = ["dataset.patch_size=[8,48,48]", "inference.patch_size=[8,48,48]",
         "dataset.volumes.test_shape=[8,96,96]"]


def trains(overrides: list[str], run_dir: Path) -> dict:
    metrics = train(compose_config("train", overrides + FAST, run_dir))
    assert metrics["epochs"] >= 0 and metrics["test"]
    return metrics


@pytest.mark.parametrize("name", [m for m in MODELS if dims_of(m) == 2])
def test_2d_model_trains_on_fluorescence_images(name: str, tmp_path: Path) -> None:
    metrics = trains([f"model={name}", *FLUO], tmp_path)
    assert 0.0 <= metrics["test"]["as"]["mean"] <= 1.0


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_on_synthetic_em(name: str, tmp_path: Path) -> None:
    patch = EM_2D if dims_of(name) == 2 else EM_3D
    metrics = trains([f"model={name}", *EM, *patch], tmp_path)
    assert 0.0 <= metrics["test"]["iou_fg"]["mean"] <= 1.0
