"""Inference over volumes larger than memory, reading and writing z-chunks.

``source`` is any array-like of shape (D, H, W) sliced along Z with ``source[a:b]`` (numpy
memmap, tifffile memmap, zarr or h5py arrays); ``out`` is any array-like of the same shape
accepting ``out[a:b] = chunk``. Both designs give the in-memory result up to float32 rounding
of the network's outputs, about 1e-7: the network meets a tile in another batch than in memory,
and convolution kernels may round a tile differently in batches of other sizes. Measured max
|streamed - in-memory| in fp32 on a CPU with paper 002's U-Nets (random weights, sigmoid
outputs; ``pytest tests/inference/test_streaming.py -m slow -s``): 1.2e-7 slice-wise (2D, with
8-fold TTA and a Z-filter) and 4.2e-7 volumetric (3D); 0 with networks whose output for a tile
does not depend on its batch. The tests hold both designs to ``TOLERANCE`` (1e-6). A GPU's
TF32 or bf16 kernels round more coarsely (not measured here). Apart from that rounding:

- Slice-wise (2D) models, :func:`predict_slices_streaming`: each output chunk [z0, z1) is
  computed from the slab [z0 - halo, z1 + halo) (clipped to the volume) and only the chunk is
  written. Slice-wise prediction does not look across slices, and a median Z-filter of size k
  looks k // 2 slices each way, so halo >= k // 2 makes every written slice see exactly the
  slices it would see in memory; at the volume ends the slab ends where the volume does, so
  the border mode acts identically. Smaller halos are refused.
- Volumetric (3D) models, :func:`predict_patches3d_streaming`: the tile grid is computed once
  for the whole volume, so tile origins along Z do not depend on any chunking. Tiles are
  processed one Z-row at a time (all tiles sharing a Z start, in ascending order) into rolling
  numerator/weight buffers; once the next row starts at s, no later tile touches slices < s,
  so those are final and flushed to ``out``. Tiles are added in the same order as in
  :func:`~mitoseg.inference.sliding.sliding_window_predict`, so the blending sums add the
  same terms in the same order. Memory: one patch-deep slab of input plus two patch-deep
  accumulators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mitoseg.errors import InputError
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.sliding import (
    Predict,
    accumulate_tiles,
    check_patch_size,
    float_tensor,
    reflect_pad_end,
    sliding_window_predict,
    stride_for,
    tile_grid,
    tile_starts,
)
from mitoseg.inference.windows import window as make_window
from mitoseg.inference.zfilter import median_z_filter

# max |streamed - in-memory| that the tests allow (measured: 1.2e-7 in 2D, 4.2e-7 in 3D)
TOLERANCE = 1e-6


def _check_io(source: Any, out: Any) -> int:
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 3 or 0 in shape:
        raise InputError(f"'source' must be an array-like of shape (D, H, W), got {shape}")
    if tuple(getattr(out, "shape", ())) != shape:
        raise InputError(f"'out' must have the shape of 'source' {shape}, "
                         f"got {tuple(getattr(out, 'shape', ()))}")
    return shape[0]


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def stream_z_chunks(process_slab: Callable[[np.ndarray], np.ndarray | torch.Tensor],
                    source: Any, out: Any, chunk_depth: int, halo: int, *,
                    z_radius: int = 0) -> None:
    """Write ``process_slab`` of overlapping z-slabs into ``out``, one chunk at a time.

    Args:
        process_slab: maps a (d, H, W) slab to a (d, H, W) result; it may look at most
            ``z_radius`` slices up and down for any slice (e.g. k // 2 for a z-median of size k).
        source, out: (D, H, W) array-likes (see module docstring).
        chunk_depth: slices written per step.
        halo: extra slices read on each side of a chunk; must be >= z_radius.
        z_radius: the Z reach of process_slab, used to refuse halos that would leave seams.
    """
    depth = _check_io(source, out)
    if not isinstance(chunk_depth, (int, np.integer)) or chunk_depth < 1:
        raise InputError(f"'chunk_depth' must be a positive int, got {chunk_depth!r}")
    if not isinstance(halo, (int, np.integer)) or halo < z_radius:
        raise InputError(f"'halo' must be an int >= {z_radius} (the Z reach of the slab "
                         f"processing), got {halo!r}")
    for z0 in range(0, depth, chunk_depth):
        z1 = min(depth, z0 + chunk_depth)
        a, b = max(0, z0 - halo), min(depth, z1 + halo)
        result = _to_numpy(process_slab(np.asarray(source[a:b])))
        if result.shape[0] != b - a:
            raise InputError(f"'process_slab' must keep the slab depth {b - a}, "
                             f"got shape {result.shape}")
        out[z0:z1] = result[z0 - a:z1 - a]


def predict_slices_streaming(predict: Predict, source: Any, out: Any, *, chunk_depth: int,
                             halo: int, patch_size: Sequence[int],
                             protocol: str = "overlap_blend", tta: bool = False,
                             window: str | None = None, z_filter_size: int = 1,
                             z_filter_mode: str = "reflect", divisor: int = 16,
                             batch_size: int = 8,
                             device: str | torch.device | None = None) -> None:
    """Slice-wise (2D model) reconstruction + optional median Z-filter, chunk by chunk.

    Equals ``median_z_filter(reconstruct(predict, volume, protocol, patch_size, 2, tta,
    window).probabilities, z_filter_size, z_filter_mode)`` computed in memory, to within
    ``TOLERANCE`` (float32 rounding of the network's outputs; see the module docstring). Requires
    ``halo >= z_filter_size // 2`` (0 suffices without Z-filter).
    """
    if not isinstance(z_filter_size, (int, np.integer)) or z_filter_size < 1 \
            or z_filter_size % 2 == 0:
        raise InputError(f"'z_filter_size' must be an odd int >= 1, got {z_filter_size!r}")

    def process(slab: np.ndarray) -> np.ndarray:
        probs = reconstruct(predict, slab, protocol, patch_size, 2, tta, window,
                            divisor=divisor, batch_size=batch_size,
                            device=device).probabilities.numpy()
        return median_z_filter(probs, z_filter_size, z_filter_mode) if z_filter_size > 1 \
            else probs

    stream_z_chunks(process, source, out, chunk_depth, halo, z_radius=z_filter_size // 2)


@torch.no_grad()
def predict_patches3d_streaming(predict: Predict, source: Any, out: Any,
                                patch_size: Sequence[int], overlap: float = 0.5,
                                window: str = "spline", batch_size: int = 8,
                                device: str | torch.device | None = None) -> None:
    """3D sliding-window inference on a global tile grid, flushed to ``out`` row by row.

    Equals ``sliding_window_predict(predict, volume[None], patch_size, overlap, window)[0]``
    computed in memory, to within ``TOLERANCE`` (float32 rounding of the network's outputs;
    see the module docstring); ``predict`` maps (B, 1, d, h, w) to (B, 1, d, h, w).
    """
    depth = _check_io(source, out)
    patch = check_patch_size(patch_size, 3)
    if depth <= patch[0]:  # one row of tiles (Z padded if shorter): nothing to stream
        result = sliding_window_predict(predict, np.asarray(source[0:depth])[None], patch,
                                        overlap, window, batch_size, device)
        out[0:depth] = _to_numpy(result[0])
        return
    height, width = source.shape[1:]
    inplane = (max(height, patch[1]), max(width, patch[2]))
    plane_tiles = tile_grid(inplane, patch[1:], overlap)
    device = torch.device(device) if device is not None else torch.device("cpu")
    weight = make_window(patch, window).to(device)
    base, numerator = 0, None
    denominator = torch.zeros((0, *inplane), device=device)

    def flush(stop: int) -> None:
        finished = stop - base
        if numerator.shape[0] != 1:
            raise InputError(f"'predict' must return one output channel, "
                             f"got {numerator.shape[0]}")
        result = numerator[0, :finished] / denominator[:finished]
        out[base:stop] = _to_numpy(result[:, :height, :width])

    for start in tile_starts(depth, patch[0], stride_for(patch[0], overlap)):
        if start > base:  # every remaining tile starts at >= start: slices below are final
            flush(start)
            numerator, denominator = numerator[:, start - base:], denominator[start - base:]
            base = start
        grow = start + patch[0] - base - denominator.shape[0]
        if grow > 0:
            denominator = torch.cat([denominator, denominator.new_zeros((grow, *inplane))])
            if numerator is not None:
                numerator = torch.cat([numerator, numerator.new_zeros(
                    (numerator.shape[0], grow, *inplane))], dim=1)
        slab = float_tensor(source[start:start + patch[0]])[None]
        slab = reflect_pad_end(slab, inplane)
        tiles = [(slice(0, patch[0]),) + t for t in plane_tiles]
        numerator = accumulate_tiles(predict, slab, tiles, weight, numerator, denominator,
                                     batch_size, device, shift=(base - start, 0, 0))
    flush(depth)
