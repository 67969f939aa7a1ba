"""Experiment loggers from config; W&B runs grouped by sweep and configuration.

W&B receives, besides the training curves: the config key ``mitoseg`` (the job's overrides,
its config-group choices, seed, optimized metric and run folder) and, at the end, the summary
keys ``mitoseg/metrics_json`` (the run's metrics.json as a JSON string), for EM runs
``mitoseg/protocols_json`` (the protocols.csv rows), the headline numbers as plain keys
(``test/as``, ...), or ``mitoseg/error`` when the job failed. ``report.py`` reads these back
from W&B offline runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import Logger, WandbLogger

from mitoseg.runs.identity import identity_overrides
from mitoseg.runs.files import to_jsonable
from mitoseg.runs.paths import display_path

MAX_GROUP_LENGTH = 128  # W&B's limit on a group name


def job_overrides() -> list[str]:
    """The job's own command-line overrides (a multirun job's sweep values included)."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def sweep_name() -> str | None:
    """The sweep a job belongs to: a Hydra multirun's folder, or a W&B sweep's id."""
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return Path(hydra_cfg.sweep.dir).name
    return os.environ.get("WANDB_SWEEP_ID") or None


def wandb_group(cfg: DictConfig) -> str:
    """``<experiment>/<sweep>/<configuration>``: the runs of one configuration in one sweep
    (its seeds) share a group. The configuration is the job's overrides without the seed
    and the keys that do not change results -- the same identity ``report.py`` uses."""
    parts = [str(cfg.get("experiment_name", "mitoseg"))]
    sweep = sweep_name()
    if sweep:
        parts.append(sweep)
    configuration = ",".join(identity_overrides(job_overrides()))
    parts.append(configuration or "defaults")
    group = "/".join(parts)
    if len(group) > MAX_GROUP_LENGTH:
        digest = hashlib.sha1(group.encode()).hexdigest()[:8]
        group = f"{group[: MAX_GROUP_LENGTH - 9]}~{digest}"
    return group


def build_loggers(cfg: DictConfig, wandb_id: str | None = None,
                  attempt: int = 0) -> list[Logger]:
    """Instantiate every logger under ``cfg.logger``.

    W&B runs offline unless its config says ``offline: false`` (or WANDB_MODE=online): no
    account and no network are needed, and ``wandb sync <run folder>/wandb/offline-run-*``
    uploads later. Group and run name default to ``wandb_group`` and the run folder's name;
    ``wandb_id`` continues an earlier W&B run (a resumed training run); ``attempt`` > 0 (a
    resumption) gives the CSV log its own version folder, so the earlier log is kept.
    """
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None:
            continue
        if "WandbLogger" in str(node.get("_target_", "")):
            node = node.copy()
            with open_dict(node):
                node.group = node.get("group") or wandb_group(cfg)
                node.name = node.get("name") or Path(cfg.paths.output_dir).name
                if wandb_id:
                    node.id, node.resume = wandb_id, "allow"
                if node.get("offline", True) and os.environ.get("WANDB_MODE") != "online":
                    os.environ.setdefault("WANDB_MODE", "offline")
            Path(node.save_dir).mkdir(parents=True, exist_ok=True)
        elif "CSVLogger" in str(node.get("_target_", "")) and attempt:
            node = node.copy()
            with open_dict(node):
                node.version = f"resume-{attempt}"
        loggers.append(instantiate(node))
    return loggers


def wandb_loggers(loggers: Sequence[Logger]) -> list[WandbLogger]:
    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_run_identity(loggers: Sequence[Logger], cfg: DictConfig, config: Mapping[str, Any],
                     choices: Mapping[str, Any]) -> None:
    """Put the job's identity and resolved config into every logger's hyperparameters."""
    identity = {"overrides": job_overrides(), "choices": dict(choices), "seed": cfg.seed,
                "data_seed": cfg.data_seed, "optimized_metric": cfg.get("optimized_metric"),
                "run_folder": display_path(cfg.paths.output_dir, cfg.paths.shared_data)}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.config.update({"mitoseg": identity, **config}, allow_val_change=True)
        else:
            logger.log_hyperparams({"mitoseg": identity})


def log_run_result(loggers: Sequence[Logger], metrics: Mapping[str, Any] | None,
                   protocols: Sequence[Mapping[str, Any]] = (), error: str | None = None) -> None:
    """Write the run's outcome into each W&B run's summary, then close the W&B run.

    Closing matters in a multirun: the next job must not log into this job's W&B run.
    """
    for logger in wandb_loggers(loggers):
        run = logger.experiment
        if metrics is not None:
            run.summary["mitoseg/metrics_json"] = json.dumps(to_jsonable(metrics), sort_keys=True)
            for name, value in headline_numbers(metrics).items():
                run.summary[name] = value
        if protocols:
            run.summary["mitoseg/protocols_json"] = json.dumps(to_jsonable(list(protocols)))
        if error is not None:
            run.summary["mitoseg/error"] = error
        run.finish(exit_code=0 if error is None else 1)


def metric_number(entry: Any) -> float | None:
    """One metrics.json entry as a number: a summary's mean ({"mean": 0.9, "sem": ...} -> 0.9),
    a plain number as itself, anything else (text, bool, missing) None."""
    value = entry.get("mean") if isinstance(entry, Mapping) else entry
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{"test": {"as": {"mean": 0.9}}, "best": {"val/loss": 0.2}}`` ->
    ``{"test/as": 0.9, "best/val/loss": 0.2}`` (numbers only): what sweeps optimize."""
    numbers = {}
    for split in ("test", "best"):
        for key, entry in (metrics.get(split) or {}).items():
            value = metric_number(entry)
            if value is not None:
                numbers[f"{split}/{key}"] = value
    return numbers
