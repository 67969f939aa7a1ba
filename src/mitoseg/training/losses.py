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
