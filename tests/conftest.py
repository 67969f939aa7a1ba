"""Shared test helpers: compose the real Hydra configs, shrunk to run in seconds on a CPU."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import mitoseg.config  # noqa: F401  (registers resolvers)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = Path(os.environ.get("MITOSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

# A tiny but complete training job: 24 procedural 64 x 64 masks, a 4-channel U-Net, and the
# run length of conf/debug/tiny.yaml (CPU, 1 epoch of 3 batches).
TINY = [
    "dataset.masks.count=24", "dataset.masks.shape=[64,64]", "dataset.split={val:4,test:4}",
    "dataset.batch_size=4", "dataset.eval_batch_size=4", "model.base_channels=4",
    "debug=tiny", "logger=none",
]


def compose_config(name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def cpu_stand_in(trainer: DictConfig) -> DictConfig:
    """A trainer config that starts without a GPU: a GPU option's accelerator and precision
    become the CPU's; all devices (-1, DDP) become two CPU processes (not started here)."""
    trainer = copy.deepcopy(trainer)
    if trainer.accelerator == "gpu" and not torch.cuda.is_available():
        trainer.accelerator = "cpu"
        trainer.precision = "32-true"
        if trainer.devices == -1:
            trainer.devices = 2
    return trainer


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def python_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / script), *args]
