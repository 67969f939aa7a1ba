"""Block-wise prediction of volumes larger than memory: a grid of blocks with a halo, and the
network's receptive field measured so the halo can be checked against it.

A block writes its *core* (a box of the output) and reads its core grown by a *halo* on every
side (clipped to the volume). With a fully convolutional network whose receptive field reaches
at most ``r`` voxels from a voxel, a halo >= r makes every written voxel see the same input as
in one pass over the whole volume. Two more conditions make the block result equal the
in-memory one up to float32 rounding (kernels may round a differently sized input differently):

- the pooling grid must line up: cores start on multiples of the block size and halos are
  multiples of ``align`` (the network's size divisor, 2 ** pooling steps), so every block read
  starts on a multiple of ``align`` like the whole volume does, and ends a multiple of
  ``align`` before the volume's end (the read grows to make it so), so that flipped and
  rotated copies (test-time augmentation) line up too;
- the volume's own borders stay borders: a block touching a border reads up to it, never past
  it, so the network pads there exactly as it pads the whole volume.

Pure numpy/torch; no Lightning or Hydra.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mitoseg.errors import InputError

Box = tuple[slice, ...]


@dataclass(frozen=True)
class Block:
    """One block: its grid ``index``, the ``core`` it writes and the region it ``read``s."""

    index: tuple[int, ...]
    core: Box
    read: Box

    @property
    def core_in_read(self) -> Box:
        """The core as a box of the read region (to crop a block's prediction)."""
        return tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(self.core, self.read))

    @property
    def key(self) -> str:
        return "-".join(str(i) for i in self.index)


def block_grid(shape: Sequence[int], block: Sequence[int], halo: Sequence[int],
               align: Sequence[int] | int = 1) -> list[Block]:
    """Blocks of ``block`` voxels (the last of each axis shorter) covering ``shape``, each
    reading ``halo`` voxels more on every side; in C order (z slowest)."""
    shape, block, halo = (tuple(int(v) for v in a) for a in (shape, block, halo))
    align = (int(align),) * len(shape) if isinstance(align, int) else tuple(int(a) for a in align)
    if not len(shape) == len(block) == len(halo) == len(align):
        raise InputError(f"block grid: shape {shape}, block {block}, halo {halo} and align "
                         f"{align} must have one value per axis")
    for name, values in (("block", block), ("halo", halo)):
        bad = [(v, a) for v, a in zip(values, align) if v % a or v < (1 if name == "block" else 0)]
        if bad:
            raise InputError(f"block grid: {name} {values} must be multiples of the network's "
                             f"size divisor {align} (so the pooling grid lines up)")
    counts = [math.ceil(n / b) for n, b in zip(shape, block)]
    blocks = []
    for index in itertools.product(*(range(c) for c in counts)):
        core = tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape))
        read = tuple(slice(max(c.start - h, 0), _aligned_stop(c.stop + h, n, a))
                     for c, h, n, a in zip(core, halo, shape, align))
        blocks.append(Block(tuple(index), core, read))
    return blocks


def _aligned_stop(stop: int, length: int, align: int) -> int:
    """Grow a read's end so that it lies a multiple of ``align`` before the volume's end: then a
    flipped or rotated block (test-time augmentation) meets the pooling grid as the flipped
    volume does."""
    return min(stop + (length - stop) % align, length)


@torch.no_grad()
def receptive_radius(net: nn.Module, spatial_dims: int, size: int = 128,
                     device: str | torch.device = "cpu", max_size: int = 1024,
                     axis: int | None = None) -> int:
    """How far (in voxels, along any axis, or along spatial ``axis`` only: 0 = z in 3D) the
    output can depend on an input voxel, measured: the gradient of the central output voxel
    with respect to the input of a random image is non-zero exactly where the output looks.
    The input grows until the dependence no longer reaches its border (then it is the true
    reach, not the image's size)."""
    was_training = net.training
    net.eval()
    try:
        while True:
            radius = _reach(net, spatial_dims, size, device, axis)
            if radius < size // 2 - 1 or size >= max_size:
                return radius
            size *= 2
    finally:
        net.train(was_training)


def _reach(net: nn.Module, spatial_dims: int, size: int, device: str | torch.device,
           axis: int | None = None) -> int:
    generator = torch.Generator().manual_seed(0)
    shape = (1, 1) + (size,) * spatial_dims
    x = torch.rand(shape, generator=generator).to(device).requires_grad_(True)
    with torch.enable_grad():
        out = net(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        centre = (0, 0) + (size // 2,) * spatial_dims
        out[centre].backward()
    touched = (x.grad[0, 0].abs() > 0).nonzero().cpu().numpy()
    if len(touched) == 0:
        return 0
    offsets = np.abs(touched - size // 2)
    return int(offsets.max() if axis is None else offsets[:, axis].max())


def check_halo(halo: Sequence[int], radius: int, spatial_dims: int) -> None:
    """The in-plane halo (and along z for a 3D network) must reach the receptive field."""
    planes = halo[-spatial_dims:]
    if min(planes) < radius:
        raise InputError(f"block halo {list(halo)} is smaller than the network's receptive "
                         f"field ({radius} voxels, measured): blocks would differ from one pass "
                         f"over the volume; use a halo of at least {radius} (rounded up to the "
                         "network's size divisor)")


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // int(multiple)) * int(multiple)


def predict_blocks(read: Callable[[Box], np.ndarray], predict: Callable[[np.ndarray], np.ndarray],
                   write: Callable[[Block, np.ndarray], None], blocks: Sequence[Block],
                   done: set[str] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> int:
    """For every block not in ``done``: read its region, predict it, write its core. Returns
    the number of blocks predicted; ``progress(finished, total)`` after each."""
    done = done or set()
    finished, predicted = len([b for b in blocks if b.key in done]), 0
    for block in blocks:
        if block.key in done:
            continue
        probabilities = predict(read(block.read))
        write(block, probabilities[block.core_in_read])
        predicted += 1
        finished += 1
        if progress is not None:
            progress(finished, len(blocks))
    return predicted
