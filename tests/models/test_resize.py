"""``linear_resize`` is ``F.interpolate``'s bilinear / trilinear resize, computed so that its
gradient is deterministic on a GPU: the same values and gradients (to float rounding), and the
networks that resize in their forward give the outputs they gave with ``F.interpolate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mitoseg.models.resize import linear_resize
from mitoseg.models.table import CONF_MODEL
from tests.models.float64_outputs import differences, signature, training_outputs

CASES = [((2, 3, 8, 8), (16, 16)), ((2, 3, 37, 53), (80, 11)), ((1, 1, 8, 8), (256, 256)),
         ((1, 1, 1, 5), (4, 5)), ((1, 2, 5, 6, 7), (10, 12, 14)), ((1, 1, 3, 3, 3), (7, 2, 9)),
         ((2, 1, 9), (4,))]
MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def interpolate(x: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode=MODE[x.dim() - 2], align_corners=align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("shape", "size"), CASES)
def test_values_and_gradients_equal_interpolate(shape, size, align_corners: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
    expected = interpolate(x, size, align_corners)
    got = linear_resize(x, size, align_corners)
    assert got.shape == expected.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    upstream = torch.randn(expected.shape, dtype=torch.float64, generator=generator)
    (want,) = torch.autograd.grad(expected, x, upstream)
    (have,) = torch.autograd.grad(got, x, upstream)
    torch.testing.assert_close(have, want, rtol=0, atol=1e-12)


def test_float32_and_bfloat16_keep_their_dtype_and_values() -> None:
    x = torch.randn(2, 4, 17, 9, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(linear_resize(x, (34, 31)), interpolate(x, (34, 31)),
                               rtol=0, atol=1e-5)
    half = x.bfloat16()
    got = linear_resize(half, (34, 31))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), interpolate(half.float(), (34, 31)), rtol=0,
                               atol=0.05)


def test_same_size_is_the_input_and_a_wrong_size_is_refused() -> None:
    x = torch.randn(1, 1, 5, 5)
    assert linear_resize(x, (5, 5)) is x
    with pytest.raises(ValueError, match="does not match the 2 spatial axes"):
        linear_resize(x, (5, 5, 5))


# The networks that resize in their forward (attention gates, FCN-32s' and OztelCNN's upsampled
# scores, nnU-Net's deep-supervision heads), and their outputs recorded with F.interpolate (the
# code of commit a519b74) in training mode with dropout off, deep-supervision outputs included,
# in float64 (``float64_outputs.training_outputs``; float32 outputs differ between CPUs).
RECORDED = Path(__file__).with_name("interpolate_outputs.json")


@pytest.mark.parametrize("name", sorted(json.loads(RECORDED.read_text())))
def test_networks_give_the_outputs_they_gave_with_interpolate(name: str) -> None:
    expected = json.loads(RECORDED.read_text())[name]
    outputs = training_outputs(name, CONF_MODEL)
    assert len(outputs) == len(expected)
    for out, recorded in zip(outputs, expected):
        assert not differences(signature(out), recorded), differences(signature(out), recorded)
