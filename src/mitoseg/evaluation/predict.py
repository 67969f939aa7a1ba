"""Probability maps from a network, for whole images of any size."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mitoseg.data.normalization import Normalization


@torch.no_grad()
def predict_probabilities(net: nn.Module, image: np.ndarray, normalization: Normalization,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Sigmoid of the network's logits over one 2D image, scaled as in training
    (``normalization``: the checkpoint's, see ``load_network``)."""
    if image.ndim != 2:
        raise ValueError(f"predict_probabilities expects a 2D image, got shape {image.shape}")
    x = torch.from_numpy(np.asarray(normalization(image), dtype=np.float32))[None, None]
    logits = net.to(device)(x.to(device))
    return torch.sigmoid(logits.float())[0, 0].cpu().numpy()
