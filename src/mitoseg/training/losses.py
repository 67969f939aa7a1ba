"""Losses on logits for binary segmentation (the networks never apply a sigmoid).

Every loss is called as ``loss(logits, target, valid=None)``. ``valid`` (same shape as the
target, float {0, 1}; 1 = the voxel counts, 0 = ignored) comes from data sets whose labels
mark voxels as unknown (Kasthuri++'s area outside the tissue, sparse annotation). Ignored
voxels contribute nothing: not to the value, and not to the gradient (it is exactly 0 there,
whatever the network predicts). ``valid=None`` runs the same code as before the mask existed,
so results without ignored voxels are bit-identical.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn import functional as F

from mitoseg.errors import InputError


def checked_valid(valid: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """``valid`` as a float tensor of the target's dtype, after checking its shape."""
    if not isinstance(valid, torch.Tensor) or valid.shape != target.shape:
        shape = tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__
        raise InputError(f"{name}: 'valid' must be a tensor of the target's shape "
                         f"{tuple(target.shape)} (1 = the voxel counts, 0 = ignored), got {shape}")
    return valid.to(target.dtype)


def valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """sum(values * valid) / sum(valid): the mean over valid voxels; 0 when none is valid."""
    return (values * valid).sum() / valid.sum().clamp_min(1)


def mean_over_images(per_image: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Batch mean of a per-image loss. With ``valid``, images without a valid voxel are left
    out (they have nothing to learn from); 0 when no image has one."""
    if valid is None:
        return per_image.mean()
    counted = (valid.flatten(1).sum(1) > 0).to(per_image.dtype)
    return (per_image * counted).sum() / counted.sum().clamp_min(1)


def bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None,
        pos_weight: torch.Tensor | None, name: str) -> torch.Tensor:
    """Mean pixel-wise BCE on logits, over the valid voxels when ``valid`` is given."""
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    valid = checked_valid(valid, target, name)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                                   reduction="none")
    return valid_mean(per_voxel, valid)


def soft_overlap(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None,
                 name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per image: sum(p * t) and sum(p) + sum(t), with p = sigmoid(logits); ignored voxels
    are zeroed in both p and t first. Also returns the checked ``valid``."""
    probabilities = torch.sigmoid(logits)
    if valid is not None:
        valid = checked_valid(valid, target, name)
        probabilities, target = probabilities * valid, target * valid
    probabilities, target = probabilities.flatten(1), target.flatten(1)
    overlap = (probabilities * target).sum(1)
    return overlap, probabilities.sum(1) + target.sum(1), valid


class BCELoss(nn.Module):
    """Pixel-wise binary cross-entropy on logits (paper 000, eq. 3-4), averaged over the valid
    voxels: ``torch.nn.BCEWithLogitsLoss`` when no voxel is ignored."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return bce(logits, target, valid, None, "BCELoss")


class SoftDiceLoss(nn.Module):
    """1 - soft Dice over each image, averaged over the batch; ``smooth`` keeps empty masks finite.

    With ``valid``, each image's Dice uses its valid voxels only, and images without any are
    left out of the batch mean.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        overlap, total, valid = soft_overlap(logits, target, valid, "SoftDiceLoss")
        return mean_over_images(1 - (2 * overlap + self.smooth) / (total + self.smooth), valid)


class BCEDiceLoss(nn.Module):
    """Pixel-wise BCE plus soft Dice, weighted; both skip ignored voxels."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.bce, self.dice = BCELoss(), SoftDiceLoss()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return (self.bce_weight * self.bce(logits, target, valid)
                + self.dice_weight * self.dice(logits, target, valid))


class WeightedBCELoss(nn.Module):
    """Pixel-wise BCE with foreground pixels weighted ``pos_weight`` times (class imbalance:
    mitochondria cover ~5-15 % of an EM slice), averaged over the valid voxels."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"WeightedBCELoss: pos_weight must be > 0, got {pos_weight}")
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return bce(logits, target, valid, self.pos_weight, "WeightedBCELoss")


class SoftJaccardLoss(nn.Module):
    """1 - soft Jaccard (IoU) over each image, averaged over the batch; ``smooth`` keeps empty
    masks finite. With ``valid``, as ``SoftDiceLoss``: valid voxels only, and images without
    any are left out of the batch mean."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        overlap, total, valid = soft_overlap(logits, target, valid, "SoftJaccardLoss")
        union = total - overlap
        return mean_over_images(1 - (overlap + self.smooth) / (union + self.smooth), valid)


class DeepSupervisionLoss(nn.Module):
    """Deep supervision: ``sum_i w_i * loss(output_i, target)`` over a network's outputs.

    Networks with auxiliary heads return ``[main, aux1, ...]`` in training mode, each at the
    input's size. ``weights`` (one per output, normalized to sum 1) default to the network's
    own ``deep_supervision_weights`` when the module sets them (nnU-Net, Xiao et al., M-Net),
    else to halving weights 1, 1/2, 1/4, ... (normalized). A single tensor (eval mode) is
    scored with ``loss`` alone. ``valid`` goes to ``loss`` with every output.
    """

    def __init__(self, loss: nn.Module, weights: list[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        if weights is not None and (not weights or any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"DeepSupervisionLoss: weights must be >= 0 with a positive sum, got {weights}")
        self.weights = None if weights is None else [float(w) for w in weights]

    def output_weights(self, count: int) -> list[float]:
        weights = self.weights or [0.5 ** i for i in range(count)]
        if len(weights) != count:
            raise ValueError(f"DeepSupervisionLoss: {len(weights)} weights for {count} outputs")
        total = sum(weights)
        return [w / total for w in weights]

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        # valid=None keeps the base call as it was, so any (logits, target) loss still works
        extra = () if valid is None else (valid,)
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target, *extra)
        weights = self.output_weights(len(outputs))
        return sum(w * self.loss(output, target, *extra) for w, output in zip(weights, outputs))


def takes_valid(loss: nn.Module) -> bool:
    """Whether ``loss`` (and, for deep supervision, its base loss) accepts a ``valid`` mask."""
    inner = loss.loss if isinstance(loss, DeepSupervisionLoss) else loss
    try:
        return "valid" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False
