"""``evaluate(cfg)``: score a checkpoint on a dataset split; per-image CSV and summary JSON."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mitoseg.config.validation import check_seeds
from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.em_evaluate import evaluate_em
from mitoseg.evaluation.scoring import score_batch, summarize
from mitoseg.evaluation.training_overlap import (seeds_from_checkpoint, training_overlap,
                                                 volume_training_overlap)
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_csv, write_new_json
from mitoseg.runs.paths import display_path
from mitoseg.runs.run_info import run_info

log = logging.getLogger(__name__)


def _section(cfg: DictConfig, stored: dict[str, Any], key: str) -> DictConfig:
    """The evaluation's own ``key`` config if given, else the one stored in the checkpoint."""
    node = cfg.get(key)
    return node if node else OmegaConf.create(stored[key])


@torch.no_grad()
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the checkpoint's network over ``cfg.split`` of the dataset and score every image.

    The dataset and post-processing default to the ones stored in the checkpoint, so the
    same test images are scored; give ``dataset=...`` or ``postproc=...`` to change them
    (e.g. another SNR, or the 0.9 threshold). ``seed`` and ``data_seed`` default to the
    checkpoint's, so ``dataset=...`` splits the masks as training did. A val/test split that
    shares masks or regions with masks the checkpoint has seen (``training_overlap``) is
    refused unless ``allow_training_overlap=true`` (then summary.json starts with a WARNING).
    """
    if cfg.split not in ("train", "val", "test"):
        raise InputError(f"config option 'split' must be train, val or test, got {cfg.split!r}")
    net, stored = load_network(cfg.ckpt_path)
    seeds = seeds_from_checkpoint(cfg, stored)
    check_seeds(cfg)
    datamodule = instantiate(_section(cfg, stored, "dataset"))
    binarize = instantiate(_section(cfg, stored, "postproc"))
    datamodule.setup()
    out = Path(cfg.paths.output_dir)
    if isinstance(datamodule, EMDataModule):
        return _evaluate_volume(cfg, stored, net, datamodule, binarize, out)
    trained = Normalization.from_dict(stored["normalization"])
    if datamodule.normalization != trained:
        raise InputError(f"evaluate: the data set scales inputs as {datamodule.normalization.to_dict()}"
                         f" but checkpoint '{cfg.ckpt_path}' was trained on "
                         f"{trained.to_dict()}; set dataset.normalize={trained.mode}")
    overlap = training_overlap(stored, datamodule, cfg.split,
                               bool(cfg.get("allow_training_overlap", False)))
    loader = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader,
              "test": datamodule.test_dataloader}[cfg.split]()
    rows = []
    for batch in loader:
        probabilities = torch.sigmoid(net(batch["image"]))
        rows += score_batch(probabilities, batch["mask"], batch, binarize,
                            datamodule.pixel_size_um)
    summary = {"checkpoint": display_path(cfg.ckpt_path, cfg.paths.shared_data),
               "split": cfg.split, "n_images": len(rows), "metrics": summarize(rows),
               "seeds": {key: {"value": cfg[key], "from": seeds[key]} for key in seeds},
               "training_overlap": overlap,
               "postproc": binarize.describe(), "data": datamodule.describe()}
    if "warning" in overlap:
        summary = {"WARNING": overlap["warning"], **summary}
    write_new_json(out / "run_info.json", run_info(stored.get("seed"), stored.get("data_seed"),
                                                   data_root=cfg.paths.shared_data))
    write_new_csv(out / f"{cfg.split}_per_image.csv", rows)
    write_new_json(out / "summary.json", summary)
    for name, stats in summary["metrics"].items():
        print(f"{cfg.split}/{name}: {stats['mean']:.4f} +- {stats['sem']:.4f} (SEM, n={stats['n']})")
    if "warning" in overlap:
        print(f"WARNING: {overlap['warning']}")
    print(f"Results written to {out}")
    return summary


def _evaluate_volume(cfg: DictConfig, stored: dict[str, Any], net: Any, datamodule: EMDataModule,
                     binarize: Any, out: Path) -> dict[str, Any]:
    """EM: paper 002's inference matrix on the data module's test volume."""
    if cfg.split != "test":
        raise InputError("EM data sets are evaluated on their test volume only (split=test)")
    inference = _section(cfg, stored, "inference")
    overlap = volume_training_overlap(stored, datamodule,
                                      bool(cfg.get("allow_training_overlap", False)))
    write_new_json(out / "run_info.json", run_info(stored.get("seed"), stored.get("data_seed"),
                                                   data_root=cfg.paths.shared_data))
    result = evaluate_em(net, datamodule, binarize, inference, out,
                         Normalization.from_dict(stored["normalization"]))
    summary = {"checkpoint": display_path(cfg.ckpt_path, cfg.paths.shared_data), "split": "test",
               "training_overlap": overlap, "postproc": binarize.describe(),
               "data": datamodule.describe(), **result}
    if "warning" in overlap:
        summary = {"WARNING": overlap["warning"], **summary}
        print(f"WARNING: {overlap['warning']}")
    write_new_json(out / "summary.json", summary)
    print(f"Results written to {out}")
    return summary
