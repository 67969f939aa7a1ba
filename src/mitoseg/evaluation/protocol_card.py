"""The protocol card: how a metric was measured, written next to every metric.

A plain dict (``metrics.json["protocol_card"]``, summary.json, and flattened into columns of
protocols.csv and test_per_image.csv)::

    {"reconstruction": "full_image" | "per_patch" | "overlap" | "overlap_blend" | "whole_image",
     "window": [..] or None, "overlap": float or None, "blending": str or None,
     "tta": int (views: 1, or 8 in 2D / 16 in 3D), "zfilter": {"size": int, "axis": "z"},
     "divisor": int (full_image pads each axis to a multiple of it) or None,
     "precision": "32-true" | "bf16-mixed" | ... (the network's arithmetic at inference),
     "average": "images" | "patches" | "volumes" (what the test metrics are averaged over,
                ``metric_average``: a 3D network's per-image protocols score each volume as one),
     "threshold": float, "threshold_source": "fixed" | "validation",
     "test_set": {"fingerprint": first 16 hex of sha256 over the test images and labels,
                  "units": int, "description": str}}

Two numbers are comparable only when their cards agree (report.py refuses mixed cards).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mitoseg.evaluation.reconstruction import ReconstructionSettings
from mitoseg.runs.protocol_columns import CARD_PREFIX, metric_average

CARD_KEYS = ("reconstruction", "window", "overlap", "blending", "tta", "zfilter", "divisor",
             "precision", "average", "threshold", "threshold_source", "test_set")


class TestSetHash:
    """sha256 over the bytes of the test images and labels, in the order they are scored."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def update(self, *arrays: Any) -> "TestSetHash":
        for array in arrays:
            if isinstance(array, torch.Tensor):
                array = array.detach().cpu().numpy()
            array = np.ascontiguousarray(np.asarray(array))
            self._sha.update(str((array.dtype.str, array.shape)).encode())
            self._sha.update(array.tobytes())
        return self

    def fingerprint(self) -> str:
        return self._sha.hexdigest()[:16]


def protocol_card(settings: ReconstructionSettings, spatial_dims: int, postproc: Any,
                  test_set: Mapping[str, Any], threshold_source: str = "fixed"
                  ) -> dict[str, Any]:
    """The card of one reconstruction + post-processing on one test set."""
    described = settings.describe(spatial_dims)
    threshold = getattr(postproc, "threshold", None)
    return {"reconstruction": described["reconstruction"], "window": described["window"],
            "overlap": described["overlap"], "blending": described["blending"],
            "tta": described["tta"], "zfilter": described["zfilter"],
            "divisor": described["divisor"], "precision": described["precision"],
            "average": metric_average(described["reconstruction"], spatial_dims),
            "threshold": None if threshold is None else float(threshold),
            "threshold_source": threshold_source,
            "test_set": {"fingerprint": str(test_set["fingerprint"]),
                         "units": int(test_set["units"]),
                         "description": str(test_set["description"])}}


def card_columns(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card as flat CSV columns: card_reconstruction, card_window (e.g. "8x32x32"),
    card_overlap, card_blending, card_tta, card_zfilter_size, card_zfilter_axis,
    card_divisor, card_precision, card_average, card_threshold, card_threshold_source, card_test_set_fingerprint, card_test_set_units,
    card_test_set_description."""
    columns: dict[str, Any] = {}
    for key in CARD_KEYS:
        value = card[key]
        if isinstance(value, Mapping):
            columns |= {f"{CARD_PREFIX}{key}_{k}": v for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            columns[f"{CARD_PREFIX}{key}"] = "x".join(str(v) for v in value)
        else:
            columns[f"{CARD_PREFIX}{key}"] = "" if value is None else value
    return columns
