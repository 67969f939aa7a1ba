"""Sliding-window inference over 2D images and 3D volumes, plus whole-image inference.

Tiles start on a regular grid (stride = patch * (1 - overlap)); the last tile of each axis is
shifted back to end exactly at the border, so no tile reads padding when the input is at least
one patch large. Inputs smaller than the patch are reflect-padded at the far end and cropped
back. Predictions are summed with a weight window and divided by the summed window, so every
pixel, border pixels included, is a proper weighted mean of the predictions that cover it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mitoseg.errors import InputError
from mitoseg.inference.windows import window as make_window

Predict = Callable[[torch.Tensor], torch.Tensor]
Tile = tuple[slice, ...]


def check_patch_size(patch_size: Sequence[int], spatial_dims: int | None = None) -> tuple[int, ...]:
    """Validate a patch size (2 or 3 positive ints, matching spatial_dims when given)."""
    patch = tuple(patch_size)
    if len(patch) not in (2, 3) or not all(isinstance(p, (int, np.integer)) and p >= 1
                                           for p in patch):
        raise InputError(f"'patch_size' must be 2 or 3 positive ints, got {patch_size!r}")
    if spatial_dims is not None and len(patch) != spatial_dims:
        raise InputError(f"'patch_size' {patch} must have {spatial_dims} axes "
                         f"(spatial_dims={spatial_dims})")
    return tuple(int(p) for p in patch)


def float_tensor(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    """float32 tensor; numpy input is copied, so read-only memmaps convert without warnings."""
    if isinstance(array, torch.Tensor):
        return array.float()
    return torch.from_numpy(np.array(array, dtype=np.float32))


def as_volume(volume: torch.Tensor | np.ndarray, spatial_dims: int, name: str = "volume"
              ) -> torch.Tensor:
    """A float32 tensor of shape (C, *spatial) with spatial_dims spatial axes."""
    x = float_tensor(volume)
    if x.ndim != spatial_dims + 1:
        raise InputError(f"'{name}' must have shape (C, {'D, ' if spatial_dims == 3 else ''}"
                         f"H, W) for {spatial_dims}D patches, got shape {tuple(x.shape)}")
    return x


def tile_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis: 0, stride, 2*stride, ... and finally size - patch.

    Assumes size >= patch (smaller inputs are padded first).
    """
    return list(range(0, size - patch, stride)) + [size - patch]


def stride_for(patch: int, overlap: float) -> int:
    """patch * (1 - overlap), rounded down (with a tolerance for float error), at least 1."""
    return max(1, math.floor(patch * (1.0 - overlap) + 1e-9))


def tile_grid(spatial_shape: Sequence[int], patch_size: Sequence[int], overlap: float
              ) -> list[Tile]:
    """All tiles (tuples of slices) of the sliding-window grid, z-major order."""
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"'overlap' must be in [0, 1), got {overlap}")
    axes = [tile_starts(n, p, stride_for(p, overlap)) for n, p in zip(spatial_shape, patch_size)]
    return [tuple(slice(s, s + p) for s, p in zip(starts, patch_size))
            for starts in itertools.product(*axes)]


def per_patch_tiles(volume_shape: Sequence[int], patch_size: Sequence[int]) -> list[Tile]:
    """Non-overlapping tiles of the "per patch" protocol, clipped to the volume.

    Tiles start at multiples of the patch size; where the shape is not a multiple, the last
    tile of an axis is shorter (the protocol predicts it on a reflect-padded patch). The tiles
    cover every voxel exactly once.
    """
    patch = tuple(patch_size)
    if len(patch) != len(volume_shape):
        raise InputError(f"'patch_size' {patch} must have one entry per axis of "
                         f"'volume_shape' {tuple(volume_shape)}")
    axes = [[slice(s, min(s + p, n)) for s in range(0, n, p)] for n, p in zip(volume_shape, patch)]
    return list(itertools.product(*axes))


def reflect_pad_end(x: torch.Tensor, target: Sequence[int]) -> torch.Tensor:
    """Reflect-pad the trailing len(target) axes at their far end up to ``target``.

    Implemented by index reflection (period 2 (n - 1)), so, like numpy's 'reflect', it works
    when the padding is larger than the axis itself.
    """
    offset = x.ndim - len(target)
    for axis, want in enumerate(target, start=offset):
        n = x.shape[axis]
        if want <= n:
            continue
        idx = np.arange(want)
        if n > 1:
            period = 2 * (n - 1)
            idx = idx % period
            idx = np.where(idx < n, idx, period - idx)
        else:
            idx = np.zeros(want, dtype=np.int64)
        x = x.index_select(axis, torch.as_tensor(idx, device=x.device))
    return x


def accumulate_tiles(predict: Predict, x: torch.Tensor, tiles: Sequence[Tile],
                     weight: torch.Tensor, numerator: torch.Tensor | None,
                     denominator: torch.Tensor, batch_size: int, device: torch.device,
                     shift: Sequence[int] | None = None) -> torch.Tensor:
    """Predict ``tiles`` of x (C, *spatial) in batches; add pred*weight and weight in place.

    ``shift`` is subtracted from tile origins when writing, so callers (streaming) can keep
    accumulators that cover only part of the volume. Tiles are added one by one in the given
    order, which fixes the floating-point summation order. Returns the numerator (allocated on
    first use, when the number of output channels becomes known).
    """
    if batch_size < 1:
        raise InputError(f"'batch_size' must be >= 1, got {batch_size}")
    shift = tuple(shift) if shift is not None else (0,) * (x.ndim - 1)
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start:start + batch_size]
        batch = torch.stack([x[(slice(None),) + t] for t in chunk]).to(device)
        pred = predict(batch)
        want = (len(chunk), *batch.shape[2:])
        if not isinstance(pred, torch.Tensor) or pred.ndim != batch.ndim or \
                (pred.shape[0], *pred.shape[2:]) != want:
            got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise InputError(f"'predict' must return (B, K, *patch) = ({want[0]}, K, "
                             f"{', '.join(map(str, want[1:]))}), got {got}")
        pred = pred.to(device=denominator.device, dtype=torch.float32)
        if numerator is None:
            numerator = torch.zeros((pred.shape[1], *denominator.shape), device=denominator.device)
        for tile, p in zip(chunk, pred):
            region = tuple(slice(s.start - o, s.stop - o) for s, o in zip(tile, shift))
            numerator[(slice(None),) + region] += p * weight
            denominator[region] += weight
    return numerator


@torch.no_grad()
def sliding_window_predict(predict: Predict, volume: torch.Tensor | np.ndarray,
                           patch_size: Sequence[int], overlap: float = 0.5,
                           window: str = "spline", batch_size: int = 8,
                           device: str | torch.device | None = None) -> torch.Tensor:
    """Blend overlapping patch predictions over a whole 2D image or 3D volume.

    Args:
        predict: maps a batch (B, C, *patch) to predictions (B, K, *patch) (probabilities or
            logits; they are blended as given).
        volume: (C, H, W) for 2D patches or (C, D, H, W) for 3D patches.
        patch_size: (h, w) or (d, h, w).
        overlap: fraction in [0, 1); stride = patch * (1 - overlap), at least 1.
        window: "constant", "gaussian" or "spline" (see mitoseg.inference.windows).
        batch_size: tiles per predict call.
        device: where tiles are predicted and accumulated (default: the volume's device).

    Returns:
        (K, *spatial) float32 tensor on the volume's device.
    """
    patch = check_patch_size(patch_size)
    x = as_volume(volume, len(patch))
    spatial = tuple(x.shape[1:])
    device = torch.device(device) if device is not None else x.device
    padded = tuple(max(n, p) for n, p in zip(spatial, patch))
    x = reflect_pad_end(x, padded)
    tiles = tile_grid(padded, patch, overlap)
    weight = make_window(patch, window).to(device)
    denominator = torch.zeros(padded, device=device)
    numerator = accumulate_tiles(predict, x, tiles, weight, None, denominator, batch_size, device)
    out = numerator / denominator
    return out[(slice(None),) + tuple(slice(0, n) for n in spatial)].to(x.device)


@torch.no_grad()
def full_image(predict: Predict, volume: torch.Tensor | np.ndarray, divisor: int = 16,
               device: str | torch.device | None = None) -> torch.Tensor:
    """Predict a whole (C, *spatial) input at once ("full image" protocol).

    Each spatial axis is reflect-padded at its far end to a multiple of ``divisor`` (a U-Net
    with 4 poolings needs 16) and the prediction cropped back. Returns (K, *spatial).
    """
    if not isinstance(divisor, (int, np.integer)) or divisor < 1:
        raise InputError(f"'divisor' must be a positive int, got {divisor!r}")
    x = float_tensor(volume)
    if x.ndim not in (3, 4):
        raise InputError(f"'volume' must have shape (C, H, W) or (C, D, H, W), "
                         f"got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[1:])
    device = torch.device(device) if device is not None else x.device
    padded = tuple(-(-n // divisor) * divisor for n in spatial)
    pred = predict(reflect_pad_end(x, padded)[None].to(device))
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape[2:]) != padded:
        got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise InputError(f"'predict' must return (1, K, {', '.join(map(str, padded))}), got {got}")
    return pred[0][(slice(None),) + tuple(slice(0, n) for n in spatial)].float().to(x.device)
