"""W&B grouping: runs of one multirun share a group; single runs use the experiment name."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from mitoseg.training.loggers import wandb_group
from tests.conftest import CONF


def hydra_config(mode: RunMode, sweep_dir: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = mode
        cfg.hydra.sweep.dir = sweep_dir
    return cfg


def test_multirun_jobs_share_one_group_named_after_the_sweep() -> None:
    groups = []
    for seed in (0, 1):
        cfg = hydra_config(RunMode.MULTIRUN, "outputs/multirun/default/2026-01-01_10-00-00",
                           [f"seed={seed}", "experiment_name=abl"])
        HydraConfig.instance().set_config(cfg)
        groups.append(wandb_group(cfg))
    assert groups == ["abl-2026-01-01_10-00-00"] * 2
    other = hydra_config(RunMode.MULTIRUN, "outputs/multirun/default/2026-01-01_11-00-00",
                         ["experiment_name=abl"])
    HydraConfig.instance().set_config(other)
    assert wandb_group(other) != groups[0]


def test_single_run_group_is_the_experiment_name() -> None:
    cfg = hydra_config(RunMode.RUN, "unused", ["experiment_name=solo"])
    HydraConfig.instance().set_config(cfg)
    assert wandb_group(cfg) == "solo"
