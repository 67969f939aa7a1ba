"""Inference toolkit of paper 002: blending windows, sliding-window and whole-image prediction,
test-time augmentation, median Z-filtering, output-reconstruction protocols, streaming over
volumes larger than memory, and a network wrapper with the speed options (bf16 autocast,
channels_last, torch.compile). Pure torch/numpy functions, no Lightning or Hydra."""

from mitoseg.inference.network import net_predictor
from mitoseg.inference.protocols import PROTOCOLS, Reconstruction, reconstruct
from mitoseg.inference.sliding import (
    full_image,
    per_patch_tiles,
    sliding_window_predict,
    sliding_window_predict_stack,
    tile_grid,
)
from mitoseg.inference.streaming import (
    predict_patches3d_streaming,
    predict_slices_streaming,
    stream_z_chunks,
)
from mitoseg.inference.tta import (
    Transform,
    batch_tta_by_default,
    predict_with_tta,
    tta_transforms,
)
from mitoseg.inference.windows import WINDOW_KINDS, window
from mitoseg.inference.zfilter import median_z_filter

__all__ = [
    "PROTOCOLS", "Reconstruction", "reconstruct", "full_image", "per_patch_tiles",
    "net_predictor", "sliding_window_predict", "sliding_window_predict_stack", "tile_grid",
    "predict_patches3d_streaming", "predict_slices_streaming", "stream_z_chunks", "Transform",
    "batch_tta_by_default", "predict_with_tta", "tta_transforms", "WINDOW_KINDS", "window",
    "median_z_filter",
]
