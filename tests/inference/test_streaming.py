"""Tests for mitoseg.inference.streaming: chunked results equal the in-memory ones, to within
the module's stated TOLERANCE."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mitoseg.errors import InputError
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.sliding import sliding_window_predict
from mitoseg.inference.streaming import (
    TOLERANCE,
    predict_patches3d_streaming,
    predict_slices_streaming,
    stream_z_chunks,
)
from mitoseg.inference.zfilter import median_z_filter
from mitoseg.models.nets.unet_paper002 import UNetPaper002

VOLUME = np.random.default_rng(0).normal(size=(20, 40, 44)).astype(np.float32)


def shifted(batch: torch.Tensor, axis: int) -> torch.Tensor:
    """batch moved one pixel forward along ``axis``, zero-filled (a neighbour lookup)."""
    pad = [0, 0] * (batch.ndim - 1 - axis % batch.ndim) + [1, 0]
    return F.pad(batch, pad).narrow(axis, 0, batch.shape[axis])


def net2d(batch: torch.Tensor) -> torch.Tensor:
    """Not equivariant, depends on tile content near tile borders; any input shape.

    Neighbour lookups instead of a convolution: tiny convolutions hit oneDNN's thread pool,
    which is erratic on a busy 2-core machine.
    """
    mixed = batch + 0.5 * shifted(batch, -1) - 0.3 * shifted(batch, -2)
    return torch.sigmoid(mixed + torch.linspace(-1, 1, batch.shape[-1]))


def net3d(batch: torch.Tensor) -> torch.Tensor:
    mixed = batch + 0.5 * shifted(batch, -3) - 0.3 * shifted(batch, -1)
    return torch.sigmoid(mixed + torch.linspace(-1, 1, batch.shape[-3])[:, None, None])


class ZSliced:
    """A zarr-like source: only z-slices can be read, and every read is recorded."""

    def __init__(self, array: np.ndarray) -> None:
        self._array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, key: slice) -> np.ndarray:
        assert isinstance(key, slice) and key.step is None
        self.reads.append((key.start, key.stop))
        return self._array[key].copy()


def memmap_out(tmp_path: Path, shape: tuple) -> np.memmap:
    return np.memmap(tmp_path / "out.f32", dtype=np.float32, mode="w+", shape=shape)


@pytest.fixture(scope="module")
def expected_2d() -> dict[int, np.ndarray]:
    unfiltered = reconstruct(net2d, VOLUME, "overlap_blend", (16, 24), 2, tta=True)
    probs = unfiltered.probabilities.numpy()
    return {k: median_z_filter(probs, k) for k in (1, 3, 5)}


@pytest.mark.parametrize("chunk_depth, halo, k", [(3, 2, 5), (7, 2, 5), (7, 4, 5), (3, 1, 3),
                                                  (7, 0, 1), (20, 0, 1), (1, 2, 5)])
def test_2d_slicewise_tta_zfilter_equals_in_memory(tmp_path: Path, expected_2d: dict,
                                                   chunk_depth: int, halo: int, k: int) -> None:
    source, out = ZSliced(VOLUME), memmap_out(tmp_path, VOLUME.shape)
    predict_slices_streaming(net2d, source, out, chunk_depth=chunk_depth, halo=halo,
                             patch_size=(16, 24), tta=True, z_filter_size=k)
    np.testing.assert_allclose(np.asarray(out), expected_2d[k], atol=TOLERANCE, rtol=0)
    assert max(b - a for a, b in source.reads) <= chunk_depth + 2 * halo


def test_2d_streaming_with_too_small_halo_is_refused_and_would_leave_seams(
        tmp_path: Path, expected_2d: dict) -> None:
    out = memmap_out(tmp_path, VOLUME.shape)
    with pytest.raises(InputError, match="halo"):
        predict_slices_streaming(net2d, VOLUME, out, chunk_depth=3, halo=1, patch_size=(16, 24),
                                 tta=True, z_filter_size=5)
    # what the check prevents: a halo of 1 with a size-5 median differs from the in-memory result
    stream_z_chunks(lambda slab: median_z_filter(slab, 5), expected_2d[1], out, 3, 1)
    assert not np.allclose(np.asarray(out), expected_2d[5], atol=TOLERANCE)


@pytest.mark.parametrize("patch, overlap, window", [
    ((8, 16, 16), 0.5, "spline"),
    ((5, 16, 12), 0.5, "gaussian"),
    ((7, 12, 16), 0.75, "spline"),
    ((7, 16, 16), 0.0, "constant"),
    ((20, 16, 16), 0.5, "spline"),
])
def test_3d_global_grid_streaming_equals_in_memory(tmp_path: Path, patch: tuple, overlap: float,
                                                   window: str) -> None:
    source, out = ZSliced(VOLUME), memmap_out(tmp_path, VOLUME.shape)
    predict_patches3d_streaming(net3d, source, out, patch, overlap, window, batch_size=7)
    expected = sliding_window_predict(net3d, VOLUME[None], patch, overlap, window)[0].numpy()
    np.testing.assert_allclose(np.asarray(out), expected, atol=TOLERANCE, rtol=0)
    assert max(b - a for a, b in source.reads) <= patch[0]


@pytest.mark.parametrize("shape", [(5, 40, 44), (20, 10, 44)])
def test_3d_streaming_pads_small_axes_like_in_memory(tmp_path: Path, shape: tuple) -> None:
    vol = VOLUME[: shape[0], : shape[1], : shape[2]].copy()
    out = memmap_out(tmp_path, shape)
    predict_patches3d_streaming(net3d, vol, out, (8, 16, 16), 0.5)
    expected = sliding_window_predict(net3d, vol[None], (8, 16, 16), 0.5)[0].numpy()
    np.testing.assert_allclose(np.asarray(out), expected, atol=TOLERANCE, rtol=0)


def test_read_only_memmap_source_without_warnings(tmp_path: Path) -> None:
    VOLUME.tofile(tmp_path / "in.f32")
    source = np.memmap(tmp_path / "in.f32", dtype=np.float32, mode="r", shape=VOLUME.shape)
    out = memmap_out(tmp_path, VOLUME.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_patches3d_streaming(net3d, source, out, (8, 16, 16), 0.5)
        predict_slices_streaming(net2d, source, out, chunk_depth=7, halo=1, patch_size=(16, 16),
                                 z_filter_size=3)
    expected = reconstruct(net2d, VOLUME, "overlap_blend", (16, 16), 2).probabilities.numpy()
    np.testing.assert_allclose(np.asarray(out), median_z_filter(expected, 3), atol=TOLERANCE, rtol=0)


def test_3d_streaming_then_streamed_zfilter_equals_in_memory(tmp_path: Path) -> None:
    probs = np.zeros(VOLUME.shape, dtype=np.float32)
    predict_patches3d_streaming(net3d, VOLUME, probs, (8, 16, 16), 0.5)
    out = memmap_out(tmp_path, VOLUME.shape)
    stream_z_chunks(lambda slab: median_z_filter(slab, 5), probs, out, 7, 2, z_radius=2)
    expected = sliding_window_predict(net3d, VOLUME[None], (8, 16, 16), 0.5)[0].numpy()
    np.testing.assert_allclose(np.asarray(out), median_z_filter(expected, 5), atol=TOLERANCE, rtol=0)


def test_bad_arguments_raise_input_error() -> None:
    out = np.zeros(VOLUME.shape, dtype=np.float32)
    identity = lambda slab: slab  # noqa: E731
    with pytest.raises(InputError, match="source"):
        stream_z_chunks(identity, VOLUME[0], out[0], 3, 0)
    with pytest.raises(InputError, match="'out'"):
        stream_z_chunks(identity, VOLUME, out[:5], 3, 0)
    with pytest.raises(InputError, match="chunk_depth"):
        stream_z_chunks(identity, VOLUME, out, 0, 0)
    with pytest.raises(InputError, match="halo"):
        stream_z_chunks(identity, VOLUME, out, 3, 1, z_radius=2)
    with pytest.raises(InputError, match="process_slab"):
        stream_z_chunks(lambda slab: slab[1:], VOLUME, out, 3, 1)
    with pytest.raises(InputError, match="z_filter_size"):
        predict_slices_streaming(net2d, VOLUME, out, chunk_depth=3, halo=2,
                                 patch_size=(16, 16), z_filter_size=4)
    with pytest.raises(InputError, match="patch_size"):
        predict_patches3d_streaming(net3d, VOLUME, out, (16, 16))
    with pytest.raises(InputError, match="one output channel"):
        predict_patches3d_streaming(lambda b: torch.cat([b, b], 1), VOLUME, out, (8, 16, 16))


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.mark.slow
@torch.no_grad()
def test_convolutional_networks_stream_within_the_stated_tolerance(tmp_path: Path) -> None:
    """The figures the module docstring quotes (run with -s to see them): paper 002's U-Nets
    (random weights) meet tiles in batches of other sizes, and convolutions round by batch."""
    torch.manual_seed(0)
    volume = np.random.default_rng(1).random((24, 64, 64)).astype(np.float32)
    net2 = UNetPaper002(2, 1, 1, filters=[4, 8, 8, 16, 16]).eval()
    net3 = UNetPaper002(3, 1, 1, filters=[4, 8, 8, 16]).eval()
    predict2, predict3 = (lambda b: torch.sigmoid(net2(b))), (lambda b: torch.sigmoid(net3(b)))
    out = memmap_out(tmp_path, volume.shape)
    in_memory = reconstruct(predict2, volume, "overlap_blend", (32, 32), 2, tta=True)
    slicewise = 0.0
    for chunk_depth, halo, k in [(3, 2, 5), (7, 2, 5), (5, 0, 1)]:
        predict_slices_streaming(predict2, volume, out, chunk_depth=chunk_depth, halo=halo,
                                 patch_size=(32, 32), tta=True, z_filter_size=k)
        expected = median_z_filter(in_memory.probabilities.numpy(), k)
        slicewise = max(slicewise, max_difference(out, expected))
    volumetric = 0.0
    for patch, overlap, window, batch_size in [((8, 32, 32), 0.5, "spline", 8),
                                               ((8, 32, 32), 0.5, "spline", 3),
                                               ((16, 32, 32), 0.75, "gaussian", 5)]:
        predict_patches3d_streaming(predict3, volume, out, patch, overlap, window, batch_size)
        expected = sliding_window_predict(predict3, volume[None], patch, overlap, window,
                                          batch_size)[0].numpy()
        volumetric = max(volumetric, max_difference(out, expected))
    print(f"max |streamed - in-memory|: 2D {slicewise:.2g}, 3D {volumetric:.2g}")
    assert slicewise <= TOLERANCE and volumetric <= TOLERANCE
