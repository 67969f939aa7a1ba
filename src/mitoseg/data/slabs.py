"""How many slices to read at once when a lazy volume is scanned from front to back.

A Zarr or HDF5 volume is stored in chunks. Reading it one slice at a time decompresses every
chunk once for each of its slices: a volume in 64 x 64 x 64 chunks is decompressed 64 times
over. A scan that reads slabs of whole chunks along z decompresses each chunk once. Slabs stay
within ``SLAB_BYTES`` so that memory does not grow with the volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

SLAB_BYTES = 32 << 20  # most bytes of one slab (the label and image scans at setup hold one)
UNCHUNKED_SLICES = 32  # slices per slab of an array without chunks (numpy, a TIFF, a folder)


def z_chunk_depth(volume: Any) -> int:
    """Slices per storage chunk of ``volume`` (zarr's and h5py's ``chunks``, also through a
    view that keeps its array in ``array``, as ``ZRange``); 0 when it has none. Slabs start
    at the volume's first slice: a view that starts inside a chunk reads slabs that straddle
    two chunks (each chunk then decompressed twice, not once per slice)."""
    for candidate in (volume, getattr(volume, "array", None)):
        chunks = getattr(candidate, "chunks", None)
        if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], (int, np.integer)):
            return int(chunks[0])
    return 0


def slab_depth(volume: Any, max_bytes: int | None = None) -> int:
    """Slices per read of a front-to-back scan of ``volume``: a whole number of its chunks along
    z, as many as fit in ``max_bytes`` (one chunk's slices that do not fit: as many as fit);
    without chunks, ``UNCHUNKED_SLICES`` or as many as fit. At least 1. ``max_bytes``: None
    for ``SLAB_BYTES``."""
    max_bytes = SLAB_BYTES if max_bytes is None else max_bytes
    slice_bytes = max(1, math.prod(int(n) for n in volume.shape[1:]) * np.dtype(volume.dtype).itemsize)
    fit = max(1, max_bytes // slice_bytes)
    chunk = z_chunk_depth(volume)
    if not chunk:
        return min(fit, UNCHUNKED_SLICES)
    return chunk * (fit // chunk) if chunk <= fit else fit


def slab_ranges(volume: Any, max_bytes: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive slabs covering ``volume``'s slices (``slab_depth``)."""
    depth, step = int(volume.shape[0]), slab_depth(volume, max_bytes)
    for start in range(0, depth, step):
        yield start, min(start + step, depth)


def slices_in_slabs(volume: Any, z: Sequence[int], max_bytes: int | None = None,
                    window: tuple[slice, ...] = ()) -> Iterator[tuple[int, np.ndarray]]:
    """(index, slice) for each of the sorted slice indices ``z`` of a volume, read in slabs
    (``slab_ranges``): each slab that holds one of them is read once, from its first to its
    last wanted slice. ``max_bytes``: as for ``slab_depth``; ``window``: only this part of each
    slice (slices of the other axes)."""
    position = 0
    for _, stop in slab_ranges(volume, max_bytes):
        first = position
        while position < len(z) and z[position] < stop:
            position += 1
        if position > first:
            low = int(z[first])
            slab = np.asarray(volume[(slice(low, int(z[position - 1]) + 1), *window)])
            for index in z[first:position]:
                yield int(index), slab[int(index) - low]
