"""Cluster launch and searches without W&B: the SLURM launcher and the Optuna search."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import CONF, REPO, python_command

TINY_EM = [
    "dataset=synthetic_em", "dataset.volumes.train_shape=[8,256,256]",
    "dataset.volumes.test_shape=[4,256,256]", "dataset.eval_batch_size=4",
    "model=unet2d_paper002", "model.filters=[4,8,8,16,16]", "augmentation=none",
    "postproc=em_default", "inference=em_quick", "trainer=cpu", "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv",
]


def hydra_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_gives_each_job_one_gpu_and_requeues() -> None:
    launcher = hydra_config(["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.nodes == 1
    assert launcher.max_num_timeout > 0  # preempted/timed-out jobs come back and resume


def test_optuna_search_composes_and_searches_what_it_says() -> None:
    cfg = hydra_config(["search=optuna_paper002", "experiment=lucchi_unet2d"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "minimize" and cfg.optimized_metric == "best/val/loss"
    assert set(sweeper.params) == {"optimizer", "optimizer.lr", "dataset.batch_size",
                                   "model.dropout", "dataset.patch_size"}
    for key in sweeper.params:  # every searched key exists in the composed training config
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key


def test_optuna_search_runs_trials_offline(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(
        python_command("train.py", "-m", "search=optuna_paper002", *TINY_EM,
                       "hydra.sweeper.n_trials=2", f"paths.output_root={tmp_path}"),
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    results = list((tmp_path / "multirun").glob("*/*/optimization_results.yaml"))
    assert len(results) == 1, done.stdout[-2000:]
    best = yaml.safe_load(results[0].read_text())
    assert best["name"] == "optuna" and isinstance(best["best_value"], float)
    assert set(best["best_params"]) == {"optimizer", "optimizer.lr", "dataset.batch_size",
                                        "model.dropout", "dataset.patch_size"}
    assert len(list((tmp_path / "multirun").glob("*/*/*/metrics.json"))) == 2


def test_local_submitit_launcher_runs_jobs_as_processes(tmp_path: Path) -> None:
    """The SLURM code path (pickled jobs, submitit) without SLURM."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(
        python_command("train.py", "-m", "hydra/launcher=local_processes", "seed=0,1",
                       *TINY_EM, f"paths.output_root={tmp_path}"),
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert len(list((tmp_path / "multirun").glob("*/*/*/metrics.json"))) == 2
