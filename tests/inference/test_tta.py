"""Tests for mitoseg.inference.tta: 8 / 16 distinct, exactly invertible, closed transforms."""

from __future__ import annotations

import itertools

import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.inference.tta import (
    Transform,
    batch_tta_by_default,
    predict_with_tta,
    tta_transforms,
)

GEN = torch.Generator().manual_seed(0)
SQUARE = {2: torch.randn(1, 1, 6, 6, generator=GEN), 3: torch.randn(1, 1, 4, 6, 6, generator=GEN)}
NON_SQUARE = {2: torch.randn(2, 1, 5, 7, generator=GEN),
              3: torch.randn(2, 1, 3, 5, 7, generator=GEN)}


def n_distinct(tensors: list[torch.Tensor]) -> int:
    distinct: list[torch.Tensor] = []
    for t in tensors:
        if not any(t.shape == d.shape and torch.equal(t, d) for d in distinct):
            distinct.append(t)
    return len(distinct)


def index_of(y: torch.Tensor, candidates: list[torch.Tensor]) -> list[int]:
    return [i for i, c in enumerate(candidates) if c.shape == y.shape and torch.equal(c, y)]


@pytest.mark.parametrize("dims, count", [(2, 8), (3, 16)])
def test_transforms_are_pairwise_distinct(dims: int, count: int) -> None:
    transforms = tta_transforms(dims)
    assert len(transforms) == count
    assert n_distinct([t.forward(SQUARE[dims]) for t in transforms]) == count
    assert transforms[0].forward(SQUARE[dims]).equal(SQUARE[dims])  # identity first


def test_naive_flip_xyz_recipe_gives_only_12_orientations() -> None:
    """The trap the 3D set avoids: 4 rotations x {none, flip X, flip Y, flip Z}."""
    x = SQUARE[3]
    naive = [torch.rot90(f(x), k, dims=(-2, -1)) for k in range(4)
             for f in (lambda v: v, lambda v: v.flip(-1), lambda v: v.flip(-2),
                       lambda v: v.flip(-3))]
    assert len(naive) == 16 and n_distinct(naive) == 12


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("inputs", [SQUARE, NON_SQUARE])
def test_inverse_restores_input_exactly(dims: int, inputs: dict) -> None:
    x = inputs[dims]
    for t in tta_transforms(dims):
        y = t.forward(x)
        if t.quarter_turns % 2:
            assert y.shape[-2:] == x.shape[-1:-3:-1]  # H and W swap
        assert torch.equal(t.inverse(y), x)
        assert torch.equal(t.forward(t.inverse(x)), x)


@pytest.mark.parametrize("dims, order", [(2, 8), (3, 16)])
def test_set_is_a_group_closed_under_composition(dims: int, order: int) -> None:
    """2D: the dihedral group of order 8; 3D: that group x {identity, Z flip}, order 16."""
    x = SQUARE[dims]
    transforms = tta_transforms(dims)
    images = [t.forward(x) for t in transforms]
    for a, b in itertools.product(transforms, repeat=2):
        assert len(index_of(a.forward(b.forward(x)), images)) == 1
    for a in transforms:  # every element's inverse is in the set
        assert any(torch.equal(b.forward(a.forward(x)), x) for b in transforms)
    if dims == 2:  # dihedral: a quarter turn r has order 4, a flip s has order 2, s r s = r^-1
        r, s = Transform(1, False), Transform(0, True)
        assert torch.equal(r.forward(r.forward(r.forward(r.forward(x)))), x)
        assert not torch.equal(r.forward(r.forward(x)), x)
        assert torch.equal(s.forward(s.forward(x)), x)
        assert torch.equal(s.forward(r.forward(s.forward(x))), Transform(3, False).forward(x))
    assert len(transforms) == order


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("reduce", ["mean", "median"])
def test_equivariant_predict_gives_the_plain_prediction(dims: int, reduce: str) -> None:
    x = NON_SQUARE[dims]
    torch.testing.assert_close(predict_with_tta(torch.sigmoid, x, dims, reduce),
                               torch.sigmoid(x), atol=1e-6, rtol=0)


def test_equivariant_non_pointwise_predict_too() -> None:
    """A symmetric 3x3 blur with zero padding commutes with every dihedral transform."""
    kernel = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]])[None, None] / 16

    def blur(b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(b, kernel, padding=1)

    x = NON_SQUARE[2]
    torch.testing.assert_close(predict_with_tta(blur, x, 2), blur(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_non_equivariant_predict_is_changed_and_copes_with_swapped_shapes(dims: int) -> None:
    seen: set[tuple] = set()

    def predict(b: torch.Tensor) -> torch.Tensor:
        seen.add(tuple(b.shape[-2:]))
        ramp = torch.linspace(0, 3, b.shape[-1])
        return torch.sigmoid(b + ramp)

    x = NON_SQUARE[dims]
    out = predict_with_tta(predict, x, dims)
    assert out.shape == x.shape
    assert seen == {(5, 7), (7, 5)}
    assert (out - predict(x)).abs().max() > 1e-2
    transforms = tta_transforms(dims)
    by_hand = sum(t.inverse(predict(t.forward(x))) for t in transforms) / len(transforms)
    torch.testing.assert_close(out, by_hand, atol=1e-6, rtol=0)


def test_bad_arguments_raise_input_error() -> None:
    with pytest.raises(InputError, match="spatial_dims"):
        tta_transforms(1)
    with pytest.raises(InputError, match="reduce"):
        predict_with_tta(torch.sigmoid, SQUARE[2], 2, reduce="max")
    with pytest.raises(InputError, match="'x'"):
        predict_with_tta(torch.sigmoid, torch.zeros(4, 4, 4), 3)


@pytest.mark.parametrize("device, batched", [(None, False), ("cpu", False),
                                             (torch.device("cpu"), False), ("cuda", True),
                                             ("cuda:1", True), (torch.device("mps"), True)])
def test_tta_copies_share_a_call_by_default_on_accelerators_only(device, batched: bool) -> None:
    assert batch_tta_by_default(device) is batched
