"""Slabs of a front-to-back scan: whole storage chunks along z, within the byte budget."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import zarr

from mitoseg.data.em_volume_files import ZRange
from mitoseg.data.slabs import UNCHUNKED_SLICES, slab_depth, slab_ranges, z_chunk_depth


def test_a_zarr_volume_is_read_in_whole_chunks_as_many_as_fit(tmp_path) -> None:
    array = zarr.create_array(str(tmp_path / "v.zarr"), shape=(100, 64, 64), dtype="uint8",
                              chunks=(8, 32, 32))
    assert z_chunk_depth(array) == 8
    assert slab_depth(array, max_bytes=20 * 64 * 64) == 16  # 2 chunks fit, not 3
    assert slab_depth(array, max_bytes=5 * 64 * 64) == 5  # not one chunk: what fits
    assert list(slab_ranges(array, max_bytes=40 * 64 * 64)) == [(0, 40), (40, 80), (80, 100)]
    assert z_chunk_depth(ZRange(array, 10, 60)) == 8  # through a view of some slices


def test_an_array_without_chunks_is_read_a_few_slices_at_a_time() -> None:
    volume = np.zeros((100, 16, 16), np.uint16)
    assert z_chunk_depth(volume) == 0
    assert slab_depth(volume) == UNCHUNKED_SLICES
    assert slab_depth(volume, max_bytes=3 * 16 * 16 * 2) == 3
    assert slab_depth(SimpleNamespace(shape=(5, 4096, 4096), dtype=np.float64, chunks=None),
                      max_bytes=1) == 1
    ranges = list(slab_ranges(volume))
    assert ranges[0] == (0, UNCHUNKED_SLICES) and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
