"""Slabs of a front-to-back scan: whole storage chunks along z, within the byte budget."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import zarr

from mitoseg.data.em_volume_files import ZRange
from mitoseg.data.slabs import UNCHUNKED_SLICES, slab_depth, slab_ranges, z_chunk_depth
from tests.data.read_log import ReadLog


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


def test_the_training_zscore_of_a_lazy_volume_reads_each_slab_once_and_equals_numpys(
        monkeypatch) -> None:
    """Bit for bit the numpy path's statistics (the same blocks of 8 slices are summed), from
    one read per slab that holds a training slice, not one read per slice."""
    from mitoseg.data.normalization import fit_normalization_over

    data = np.random.default_rng(0).integers(0, 256, (70, 12, 10), dtype=np.uint8)
    training = [z for z in range(70) if z % 7 != 3 and not 20 <= z < 40]  # a gap of whole slabs
    monkeypatch.setattr("mitoseg.data.slabs.SLAB_BYTES", 16 * 12 * 10)  # 16-slice slabs
    lazy = ReadLog(data, chunk=8)
    fitted = fit_normalization_over("training_zscore", [(lazy, training), (lazy, None)])
    expected = fit_normalization_over("training_zscore", [(data, training), (data, None)])
    assert (fitted.mean, fitted.std) == (expected.mean, expected.std)
    values = np.concatenate([data[training], data]).astype(np.float64)  # plain numpy
    assert fitted.mean == pytest.approx(values.mean(), abs=1e-6)
    assert fitted.std == pytest.approx(values.std(), abs=1e-6)
    # the training slices: from the first to the last one of each slab that holds one (none in
    # 20-39); then the whole volume, slab by slab
    assert lazy.slices_read == [range(0, 16), range(16, 20), range(40, 48), range(48, 64),
                          range(64, 70), range(0, 16), range(16, 32), range(32, 48),
                          range(48, 64), range(64, 70)]


def test_the_foreground_sampler_reads_a_chunked_label_volume_in_slabs(monkeypatch) -> None:
    """The counts (one pass) and the held positions (the slabs that hold foreground) are each
    read a slab at a time; the positions are those of a plain numpy search."""
    from mitoseg.data.em_patches import ForegroundSampler
    from mitoseg.data.label_mapping import LabelMapping
    from mitoseg.data.volume_set import mapped_views

    raw = np.zeros((50, 16, 12), np.uint8)
    rng = np.random.default_rng(1)
    raw[rng.random(raw.shape) < 0.02] = 255
    raw[20:34] = 0  # no foreground here: never read for positions
    monkeypatch.setattr("mitoseg.data.slabs.SLAB_BYTES", 8 * 16 * 12)  # 8-slice slabs
    monkeypatch.setattr("mitoseg.data.em_patches.LABEL_SLAB_BYTES", 8 * 16 * 12)
    log = ReadLog(raw, chunk=8)
    labels, _ = mapped_views(log, LabelMapping.from_config({"foreground": [255],
                                                            "background": [0]}), "toy")
    assert z_chunk_depth(labels) == 8
    training = [z for z in range(50) if z % 5]
    sampler = ForegroundSampler(labels, training, fg_weight=5.0)
    assert sampler.holds_coordinates
    expected = np.argwhere(raw[training] == 255)
    expected[:, 0] = np.asarray(training)[expected[:, 0]]
    assert np.array_equal(sampler.coords(), expected)
    counts, positions = log.slices_read[:7], log.slices_read[7:]
    assert counts == [range(s, min(s + 8, 50)) for s in range(0, 50, 8)]
    assert all(r.start // 8 == (r.stop - 1) // 8 for r in positions)  # one slab each
    # from the first to the last training slice with foreground of each slab that holds one
    assert positions == [range(1, 8), range(8, 15), range(16, 20), range(34, 40), range(41, 48),
                         range(48, 50)]
