"""``train(cfg)``: the library function behind ``train.py`` -- build, fit, test, record."""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mitoseg.config.validation import (
    check_augmentation_fits_model,
    check_inference_fits_model,
    check_model_fits_data,
    check_seeds,
    plain_config,
    z_pooling_warning,
)
from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.checkpoints import load_weights
from mitoseg.evaluation.em_evaluate import headline_choice
from mitoseg.evaluation.modality import modality_of_datamodule
from mitoseg.evaluation.test_sets import evaluate_split, predictor_for
from mitoseg.runs.files import write_new_json, write_new_text
from mitoseg.runs.lock import RunLock
from mitoseg.runs.paths import display_path
from mitoseg.runs.run_info import run_info
from mitoseg.runs.resume import LAST_CHECKPOINT, ResumePlan, plan_resume
from mitoseg.training.loggers import (build_loggers, log_run_identity, log_run_result, metric_number,
                                      wandb_loggers)
from mitoseg.training.module import SegmentationModule
from mitoseg.training.lock_check import LockCheck
from mitoseg.training.seeding import EpochSeeding

log = logging.getLogger(__name__)

RESULT_FILES = ("metrics.json", "test_per_image.csv", "protocols.csv", "run_info.json")
# what the test writes before metrics.json: a run killed between them left a partial test
TEST_FILES = ("test_per_image.csv", "protocols.csv", "protocols.md")


def build_module(cfg: DictConfig, datamodule: Any) -> SegmentationModule:
    """The LightningModule of a config: network, loss, optimizer, scheduler, post-processing;
    the (set-up) data module gives the pixel size and the input normalization to store."""
    speed = cfg.get("speed") or {}
    return SegmentationModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        binarize=instantiate(cfg.postproc),
        pixel_size_um=float(datamodule.pixel_size_um),
        monitor=cfg.monitor,
        config=plain_config(cfg),
        channels_last=bool(speed.get("channels_last", False)),
        compile=bool(speed.get("compile", False)),
        normalization=datamodule.normalization.to_dict(),
    )


def _prepare_run_folder(cfg: DictConfig, plan: ResumePlan) -> Path:
    """A fresh run folder gets run_info.json and config.yaml; a resumed one a resume-N.json."""
    run_dir = Path(cfg.paths.output_dir)
    if not plan.resuming:
        taken = [name for name in RESULT_FILES if (run_dir / name).exists()]
        if taken:
            raise FileExistsError(f"run folder '{run_dir}' already holds results "
                                  f"({', '.join(taken)}); refusing to overwrite them -- choose "
                                  "another paths.output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    info = run_info(cfg.seed, cfg.data_seed, data_root=cfg.paths.shared_data)
    if plan.resuming:
        info["resumed_from"] = (display_path(plan.checkpoint, cfg.paths.shared_data)
                                if plan.checkpoint else None)
        info["set_aside"] = _set_aside_partial_test(run_dir, plan.attempt)
        write_new_json(run_dir / f"resume-{plan.attempt}.json", info)
        log.info("resuming %s from %s (attempt %d)", run_dir,
                 plan.checkpoint or "the start: no checkpoint was saved", plan.attempt)
    else:
        write_new_json(run_dir / "run_info.json", info)
        write_new_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def _set_aside_partial_test(run_dir: Path, attempt: int) -> list[str]:
    """The test files an interrupted attempt wrote before it was killed (it had no metrics.json
    yet), renamed to ``<name>.interrupted-<attempt>`` so that this attempt writes its own; never
    deleted or overwritten. Returns the new names (resume-N.json records them)."""
    moved = []
    for name in TEST_FILES:
        if (run_dir / name).exists():
            aside = run_dir / f"{name}.interrupted-{attempt}"
            if aside.exists():
                raise FileExistsError(f"'{aside}' exists; refusing to overwrite it")
            (run_dir / name).rename(aside)
            moved.append(aside.name)
            log.warning("the interrupted attempt's %s (its test did not finish) is kept as %s",
                        name, aside.name)
    return moved


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one configuration; returns the test metrics.

    Writes into ``cfg.paths.output_dir``: run_info.json (command, seeds, environment, git),
    config.yaml (resolved), data.json (what data was used), checkpoints/{best,last}.ckpt,
    metrics.json and test_per_image.csv (fluorescence images) or protocols.csv/.md (EM
    volumes: paper 002's inference matrix). Result files are never overwritten.

    An interrupted run (killed, preempted) continues from ``checkpoints/last.ckpt`` when it
    is started again in its folder (``resume``, see ``mitoseg.runs.resume``); every epoch is
    seeded from (seed, epoch), so the result equals that of an uninterrupted run, bit for bit
    with the same ``torch_threads`` and ``speed`` (resume warns otherwise: they change float
    rounding), and with any ``dataset.num_workers`` (samples' draws are keyed in the main
    process, ``mitoseg.data.loaders``). While it runs, the folder's ``run.lock`` keeps a second
    process out (``mitoseg.runs.lock``: it stops, or takes over a lock whose holder is gone).

    With several processes (``trainer=ddp``) every rank trains; rank 0 alone writes files,
    tests on one device and returns the metrics (the other ranks return an empty dict).
    """
    check_seeds(cfg)
    check_model_fits_data(cfg)
    check_augmentation_fits_model(cfg, _choices())
    check_inference_fits_model(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    # Build and check everything before the run folder gets its first file, so that bad
    # input leaves no run folder that looks like a run.
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    if modality_of_datamodule(datamodule).uses_inference_config:
        headline_choice(cfg.inference)  # a headline outside the matrix stops before training
        warning = z_pooling_warning(cfg.get("model"), datamodule.volumes.voxel_size_nm)
        if warning:
            log.warning(warning)
    module = build_module(cfg, datamodule)
    run_dir = Path(cfg.paths.output_dir)
    rank_zero = rank_zero_only.rank == 0
    # one process at a time in a run folder (mitoseg.runs.lock), from the decision to start or
    # resume to the end; DDP workers run inside rank 0's hold
    lock = RunLock(run_dir) if rank_zero else None
    with lock or nullcontext():
        return _train_in_folder(cfg, datamodule, module, run_dir, lock)


def _train_in_folder(cfg: DictConfig, datamodule: Any, module: SegmentationModule,
                     run_dir: Path, lock: RunLock | None) -> dict[str, Any]:
    rank_zero = lock is not None
    if rank_zero:
        plan = plan_resume(run_dir, plain_config(cfg), cfg.get("resume", "auto"))
    else:  # DDP workers start inside rank 0's fit, after rank 0 decided; they follow it
        last = run_dir / LAST_CHECKPOINT
        plan = ResumePlan(last.exists(), last if last.exists() else None)
    description = datamodule.describe()
    if rank_zero:
        _prepare_run_folder(cfg, plan)
        if not (run_dir / "data.json").exists():
            write_new_json(run_dir / "data.json", description)
    loggers = (build_loggers(cfg, _wandb_id(run_dir) if plan.resuming else None, plan.attempt)
               if rank_zero else [])
    try:
        metrics, protocols = _fit_and_test(cfg, datamodule, module, run_dir, plan, loggers,
                                           description, lock)
    except BaseException as error:
        log_run_result(loggers, None, error=f"{type(error).__name__}: {error}")
        raise
    if rank_zero:
        log_run_result(loggers, metrics, protocols)
    return metrics


def _fit_and_test(cfg: DictConfig, datamodule: Any, module: SegmentationModule, run_dir: Path,
                  plan: ResumePlan, loggers: list, description: dict[str, Any],
                  lock: RunLock | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    still_ours = lock.check if lock is not None else (lambda: None)
    if loggers:
        log_run_identity(loggers, cfg, plain_config(cfg), _choices())
        _remember_wandb_id(run_dir, loggers)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    callbacks += [EpochSeeding(cfg.seed), LockCheck(still_ours)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks,
                                      logger=loggers or False, default_root_dir=str(run_dir))
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule,
                ckpt_path=str(plan.checkpoint) if plan.checkpoint else None, weights_only=True)
    fit_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}, []
    fitted = _fitted_metrics(trainer, run_dir)
    checkpoint = _best_checkpoint(trainer)
    if checkpoint:
        load_weights(module.net, checkpoint)
    # the run's config: evaluate.py reads the same from the checkpoint
    predictor = predictor_for(datamodule, module.net, Normalization.from_dict(module.normalization),
                              module.binarize, cfg, device=trainer.strategy.root_device)
    still_ours()
    result = evaluate_split(predictor, datamodule, "test", run_dir, cfg.get("inference"))
    test, extra, protocols = result["test"], result["extra"], result["protocols"]
    tested = {}
    if result["rows"]:  # per-image rows: reported and logged as a test loop did
        _report(summary=test)
        tested = _log_test_metrics(loggers, test, trainer.global_step)
    for logger in loggers:
        logger.log_hyperparams({"protocol_card": result["card"]})

    metrics = {
        "seed": cfg.seed, "data_seed": cfg.data_seed,
        "test": test, **extra, "protocol_card": result["card"],
        "final": fitted | tested,
        "best": _best_score(trainer, cfg.monitor),
        "checkpoint": display_path(checkpoint, cfg.paths.shared_data) if checkpoint else None,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 2),
        "resumed": plan.attempt,
        "postproc": module.binarize.describe(),
        "test_condition": description.get("test_condition"),
    }
    still_ours()
    write_new_json(run_dir / "metrics.json", metrics)
    log.info("Results written to %s", run_dir)
    return metrics, protocols


FIT_RECORD = "fit.json"  # the last epoch's logged values, written when fitting ends


def _fitted_metrics(trainer: pl.Trainer, run_dir: Path) -> dict[str, float]:
    """The values the fit logged last (train/loss, val/loss, val/as, ...), kept in fit.json as
    soon as fitting ends: a run killed during its test resumes with no epoch left to run, so
    its trainer logs nothing and metrics.json's ``final`` comes from that record instead."""
    fitted = {key: float(value) for key, value in trainer.callback_metrics.items()}
    record = run_dir / FIT_RECORD
    if fitted and not record.exists():
        write_new_json(record, fitted)
    elif not fitted and record.exists():
        fitted = json.loads(record.read_text())
    elif not fitted:
        log.warning("the fit logged no values and %s holds none (the run was stopped between "
                    "its last epoch and the record): metrics.json's 'final' is empty",
                    record.name)
    return fitted


def _choices() -> dict[str, Any]:
    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items()
            if not str(k).startswith("hydra")}


def _wandb_id(run_dir: Path) -> str | None:
    path = run_dir / "wandb_id.txt"
    return path.read_text().strip() or None if path.is_file() else None


def _remember_wandb_id(run_dir: Path, loggers: list) -> None:
    for logger in wandb_loggers(loggers):
        if not (run_dir / "wandb_id.txt").exists():
            write_new_text(run_dir / "wandb_id.txt", f"{logger.experiment.id}\n")


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """``split/key`` -> the number a sweeper optimizes, or None.

    test/as, test/iou_fg: the run's mean over test images (or the headline protocol);
    best/val/loss: the best value of the checkpoint monitor; final/val/as: the last epoch's.
    """
    split, _, key = name.partition("/")
    return metric_number((metrics.get(split) or {}).get(key))


def _best_score(trainer: pl.Trainer, monitor: str) -> dict[str, float]:
    """{monitor: best value} as tracked by the checkpoint callback (what best.ckpt holds)."""
    callback = trainer.checkpoint_callback
    score = getattr(callback, "best_model_score", None) if callback is not None else None
    return {monitor: float(score)} if score is not None else {}


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    return best or None


def _log_test_metrics(loggers: list, test: dict[str, Any], step: int) -> dict[str, float]:
    """The finite test means as ``test/<name>`` into every logger (CSV, W&B), as a Lightning
    test loop logged them (float32 tensors); returns them for metrics.json's ``final``."""
    numbers = {f"test/{name}": float(np.float32(stats["mean"])) for name, stats in test.items()
               if np.isfinite(stats["mean"])}
    for logger in loggers:
        logger.log_metrics(numbers, step=step)
        logger.save()
    return numbers


def _report(summary: dict[str, dict[str, float]]) -> None:
    lines = [f"{name:>10}: {s['mean']:.4f} +- {s['sem']:.4f} (SEM, n={s['n']} images"
             + (f", {s['units']} independent units)" if "units" in s else ")")
             for name, s in summary.items()]
    log.info("\nTest metrics (mean +- SEM over test images, a description: the images of one "
             "unit are not independent):\n  " + "\n  ".join(lines))
