"""From probability maps to binary masks: threshold, then optional clean-up (pure functions)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import remove_small_objects

from mitoseg.errors import InputError


class Binarize:
    """Probability map -> mask: ``prob > threshold``, then optional small-object removal and hole
    filling.

    threshold: 0.5 by default; paper 000 raises it to 0.9 to curb over-segmentation on real
    images. min_size_px: connected components smaller than this are dropped (0 keeps all).
    fill_holes: fill enclosed background (off by default: ring-shaped mitochondria have holes).
    """

    def __init__(self, threshold: float = 0.5, min_size_px: int = 0,
                 fill_holes: bool = False) -> None:
        if not 0.0 < threshold < 1.0:
            raise InputError(f"postproc option 'threshold' must be in (0, 1), got {threshold}")
        if min_size_px < 0:
            raise InputError(f"postproc option 'min_size_px' must be >= 0, got {min_size_px}")
        self.threshold, self.min_size_px, self.fill_holes = threshold, int(min_size_px), fill_holes

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        mask = np.asarray(probabilities) > self.threshold
        if self.min_size_px > 1:
            mask = remove_small_objects(mask, max_size=self.min_size_px - 1)
        if self.fill_holes:
            mask = ndimage.binary_fill_holes(mask)
        return mask

    def describe(self) -> dict:
        return {"threshold": self.threshold, "min_size_px": self.min_size_px,
                "fill_holes": self.fill_holes}
