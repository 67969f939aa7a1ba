"""``run_study(cfg)``: the library function behind ``study.py`` -- train, analyze, report."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mitoseg.config.paths import config_file
from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import EMPTY_ABD
from mitoseg.runs.files import next_free_path, write_new_csv, write_new_json, write_new_text
from mitoseg.runs.paths import display_command, display_path
from mitoseg.runs.run_info import run_info
from mitoseg.study.analysis import (Segmenter, example_predictions, find_trained_runs,
                                    study_rows)
from mitoseg.study.plan import FAMILIES, MIXTURES, training_conditions

log = logging.getLogger(__name__)
TRAIN_MODULE = "mitoseg.commands.train"  # mitoseg-train, run by this interpreter
CLASSICAL_NAMES = {"local_threshold": "local"}


def training_command(cfg: DictConfig, study_dir: Path) -> list[str]:
    """The one Hydra multirun of ``mitoseg-train`` that trains every network of the study.

    It runs as a child process of this Python (``python -m mitoseg.commands.train``), in the
    current folder: any Hydra launcher works, and a crash stays inside its job."""
    conditions = training_conditions(list(cfg.families), list(cfg.mixtures),
                                     bool(cfg.deformations))
    command = [sys.executable, "-m", TRAIN_MODULE, "-m",
               f"dataset={cfg.dataset}", f"condition={','.join(conditions)}",
               f"model={','.join(cfg.models)}", f"seed={','.join(str(s) for s in cfg.seeds)}",
               f"experiment_name=study_{cfg.name}", f"logger={cfg.logger}",
               f"hydra.sweep.dir={study_dir / 'train'}", *cfg.train_overrides]
    if cfg.get("launcher"):
        command.append(f"hydra/launcher={cfg.launcher}")
    return command


def classical_methods(names: list[str]) -> dict[str, Segmenter]:
    methods = {}
    for name in names:
        path = config_file("classical", name)
        if not path.is_file():
            raise InputError(f"study: unknown classical method '{name}' (expected {path})")
        methods[CLASSICAL_NAMES.get(name, name)] = instantiate(OmegaConf.load(path))
    return methods


def run_study(cfg: DictConfig) -> Path:
    """Train (unless ``analyze_only``), then analyze and report; returns the report folder."""
    _check(cfg)
    study_dir = Path(cfg.analyze_only or cfg.paths.output_dir)
    started = time.perf_counter()
    if not cfg.analyze_only:
        study_dir.mkdir(parents=True, exist_ok=True)
        write_new_json(study_dir / "run_info.json",
                       run_info(0, 0, data_root=cfg.paths.shared_data))
        write_new_text(study_dir / "study.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        command = training_command(cfg, study_dir)
        shown = ["python", *display_command(command[1:], cfg.paths.shared_data)]
        write_new_text(study_dir / "train_command.txt", " ".join(shown) + "\n")
        plan = describe_plan(cfg)
        log.info("Training %d networks (%d conditions x %d models x %d seeds) in %s",
                 plan["jobs"], len(plan["conditions"]), len(plan["models"]),
                 len(plan["seeds"]), study_dir / "train")
        done = subprocess.run(command, env=os.environ.copy())
        if done.returncode != 0:
            log.error("the training multirun reported failed jobs (exit %d); analyzing what "
                      "finished, the report lists the rest", done.returncode)
    elif not (study_dir / "train").is_dir():
        raise InputError(f"analyze_only='{study_dir}': no training folder '{study_dir / 'train'}'")
    train_seconds = time.perf_counter() - started

    runs, problems = find_trained_runs(study_dir / "train")
    classical = classical_methods(list(cfg.classical))
    postprocs = OmegaConf.to_container(cfg.postprocs, resolve=True) if cfg.postprocs else {}
    rows = study_rows(runs, list(cfg.families), list(cfg.mixtures), classical,
                      [int(d) for d in cfg.deformations], postprocs, cfg.empty_abd)
    out = _new_folder(study_dir / "report")
    write_new_csv(out / "per_image.csv", rows)
    from mitoseg.study.figures import example_panel
    from mitoseg.study.report import write_study_report

    for family in cfg.families:
        middle = FAMILIES[family][1][1]
        example = example_predictions(runs, classical, middle)
        if example is not None:
            item, predictions = example
            example_panel(item.image, item.mask, predictions, out / f"example_{middle}")
    meta = {
        "command": " ".join(display_command(sys.argv, cfg.paths.shared_data)),
        "study folder": display_path(study_dir, cfg.paths.shared_data),
        "mask source": _mask_source(runs, cfg.dataset, cfg.paths.shared_data),
        "n per condition": _test_size(runs),
        "mixture training images per condition": _mixture_counts(runs),
        "families": ", ".join(cfg.families),
        "mixtures": ", ".join(cfg.mixtures) or "none",
        "models": ", ".join(cfg.models), "seeds": ", ".join(map(str, cfg.seeds)),
        "classical methods": ", ".join(cfg.classical),
        "training overrides": " ".join(cfg.train_overrides) or "none",
        "ABD of an empty prediction (empty_abd)": cfg.empty_abd,
        "finished training runs": len(runs),
        "failed or unfinished training runs": "; ".join(f"{p.name}: {why}" for p, why in problems) or "none",
        "hardware": _hardware(), "wall time (s)": round(time.perf_counter() - started, 1),
        "training wall time (s)": round(train_seconds, 1),
    }
    meta |= _independence(rows, cfg.statistics_unit)
    report = write_study_report(rows_for_tests(rows, cfg.statistics_unit), out, meta=meta)
    if cfg.logger == "wandb":
        _log_to_wandb(cfg, out)
    log.info("Study report: %s", report)
    return out


def _mask_source(runs: list, dataset: str, data_root: str) -> str:
    """The masks of the first run, which are every run's (``study_rows`` refuses runs that
    were not all trained on one data split)."""
    if not runs:
        return str(dataset)
    masks = runs[0].config["dataset"].get("masks", {})
    where = (display_path(masks["path"], data_root) if masks.get("path") else
             f"procedural, seed {masks.get('seed')}, {masks.get('count')} masks")
    return f"{dataset} ({where})"


def _mixture_counts(runs: list) -> str:
    """What each mixture network was trained on, from its data.json (equal by construction):
    "mix_snr unet_paper000 seed 0: snr 1: 84, 4: 84, 8: 84"."""
    import json

    found = []
    for run in sorted((r for r in runs if r.condition in MIXTURES),
                      key=lambda r: (r.condition, r.model, r.seed)):
        data = run.folder / "data.json"
        data = json.loads(data.read_text()) if data.is_file() else {}
        counts, conditions = data.get("train_condition_counts"), data.get("train_conditions", [])
        key = "snr" if MIXTURES[run.condition] == "snr" else "blur_sigma"
        text = (", ".join(f"{c.get(key):g}: {n}" for c, n in zip(conditions, counts))
                if counts else "not recorded")
        found.append(f"{run.condition} {run.model} seed {run.seed}: {key} {text}")
    return "; ".join(found) or "no mixture run"


def _test_size(runs: list) -> str:
    """The split sizes of the first run, which are every run's (one data split, see
    ``_mask_source``)."""
    if not runs:
        return "no finished run"
    data = runs[0].folder / "data.json"
    import json

    sizes = json.loads(data.read_text()).get("sizes", {}) if data.is_file() else {}
    return f"{sizes.get('test', '?')} test images (train {sizes.get('train', '?')}, val {sizes.get('val', '?')})"


STATISTICS_UNITS = ("crop", "cluster")


def rows_for_tests(rows: list[dict[str, Any]], unit: str) -> list[dict[str, Any]]:
    """The rows the statistics see: their ``unit`` is the crop (as written) or the cluster."""
    if unit not in STATISTICS_UNITS:
        raise InputError(f"study option 'statistics_unit' must be one of {list(STATISTICS_UNITS)}, "
                         f"got {unit!r}")
    return rows if unit == "crop" else [dict(row, unit=row["cluster"]) for row in rows]


def _independence(rows: list[dict[str, Any]], unit: str) -> dict[str, str]:
    """Report lines: what the tests count as independent, how many of each there are, and what
    that costs: crop units of one cluster overlap (their p-values are too small), and fewer
    than two clusters leave nothing to test."""
    tested = [r for r in rows if r["part"] == "robustness"] or rows
    crops, clusters = {r["unit"] for r in tested}, {r["cluster"] for r in tested}
    lines = {
        "statistics unit (statistics_unit)": (
            f"{unit}: tests compare {'crop' if unit == 'crop' else 'cluster'} means"),
        "independent units in the test set": (
            f"{len({r['image'] for r in tested})} images, {len(crops)} crops (a crop and its "
            f"flips/rotations), {len(clusters)} clusters (crops that share a region with one "
            "another; the split keeps each on one side)"),
    }
    if unit == "crop" and len(clusters) < len(crops):
        lines["WARNING: units that overlap"] = (
            f"the {len(crops)} crops lie in {len(clusters)} cluster(s) and crops of one cluster "
            "share pixels, so the tests' units are not independent and their p-values are too "
            "small; statistics_unit=cluster tests the clusters")
    elif unit == "cluster" and len(clusters) < 2:
        lines["tests"] = (f"{len(clusters)} cluster in the test set: one independent unit, so no "
                          "two-sample test is possible (p n/a); a larger test set of several "
                          "clusters, or procedural masks, can be tested")
    return lines


def _check(cfg: DictConfig) -> None:
    unknown = [f for f in cfg.families if f not in FAMILIES]
    unknown += [m for m in cfg.mixtures if m not in MIXTURES]
    if unknown:
        raise InputError(f"study: unknown families/mixtures {unknown}; known families "
                         f"{sorted(FAMILIES)}, mixtures {sorted(MIXTURES)}")
    if not cfg.models or not cfg.seeds:
        raise InputError("study: 'models' and 'seeds' must not be empty")
    if cfg.get("statistics_unit") not in STATISTICS_UNITS:
        raise InputError(f"study option 'statistics_unit' must be one of {list(STATISTICS_UNITS)}, "
                         f"got {cfg.get('statistics_unit')!r}")
    if cfg.get("empty_abd") not in EMPTY_ABD:
        raise InputError(f"study option 'empty_abd' must be one of {list(EMPTY_ABD)} (the ABD of an "
                         f"empty prediction: the image diagonal, or exclude = nan, left out of means and counted), "
                         f"got {cfg.get('empty_abd')!r}")


def _new_folder(path: Path) -> Path:
    """``report``, or ``report-2``, ``report-3`` ... when an earlier analysis is there."""
    folder = next_free_path(path)
    folder.mkdir(parents=True)
    return folder


def _hardware() -> str:
    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {device}"


def _log_to_wandb(cfg: DictConfig, out: Path) -> None:
    """The report's tables and figures as one W&B run (offline unless WANDB_MODE=online)."""
    import csv

    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    run = wandb.init(project="mitoseg", dir=str(out), group=f"study/{cfg.name}",
                     job_type="study", name=out.parent.name,
                     config=OmegaConf.to_container(cfg, resolve=True))
    for table in sorted(out.glob("*.csv")):
        with open(table, newline="") as stream:
            rows = list(csv.reader(stream))
        if len(rows) > 1:
            run.log({f"table/{table.stem}": wandb.Table(columns=rows[0], data=rows[1:])})
    for figure in sorted(out.glob("*.png")):
        run.log({f"figure/{figure.stem}": wandb.Image(str(figure))})
    run.finish()


def describe_plan(cfg: DictConfig) -> dict[str, Any]:
    """What a study will train (for --cfg job style inspection and tests)."""
    conditions = training_conditions(list(cfg.families), list(cfg.mixtures), bool(cfg.deformations))
    return {"conditions": conditions, "models": list(cfg.models), "seeds": list(cfg.seeds),
            "jobs": len(conditions) * len(cfg.models) * len(cfg.seeds)}
