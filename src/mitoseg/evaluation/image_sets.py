"""Scoring a Predictor on a fluorescence data module's image set: one metric row per image."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch

from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.protocol_card import TestSetHash
from mitoseg.evaluation.scoring import score_batch

log = logging.getLogger(__name__)


def image_set_rows(predictor: Predictor, datamodule: Any, split: str,
                   test_hash: TestSetHash | None = None) -> list[dict[str, Any]]:
    """AS / ABD rows of every image of ``split`` (``mitoseg.evaluation.scoring``); the
    scored images and masks also go into ``test_hash`` (the protocol card's fingerprint).

    The data module's loader scales the images with the same ``Normalization`` the predictor
    holds (the caller checks they agree), so the batches go to ``network_probabilities``; the
    predictor's batches are the loader's, so the numbers equal those of a Lightning test loop.
    """
    loader = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader,
              "test": datamodule.test_dataloader}[split]()
    rows: list[dict[str, Any]] = []
    for batch in loader:
        images = batch["image"][:, 0]
        if test_hash is not None:
            test_hash.update(images, batch["mask"])
        settings = replace(predictor.settings, batch_size=max(len(images), 1))
        probabilities = torch.from_numpy(predictor.network_probabilities(images, settings))
        rows += score_batch(probabilities[:, None], batch["mask"], batch, predictor.postproc,
                            datamodule.pixel_size_um)
    return rows
