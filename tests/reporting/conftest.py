"""Fake run folders written by hand, laid out as train.py lays them out."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

TARGETS = {"unet_paper000": "mitoseg.models.nets.unet_paper000.UNetPaper000",
           "fcn_paper000": "mitoseg.models.nets.fcn_paper000.FCNPaper000"}
SHARED = ["trainer.max_epochs=1"]  # an override every configuration of the study shares


def make_run(folder: Path, overrides: Sequence[str], seed: int, *, model: str = "unet_paper000",
             metrics: Mapping[str, float] | None = None, failed: str | None = None,
             protocols: Sequence[Mapping[str, Any]] | None = None,
             choices: Mapping[str, str] | None = None, log: str | None = None) -> Path:
    """One run folder: .hydra/overrides.yaml and config.yaml, config.yaml, run_info.json, and
    metrics.json
    (``metrics``: test metric -> the run's mean), failed.json or protocols.csv if given."""
    (folder / ".hydra").mkdir(parents=True)
    job = [*overrides, f"seed={seed}", "paths.output_root=/somewhere", "logger=none"]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(job))
    if choices is not None:
        hydra = {"hydra": {"job": {"name": "train"}, "runtime": {"choices": dict(choices)}}}
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    config = {"experiment_name": "default", "seed": seed, "data_seed": 0,
              "optimized_metric": "test/as", "model": {"_target_": TARGETS[model]},
              "dataset": {"_target_": "mitoseg.data.fluo_datamodule.FluorescenceDataModule"},
              "postproc": {"_target_": "mitoseg.postproc.binarize.Threshold", "threshold": 0.5}}
    for override in overrides:  # as Hydra resolves them into config.yaml
        key, value = override.lstrip("+").split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        if not parents and isinstance(node.get(leaf), dict):
            continue  # a config group already resolved above (model)
        grouped = not parents and leaf not in node  # a config group (optimizer=adam)
        node[leaf] = {"_choice_": value} if grouped else yaml.safe_load(value)
    # Hydra's composed config keeps interpolations as written; config.yaml resolves them, so
    # there values that follow the seed or the run folder differ between a sweep's seeds
    composed = config | {"dataset": {**config["dataset"], "seed": "${seed}"},
                         "paths": {"output_dir": "${hydra:runtime.output_dir}"}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(composed))
    resolved = config | {"dataset": {**config["dataset"], "seed": seed},
                         "paths": {"output_dir": str(folder)}}
    (folder / "config.yaml").write_text(yaml.safe_dump(resolved))
    (folder / "run_info.json").write_text(json.dumps({"command": "train.py -m", "seed": seed}))
    if metrics is not None:
        test = {k: {"mean": v, "sem": 0.01, "std": 0.05, "n": 30} for k, v in metrics.items()}
        body = {"seed": seed, "test": test, "final": {"val/loss": 0.3}, "fit_seconds": 1.5}
        (folder / "metrics.json").write_text(json.dumps(body))
    if failed is not None:
        (folder / "failed.json").write_text(json.dumps({"error": failed, "seed": seed}))
    if protocols is not None:
        with open(folder / "protocols.csv", "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(protocols[0]))
            writer.writeheader()
            writer.writerows(protocols)
    if log is not None:
        (folder / "train.log").write_text(log)
    return folder


# configuration -> (model, AS per seed); seeds 0, 1, 2 finished
AS = {"model=unet_paper000": ("unet_paper000", [0.900, 0.905, 0.910]),
      "model=fcn_paper000": ("fcn_paper000", [0.80, 0.85, 0.78]),
      "model=unet_paper000 optimizer=adam": ("unet_paper000", [0.912, 0.915, 0.920])}
ABD = {"model=unet_paper000": [1.0, 1.2, 1.1], "model=fcn_paper000": [2.0, 2.5, 2.2],
       "model=unet_paper000 optimizer=adam": [0.9, 1.0, 1.1]}
FCN_ERROR = "CUDA out of memory while fitting"


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A multirun of 3 configurations x 3 finished seeds, plus a 4th seed of fcn that failed
    (failed.json) and a 4th seed of the baseline that never finished."""
    sweep = tmp_path / "outputs" / "multirun" / "default" / "2026-01-01_10-00-00"
    number = 0
    for label, (model, values) in AS.items():
        for seed, value in enumerate(values):
            overrides = [*SHARED, *label.split()]
            make_run(sweep / f"{number}_{','.join(overrides)},seed={seed}", overrides, seed,
                     model=model, metrics={"as": value, "abd_px": ABD[label][seed]})
            number += 1
    make_run(sweep / f"{number}_fcn_failed", [*SHARED, "model=fcn_paper000"], 3,
             model="fcn_paper000", failed=FCN_ERROR)
    make_run(sweep / f"{number + 1}_unet_unfinished", [*SHARED, "model=unet_paper000"], 3)
    return tmp_path / "outputs"


def update_configs(folder: Path, changes: Mapping[str, Any]) -> None:
    """Merge ``changes`` (top-level keys) into a run's config.yaml and .hydra/config.yaml, as a
    changed default would show in both."""
    for path in (folder / "config.yaml", folder / ".hydra" / "config.yaml"):
        path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | dict(changes)))
