"""Elastic deformation and blur on anisotropic voxels (Kasthuri++: 30 x 3 x 3 nm): their
lengths are physical, so along an axis whose voxels are s times larger they are s times fewer
voxels; isotropic data is transformed exactly as before."""

from __future__ import annotations

import pytest
import torch

from mitoseg.data.em_augment import (
    EMCompose,
    RandomElastic,
    RandomFlip,
    RandomGaussianBlur,
    in_voxel_units,
    relative_spacing,
)
from mitoseg.errors import InputError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramps(spatial: tuple[int, ...], batch: int) -> torch.Tensor:
    """One channel per axis holding that axis' coordinate: sampled bilinearly at a displaced
    point, each returns its coordinate plus the displacement along it."""
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in spatial], indexing="ij")
    return torch.stack(axes)[None].repeat(batch, 1, *[1] * len(spatial))


def test_elastic_moves_anisotropic_voxels_by_the_same_physical_amount() -> None:
    spatial = (24, 96, 96)
    coordinates = ramps(spatial, 4)
    mask = torch.zeros(4, 1, *spatial)
    inner = (slice(None), slice(None), slice(3, 21), slice(12, 84), slice(12, 84))
    rms = {}
    for spacing in (None, (10.0, 1.0, 1.0)):
        elastic = RandomElastic(alpha=2.0, sigma=16.0, p=1.0, spacing=spacing)
        out, _ = elastic(coordinates, mask, gen(3))
        shift = (out - coordinates)[inner]
        rms[spacing] = shift.square().mean(dim=(0, 2, 3, 4)).sqrt()
    # isotropic: about 2 voxels along every axis; (10, 1, 1): 2 pixels in y, x and 0.2 slices
    assert ((rms[None] > 1.4) & (rms[None] < 2.6)).all(), rms[None]
    z, y, x = rms[(10.0, 1.0, 1.0)].tolist()
    assert 1.4 < y < 2.6 and 1.4 < x < 2.6 and 0.14 < z < 0.26, (z, y, x)


def test_elastic_smoothness_along_z_is_physical_too() -> None:
    """The field's correlation one slice apart (30 nm) equals its correlation ten pixels apart
    in y (30 nm); without spacing it would equal the correlation one pixel apart."""
    field = RandomElastic(alpha=2.0, sigma=16.0, spacing=(10.0, 1.0, 1.0)).displacement(
        torch.full((8,), 2.0), (24, 96, 96), gen(7))[:, 1]  # the y displacement

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.square().sum() * b.square().sum()).sqrt())

    along_z = correlation(field[:, :-1], field[:, 1:])
    along_y_10 = correlation(field[:, :, :-10], field[:, :, 10:])
    along_y_1 = correlation(field[:, :, :-1], field[:, :, 1:])
    assert abs(along_z - along_y_10) < 0.1 and along_y_1 - along_z > 0.1, (
        along_z, along_y_10, along_y_1)


@pytest.mark.parametrize("spatial", [(32, 32), (8, 24, 24)])
def test_unit_spacing_is_exactly_the_isotropic_transform(spatial) -> None:
    image = torch.rand(3, 1, *spatial, generator=gen(1))
    mask = (image > 0.5).float()
    for isotropic, unit in (
            (RandomElastic(2.0, 6.0, p=1.0), RandomElastic(2.0, 6.0, 1.0, (1.0,) * len(spatial))),
            (RandomGaussianBlur(p=1.0), RandomGaussianBlur(p=1.0, spacing=(1.0,) * len(spatial)))):
        expected, got = isotropic(image, mask, gen(2)), unit(image, mask, gen(2))
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_blur_std_along_z_is_divided_by_the_spacing() -> None:
    delta = torch.zeros(1, 1, 21, 41, 41)
    delta[0, 0, 10, 20, 20] = 1.0
    blurred, _ = RandomGaussianBlur(sigma=2.0, p=1.0, spacing=(2.0, 1.0, 1.0))(
        delta, torch.zeros_like(delta), gen(0))
    plane = blurred[0, 0].double()
    offsets = [torch.arange(n, dtype=torch.float64) - n // 2 for n in plane.shape]
    variances = [float((plane.sum(dim=tuple(a for a in range(3) if a != axis)) * o ** 2).sum())
                 for axis, o in enumerate(offsets)]
    assert variances == pytest.approx([1.0, 4.0, 4.0], rel=0.05)


def test_in_voxel_units_sets_spacing_from_the_data_sets_voxel_size() -> None:
    augmentation = EMCompose([RandomFlip(), RandomElastic(), RandomGaussianBlur(),
                              RandomElastic(spacing=(5.0, 1.0, 1.0))])
    assert in_voxel_units(augmentation, (5.0, 5.0, 5.0)) is augmentation  # isotropic
    assert in_voxel_units(augmentation, (3.0, 3.0)) is augmentation  # a 2D patch's (y, x)
    converted = in_voxel_units(augmentation, (30.0, 3.0, 3.0)).transforms
    assert isinstance(converted[0], RandomFlip)
    assert converted[1].spacing == converted[2].spacing == (10.0, 1.0, 1.0)
    assert converted[3].spacing == (5.0, 1.0, 1.0)  # given in the config: kept
    assert augmentation.transforms[1].spacing is None  # the configured object is not changed
    assert relative_spacing((40, 4, 5)) == (10.0, 1.0, 1.25)


def test_bad_spacing_stops_with_a_clear_message() -> None:
    with pytest.raises(InputError, match="relative to the finest"):
        RandomElastic(spacing=(0.5, 1.0, 1.0))
    with pytest.raises(InputError, match="spacing .* 3 values for a 2D batch"):
        RandomElastic(p=1.0, spacing=(10.0, 1.0, 1.0))(
            torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), gen())
