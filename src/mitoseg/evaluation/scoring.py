"""Per-image scores of predictions, shared by the training test loop and ``evaluate.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from mitoseg.metrics.segmentation import image_metrics, mean_sem

SUMMARY_METRICS = ("as", "abd_px", "abd_um", "pred_empty")  # pred_empty: share of empty predictions


def score_batch(probabilities: torch.Tensor, masks: torch.Tensor, batch: Mapping[str, Any],
                binarize: Callable[[np.ndarray], np.ndarray],
                pixel_size_um: float) -> list[dict[str, Any]]:
    """One row per image: its id, its independent unit (when the data set knows it), how it was
    made, AS / ABD (px and um) of its prediction, and gt_empty / pred_empty."""
    probabilities = probabilities.detach().float().cpu().numpy()[:, 0]
    masks = masks.detach().cpu().numpy()[:, 0] > 0.5
    images = batch["image"].detach().float().cpu().numpy()[:, 0] if "image" in batch else None
    records = batch.get("record", {})
    rows = []
    for i, (probability, mask) in enumerate(zip(probabilities, masks)):
        row: dict[str, Any] = {"mask_id": _item(batch["mask_id"], i), "index": _item(batch["index"], i)}
        if "unit" in batch:
            row["unit"] = _item(batch["unit"], i)
        row |= {key: _item(values, i) for key, values in records.items()}
        row |= image_metrics(mask, apply_postproc(binarize, probability,
                                                  None if images is None else images[i]),
                             pixel_size_um)
        rows.append(row)
    return rows


def apply_postproc(postproc: Callable[..., np.ndarray], probability: np.ndarray,
                   image: np.ndarray | None) -> np.ndarray:
    """Probability map -> mask; post-processing that refines on the image (a level set) gets it."""
    if getattr(postproc, "needs_image", False):
        return postproc(probability, image=image)
    return postproc(probability)


def summarize(rows: Iterable[Mapping[str, Any]],
              metrics: Iterable[str] = SUMMARY_METRICS) -> dict[str, dict[str, float]]:
    """mean, SEM, std and n of each metric over images (paper 000 reports mean +- SEM), and
    units: the independent units among them when the rows carry one (the images are not
    independent: a crop comes with its flips/rotations; the study tests on units). The mean of
    pred_empty is the share of empty predictions, whose ABD is the image diagonal here."""
    rows = list(rows)
    out = {}
    for name in metrics:
        values = [float(row[name]) for row in rows]
        out[name] = mean_sem(values)
        if rows and all("unit" in row for row in rows):
            out[name]["units"] = len({row["unit"] for row, value in zip(rows, values)
                                      if np.isfinite(value)})
    return out


def _item(values: Any, index: int) -> Any:
    value = values[index]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value
