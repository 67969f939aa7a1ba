"""Tests for mitoseg.inference.sliding against a brute-force loop over the same tile grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.inference.sliding import (
    full_image,
    per_patch_tiles,
    reflect_pad_end,
    sliding_window_predict,
    tile_grid,
)
from mitoseg.inference.windows import WINDOW_KINDS, window

OVERLAPS = [0.0, 0.5, 0.75]


def tile_dependent_predict(batch: torch.Tensor) -> torch.Tensor:
    """Depends on where a pixel sits in its tile and on the tile's content, so any change in
    the tile grid or in the weighting changes the blended result."""
    spatial = batch.shape[2:]
    ramp = sum(torch.linspace(0, 1, n).reshape([-1 if i == a else 1 for i in range(len(spatial))])
               for a, n in enumerate(spatial))
    tile_mean = batch.mean(dim=tuple(range(1, batch.ndim)), keepdim=True)
    return torch.sigmoid(batch.sum(1, keepdim=True) * (1 + ramp) + 3 * tile_mean)


def ref_starts(n: int, p: int, overlap: float) -> list[int]:
    stride, starts, s = max(1, int(p * (1 - overlap))), [], 0
    while s + p < n:
        starts.append(s)
        s += stride
    return starts + [n - p]


def predict_one(tile: np.ndarray) -> np.ndarray:
    return tile_dependent_predict(torch.from_numpy(tile[None]).float())[0].double().numpy()


def brute_force_2d(vol: np.ndarray, patch: tuple, overlap: float, kind: str) -> np.ndarray:
    w = window(patch, kind).double().numpy()
    num, den = np.zeros((1, *vol.shape[1:])), np.zeros(vol.shape[1:])
    for y in ref_starts(vol.shape[1], patch[0], overlap):
        for x in ref_starts(vol.shape[2], patch[1], overlap):
            num[:, y:y + patch[0], x:x + patch[1]] += predict_one(
                vol[:, y:y + patch[0], x:x + patch[1]]) * w
            den[y:y + patch[0], x:x + patch[1]] += w
    return num / den


def brute_force_3d(vol: np.ndarray, patch: tuple, overlap: float, kind: str) -> np.ndarray:
    w = window(patch, kind).double().numpy()
    num, den = np.zeros((1, *vol.shape[1:])), np.zeros(vol.shape[1:])
    d, h, wd = patch
    for z in ref_starts(vol.shape[1], d, overlap):
        for y in ref_starts(vol.shape[2], h, overlap):
            for x in ref_starts(vol.shape[3], wd, overlap):
                num[:, z:z + d, y:y + h, x:x + wd] += predict_one(
                    vol[:, z:z + d, y:y + h, x:x + wd]) * w
                den[z:z + d, y:y + h, x:x + wd] += w
    return num / den


@pytest.mark.parametrize("overlap", OVERLAPS)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_matches_brute_force_2d_odd_sizes(overlap: float, kind: str) -> None:
    vol = np.random.default_rng(0).normal(size=(2, 37, 53)).astype(np.float32)
    got = sliding_window_predict(tile_dependent_predict, vol, (16, 20), overlap, kind,
                                 batch_size=5)
    np.testing.assert_allclose(got.numpy(), brute_force_2d(vol, (16, 20), overlap, kind),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("overlap", OVERLAPS)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_matches_brute_force_3d_odd_sizes(overlap: float, kind: str) -> None:
    vol = np.random.default_rng(1).normal(size=(1, 9, 20, 23)).astype(np.float32)
    got = sliding_window_predict(tile_dependent_predict, vol, (5, 8, 10), overlap, kind,
                                 batch_size=16)
    np.testing.assert_allclose(got.numpy(), brute_force_3d(vol, (5, 8, 10), overlap, kind),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("overlap", OVERLAPS)
@pytest.mark.parametrize("kind", WINDOW_KINDS)
@pytest.mark.parametrize("shape, patch", [((1, 37, 53), (16, 16)), ((1, 9, 20, 23), (4, 8, 8)),
                                          ((1, 5, 7), (16, 16)), ((1, 10, 40), (16, 16))])
def test_pointwise_predict_is_reproduced_exactly(overlap: float, kind: str, shape: tuple,
                                                 patch: tuple) -> None:
    """Normalized weights, borders and padded inputs included: a weighted mean of equal values."""
    vol = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    got = sliding_window_predict(torch.sigmoid, vol, patch, overlap, kind)
    assert got.shape == shape
    torch.testing.assert_close(got, torch.sigmoid(vol), atol=1e-6, rtol=0)


def test_small_inputs_are_reflect_padded_then_cropped() -> None:
    vol = np.random.default_rng(3).normal(size=(1, 5, 40)).astype(np.float32)
    padded = np.pad(vol, ((0, 0), (0, 11), (0, 0)), mode="reflect")
    expected = brute_force_2d(padded, (16, 16), 0.5, "spline")[:, :5]
    got = sliding_window_predict(tile_dependent_predict, vol, (16, 16), 0.5, "spline")
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n, want", [(5, 16), (1, 4), (2, 9), (7, 7), (3, 3)])
def test_reflect_pad_end_matches_numpy_even_past_one_reflection(n: int, want: int) -> None:
    x = torch.arange(n, dtype=torch.float32)[None]
    expected = np.pad(np.arange(n), (0, max(0, want - n)), mode="reflect")
    np.testing.assert_array_equal(reflect_pad_end(x, (want,))[0].numpy(), expected)


def test_tile_grid_regular_stride_and_last_tile_ends_at_border() -> None:
    tiles = tile_grid((37, 53), (16, 20), 0.5)
    ys = sorted({t[0].start for t in tiles})
    xs = sorted({t[1].start for t in tiles})
    assert ys == [0, 8, 16, 21] and xs == [0, 10, 20, 30, 33]
    assert all(t[0].stop <= 37 and t[1].stop <= 53 for t in tiles)
    assert tile_grid((37,), (16,), 0.0) == [(slice(0, 16),), (slice(16, 32),), (slice(21, 37),)]
    assert tile_grid((16,), (16,), 0.75) == [(slice(0, 16),)]
    assert len(tile_grid((20,), (4,), 0.9)) == 17  # stride floors to 1, never 0


def test_per_patch_tiles_cover_every_voxel_exactly_once() -> None:
    for shape, patch in [((37, 53), (16, 20)), ((9, 20, 23), (4, 8, 8)), ((32, 32), (16, 16))]:
        tiles = per_patch_tiles(shape, patch)
        count = np.zeros(shape, dtype=int)
        for t in tiles:
            count[t] += 1
            assert all(s.stop - s.start <= p for s, p in zip(t, patch))
        assert (count == 1).all()
    assert len(per_patch_tiles((37, 53), (16, 20))) == 3 * 3
    with pytest.raises(InputError, match="patch_size"):
        per_patch_tiles((37, 53), (16,))


def test_full_image_pads_to_divisor_and_crops_back() -> None:
    seen: list[tuple] = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return tile_dependent_predict(batch)

    vol = np.random.default_rng(4).normal(size=(1, 37, 53)).astype(np.float32)
    got = full_image(predict, vol, divisor=16)
    assert seen == [(1, 1, 48, 64)] and got.shape == (1, 37, 53)
    padded = np.pad(vol, ((0, 0), (0, 11), (0, 11)), mode="reflect")
    np.testing.assert_allclose(got.numpy(), predict_one(padded)[:, :37, :53], atol=1e-6)
    vol3 = torch.randn(1, 9, 20, 23)
    torch.testing.assert_close(full_image(torch.sigmoid, vol3, 8), torch.sigmoid(vol3))


def test_several_output_channels_are_blended_each() -> None:
    vol = torch.randn(1, 30, 30)
    got = sliding_window_predict(lambda b: torch.cat([b, -b], 1), vol, (16, 16), 0.5)
    torch.testing.assert_close(got, torch.cat([vol, -vol]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"overlap": 1.0}, "overlap"),
    ({"overlap": -0.1}, "overlap"),
    ({"patch_size": (16,)}, "patch_size"),
    ({"patch_size": (16, 0)}, "patch_size"),
    ({"volume": torch.zeros(30, 30)}, "volume"),
    ({"predict": lambda b: b[:, :, :8]}, "predict"),
    ({"window": "hann"}, "kind"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_raise_input_error(kwargs: dict, match: str) -> None:
    args = {"predict": torch.sigmoid, "volume": torch.zeros(1, 30, 30), "patch_size": (16, 16),
            **kwargs}
    with pytest.raises(InputError, match=match):
        sliding_window_predict(**args)


def test_full_image_bad_arguments() -> None:
    with pytest.raises(InputError, match="divisor"):
        full_image(torch.sigmoid, torch.zeros(1, 8, 8), divisor=0)
    with pytest.raises(InputError, match="predict"):
        full_image(lambda b: b[..., :4], torch.zeros(1, 8, 8), divisor=8)
