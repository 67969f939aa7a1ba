"""Losses on logits for binary segmentation (the networks never apply a sigmoid)."""

from __future__ import annotations

import torch
from torch import nn


class SoftDiceLoss(nn.Module):
    """1 - soft Dice over each image, averaged over the batch; ``smooth`` keeps empty masks finite."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(logits).flatten(1)
        target = target.flatten(1)
        overlap = (probabilities * target).sum(1)
        total = probabilities.sum(1) + target.sum(1)
        return (1 - (2 * overlap + self.smooth) / (total + self.smooth)).mean()


class BCEDiceLoss(nn.Module):
    """Pixel-wise BCE plus soft Dice, weighted."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.bce, self.dice = nn.BCEWithLogitsLoss(), SoftDiceLoss()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)


class WeightedBCELoss(nn.Module):
    """Pixel-wise BCE with foreground pixels weighted ``pos_weight`` times (class imbalance:
    mitochondria cover ~5-15 % of an EM slice)."""

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"WeightedBCELoss: pos_weight must be > 0, got {pos_weight}")
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target,
                                                              pos_weight=self.pos_weight)


class SoftJaccardLoss(nn.Module):
    """1 - soft Jaccard (IoU) over each image, averaged over the batch; ``smooth`` keeps empty
    masks finite."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(logits).flatten(1)
        target = target.flatten(1)
        overlap = (probabilities * target).sum(1)
        union = probabilities.sum(1) + target.sum(1) - overlap
        return (1 - (overlap + self.smooth) / (union + self.smooth)).mean()


class DeepSupervisionLoss(nn.Module):
    """Deep supervision: ``sum_i w_i * loss(output_i, target)`` over a network's outputs.

    Networks with auxiliary heads return ``[main, aux1, ...]`` in training mode, each at the
    input's size. ``weights`` (one per output, normalized to sum 1) default to the network's
    own ``deep_supervision_weights`` when the module sets them (nnU-Net, Xiao et al., M-Net),
    else to halving weights 1, 1/2, 1/4, ... (normalized). A single tensor (eval mode) is
    scored with ``loss`` alone.
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

    def forward(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = self.output_weights(len(outputs))
        return sum(w * self.loss(output, target) for w, output in zip(weights, outputs))
