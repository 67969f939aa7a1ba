"""Tests for mitoseg.inference.windows: shape properties and paper 002's spline formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.inference.windows import WINDOW_KINDS, spline_1d, window, window_1d

SIZES = [1, 2, 3, 8, 9, 37, 256]


@pytest.mark.parametrize("kind", ["spline", "gaussian"])
@pytest.mark.parametrize("size", SIZES)
def test_1d_window_symmetric_positive_peaked_monotone(kind: str, size: int) -> None:
    w = window((size,), kind).numpy()
    assert w.dtype == np.float32 and w.shape == (size,)
    np.testing.assert_array_equal(w, w[::-1])
    assert w.max() == 1.0 and w[(size - 1) // 2] == 1.0 and w[size // 2] == 1.0
    assert (w > 0).all()
    half = w[: (size + 1) // 2]
    assert (np.diff(half) >= 0).all()


def test_spline_matches_the_two_quadratic_pieces_by_hand() -> None:
    # size 9: triangle at pixel centres t = (2i + 1) / 9 -> 1/9, 3/9, 5/9, 7/9, 1
    expected = [2 / 81, 2 * 9 / 81, 1 - 2 * 16 / 81, 1 - 2 * 4 / 81, 1.0]
    np.testing.assert_allclose(spline_1d(9)[:5], expected, rtol=1e-12)
    np.testing.assert_allclose(window((9,), "spline").numpy()[:5], expected, rtol=1e-6)


def test_spline_is_c1_at_the_junction_and_strictly_rising_above_the_floor() -> None:
    w = window_1d(256, "spline", floor=1e-12)
    assert (np.diff(w[:128]) > 0).all()
    slopes = np.diff(w[:128]) * 256 / 2  # dw/dt with t step 2/256
    assert np.abs(np.diff(slopes)).max() < 0.05  # no kink anywhere, including t = 1/2
    kinked = np.minimum(2 * np.linspace(0, 1, 128), 1.0)  # slope 2 then 0 at t = 1/2
    assert np.abs(np.diff(np.diff(kinked) * 127)).max() > 0.5  # the check does see kinks


def test_gaussian_uses_sigma_one_eighth_of_the_size() -> None:
    size = 64
    offsets = np.arange(size) - (size - 1) / 2
    expected = np.exp(-0.5 * (offsets / 8.0) ** 2)
    expected /= expected.max()
    np.testing.assert_allclose(window((size,), "gaussian").numpy(), expected, rtol=1e-6)
    wide = window((size,), "gaussian", sigma_scale=0.25).numpy()
    assert wide[0] > window((size,), "gaussian").numpy()[0]


@pytest.mark.parametrize("shape", [(16, 16), (9, 14), (5, 8, 10)])
@pytest.mark.parametrize("kind", WINDOW_KINDS)
def test_nd_window_is_separable_symmetric_and_positive(shape: tuple, kind: str) -> None:
    w = window(shape, kind)
    assert w.shape == torch.Size(shape) and w.dtype == torch.float32
    outer = np.ones(())
    for size in shape:
        outer = np.multiply.outer(outer, window((size,), kind).numpy().astype(np.float64))
    np.testing.assert_allclose(w.numpy(), outer, rtol=1e-6)
    for axis in range(len(shape)):
        assert torch.equal(w, w.flip(axis))
    assert float(w.max()) == 1.0 and float(w.min()) > 0
    centre = tuple((s - 1) // 2 for s in shape)
    assert float(w[centre]) == 1.0


def test_constant_window_is_all_ones() -> None:
    assert torch.equal(window((4, 5, 6), "constant"), torch.ones(4, 5, 6))


def test_floor_keeps_large_patch_borders_positive() -> None:
    w = window((512, 512, 512)[:2], "spline", floor=1e-4)
    assert float(w[0, 0]) == pytest.approx(1e-8, rel=1e-3)


@pytest.mark.parametrize("args, match", [
    (((8, 8), "hann"), "kind"),
    (((0, 8), "spline"), "size"),
    (((), "spline"), "shape"),
])
def test_bad_arguments_raise_input_error(args: tuple, match: str) -> None:
    with pytest.raises(InputError, match=match):
        window(*args)
    with pytest.raises(InputError, match="floor"):
        window((8,), "spline", floor=0.0)
