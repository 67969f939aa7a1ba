"""The one padding helper (mitoseg.inference.padding): centred padding for the networks,
far-end padding for inference, both by reflection; what happens on axes too short to mirror."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.inference.padding import crop_to, pad_spatial, pad_to_multiple


@pytest.mark.parametrize("height, width", [(200, 200), (37, 53), (2, 3), (1, 9), (8, 8), (13, 7)])
@pytest.mark.parametrize("multiple", [2, 8, 16])
def test_pad_to_multiple_and_crop_to_round_trip(height, width, multiple):
    x = torch.randn(2, 3, height, width)
    padded, size = pad_to_multiple(x, multiple)
    assert size == (height, width)
    assert padded.shape[:2] == x.shape[:2]
    for have, want in zip(padded.shape[2:], size):
        assert have % multiple == 0 and want <= have < want + multiple  # the smallest multiple
    assert torch.equal(crop_to(padded, size), x)
    if (height, width) == (37, 53) and multiple == 8:
        # Centred reflection: one extra row/column on top/left, two on bottom/right.
        assert padded.shape[2:] == (40, 56)
        assert torch.equal(padded[..., 0, 1:-2], x[..., 1, :])


def test_pad_to_multiple_leaves_a_fitting_input_alone():
    x = torch.randn(1, 1, 16, 24)
    padded, size = pad_to_multiple(x, 8)
    assert padded is x and size == (16, 24)


def centred(size: int, want: int) -> tuple[int, int]:
    return (want - size) // 2, want - size - (want - size) // 2


@pytest.mark.parametrize("shape, target", [((2, 1, 37, 53), (40, 56)),
                                           ((1, 2, 9, 5, 7), (16, 8, 8)), ((1, 1, 6, 6), (6, 6))])
def test_centred_padding_is_numpy_reflect_split_smaller_half_first(shape, target) -> None:
    x = torch.randn(shape)
    widths = [(0, 0), (0, 0)] + [centred(n, t) for n, t in zip(shape[2:], target)]
    expected = np.pad(x.numpy(), widths, mode="reflect")
    np.testing.assert_array_equal(pad_spatial(x, target).numpy(), expected)


def test_networks_replicate_every_axis_when_one_is_too_short_to_mirror() -> None:
    # 5 -> 16 pads 6 after, more than a 5-pixel axis can mirror: every axis (the 30-pixel one
    # too) is padded by replicating its edge, as the networks always did.
    x = torch.randn(1, 1, 5, 30)
    target = (16, 32)
    widths = [(0, 0), (0, 0), centred(5, 16), centred(30, 32)]
    expected = np.pad(x.numpy(), widths, mode="edge")
    np.testing.assert_array_equal(pad_spatial(x, target).numpy(), expected)


@pytest.mark.parametrize("n, want", [(5, 16), (1, 4), (2, 9), (7, 7), (3, 12)])
@pytest.mark.parametrize("is_centred", [True, False])
def test_repeat_is_numpy_reflect_past_one_reflection(n: int, want: int, is_centred: bool) -> None:
    x = torch.arange(n, dtype=torch.float32)[None]
    widths = centred(n, want) if is_centred else (0, want - n)
    expected = np.pad(np.arange(n), widths, mode="reflect" if n > 1 else "edge")
    got = pad_spatial(x, (want,), centred=is_centred, short="repeat")
    np.testing.assert_array_equal(got[0].numpy(), expected)


def test_unknown_short_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="short must be one of"):
        pad_spatial(torch.zeros(1, 1, 4, 4), (8, 8), short="zeros")
