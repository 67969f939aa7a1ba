"""W&B grouping: the seeds of one configuration in one sweep share a group."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from mitoseg.training.loggers import MAX_GROUP_LENGTH, headline_numbers, wandb_group
from tests.conftest import CONF

SWEEP = "outputs/multirun/default/2026-01-01_10-00-00"


def group_of(mode: RunMode, overrides: list[str], sweep_dir: str = SWEEP) -> str:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = mode
        cfg.hydra.sweep.dir = sweep_dir
    HydraConfig.instance().set_config(cfg)
    return wandb_group(cfg)


def test_seeds_of_one_configuration_share_a_group_named_after_sweep_and_config() -> None:
    groups = {group_of(RunMode.MULTIRUN, [f"seed={seed}", "model=attention_unet"])
              for seed in range(3)}
    assert groups == {"default/2026-01-01_10-00-00/model=attention_unet"}


def test_other_configuration_or_other_sweep_is_another_group() -> None:
    base = group_of(RunMode.MULTIRUN, ["seed=0", "model=attention_unet"])
    assert group_of(RunMode.MULTIRUN, ["seed=0", "model=unet2d_paper002"]) != base
    assert group_of(RunMode.MULTIRUN, ["seed=0", "model=attention_unet"],
                    "outputs/multirun/default/2026-01-02_10-00-00") != base


def test_keys_that_do_not_change_results_stay_out_of_the_group() -> None:
    plain = group_of(RunMode.MULTIRUN, ["seed=1", "optimizer.lr=0.1"])
    noisy = group_of(RunMode.MULTIRUN, ["seed=2", "optimizer.lr=0.1", "logger=csv",
                                        "paths.output_root=/tmp/x", "experiment_name=default"])
    assert plain == noisy == "default/2026-01-01_10-00-00/optimizer.lr=0.1"


def test_single_run_group_without_a_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    assert group_of(RunMode.RUN, ["experiment_name=solo"]) == "solo/defaults"


def test_a_wandb_agent_run_is_grouped_by_its_sweep_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    assert group_of(RunMode.RUN, ["seed=4", "model=fcn_paper000"]) == \
        "default/abc123/model=fcn_paper000"


def test_long_groups_are_cut_to_wandb_limit_and_stay_distinct() -> None:
    long_a = group_of(RunMode.MULTIRUN, [f"optimizer.lr=0.{'1' * 150}"])
    long_b = group_of(RunMode.MULTIRUN, [f"optimizer.lr=0.{'1' * 149}2"])
    assert len(long_a) == len(long_b) == MAX_GROUP_LENGTH and long_a != long_b


def test_headline_numbers_are_the_test_means() -> None:
    metrics = {"test": {"as": {"mean": 0.9, "sem": 0.01}, "iou_fg": 0.8, "n": True}}
    assert headline_numbers(metrics) == {"test/as": 0.9, "test/iou_fg": 0.8}
