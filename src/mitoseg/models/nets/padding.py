"""Run a network on inputs whose size is not a multiple of its total stride."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Reflect-pad the spatial dims of ``x`` up to a multiple of ``multiple``.

    Returns the padded tensor and the original spatial size, for ``crop_to``. Reflection keeps
    image statistics at the border (zero padding would look like a dark frame).
    """
    size = tuple(x.shape[2:])
    pads: list[int] = []
    for length in reversed(size):
        missing = (-length) % multiple
        pads += [missing // 2, missing - missing // 2]
    if any(pads):
        mode = "reflect" if min(size) > max(pads) else "replicate"
        x = F.pad(x, pads, mode=mode)
    return x, size


def crop_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Undo ``pad_to_multiple``: take the centred window of the original size."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]
