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
    if truth.dtype != torch.bool or predicted.dtype != torch.bool:
        raise InputError(f"area_similarity_batch: expected bool masks, got {truth.dtype} and "
                         f"{predicted.dtype}")
    if truth.shape != predicted.shape or truth.ndim < 2:
        raise InputError(f"area_similarity_batch: expected two (N, ...) masks of the same "
                         f"shape, got {tuple(truth.shape)} and {tuple(predicted.shape)}")
    intersection, union = predicted & truth, predicted | truth
    if valid is not None:
        if valid.dtype != torch.bool or valid.shape != truth.shape:
            raise InputError(f"area_similarity_batch: 'valid' must be a bool mask of the masks' "
                             f"shape {tuple(truth.shape)}, got {valid.dtype} of shape "
                             f"{tuple(valid.shape)}")
        intersection, union = intersection & valid, union & valid
    intersection = intersection.flatten(1).sum(1).float()
    union = union.flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))
