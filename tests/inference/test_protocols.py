"""Tests for mitoseg.inference.protocols: shapes, equivalences and what each protocol does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.inference.protocols import PROTOCOLS, reconstruct
from mitoseg.inference.sliding import sliding_window_predict

CASES = [  # (spatial_dims, volume shape, patch size)
    (2, (3, 37, 53), (16, 16)),
    (3, (9, 20, 23), (8, 8, 8)),
]


def volume(shape: tuple, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def patch_mean(batch: torch.Tensor) -> torch.Tensor:
    """Every output pixel is its patch's mean: reveals which pixels were predicted together."""
    return batch.mean(dim=tuple(range(2, batch.ndim)), keepdim=True).expand_as(batch).clone()


def ramp_predict(batch: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(batch + torch.linspace(-1, 1, batch.shape[-1]))


@pytest.mark.parametrize("dims, shape, patch", CASES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("tta", [False, True])
def test_pointwise_predict_reproduced_by_every_protocol(dims: int, shape: tuple, patch: tuple,
                                                        protocol: str, tta: bool) -> None:
    vol = volume(shape)
    result = reconstruct(torch.sigmoid, vol, protocol, patch, dims, tta)
    assert result.probabilities.shape == shape
    torch.testing.assert_close(result.probabilities, torch.sigmoid(vol), atol=1e-6, rtol=0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_single_2d_image_keeps_its_shape(protocol: str) -> None:
    img = volume((37, 53)).numpy()
    result = reconstruct(ramp_predict, img, protocol, (16, 16), 2)
    assert result.probabilities.shape == (37, 53)
    expected = reconstruct(ramp_predict, img[None], protocol, (16, 16), 2).probabilities[0]
    torch.testing.assert_close(result.probabilities, expected)


def test_per_patch_predicts_each_tile_alone_and_returns_the_tiles() -> None:
    vol = volume((2, 40, 53))
    result = reconstruct(patch_mean, vol, "per_patch", (16, 16), 2)
    assert len(result.tiles) == 3 * 4
    covered = np.zeros((40, 53), dtype=int)
    for tile in result.tiles:
        covered[tile] += 1
        if all(s.stop - s.start == 16 for s in tile):  # full tiles: the mean of their input
            for z in range(2):
                values = result.probabilities[z][tile]
                torch.testing.assert_close(values, vol[z][tile].mean().expand_as(values))
    assert (covered == 1).all()


@pytest.mark.parametrize("dims, shape, patch", CASES)
def test_overlap_protocols_are_sliding_windows_with_their_windows(dims: int, shape: tuple,
                                                                   patch: tuple) -> None:
    vol = volume(shape, seed=1)
    per_input = [vol[z][None] for z in range(shape[0])] if dims == 2 else [vol[None]]

    def sliding(kind: str) -> torch.Tensor:
        outs = [sliding_window_predict(ramp_predict, x, patch, 0.5, kind)[0] for x in per_input]
        return torch.stack(outs) if dims == 2 else outs[0]

    plain = reconstruct(ramp_predict, vol, "overlap", patch, dims).probabilities
    blend = reconstruct(ramp_predict, vol, "overlap_blend", patch, dims).probabilities
    gauss = reconstruct(ramp_predict, vol, "overlap_blend", patch, dims, window="gaussian")
    torch.testing.assert_close(plain, sliding("constant"), atol=0, rtol=0)
    torch.testing.assert_close(blend, sliding("spline"), atol=0, rtol=0)
    torch.testing.assert_close(gauss.probabilities, sliding("gaussian"), atol=0, rtol=0)
    assert (plain - blend).abs().max() > 1e-3


def test_full_image_predicts_each_padded_slice_once() -> None:
    seen: list[tuple] = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return torch.sigmoid(batch)

    result = reconstruct(predict, volume((3, 37, 53)), "full_image", (16, 16), 2, divisor=16)
    assert seen == [(1, 1, 48, 64)] * 3
    assert result.tiles == [(slice(0, 37), slice(0, 53))]
    seen.clear()
    reconstruct(predict, volume((3, 37, 53)), "full_image", (16, 16), 2, tta=True)
    assert sorted(set(seen)) == [(1, 1, 48, 64), (1, 1, 64, 48)] and len(seen) == 3 * 8


def test_tta_changes_a_non_equivariant_prediction() -> None:
    vol = volume((2, 32, 32))
    plain = reconstruct(ramp_predict, vol, "overlap_blend", (16, 16), 2).probabilities
    tta = reconstruct(ramp_predict, vol, "overlap_blend", (16, 16), 2, tta=True).probabilities
    assert (plain - tta).abs().max() > 1e-2


def test_unknown_protocol_lists_the_valid_ones() -> None:
    with pytest.raises(InputError, match="protocol") as info:
        reconstruct(torch.sigmoid, volume((2, 16, 16)), "blend", (16, 16), 2)
    for name in PROTOCOLS:
        assert name in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"protocol": "overlap", "window": "spline"}, "window"),
    ({"patch_size": (8, 8, 8)}, "patch_size"),
    ({"spatial_dims": 4}, "spatial_dims"),
    ({"volume": torch.zeros(1, 2, 16, 16)}, "volume"),
    ({"volume": torch.zeros(0, 16, 16)}, "volume"),
    ({"predict": lambda b: torch.cat([b, b], 1)}, "one output channel"),
])
def test_bad_arguments_raise_input_error(kwargs: dict, match: str) -> None:
    args = {"predict": torch.sigmoid, "volume": volume((2, 16, 16)), "protocol": "overlap_blend",
            "patch_size": (16, 16), "spatial_dims": 2, **kwargs}
    with pytest.raises(InputError, match=match):
        reconstruct(**args)
