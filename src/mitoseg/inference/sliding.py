"""Sliding-window inference over 2D images and 3D volumes, plus whole-image inference.

Tiles start on a regular grid (stride = patch * (1 - overlap)); the last tile of each axis is
shifted back to end exactly at the border, so no tile reads padding when the input is at least
one patch large. Inputs smaller than the patch are reflect-padded at the far end and cropped
back. Predictions are summed with a weight window and divided by the summed window, so every
pixel, border pixels included, is a proper weighted mean of the predictions that cover it.

Speed: a stack of images (the slices of a volume seen by a 2D model) is processed at once.
Windows are taken tile-major (tile 0 of every image, then tile 1, ...), so one batch holds
windows of many images and each tile is cut out of, and added back into, all of its images
with one tensor operation instead of one per window. The summed window depends only on the
grid and is computed once. Every pixel still receives its tiles in grid order, so the result
equals that of one image at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mitoseg.errors import InputError
from mitoseg.inference.padding import pad_spatial
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

    Like numpy's 'reflect', it works when the padding is larger than the axis itself (see
    ``padding.pad_spatial``, the one padding helper, with ``short="repeat"``).
    """
    return pad_spatial(x, target, centred=False, short="repeat")


def check_prediction(pred: object, want: Sequence[int], batch_ndim: int) -> torch.Tensor:
    """``pred`` must be a (B, K, *patch) tensor with (B, *patch) == want."""
    if not isinstance(pred, torch.Tensor) or pred.ndim != batch_ndim or \
            (pred.shape[0], *pred.shape[2:]) != tuple(want):
        got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise InputError(f"'predict' must return (B, K, *patch) = ({want[0]}, K, "
                         f"{', '.join(map(str, want[1:]))}), got {got}")
    return pred


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
        pred = check_prediction(predict(batch), (len(chunk), *batch.shape[2:]), batch.ndim)
        pred = pred.to(device=denominator.device, dtype=torch.float32)
        if numerator is None:
            numerator = torch.zeros((pred.shape[1], *denominator.shape), device=denominator.device)
        for tile, p in zip(chunk, pred):
            region = tuple(slice(s.start - o, s.stop - o) for s, o in zip(tile, shift))
            numerator[(slice(None),) + region].addcmul_(p, weight)
            denominator[region] += weight
    return numerator


def summed_window(spatial_shape: Sequence[int], tiles: Sequence[Tile], weight: torch.Tensor
                  ) -> torch.Tensor:
    """The window summed over the grid: every pixel's total weight, in grid order."""
    total = torch.zeros(tuple(spatial_shape), device=weight.device)
    for tile in tiles:
        total[tile] += weight
    return total


def _segments(start: int, stop: int, n_images: int) -> list[tuple[int, int, int]]:
    """(tile, first image, last image + 1) runs of tile-major windows start..stop-1."""
    runs = []
    while start < stop:
        tile, image = divmod(start, n_images)
        end = min(stop, (tile + 1) * n_images)
        runs.append((tile, image, image + end - start))
        start = end
    return runs


def accumulate_stack(predict: Predict, x: torch.Tensor, tiles: Sequence[Tile],
                     weight: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sum pred * weight over the tiles of every image of x (N, C, *spatial).

    Windows run tile-major, ``batch_size`` per predict call; a batch is cut out and added
    back with one operation per (tile, run of images) instead of one per window. Returns the
    (N, K, *spatial) numerator on x's device, which must be where ``weight`` is.
    """
    if batch_size < 1:
        raise InputError(f"'batch_size' must be >= 1, got {batch_size}")
    n_images, numerator = x.shape[0], None
    for start in range(0, len(tiles) * n_images, batch_size):
        runs = _segments(start, min(start + batch_size, len(tiles) * n_images), n_images)
        parts = [x[(slice(a, b), slice(None)) + tiles[t]] for t, a, b in runs]
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        pred = check_prediction(predict(batch.contiguous()),
                                (batch.shape[0], *batch.shape[2:]), batch.ndim)
        pred = pred.to(device=x.device, dtype=torch.float32)
        if numerator is None:
            numerator = torch.zeros((n_images, pred.shape[1], *x.shape[2:]), device=x.device)
        offset = 0
        for t, a, b in runs:
            numerator[(slice(a, b), slice(None)) + tiles[t]].addcmul_(
                pred[offset:offset + b - a], weight)
            offset += b - a
    return numerator


@torch.no_grad()
def sliding_window_predict_stack(predict: Predict, images: torch.Tensor | np.ndarray,
                                 patch_size: Sequence[int], overlap: float = 0.5,
                                 window: str = "spline", batch_size: int = 8,
                                 device: str | torch.device | None = None) -> torch.Tensor:
    """:func:`sliding_window_predict` of every image of a stack (N, C, *spatial) at once.

    Windows of different images share predict calls (``batch_size`` windows per call), which
    keeps a GPU busy with slices whose own grid is small. The stack is moved to ``device``
    once. Returns (N, K, *spatial) float32 on the stack's device, equal to predicting the
    images one by one.
    """
    patch = check_patch_size(patch_size)
    x = float_tensor(images)
    if x.ndim != len(patch) + 2:
        raise InputError(f"'images' must have shape (N, C, {'D, ' if len(patch) == 3 else ''}"
                         f"H, W) for {len(patch)}D patches, got shape {tuple(x.shape)}")
    home = x.device
    device = torch.device(device) if device is not None else home
    spatial = tuple(x.shape[2:])
    padded = tuple(max(n, p) for n, p in zip(spatial, patch))
    x = reflect_pad_end(x.to(device), padded)
    tiles = tile_grid(padded, patch, overlap)
    weight = make_window(patch, window).to(device)
    numerator = accumulate_stack(predict, x, tiles, weight, batch_size)
    out = numerator / summed_window(padded, tiles, weight)
    return out[(slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)].to(home)


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
    return sliding_window_predict_stack(predict, x[None], patch, overlap, window, batch_size,
                                        device)[0]


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
