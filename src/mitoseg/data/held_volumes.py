"""Training and validation volumes read into memory once, when they fit a budget.

A training patch read from a lazy volume decompresses every storage unit its window touches,
whole: a 256 x 256 window of a Zarr volume in 64 x 64 x 64 chunks decompresses 16-25 chunks
(4-6 MiB) for its 64 KiB, a window of a PNG slice folder decodes its whole slice, and each
epoch does it again. So volumes that fit ``budget_mib`` together (and half the memory available
at setup, whichever is less) are read once, at setup, in slabs of whole chunks
(``mitoseg.data.slabs``), and patches are cut from memory. Patches are the same either way,
voxel for voxel; only the time differs. Larger volumes stay lazy, so memory stays bounded for
any volume size: by the budget, above what lazy reading takes.

Arrays already in memory (numpy arrays, memory maps of uncompressed files) are kept as they
are: the page cache holds a memory map's pages, and a copy would only double them. DataLoader
workers forked after setup share the held arrays' pages (they are never written).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mitoseg.data.slabs import slab_ranges
from mitoseg.data.volume_set import LabelledVolume
from mitoseg.errors import InputError

log = logging.getLogger(__name__)

MIB = 1 << 20
SHARE_OF_AVAILABLE = 0.5  # of the memory available at setup: training needs the rest


def available_mib() -> float:
    """The memory available to new allocations now (psutil's ``available``), in MiB."""
    import psutil

    return psutil.virtual_memory().available / MIB


def _lazy_arrays(volume: LabelledVolume) -> dict[str, Any]:
    """The volume's arrays that are read through a file reader, by field name."""
    return {name: getattr(volume, name) for name in ("image", "labels", "ignored")
            if getattr(volume, name) is not None and is_lazy(getattr(volume, name))}


def is_lazy(array: Any) -> bool:
    """Whether reading ``array`` goes through a file reader (not a numpy array or memory map)."""
    return not isinstance(array, np.ndarray)


def held_bytes(volume: LabelledVolume) -> int:
    """The bytes that holding ``volume``'s lazy arrays takes (0 when none is lazy)."""
    voxels = int(np.prod(volume.shape))
    return sum(voxels * np.dtype(a.dtype).itemsize for a in _lazy_arrays(volume).values())


def hold(volume: LabelledVolume) -> LabelledVolume:
    """``volume`` with its lazy arrays read into numpy arrays, slab by slab along z (whole
    chunks, ``slab_ranges`` of the image); the labels and the ignore mask of a slab are read
    at the same index, so a mapped label view maps each raw slab once for both."""
    lazy = _lazy_arrays(volume)
    if not lazy:
        return volume
    held = {name: np.empty(volume.shape, np.dtype(array.dtype)) for name, array in lazy.items()}
    for start, stop in slab_ranges(volume.image):
        for name, array in lazy.items():
            held[name][start:stop] = np.asarray(array[start:stop])
    return dataclasses.replace(volume, **held)


def hold_fitting(volumes: Sequence[LabelledVolume], budget_mib: float, what: str
                 ) -> list[LabelledVolume]:
    """``volumes`` with each lazy one held in memory, in order, if it still fits in what is
    left of ``budget_mib`` (at most ``SHARE_OF_AVAILABLE`` of the memory available now); the
    others stay lazy. ``what`` names the option in messages."""
    if budget_mib < 0:
        raise InputError(f"{what} must be >= 0 (MiB; 0: read every volume lazily), got "
                         f"{budget_mib}")
    if budget_mib == 0:
        return list(volumes)
    allowed = SHARE_OF_AVAILABLE * available_mib()
    if allowed < budget_mib:
        log.info("%s: %.0f MiB, but only %.0f MiB are available; volumes are held up to half of "
                 "that", what, budget_mib, 2 * allowed)
        budget_mib = allowed
    out, used = [], 0
    for volume in volumes:
        size = held_bytes(volume)
        if size == 0:
            out.append(volume)
        elif used + size > budget_mib * MIB:
            log.info("volume '%s' is read lazily, window by window: holding it (%.0f MiB) "
                     "would pass %s (%.0f MiB, %.0f held)", volume.name, size / MIB, what,
                     budget_mib, used / MIB)
            out.append(volume)
        else:
            out.append(hold(volume))
            used += size
            log.info("volume '%s' held in memory (%.0f MiB; %s: %.0f MiB)", volume.name,
                     size / MIB, what, budget_mib)
    return out
