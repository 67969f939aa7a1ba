"""Metrics of a batch of masks as torch tensors, on their device: the training-time twins of
``segmentation``'s numpy metrics (same definitions, same empty-mask rules), for validation
steps that must not copy every prediction to the host."""

from __future__ import annotations

import torch

from mitoseg.errors import InputError


def area_similarity_batch(truth: torch.Tensor, predicted: torch.Tensor,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """AS = |A ∩ B| / |A ∪ B| (paper 000 eq. 5; paper 002's foreground IoU) per image.

    Args:
        truth: (N, ...) bool masks (ground truth), one per image of the batch.
        predicted: (N, ...) bool masks of the same shape.
        valid: optional (N, ...) bool masks of the same shape, False = ignored voxel: ignored
            voxels count in neither the intersection nor the union, whatever truth and
            prediction hold there (``metrics.volume`` treats them the same way).

    Returns:
        (N,) float32: ``segmentation.area_similarity`` of every pair, 1.0 where both masks
        are empty (the prediction agrees perfectly with an empty ground truth) -- and so also
        where an image has no valid voxel; callers that average should leave those out.
    """
    _check_masks("area_similarity_batch", truth, predicted, valid)
    intersection, union = predicted & truth, predicted | truth
    if valid is not None:
        intersection, union = intersection & valid, union & valid
    intersection = intersection.flatten(1).sum(1).float()
    union = union.flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def foreground_counts(truth: torch.Tensor, predicted: torch.Tensor,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """(4,) int64 on the masks' device: TP, FP, FN and the number of valid voxels of the whole
    batch (``valid`` as in ``area_similarity_batch``; None: every voxel counts). Summed over
    batches, they give the foreground IoU pooled over all voxels (``pooled_foreground_iou``)."""
    _check_masks("foreground_counts", truth, predicted, valid)
    if valid is None:
        valid = torch.ones_like(truth)
    return torch.stack([(truth & predicted & valid).sum(), (~truth & predicted & valid).sum(),
                        (truth & ~predicted & valid).sum(), valid.sum()])


def pooled_foreground_iou(counts: torch.Tensor) -> torch.Tensor:
    """TP / (TP + FP + FN) of summed ``foreground_counts``, as a float32 scalar on their device
    (nothing is read back): 1.0 where neither mask holds foreground on the valid voxels
    (``segmentation``'s empty rule), nan where no voxel was valid."""
    tp, fp, fn, n_valid = counts.unbind()
    union = tp + fp + fn
    iou = tp.float() / union.clamp(min=1).float()
    iou = torch.where(union > 0, iou, torch.ones_like(iou))
    return torch.where(n_valid > 0, iou, torch.full_like(iou, float("nan")))


def _check_masks(name: str, truth: torch.Tensor, predicted: torch.Tensor,
                 valid: torch.Tensor | None) -> None:
    """Two bool (N, ...) masks of one shape, and ``valid`` (if any) a bool mask of it too."""
    if truth.dtype != torch.bool or predicted.dtype != torch.bool:
        raise InputError(f"{name}: expected bool masks, got {truth.dtype} and {predicted.dtype}")
    if truth.shape != predicted.shape or truth.ndim < 2:
        raise InputError(f"{name}: expected two (N, ...) masks of the same shape, got "
                         f"{tuple(truth.shape)} and {tuple(predicted.shape)}")
    if valid is not None and (valid.dtype != torch.bool or valid.shape != truth.shape):
        raise InputError(f"{name}: 'valid' must be a bool mask of the masks' shape "
                         f"{tuple(truth.shape)}, got {valid.dtype} of shape {tuple(valid.shape)}")
