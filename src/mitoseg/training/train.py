"""``train(cfg)``: the library function behind ``train.py`` -- build, fit, test, record."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mitoseg.config.validation import check_seeds, plain_config
from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.evaluation.em_evaluate import evaluate_em, load_net_weights
from mitoseg.runs.files import write_new_csv, write_new_json, write_new_text
from mitoseg.runs.run_info import run_info
from mitoseg.training.loggers import build_loggers
from mitoseg.training.module import SegmentationModule

log = logging.getLogger(__name__)

RESULT_FILES = ("metrics.json", "test_per_image.csv", "protocols.csv", "run_info.json")


def build_module(cfg: DictConfig, pixel_size_um: float) -> SegmentationModule:
    """The LightningModule of a config: network, loss, optimizer, scheduler, post-processing."""
    return SegmentationModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        binarize=instantiate(cfg.postproc),
        pixel_size_um=float(pixel_size_um),
        monitor=cfg.monitor,
        config=plain_config(cfg),
    )


def _prepare_run_folder(cfg: DictConfig) -> Path:
    run_dir = Path(cfg.paths.output_dir)
    taken = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if taken:
        raise FileExistsError(f"run folder '{run_dir}' already holds results ({', '.join(taken)});"
                              " refusing to overwrite them -- choose another paths.output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_new_json(run_dir / "run_info.json", run_info(cfg.seed, cfg.data_seed))
    write_new_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one configuration; returns the test metrics.

    Writes into ``cfg.paths.output_dir``: run_info.json (command, seeds, environment, git),
    config.yaml (resolved), data.json (what data was used), checkpoints/{best,last}.ckpt,
    metrics.json and test_per_image.csv (fluorescence images) or protocols.csv/.md (EM
    volumes: paper 002's inference matrix). Result files are never overwritten.
    """
    check_seeds(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    # Build and check everything before the run folder gets its first file, so that bad
    # input leaves no run folder that looks like a run.
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    module = build_module(cfg, datamodule.pixel_size_um)
    run_dir = _prepare_run_folder(cfg)
    description = datamodule.describe()
    write_new_json(run_dir / "data.json", description)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks,
                                      logger=build_loggers(cfg) or False,
                                      default_root_dir=str(run_dir))

    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - started
    checkpoint = _best_checkpoint(trainer)
    if isinstance(datamodule, EMDataModule):  # a test volume: paper 002's inference matrix
        if checkpoint:
            load_net_weights(module.net, checkpoint)
        em = evaluate_em(module.net, datamodule, module.binarize, cfg.inference, run_dir)
        test, extra = em["test"], {"headline": em["headline"]}
    else:  # test images: per-image AS/ABD through the Lightning test loop
        trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
        write_new_csv(run_dir / "test_per_image.csv", module.test_rows)
        _report(run_dir, module.test_summary)
        test, extra = module.test_summary, {}

    metrics = {
        "seed": cfg.seed, "data_seed": cfg.data_seed,
        "test": test, **extra,
        "final": {key: float(value) for key, value in trainer.callback_metrics.items()},
        "checkpoint": checkpoint, "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "postproc": module.binarize.describe(),
        "test_condition": description.get("test_condition"),
    }
    write_new_json(run_dir / "metrics.json", metrics)
    print(f"Results written to {run_dir}")
    return metrics


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """``split/key`` (e.g. test/as, test/iou_fg) -> the run's mean of that metric, or None."""
    split, _, key = name.partition("/")
    value = metrics.get(split, {}).get(key, {})
    return value.get("mean") if isinstance(value, dict) else None


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    return best or None


def _report(run_dir: Path, summary: dict[str, dict[str, float]]) -> None:
    lines = [f"{name:>7}: {s['mean']:.4f} +- {s['sem']:.4f} (SEM, n={s['n']})"
             for name, s in summary.items()]
    print("\nTest metrics (mean +- SEM over test images):\n  " + "\n  ".join(lines))
