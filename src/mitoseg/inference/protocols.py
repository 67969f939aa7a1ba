"""Paper 002's output-reconstruction protocols behind one function.

- "per_patch": non-overlapping patches, each predicted on its own and stitched (the metric is
  then averaged over the returned tiles, elsewhere).
- "overlap": 50 % overlap, plain averaging (constant window).
- "overlap_blend": 50 % overlap, blended with the second-order spline window (or ``window``).
- "full_image": the whole slice/volume at once, padded to a multiple of ``divisor``.

2D models see a (D, H, W) volume slice by slice; 3D models see it whole. With ``tta`` every
network call (each patch, or the whole image) is replaced by the TTA ensemble of that call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from mitoseg.errors import InputError
from mitoseg.inference.sliding import (
    Predict,
    Tile,
    check_patch_size,
    float_tensor,
    full_image,
    per_patch_tiles,
    reflect_pad_end,
    sliding_window_predict_stack,
    tile_grid,
)
from mitoseg.inference.tta import batch_tta_by_default, predict_with_tta

PROTOCOLS = ("per_patch", "overlap", "overlap_blend", "full_image")


@dataclass
class Reconstruction:
    """Probabilities (D, H, W) (or (H, W) for a 2D image) and the tiles that produced them.

    ``tiles`` are in the model's spatial coordinates ((H, W) for 2D models, the same for every
    slice; (D, H, W) for 3D models): the non-overlapping tiles for "per_patch", the overlapping
    grid for "overlap"/"overlap_blend", and one whole-extent tile for "full_image".
    """

    probabilities: torch.Tensor
    tiles: list[Tile]


def _tta_predict(predict: Predict, spatial_dims: int, batched: bool = False) -> Predict:
    return partial(predict_with_tta, predict, spatial_dims=spatial_dims, batched=batched)


def _per_patch(predict: Predict, x: torch.Tensor, patch: tuple[int, ...], batch_size: int,
               device: str | torch.device | None) -> torch.Tensor:
    """x (N, C, *spatial): pad to a multiple of the patch, so the overlap-0 grid is exactly
    non-overlapping."""
    spatial = tuple(x.shape[2:])
    padded = tuple(-(-n // p) * p for n, p in zip(spatial, patch))
    out = sliding_window_predict_stack(predict, reflect_pad_end(x, padded), patch, overlap=0.0,
                                       window="constant", batch_size=batch_size, device=device)
    return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)]


def _check_one_channel(out: torch.Tensor) -> None:
    if out.shape[0] != 1:
        raise InputError(f"'predict' must return one output channel, got {out.shape[0]}")


@torch.no_grad()
def reconstruct(predict: Callable[[torch.Tensor], torch.Tensor],
                volume: torch.Tensor | np.ndarray, protocol: str, patch_size: Sequence[int],
                spatial_dims: int, tta: bool = False, window: str | None = None, *,
                divisor: int = 16, batch_size: int = 8,
                device: str | torch.device | None = None,
                batch_tta: bool | None = None) -> Reconstruction:
    """Predict a single-channel EM volume with one of paper 002's reconstruction protocols.

    Args:
        predict: network call, (B, 1, *patch) -> (B, 1, *patch) probabilities (or logits).
        volume: (D, H, W); for spatial_dims=2 also a single (H, W) image.
        protocol: one of PROTOCOLS.
        patch_size: (h, w) for 2D models, (d, h, w) for 3D models (unused by "full_image").
        spatial_dims: 2 (slice-by-slice model) or 3 (volumetric model).
        tta: average over the 8 (2D) / 16 (3D) transforms of each network input.
        window: blending window for "overlap_blend" (default "spline"); other protocols fix
            their own window, so passing one there is refused.
        divisor: "full_image" pads each axis to a multiple of this.
        batch_size, device: passed to the sliding-window inference.
        batch_tta: tiled protocols only: predict the TTA copies of a batch of windows in one
            call (``batch_size`` x 8 or 16 images). None: only when ``device`` is an
            accelerator; on a CPU small calls are faster (activations stay in cache).

    Returns:
        Reconstruction with probabilities shaped like ``volume`` (float32, on the CPU).
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"'protocol' must be one of {PROTOCOLS}, got {protocol!r}")
    if spatial_dims not in (2, 3):
        raise InputError(f"'spatial_dims' must be 2 or 3, got {spatial_dims!r}")
    if window is not None and protocol != "overlap_blend":
        raise InputError(f"'window' applies to protocol 'overlap_blend' only, got window="
                         f"{window!r} with protocol {protocol!r}")
    x = float_tensor(volume).cpu()
    single_image = spatial_dims == 2 and x.ndim == 2
    if single_image:
        x = x[None]
    if x.ndim != 3 or 0 in x.shape:
        raise InputError(f"'volume' must have shape (D, H, W)"
                         f"{' or (H, W)' if spatial_dims == 2 else ''}, got {tuple(x.shape)}")
    patch = check_patch_size(patch_size, spatial_dims) if protocol != "full_image" else None
    if protocol == "full_image":  # one image per call: its 8/16 TTA copies one by one
        net = _tta_predict(predict, spatial_dims) if tta else predict
        inputs = [x[z][None] for z in range(x.shape[0])] if spatial_dims == 2 else [x[None]]
        outs = [full_image(net, inp, divisor=divisor, device=device) for inp in inputs]
        _check_one_channel(outs[0])
        probabilities = torch.stack([out[0].cpu() for out in outs])
        if spatial_dims == 3:
            probabilities = probabilities[0]
    else:  # tiles: windows of every slice of a 2D model share calls
        if batch_tta is None:
            batch_tta = batch_tta_by_default(device)
        net = _tta_predict(predict, spatial_dims, batched=batch_tta) if tta else predict
        stack = x[:, None] if spatial_dims == 2 else x[None, None]
        if protocol == "per_patch":
            out = _per_patch(net, stack, patch, batch_size, device)
        else:
            kind = "constant" if protocol == "overlap" else (window or "spline")
            out = sliding_window_predict_stack(net, stack, patch, overlap=0.5, window=kind,
                                               batch_size=batch_size, device=device)
        _check_one_channel(out[0])
        probabilities = out[:, 0].cpu() if spatial_dims == 2 else out[0, 0].cpu()
    spatial = tuple(x.shape[1:]) if spatial_dims == 2 else tuple(x.shape)
    if protocol == "per_patch":
        tiles = per_patch_tiles(spatial, patch)
    elif protocol == "full_image":
        tiles = [tuple(slice(0, n) for n in spatial)]
    else:
        padded = tuple(max(n, p) for n, p in zip(spatial, patch))
        tiles = [tuple(slice(s.start, min(s.stop, n)) for s, n in zip(t, spatial))
                 for t in tile_grid(padded, patch, 0.5)]
    return Reconstruction(probabilities[0] if single_image else probabilities, tiles)
