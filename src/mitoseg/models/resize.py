"""Linear resizing (bilinear in 2D, trilinear in 3D) whose gradient is deterministic on a GPU.

``F.interpolate``'s linear modes have no deterministic backward on CUDA: with
``torch.use_deterministic_algorithms(True)`` (``trainer.deterministic=true``) their backward
raises a RuntimeError, and without it the gradient is summed with atomic adds in an order that
changes between runs. A network that resizes features in its forward (attention gates,
upsampled heads) could therefore not be trained bit-reproducibly on a GPU.

``linear_resize`` computes the same values (PyTorch's source-index rule, for either
``align_corners``) one axis at a time: each output position is ``(1 - f) * x[lo] + f * x[hi]``
along that axis, with ``index_select``, whose backward has a deterministic implementation on
every device. Values and gradients equal ``F.interpolate``'s to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def axis_weights(n_in: int, n_out: int, align_corners: bool, device: torch.device | str,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``lo``, ``hi`` and the weight ``f`` of ``hi`` for each of ``n_out``
    positions resampled from ``n_in`` (PyTorch's rule for linear modes given an output size)."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    dst = torch.arange(n_out, device=device, dtype=compute)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    lo = src.long().clamp(max=n_in - 1)  # src >= 0: truncation is the floor
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, (src - lo).to(dtype)


def linear_resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear" / "trilinear", align_corners=...)`` for an
    (N, C, *spatial) tensor, with a deterministic backward on every device."""
    spatial = x.dim() - 2
    size = tuple(int(s) for s in size)
    if spatial < 1 or len(size) != spatial:
        raise ValueError(f"linear_resize: size {size} does not match the {spatial} spatial "
                         f"axes of a tensor of shape {tuple(x.shape)}")
    for axis, n_out in enumerate(size, start=2):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        lo, hi, weight = axis_weights(n_in, n_out, align_corners, x.device, x.dtype)
        shape = [1] * x.dim()
        shape[axis] = n_out
        weight = weight.view(shape)
        x = x.index_select(axis, lo) * (1 - weight) + x.index_select(axis, hi) * weight
    return x
