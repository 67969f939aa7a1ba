"""``evaluate(cfg)``: score a checkpoint on a dataset split; per-image CSV and summary JSON."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mitoseg.config.validation import check_seeds
from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.modality import modality_of_datamodule
from mitoseg.evaluation.test_sets import evaluate_split, predictor_for
from mitoseg.evaluation.training_overlap import (seeds_from_checkpoint, training_overlap,
                                                 volume_training_overlap)
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_json
from mitoseg.runs.paths import display_path
from mitoseg.runs.run_info import run_info

log = logging.getLogger(__name__)


def _section(cfg: DictConfig, stored: dict[str, Any], key: str) -> DictConfig:
    """The evaluation's own ``key`` config if given, else the one stored in the checkpoint."""
    node = cfg.get(key)
    return node if node else OmegaConf.create(stored[key])


def _follow_the_checkpoints_network(cfg: DictConfig, stored: dict[str, Any]) -> None:
    """A data set given here takes its patch size (and anything else that follows the model,
    ``${oc.select:model.spatial_dims,2}``) from the checkpoint's network, not from the 2D
    default of a config that names no model: a 3D checkpoint on ``dataset=kasthuri_pp`` gets
    its 3D patches."""
    dims = int((stored.get("model") or {}).get("spatial_dims", 2))
    with open_dict(cfg):
        cfg.model = OmegaConf.create({"spatial_dims": dims})


def _windows_of_training(inference: DictConfig, stored: dict[str, Any]) -> DictConfig:
    """``inference.patch_size: null`` means the training patch size: the checkpoint's, also
    when a data set given here would make other patches."""
    trained = (stored.get("dataset") or {}).get("patch_size")
    if inference.get("patch_size") or not trained:
        return inference
    inference = OmegaConf.create(OmegaConf.to_container(inference, resolve=True))
    inference.patch_size = list(trained)
    return inference


@torch.no_grad()
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the checkpoint's network over ``cfg.split`` of the dataset and score it the way the
    data module declares (per-image rows for image sets, paper 002's matrix for EM volumes).

    The dataset and post-processing default to the ones stored in the checkpoint, so the
    same test images are scored; give ``dataset=...`` or ``postproc=...`` to change them
    (e.g. another SNR, or the 0.9 threshold). ``seed`` and ``data_seed`` default to the
    checkpoint's, so ``dataset=...`` splits the masks as training did. A val/test split that
    shares masks or regions with masks the checkpoint has seen (``training_overlap``), or an
    EM test volume holding copies of its training slices or slices within the gap its training
    split kept (``volume_training_overlap``), is refused unless ``allow_training_overlap=true``
    (then summary.json starts with a WARNING).
    """
    if cfg.split not in ("train", "val", "test"):
        raise InputError(f"config option 'split' must be train, val or test, got {cfg.split!r}")
    net, stored = load_network(cfg.ckpt_path)
    seeds = seeds_from_checkpoint(cfg, stored)
    check_seeds(cfg)
    _follow_the_checkpoints_network(cfg, stored)
    datamodule = instantiate(_section(cfg, stored, "dataset"))
    binarize = instantiate(_section(cfg, stored, "postproc"))
    datamodule.setup()
    out = Path(cfg.paths.output_dir)
    modality = modality_of_datamodule(datamodule)
    trained = Normalization.from_dict(stored["normalization"])
    allow = bool(cfg.get("allow_training_overlap", False))
    inference = (_windows_of_training(_section(cfg, stored, "inference"), stored)
                 if modality.uses_inference_config else None)
    if modality.uses_inference_config:  # volumes: scaled by the predictor from raw intensities
        if cfg.split != "test":
            raise InputError("EM data sets are evaluated on their test volume only (split=test)")
        overlap = volume_training_overlap(stored, datamodule, allow, display_path(
            cfg.ckpt_path, cfg.paths.shared_data))
    else:  # image sets: the loader scales the images, so it must scale them as training did
        if datamodule.normalization != trained:
            raise InputError(f"evaluate: the data set scales inputs as "
                             f"{datamodule.normalization.to_dict()} but checkpoint "
                             f"'{cfg.ckpt_path}' was trained on {trained.to_dict()}; set "
                             f"dataset.normalize={trained.mode}")
        overlap = training_overlap(stored, datamodule, cfg.split, allow)
    predictor = predictor_for(datamodule, net, trained, binarize, stored, inference,
                              device=cfg.get("device") or None)  # image sets: as the run's test
    write_new_json(out / "run_info.json", run_info(stored.get("seed"), stored.get("data_seed"),
                                                   data_root=cfg.paths.shared_data))
    result = evaluate_split(predictor, datamodule, cfg.split, out, inference)
    summary: dict[str, Any] = {"checkpoint": display_path(cfg.ckpt_path, cfg.paths.shared_data),
                               "split": cfg.split}
    if result["rows"]:
        summary |= {"n_images": len(result["rows"]), "metrics": result["test"],
                    "seeds": {key: {"value": cfg[key], "from": seeds[key]} for key in seeds}}
    summary["protocol_card"] = result["card"]
    summary |= {"training_overlap": overlap, "postproc": binarize.describe(),
                "data": datamodule.describe()}
    if not result["rows"]:
        summary |= {"test": result["test"], **result["extra"], "protocols": result["protocols"]}
    if "warning" in overlap:
        summary = {"WARNING": overlap["warning"], **summary}
    write_new_json(out / "summary.json", summary)
    for name, stats in (summary.get("metrics") or {}).items():
        log.info("%s/%s: %.4f +- %.4f (SEM, n=%d)", cfg.split, name, stats["mean"], stats["sem"],
                 stats["n"])
    if "warning" in overlap:
        log.warning("WARNING: %s", overlap["warning"])
    log.info("Results written to %s", out)
    return summary
