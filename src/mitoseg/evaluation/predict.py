"""Probability maps from a network, for whole images of any size."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mitoseg.data.fluo_dataset import normalize_image


@torch.no_grad()
def predict_probabilities(net: nn.Module, image: np.ndarray, normalize: str = "zscore",
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Sigmoid of the network's logits over one 2D image, normalized as in training."""
    if image.ndim != 2:
        raise ValueError(f"predict_probabilities expects a 2D image, got shape {image.shape}")
    x = torch.from_numpy(normalize_image(image.astype(np.float32), normalize))[None, None]
    logits = net.to(device)(x.to(device))
    return torch.sigmoid(logits.float())[0, 0].cpu().numpy()
