"""Overlap metrics of paper 002 (EM mitochondria, Lucchi / Lucchi++ / Kasthuri++), pure numpy.

Paper 002, "Experimental setup": foreground IoU = TP / (TP + FP + FN); background IoU is the
same with the classes swapped, TN / (TN + FN + FP); overall IoU = (IoU_F + IoU_B) / 2; the
network's probability image "is binarized using a threshold value of 0.5". Dice,
2TP / (2TP + FP + FN), is added because other EM work reports it.

Inputs are 2D images (H, W) or 3D volumes (D, H, W), z first.

Conventions (each chosen so every metric is defined for every input):
- Ground truth: bool, or numbers holding only {0, 1}; integer arrays holding only {0, 255} are
  read as 255 = foreground, because the Lucchi labels ship as {0, 255} uint8. Anything else
  (e.g. {0, 1, 255}, or a probability map passed as ground truth) is refused.
- Prediction: bool masks are used as they are; integer masks follow the ground-truth rule;
  float arrays are probabilities in [0, 1] and are binarized with ``p > threshold`` (strict,
  as in `mitoseg.postproc.binarize.Binarize`), so a pixel at exactly 0.5 is background. A
  float {0, 1} mask therefore also works. Floats outside [0, 1] (logits by mistake) or NaN
  are refused.
- An empty denominator means neither mask holds that class, i.e. perfect agreement: the
  score is 1.0 (IoU_F and Dice when both masks are empty, IoU_B when both are all foreground).
- Pooled vs per slice: `volume_metrics` sums the counts over the whole volume first (one IoU
  per volume); `per_slice_metrics` / `mean_per_slice` score each z-slice and average, like
  the paper's "Full image" reconstruction ("the average over all images"). The two differ
  when slices hold different amounts of foreground (see the tests).
- Ignored voxels: every function that takes ``valid`` (a bool array of the input's shape,
  True = the voxel counts, False = ignored, e.g. Kasthuri++'s area outside the tissue or
  unannotated voxels; None = every voxel counts) scores only the valid voxels. An ignored voxel
  is neither foreground nor background in either mask: it is in none of TP/FP/FN/TN, and not
  in the physical volumes (``gt_volume_um3``/``pred_volume_um3`` count valid foreground
  voxels only), whatever ground truth and prediction hold there. Ground truth must still be a
  valid label mask everywhere (map an ignore label to 0 or 1 and pass ``valid``). The
  empty-denominator rule applies to the valid voxels. A z-slice without any valid voxel is
  left out of the per-slice rows and means (``mean_per_slice`` counts them in
  ``n_slices_ignored``); an input without any valid voxel has nothing to score and is refused
  by `volume_metrics` and `mean_per_slice` (`confusion` returns zero counts, which still add up).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from mitoseg.errors import InputError

VoxelSize = Union[Sequence[float], None]

__all__ = [
    "binarize_prediction",
    "as_label_mask",
    "as_valid_mask",
    "confusion",
    "scores_from_counts",
    "foreground_iou",
    "background_iou",
    "overall_iou",
    "dice",
    "volume_metrics",
    "per_slice_metrics",
    "mean_per_slice",
]

METRIC_KEYS = ("iou_fg", "iou_bg", "iou_overall", "dice")
_NM3_TO_UM3 = 1e-9
_NM2_TO_UM2 = 1e-6


def _check_array(arr: np.ndarray, name: str) -> None:
    if arr.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2D image (H, W) or a 3D volume (D, H, W), "
                         f"got an array of shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: expected a non-empty array, got shape {arr.shape}")


def as_label_mask(labels: np.ndarray, name: str = "gt") -> np.ndarray:
    """Validate a label image/volume and return it as bool (True = mitochondrion).

    Accepts bool, numbers in {0, 1}, or integers in {0, 255} (the Lucchi label format).
    """
    arr = np.asarray(labels)
    _check_array(arr, name)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: expected bool, {{0, 1}} or {{0, 255}} labels, got dtype {arr.dtype}")
    # elementwise tests, not np.unique: a Lucchi volume has 130 M voxels
    zero = arr == 0
    if (zero | (arr == 1)).all():
        return arr == 1
    if np.issubdtype(arr.dtype, np.integer) and (zero | (arr == 255)).all():
        return arr == 255
    values = np.unique(arr[~zero])[:6].tolist()
    raise InputError(f"{name}: expected labels in {{0, 1}} or {{0, 255}} (integers), got the "
                     f"nonzero values {values}{' ...' if len(values) == 6 else ''} (dtype {arr.dtype})")


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0.0 < float(threshold) < 1.0:
        raise InputError(f"threshold: expected a number in (0, 1), got {threshold!r}")
    return float(threshold)


def binarize_prediction(pred: np.ndarray, threshold: float = 0.5, name: str = "pred") -> np.ndarray:
    """Prediction -> bool mask: probabilities (float, in [0, 1]) become ``p > threshold``;
    bool and integer masks are read like ground truth (see `as_label_mask`)."""
    threshold = _check_threshold(threshold)
    arr = np.asarray(pred)
    _check_array(arr, name)
    if not np.issubdtype(arr.dtype, np.floating):
        return as_label_mask(arr, name)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: expected probabilities in [0, 1], found NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{name}: expected probabilities in [0, 1] (apply a sigmoid to logits "
                         f"first), got values in [{lo:.4g}, {hi:.4g}]")
    return arr > threshold


def as_valid_mask(valid: object, shape: tuple[int, ...]) -> np.ndarray | None:
    """Check an ignore mask: None, or a bool array of ``shape`` (True = the voxel counts)."""
    if valid is None:
        return None
    arr = np.asarray(valid)
    if arr.dtype != bool or arr.shape != shape:
        raise InputError(f"valid: expected a bool array of the labels' shape {shape} (True = the "
                         f"voxel counts, False = ignored), got {arr.dtype} of shape {arr.shape}")
    return arr


def _pair(gt: np.ndarray, pred: np.ndarray, threshold: float,
          valid: object = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked (gt, pred, valid) as bool arrays; ignored voxels are cleared in gt and pred, so
    they are foreground in neither."""
    g = as_label_mask(gt, "gt")
    p = binarize_prediction(pred, threshold, "pred")
    if g.shape != p.shape:
        raise InputError(f"gt and pred: expected arrays of the same shape, got {g.shape} and {p.shape}")
    v = as_valid_mask(valid, g.shape)
    if v is not None:
        g, p = g & v, p & v
    return g, p, v


def _counts(g: np.ndarray, p: np.ndarray, v: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of masks from `_pair` (already cleared where ``v`` is False)."""
    tp = int(np.count_nonzero(g & p))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    tn = int(g.size if v is None else np.count_nonzero(v)) - tp - fp - fn
    return tp, fp, fn, tn


def _nothing_to_score(shape: tuple[int, ...]) -> InputError:
    return InputError(f"valid: every voxel of the {shape} input is ignored, so there is nothing "
                      "to score; expected True where the labels count")


def confusion(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5,
              valid: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Pixel/voxel counts (tp, fp, fn, tn) with mitochondria as the positive class, over the
    valid voxels (all when ``valid`` is None; see the module notes on ignored voxels).

    Counts of several volumes can be summed and passed to `scores_from_counts` to pool them.
    """
    return _counts(*_pair(gt, pred, threshold, valid))


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den  # empty denominator: neither mask has the class


def scores_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """The four paper-002 scores from confusion counts: iou_fg, iou_bg, iou_overall, dice."""
    counts = (tp, fp, fn, tn)
    if any(isinstance(c, bool) or int(c) != c or c < 0 for c in counts):
        raise InputError(f"confusion counts: expected non-negative integers (tp, fp, fn, tn), got {counts}")
    tp, fp, fn, tn = (int(c) for c in counts)
    iou_fg = _ratio(tp, tp + fp + fn)
    iou_bg = _ratio(tn, tn + fn + fp)
    return {"iou_fg": float(iou_fg), "iou_bg": float(iou_bg),
            "iou_overall": float((iou_fg + iou_bg) / 2), "dice": float(_ratio(2 * tp, 2 * tp + fp + fn))}


def foreground_iou(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """IoU_F = TP / (TP + FP + FN); both masks empty -> 1.0."""
    return scores_from_counts(*confusion(gt, pred, threshold))["iou_fg"]


def background_iou(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """IoU_B = TN / (TN + FN + FP); both masks all foreground -> 1.0."""
    return scores_from_counts(*confusion(gt, pred, threshold))["iou_bg"]


def overall_iou(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """IoU_O = (IoU_F + IoU_B) / 2 (paper 002); inflated by the large background share."""
    return scores_from_counts(*confusion(gt, pred, threshold))["iou_overall"]


def dice(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Dice = 2TP / (2TP + FP + FN); both masks empty -> 1.0."""
    return scores_from_counts(*confusion(gt, pred, threshold))["dice"]


def _voxel_size(voxel_size: VoxelSize, ndim: int) -> tuple[float, ...]:
    try:
        vals = np.atleast_1d(np.asarray(voxel_size, dtype=float)).ravel()
    except (TypeError, ValueError):
        vals = np.array([])
    if vals.size == 1:
        vals = np.repeat(vals, ndim)  # isotropic, e.g. Lucchi's 5 nm
    if vals.size != ndim or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
        axes = "(z, y, x)" if ndim == 3 else "(y, x)"
        raise InputError(f"voxel_size: expected one positive size or {ndim} sizes {axes} in nm "
                         f"for a {ndim}D input, got {voxel_size!r}")
    return tuple(float(v) for v in vals)


def volume_metrics(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5,
                   voxel_size: VoxelSize = None, valid: np.ndarray | None = None) -> dict[str, float]:
    """Scores over the whole image/volume from pooled counts (one value per volume).

    Keys: iou_fg, iou_bg, iou_overall, dice. With ``voxel_size`` in nm, (z, y, x) for a
    volume (e.g. Kasthuri++ (30, 3, 3)) or (y, x) for an image, or one number when isotropic
    (Lucchi: 5), also: voxel_size_{z,y,x}_nm
    and the foreground amount of both masks in physical units, gt_volume_um3 /
    pred_volume_um3 (3D) or gt_area_um2 / pred_area_um2 (2D). The IoUs do not depend on it.

    With ``valid``, everything (scores and physical amounts) counts valid voxels only; an
    input without any valid voxel is refused.
    """
    g, p, v = _pair(gt, pred, threshold, valid)
    if v is not None and not v.any():
        raise _nothing_to_score(v.shape)
    out = scores_from_counts(*_counts(g, p, v))
    if voxel_size is not None:
        size = _voxel_size(voxel_size, g.ndim)
        axes = ("z", "y", "x")[3 - g.ndim:]
        out.update({f"voxel_size_{a}_nm": s for a, s in zip(axes, size)})
        unit = float(np.prod(size)) * (_NM3_TO_UM3 if g.ndim == 3 else _NM2_TO_UM2)
        key = "volume_um3" if g.ndim == 3 else "area_um2"
        out[f"gt_{key}"] = np.count_nonzero(g) * unit
        out[f"pred_{key}"] = np.count_nonzero(p) * unit
    return out


def per_slice_metrics(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5,
                      valid: np.ndarray | None = None) -> list[dict]:
    """One dict per z-slice: {"slice": z, iou_fg, iou_bg, iou_overall, dice}.

    A 2D input counts as one slice (z = 0). Slices empty in both masks score iou_fg = dice =
    1.0 by the convention above, which raises their mean; filter on them if that matters.
    With ``valid``, each slice is scored on its valid voxels, and a slice without any has no
    row (``slice`` keeps the z index, so the rows then skip it).
    """
    g, p, v = _pair(gt, pred, threshold, valid)
    if g.ndim == 2:
        g, p, v = g[None], p[None], None if v is None else v[None]
    return [{"slice": z, **scores_from_counts(*_counts(g[z], p[z], None if v is None else v[z]))}
            for z in range(g.shape[0]) if v is None or v[z].any()]


def mean_per_slice(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5,
                   valid: np.ndarray | None = None) -> dict[str, float]:
    """Mean of each score over the z-slices (paper 002's per-image averaging), plus n_slices
    (the slices averaged) and n_slices_ignored (slices left out for having no valid voxel; 0
    without ``valid``). An input without any valid voxel is refused."""
    rows = per_slice_metrics(gt, pred, threshold, valid)
    total = np.shape(gt)[0] if np.ndim(gt) == 3 else 1
    if not rows:
        raise _nothing_to_score(np.shape(gt))
    out = {key: float(np.mean([row[key] for row in rows])) for key in METRIC_KEYS}
    out["n_slices"] = len(rows)
    out["n_slices_ignored"] = total - len(rows)
    return out
