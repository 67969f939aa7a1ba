"""Experiment loggers from config, with W&B grouping that follows Hydra multiruns."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import Logger


def wandb_group(cfg: DictConfig) -> str:
    """Runs of one multirun share a W&B group: the experiment name and the sweep folder."""
    name = cfg.get("experiment_name", "mitoseg")
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return f"{name}-{Path(hydra_cfg.sweep.dir).name}"
    return name


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiate every logger under ``cfg.logger``.

    W&B runs offline unless its config says ``offline: false`` (or WANDB_MODE=online): no
    account and no network are needed, and ``wandb sync <run folder>/wandb/offline-run-*``
    uploads later. Its group and run name default to the multirun and the run folder.
    """
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        if "WandbLogger" in str(node.get("_target_", "")):
            node = node.copy()
            with open_dict(node):
                node.group = node.get("group") or wandb_group(cfg)
                node.name = node.get("name") or Path(cfg.paths.output_dir).name
                if node.get("offline", True) and os.environ.get("WANDB_MODE") != "online":
                    os.environ.setdefault("WANDB_MODE", "offline")
            Path(node.save_dir).mkdir(parents=True, exist_ok=True)
        loggers.append(instantiate(node))
    return loggers
