"""Evaluating a Predictor on a data module, the way the data module declares (its
``evaluation``, see ``mitoseg.evaluation.modality``): the test after training and
``evaluate.py`` both come here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.em_evaluate import evaluate_em
from mitoseg.evaluation.image_sets import image_set_rows
from mitoseg.evaluation.modality import modality_of_datamodule
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.protocol_card import TestSetHash, card_columns, protocol_card
from mitoseg.evaluation.scoring import summarize
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_csv

log = logging.getLogger(__name__)


def predictor_for(datamodule: Any, net: nn.Module, normalization: Normalization,
                  postproc: Callable[..., np.ndarray], run: Mapping[str, Any],
                  inference: Mapping[str, Any] | None = None,
                  device: str | torch.device | None = None) -> Predictor:
    """The Predictor a data module's test set is scored with, for the run whose config is
    ``run`` (``Modality.default_settings``).

    Image sets: whole images, at the run's test precision and on ``device`` (where training
    ran), so the test equals a Lightning test loop's. Volumes: the headline and speed options of
    ``inference`` (None: the run's own inference config) on its device (``inference.device``;
    None: cuda when present); its matrix chooses the reconstructions.
    """
    modality = modality_of_datamodule(datamodule)
    settings = modality.default_settings(run, inference, getattr(datamodule, "patch_size", None))
    if modality.uses_inference_config:
        device = ((run.get("inference") if inference is None else inference) or {}).get(
            "device") or None
    return Predictor.from_module(net, normalization, int(getattr(datamodule, "spatial_dims", 2)),
                                 settings, postproc, device,
                                 volume_postproc=modality.volume_postproc)


def evaluate_split(predictor: Predictor, datamodule: Any, split: str, out_dir: Path,
                   inference: Any = None) -> dict[str, Any]:
    """Score ``split`` of the data module as it declares; write the result tables into
    ``out_dir``. Returns {"test": summary, "extra": {...}, "protocols": [...], "rows": [...],
    "card": the headline's protocol card}.
    """
    modality = modality_of_datamodule(datamodule)
    return EVALUATIONS[modality.name](predictor, datamodule, split, out_dir, inference)


def _image_set(predictor: Predictor, datamodule: Any, split: str, out_dir: Path,
               inference: Any) -> dict[str, Any]:
    test_hash = TestSetHash()
    rows = image_set_rows(predictor, datamodule, split, test_hash)
    summary = summarize(rows)
    units = next(iter(summary.values()), {}).get("units", len(rows))
    card = protocol_card(predictor.settings, predictor.spatial_dims, predictor.postproc,
                         {"fingerprint": test_hash.fingerprint(), "units": units,
                          "description": f"{type(datamodule).__name__} {split} split: "
                                         f"{len(rows)} images, {units} independent units"})
    write_new_csv(out_dir / f"{split}_per_image.csv", [row | card_columns(card) for row in rows])
    return {"test": summary, "extra": {}, "protocols": [], "rows": rows, "card": card}


def _volume_matrix(predictor: Predictor, datamodule: Any, split: str, out_dir: Path,
                   inference: Any) -> dict[str, Any]:
    if split != "test":
        raise InputError("EM data sets are evaluated on their test volume only (split=test)")
    em = evaluate_em(predictor, datamodule, inference, out_dir)
    return {"test": em["test"], "extra": {"headline": em["headline"]},
            "protocols": list(em["protocols"]), "rows": [], "card": em["protocol_card"]}


EVALUATIONS = {"image_set": _image_set, "volume_matrix": _volume_matrix}
