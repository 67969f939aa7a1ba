"""Classical (non-learned) segmentation baselines of paper 000: the adaptive active mask, Otsu
and local adaptive thresholding. Each is a callable class: one 2D float image in, one bool mask
(True = mitochondrion) of the same shape out; conf/classical/*.yaml builds them with Hydra."""

from mitoseg.classical.active_mask import AdaptiveActiveMask, adaptive_active_mask
from mitoseg.classical.thresholding import LocalThreshold, OtsuThreshold, check_image, noise_sigma

__all__ = ["AdaptiveActiveMask", "adaptive_active_mask", "LocalThreshold", "OtsuThreshold",
           "check_image", "noise_sigma"]
