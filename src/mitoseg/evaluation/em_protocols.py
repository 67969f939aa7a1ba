"""Paper 002's evaluation matrix over an EM test volume:
{per patch, 50 % overlap, 50 % overlap + blending, full image} x {no TTA, TTA} x {no
Z-filter, Z-filter}, each scored by foreground/background/overall IoU and Dice over the whole
volume, and as the mean over slices (and over patches for the per-patch protocol).

An ignore mask (``valid``) changes only the scoring: the network still predicts every voxel
(it sees the whole image), and every score counts valid voxels only (``metrics.volume``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mitoseg.data.em_patches import default_normalization
from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.inference.protocols import PROTOCOLS, reconstruct
from mitoseg.inference.zfilter import median_z_filter
from mitoseg.metrics.volume import (
    METRIC_KEYS,
    as_valid_mask,
    mean_per_slice,
    volume_metrics,
)

Postprocess = Callable[[np.ndarray], np.ndarray]


def _per_patch_means(labels: np.ndarray, mask: np.ndarray, tiles: Sequence[tuple[slice, ...]],
                     spatial_dims: int, valid: np.ndarray | None = None) -> dict[str, float]:
    """Each score's mean over the patches (paper 002's 'per patch' metric), as
    ``<score>_mean_per_patch``; with ``valid``, each patch is scored on its valid voxels and
    patches without any are left out."""
    scores: dict[str, list[float]] = {key: [] for key in METRIC_KEYS}
    planes = range(labels.shape[0]) if spatial_dims == 2 else [None]
    for z in planes:
        for tile in tiles:
            index = (z, *tile) if z is not None else tile
            patch_valid = None if valid is None else valid[index]
            if patch_valid is None or patch_valid.any():
                patch = volume_metrics(labels[index], mask[index], valid=patch_valid)
                for key in METRIC_KEYS:
                    scores[key].append(patch[key])
    return {f"{key}_mean_per_patch": float(np.mean(values)) for key, values in scores.items()}


def protocol_matrix(predict: Callable[[torch.Tensor], torch.Tensor], image: Any, labels: Any,
                    spatial_dims: int, patch_size: Sequence[int], postprocess: Postprocess,
                    protocols: Sequence[str] = PROTOCOLS, tta: Sequence[bool] = (False, True),
                    zfilter: Sequence[int] = (0, 5), batch_size: int = 8, divisor: int = 16,
                    voxel_size_nm: Sequence[float] | None = None,
                    device: str | torch.device | None = None,
                    normalization: Normalization | None = None,
                    valid: Any = None) -> list[dict[str, Any]]:
    """One row per (protocol, TTA, Z-filter size); 0 means no Z-filter.

    ``valid`` (a (D, H, W) bool array-like of the test volume, False = ignored voxel; None =
    every voxel counts) restricts every score to the valid voxels, the per-patch IoU
    included; slices and patches without a valid voxel are left out of their means, and the
    rows then also hold ``n_slices_ignored``. The network still predicts every voxel.

    ``normalization`` scales the raw test volume as training did (default: integer
    intensities to [0, 1] by their dtype's range).

    The Z-filter is a median of the probabilities along z, so after thresholding it equals a
    majority vote of the binary predictions over ``size`` consecutive slices.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise InputError(f"inference option 'protocols': unknown {unknown}; expected some of {PROTOCOLS}")
    if any(int(z) < 0 or (int(z) > 1 and int(z) % 2 == 0) for z in zfilter):
        raise InputError(f"inference option 'zfilter' takes 0 (off) or odd sizes, got {list(zfilter)}")
    labels = np.asarray(labels) > 0
    valid = as_valid_mask(valid, labels.shape)
    if valid is not None and not valid.any():
        raise InputError(f"valid: every voxel of the {labels.shape} test volume is ignored; "
                         "expected True where the labels count")
    normalization = normalization or default_normalization(image)
    normalization.check_input(image.dtype, "the test volume")
    volume = torch.from_numpy(np.stack([normalization(image[z]) for z in range(image.shape[0])]))
    rows = []
    for protocol in protocols:
        for use_tta in tta:
            started = time.perf_counter()
            result = reconstruct(predict, volume, protocol, patch_size, spatial_dims, bool(use_tta),
                                 divisor=divisor, batch_size=batch_size, device=device)
            seconds = time.perf_counter() - started
            probabilities = result.probabilities.numpy()
            for size in zfilter:
                filtered = median_z_filter(probabilities, int(size)) if int(size) > 1 else probabilities
                mask = np.asarray(postprocess(filtered), dtype=bool)
                row: dict[str, Any] = {"protocol": protocol, "tta": bool(use_tta),
                                       "zfilter": int(size), "inference_seconds": round(seconds, 2)}
                row |= volume_metrics(labels, mask, voxel_size=voxel_size_nm, valid=valid)
                per_slice = mean_per_slice(labels, mask, valid=valid)
                row |= {f"{k}_mean_per_slice": per_slice[k] for k in METRIC_KEYS}
                if valid is not None:
                    row["n_slices_ignored"] = per_slice["n_slices_ignored"]
                if protocol == "per_patch":
                    row |= _per_patch_means(labels, mask, result.tiles, spatial_dims, valid)
                rows.append(row)
    return rows


def matrix_table(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """A readable markdown table of the matrix (foreground IoU first, as paper 002 reports);
    rows of several test volumes start with the volume's name ("mean": over the volumes)."""
    several = any("test_volume" in row for row in rows)
    lines = [f"### {title}", "",
             f"| {'volume | ' if several else ''}protocol | TTA | Z-filter | IoU fg (volume) | "
             "IoU fg (mean/slice) | IoU overall | Dice | s |",
             f"|{'---|' if several else ''}---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {str(row.get('test_volume', '')) + ' | ' if several else ''}"
                     f"{row['protocol']} | {'yes' if row['tta'] else 'no'} | "
                     f"{row['zfilter'] or 'no'} | {row['iou_fg']:.4f} | "
                     f"{row['iou_fg_mean_per_slice']:.4f} | {row['iou_overall']:.4f} | "
                     f"{row['dice']:.4f} | {round(row['inference_seconds'], 2)} |")
    return "\n".join(lines) + "\n"
