"""Tests for mitoseg.inference.zfilter: a median along Z only, checked against np.median loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mitoseg.errors import InputError
from mitoseg.inference.zfilter import median_z_filter


def border_index(i: int, depth: int, mode: str) -> int:
    """scipy.ndimage border modes for one out-of-range index (offsets smaller than depth)."""
    if 0 <= i < depth:
        return i
    if mode == "nearest":
        return min(max(i, 0), depth - 1)
    if mode == "reflect":  # d c b a | a b c d | d c b a
        return -i - 1 if i < 0 else 2 * depth - i - 1
    return -i if i < 0 else 2 * (depth - 1) - i  # mirror: d c b | a b c d | c b a


def brute_force(volume: np.ndarray, size: int, mode: str) -> np.ndarray:
    depth, r = volume.shape[0], size // 2
    out = np.empty_like(volume)
    for z in range(depth):
        rows = [border_index(z + o, depth, mode) for o in range(-r, r + 1)]
        for y in range(volume.shape[1]):
            for x in range(volume.shape[2]):
                out[z, y, x] = np.median(volume[rows, y, x])
    return out


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("mode", ["reflect", "nearest", "mirror"])
def test_matches_per_pixel_median_over_z_windows(size: int, mode: str) -> None:
    vol = np.random.default_rng(0).random((7, 4, 5)).astype(np.float32)
    got = median_z_filter(vol, size, mode)
    assert got.dtype == np.float32 and got.shape == vol.shape
    np.testing.assert_array_equal(got, brute_force(vol, size, mode))


def test_default_border_mode_is_reflect() -> None:
    vol = np.random.default_rng(1).random((6, 3, 3))
    np.testing.assert_array_equal(median_z_filter(vol), brute_force(vol, 5, "reflect"))
    assert not np.array_equal(median_z_filter(vol), brute_force(vol, 5, "nearest"))


def test_size_one_is_identity() -> None:
    vol = np.random.default_rng(2).random((4, 5, 6))
    np.testing.assert_array_equal(median_z_filter(vol, 1), vol)


def test_single_slice_blob_removed_thin_inplane_line_kept() -> None:
    mask = np.zeros((9, 12, 12), dtype=bool)
    mask[4, 3:6, 3:6] = True  # present in one slice only: spurious
    mask[:, 8, 1:11] = True  # 1-pixel-thin line in y, present in every slice: real
    got = median_z_filter(mask, 5)
    assert got.dtype == bool
    assert not got[:, 3:6, 3:6].any()
    np.testing.assert_array_equal(got[:, 8, 1:11], True)
    assert got.sum() == 9 * 10
    # a 2D median in (z, y) planes (the trap) erases the thin line: the test can tell them apart
    zy_median = ndimage.median_filter(mask.astype(np.uint8), size=(5, 5, 1))
    assert not zy_median[:, 8, 1:11].any()


def test_probabilities_as_torch_tensor_round_trip() -> None:
    vol = torch.rand(5, 3, 4, generator=torch.Generator().manual_seed(3))
    got = median_z_filter(vol, 3)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), brute_force(vol.numpy(), 3, "reflect"))


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 4}, "size"), ({"size": 0}, "size"), ({"size": 2.0}, "size"),
    ({"mode": "constant"}, "mode"),
])
def test_bad_arguments_raise_input_error(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        median_z_filter(np.zeros((5, 2, 2)), **kwargs)
