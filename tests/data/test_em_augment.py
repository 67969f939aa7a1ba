"""EM batch augmentation: exact flips/turns, rigid rotation, true shear, elastic, intensities."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mitoseg.data.em_augment import (
    EMCompose,
    RandomBrightness,
    RandomContrast,
    RandomElastic,
    RandomFlip,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomRot90,
    RandomRotation,
    RandomShear,
    in_range_units,
)
from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "augmentation"


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def blob(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> torch.Tensor:
    """A disk (ball in 3D) of the given radius, as a float {0, 1} array of ``shape``."""
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij")
    distance2 = sum((axis - c) ** 2 for axis, c in zip(axes, centre))
    return (distance2 <= radius ** 2).float()


def gaussian_dot(shape: tuple[int, int], centre: tuple[float, float], std: float = 1.5):
    y, x = torch.meshgrid(torch.arange(shape[0]).double(), torch.arange(shape[1]).double(),
                          indexing="ij")
    return torch.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * std ** 2))[None, None]


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """Intensity-weighted (row, column) centre of a (1, 1, H, W) image."""
    plane = image[0, 0].double()
    y, x = torch.meshgrid(torch.arange(plane.shape[0]).double(),
                          torch.arange(plane.shape[1]).double(), indexing="ij")
    return float((plane * y).sum() / plane.sum()), float((plane * x).sum() / plane.sum())


def batch(spatial: tuple[int, ...], size: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Smooth-ish random images with blob masks, (size, 1, *spatial)."""
    torch.manual_seed(seed)
    image = torch.rand(size, 1, *spatial)
    mask = torch.stack([blob(spatial, [n / 2 + i for n in spatial], min(spatial) / 4)
                        for i in range(size)])[:, None]
    return image, mask


GEOMETRIC = [
    RandomFlip(p=1.0), RandomRot90(p=1.0), RandomRotation(degrees=(20.0, 70.0), p=1.0),
    RandomShear(factor=(0.1, 0.3), p=1.0), RandomElastic(alpha=2.0, sigma=6.0, p=1.0),
]
INTENSITY = [
    RandomBrightness(0.2, p=1.0), RandomContrast((0.5, 1.5), p=1.0), RandomGamma((0.5, 2.0), p=1.0),
    RandomGaussianNoise(0.1, p=1.0), RandomGaussianBlur((0.5, 1.5), p=1.0),
]
ALL = GEOMETRIC + INTENSITY
SPATIAL = [(16, 16), (8, 12, 12)]


@pytest.mark.parametrize("transform", ALL, ids=repr)
@pytest.mark.parametrize("spatial", SPATIAL, ids=["2d", "3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes_are_kept_and_masks_stay_binary(transform, spatial, dtype) -> None:
    image, mask = batch(spatial)
    for mask_in in (mask, mask.bool()):
        out_image, out_mask = transform(image.to(dtype), mask_in, gen())
        assert out_image.shape == image.shape and out_image.dtype == dtype
        assert out_mask.shape == mask.shape and out_mask.dtype == mask_in.dtype
        assert torch.isin(out_mask.float(), torch.tensor([0.0, 1.0])).all()


@pytest.mark.parametrize("transform", GEOMETRIC, ids=repr)
@pytest.mark.parametrize("spatial", SPATIAL, ids=["2d", "3d"])
def test_geometric_transforms_move_image_and_mask_together(transform, spatial) -> None:
    _, mask = batch(spatial, size=4)
    out_image, out_mask = transform(mask.clone(), mask, gen(3))
    assert torch.equal((out_image > 0.5).float(), out_mask)
    assert not torch.equal(out_mask, mask)


def test_intensity_transforms_leave_the_mask_alone() -> None:
    image, mask = batch((16, 16))
    for intensity in INTENSITY:
        assert intensity(image, mask, gen())[1] is mask


def test_flips_are_exact_per_axis_and_per_sample() -> None:
    image, mask = batch((6, 8, 10), size=2)
    for axis in (-1, -2, -3):
        out_image, out_mask = RandomFlip(axes=[axis], p=1.0)(image, mask, gen())
        assert torch.equal(out_image, image.flip(axis)) and torch.equal(out_mask, mask.flip(axis))
    image, mask = batch((8, 8), size=32)
    out_image, _ = RandomFlip(axes=[-1], p=0.5)(image, mask, gen(1))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out_image, image)]
    kept = [torch.equal(o, i) for o, i in zip(out_image, image)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 27


def test_rot90_is_exact_draws_all_four_turns_and_guards_non_square_patches() -> None:
    image, mask = batch((4, 8, 8), size=24)
    out_image, out_mask = RandomRot90(p=1.0)(image, mask, gen(2))
    turns = []
    for i in range(len(image)):
        k = [k for k in range(4) if torch.equal(out_image[i], image[i].rot90(k, dims=(-2, -1)))]
        assert len(k) == 1 and torch.equal(out_mask[i], mask[i].rot90(k[0], dims=(-2, -1)))
        turns += k
    assert set(turns) == {0, 1, 2, 3}
    image, mask = batch((6, 10), size=16)
    with pytest.raises(InputError, match="not square"):
        RandomRot90()(image, mask, gen())
    out_image, _ = RandomRot90(non_square="half_turns")(image, mask, gen())
    half = [torch.equal(o, i.rot90(2, dims=(-2, -1))) for o, i in zip(out_image, image)]
    assert all(h or torch.equal(o, i) for h, o, i in zip(half, out_image, image)) and any(half)


def test_rotation_by_90_degrees_matches_rot90() -> None:
    image, mask = batch((9, 9))
    out_image, out_mask = RandomRotation(degrees=(90.0, 90.0), p=1.0)(image, mask, gen())
    assert torch.allclose(out_image, image.rot90(1, dims=(-2, -1)), atol=1e-5)
    assert torch.equal(out_mask, mask.rot90(1, dims=(-2, -1)))


def test_rotation_keeps_a_centred_disk_and_turns_an_off_centre_dot_about_the_centre() -> None:
    disk = blob((41, 41), (20, 20), 12)[None, None]
    _, turned = RandomRotation(degrees=(37.0, 37.0), p=1.0)(disk, disk, gen())
    assert (turned * disk).sum() / ((turned + disk) > 0).sum() > 0.95
    angle = math.radians(30.0)
    for shape in [(33, 33), (33, 49)]:  # non-square: the turn must stay rigid
        cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        for dy, dx in [(0.0, 10.0), (-8.0, 0.0)]:
            dot = gaussian_dot(shape, (cy + dy, cx + dx)).float()
            out, _ = RandomRotation(degrees=(30.0, 30.0), p=1.0)(dot, dot > 0.5, gen())
            # counter-clockwise as displayed, with rows growing downwards
            expect = (cy - dx * math.sin(angle) + dy * math.cos(angle),
                      cx + dx * math.cos(angle) + dy * math.sin(angle))
            assert centroid(out) == pytest.approx(expect, abs=0.15)


def test_rotation_of_a_3d_batch_turns_every_slice_alike() -> None:
    image, mask = batch((12, 12), size=2)
    volume = image[:, :, None].repeat(1, 1, 5, 1, 1)
    out2d, _ = RandomRotation(degrees=(25.0, 25.0), p=1.0)(image, mask, gen())
    out3d, _ = RandomRotation(degrees=(25.0, 25.0), p=1.0)(
        volume, mask[:, :, None].repeat(1, 1, 5, 1, 1), gen())
    assert torch.allclose(out3d, out2d[:, :, None].expand_as(out3d), atol=1e-5)


def test_shear_is_a_true_shear_not_a_rotation() -> None:
    shape, shear = (33, 33), 0.2
    for dy, dx in [(10.0, 0.0), (-10.0, 0.0), (0.0, 8.0)]:
        dot = gaussian_dot(shape, (16 + dy, 16 + dx)).float()
        out, _ = RandomShear(factor=(shear, shear), p=1.0)(dot, dot > 0.5, gen())
        # rows stay rows; each slides right by s * (row - centre); a turn would change the row
        assert centroid(out) == pytest.approx((16 + dy, 16 + dx + shear * dy), abs=0.15)
    square = torch.zeros(1, 1, 33, 33)
    square[..., 10:23, 10:23] = 1.0
    sheared, sheared_mask = RandomShear(factor=(0.3, 0.3), p=1.0)(square, square, gen())
    assert abs(float(sheared_mask.sum() - square.sum())) <= 0.03 * float(square.sum())  # det 1
    # each row keeps its content (only slid sideways), so no row sum changes
    assert torch.allclose(sheared.sum(dim=-1), square.sum(dim=-1), atol=1e-4)


@pytest.mark.parametrize("spatial", SPATIAL, ids=["2d", "3d"])
def test_elastic_with_alpha_zero_is_the_identity(spatial) -> None:
    image, mask = batch(spatial)
    out_image, out_mask = RandomElastic(alpha=0.0, sigma=4.0, p=1.0)(image, mask, gen())
    assert torch.allclose(out_image, image, atol=1e-5) and torch.equal(out_mask, mask)


def test_elastic_changes_the_image_and_keeps_mask_area() -> None:
    mask = blob((64, 64), (31.5, 31.5), 20)[None, None].repeat(8, 1, 1, 1)
    image = torch.rand(mask.shape, generator=gen(1))
    out_image, out_mask = RandomElastic(alpha=1.0, sigma=8.0, p=1.0)(image, mask, gen())
    assert (out_image - image).abs().mean() > 0.1 and not torch.equal(out_mask, mask)
    area, new_area = mask.sum(dim=(1, 2, 3)), out_mask.sum(dim=(1, 2, 3))
    # local squeezes and stretches (Jacobian std about 0.2 here) average out over the disk
    assert ((new_area - area).abs() / area).max() < 0.12
    assert abs(float(new_area.sum() / area.sum()) - 1.0) < 0.03


@pytest.mark.parametrize("spatial", [(64, 64), (12, 24, 48)], ids=["2d", "3d"])
def test_elastic_alpha_is_the_rms_displacement_per_axis(spatial) -> None:
    # coordinate ramps are linear, so bilinear sampling returns coordinate + displacement
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in spatial], indexing="ij")
    ramps = torch.stack(axes)[None].repeat(2, 1, *[1] * len(spatial))
    out, _ = RandomElastic(alpha=1.0, sigma=6.0, p=1.0)(ramps, torch.zeros(2, 1, *spatial), gen(5))
    inner = (slice(None), slice(None), *[slice(4, n - 4) for n in spatial])  # clear of mirrors
    shift = (out - ramps)[inner]
    assert 0.75 < float(shift.square().mean().sqrt()) < 1.15
    # each axis moves by about alpha pixels, whatever its length (a mixed-up axis would not)
    per_axis = shift.square().mean(dim=tuple(i for i in range(shift.ndim) if i != 1)).sqrt()
    assert ((per_axis > 0.5) & (per_axis < 1.5)).all()


def test_brightness_contrast_and_gamma_do_what_they_say() -> None:
    image, mask = batch((32, 32), size=2)
    shifted, _ = RandomBrightness((0.3, 0.3), p=1.0)(image, mask, gen())
    assert torch.allclose(shifted.mean(dim=(1, 2, 3)), image.mean(dim=(1, 2, 3)) + 0.3)
    scaled, _ = RandomContrast((0.5, 0.5), p=1.0)(image, mask, gen())
    assert torch.allclose(scaled.mean(dim=(1, 2, 3)), image.mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(scaled.std(dim=(1, 2, 3)), 0.5 * image.std(dim=(1, 2, 3)))
    same, _ = RandomGamma((1.0, 1.0), p=1.0)(image, mask, gen())
    assert torch.allclose(same, image, atol=1e-6)
    ramp = torch.tensor([0.2, 0.6, 1.0]).view(1, 1, 1, 3).repeat(1, 1, 3, 1)
    squared, _ = RandomGamma((2.0, 2.0), p=1.0)(ramp, ramp > 0.5, gen())
    assert torch.allclose(squared[0, 0, 0], torch.tensor([0.2, 0.4, 1.0]))


def test_noise_has_the_requested_std_and_blur_removes_high_frequencies() -> None:
    zeros, mask = torch.zeros(4, 1, 64, 64), torch.zeros(4, 1, 64, 64)
    noisy, _ = RandomGaussianNoise((0.1, 0.1), p=1.0)(zeros, mask, gen())
    assert noisy.std(dim=(1, 2, 3)).tolist() == pytest.approx([0.1] * 4, rel=0.05)
    assert abs(float(noisy.mean())) < 0.005
    image, mask = batch((32, 32), size=2)
    blurred, _ = RandomGaussianBlur((1.0, 1.0), p=1.0)(image, mask, gen())

    def high_frequency_energy(x: torch.Tensor) -> float:
        return float(x.diff(dim=-1).square().mean() + x.diff(dim=-2).square().mean())

    assert high_frequency_energy(blurred) < 0.2 * high_frequency_energy(image)
    assert torch.allclose(blurred.mean(), image.mean(), atol=0.01)
    sharp, _ = RandomGaussianBlur((0.0, 0.0), p=1.0)(image, mask, gen())
    assert torch.allclose(sharp, image)


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_probability_zero_is_the_identity(transform) -> None:
    image, mask = batch((12, 12))
    zero = type(transform)(**{**{k: v for k, v in vars(transform).items() if k != "p"}, "p": 0.0})
    out_image, out_mask = zero(image, mask, gen())
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


@pytest.mark.parametrize("transform", [t for t in ALL if not isinstance(t, RandomFlip)], ids=repr)
def test_parameters_are_drawn_per_sample(transform) -> None:
    image, mask = batch((16, 16), size=1)
    copies, masks = image.repeat(6, 1, 1, 1), mask.repeat(6, 1, 1, 1)
    out, _ = transform(copies, masks, gen(4))
    distinct = {tuple(np.round(sample.flatten().numpy(), 5)) for sample in out}
    assert len(distinct) >= (3 if isinstance(transform, RandomRot90) else 6)


def test_same_seed_same_batch_and_different_seed_different_batch() -> None:
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / "strong.yaml"))
    image, mask = batch((32, 32), size=4)
    first = augment(image, mask, gen(7))
    again = augment(image, mask, gen(7))
    other = augment(image, mask, gen(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("name, spatial", [("paper2d", (32, 32)), ("strong", (32, 32)),
                                           ("paper3d", (16, 16, 16)), ("strong", (8, 16, 16))])
def test_presets_load_and_run(name, spatial) -> None:
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / f"{name}.yaml"))
    assert isinstance(augment, EMCompose) and augment.transforms
    image, mask = batch(spatial, size=2)
    out_image, out_mask = augment(image, mask, gen())
    assert out_image.shape == image.shape and out_mask.shape == mask.shape
    assert torch.isin(out_mask, torch.tensor([0.0, 1.0])).all() and torch.isfinite(out_image).all()
    if name == "paper3d":
        assert any(isinstance(t, RandomElastic) for t in augment.transforms)


def test_compose_applies_in_order_and_empty_is_the_identity() -> None:
    image, mask = batch((8, 8))
    assert EMCompose([])(image, mask, gen()) == (image, mask)
    twice = EMCompose([RandomBrightness((0.2, 0.2), p=1.0)] * 2)
    assert torch.allclose(twice(image, mask, gen())[0], image + 0.4)
    contrast_first = EMCompose([RandomContrast((0.5, 0.5), p=1.0), RandomGamma((2.0, 2.0), p=1.0)])
    gamma_first = EMCompose([RandomGamma((2.0, 2.0), p=1.0), RandomContrast((0.5, 0.5), p=1.0)])
    assert not torch.allclose(contrast_first(image, mask, gen())[0],
                              gamma_first(image, mask, gen())[0])
    with pytest.raises(InputError, match="callable"):
        EMCompose([42])


def test_bad_input_stops_with_a_clear_message() -> None:
    image, mask = batch((8, 8))
    with pytest.raises(InputError, match="batch-tensor \\(EM\\)"):
        RandomFlip()(image.numpy(), mask.numpy(), gen())
    with pytest.raises(InputError, match="batch-tensor \\(EM\\)"):  # the fluorescence call style
        EMCompose([RandomRot90()])(mask[0, 0].numpy(), np.random.default_rng(0))
    with pytest.raises(InputError, match="mask must be"):
        RandomRotation()(image, mask[:, :, :4], gen())
    with pytest.raises(InputError, match="float tensor"):
        RandomBrightness()(image.to(torch.uint8), mask, gen())
    with pytest.raises(InputError, match="needs a 3D batch"):
        RandomFlip(axes=[-3])(image, mask, gen())
    for bad in [lambda: RandomFlip(p=1.5), lambda: RandomRotation(degrees=(10, -10)),
                lambda: RandomElastic(sigma=0.0), lambda: RandomFlip(axes=[0]),
                lambda: RandomGaussianNoise(std=-0.1), lambda: RandomRot90(non_square="crop")]:
        with pytest.raises(InputError):
            bad()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_gpu_reproducibly() -> None:
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / "strong.yaml"))
    image, mask = (t.cuda() for t in batch((64, 64), size=4))
    first = augment(image, mask, gen(1, "cuda"))
    again = augment(image, mask, gen(1, "cuda"))
    assert first[0].is_cuda and torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    with pytest.raises(InputError, match="generator on cpu"):
        augment(image, mask, gen(1))


def test_closed_form_2x2_inverse_matches_linalg() -> None:
    from mitoseg.data.em_augment_geometric import inverse_2x2

    matrices = torch.randn(64, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(inverse_2x2(matrices), torch.linalg.inv(matrices), atol=1e-9)


@pytest.mark.parametrize("name, spatial", [("paper2d", (32, 32)), ("strong", (32, 32)),
                                           ("rot90_flips", (32, 32)), ("paper3d", (16, 16, 16)),
                                           ("strong", (8, 16, 16))])
def test_presets_build_no_tensor_from_host_numbers_on_the_batch_device(
        name, spatial, monkeypatch) -> None:
    """On a GPU, ``torch.tensor(numbers, device=cuda)`` copies from pageable host memory and so
    waits for everything queued on the GPU: once a training step, the CPU could no longer
    prepare the next step while the GPU runs this one. The presets run on a batch on the
    'meta' device (any device but the CPU shows it) with those constructors refusing a device."""
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / f"{name}.yaml"))
    image, mask = (t.to("meta") for t in batch(spatial, size=2))
    for constructor in ("tensor", "as_tensor"):
        original = getattr(torch, constructor)

        def refuse(*args, original=original, constructor=constructor, **kwargs):
            device = kwargs.get("device")
            if device is not None and torch.device(device).type != "cpu":
                raise AssertionError(f"torch.{constructor}(..., device={device}) in an "
                                     "augmentation: a host-to-device copy every step")
            return original(*args, **kwargs)

        monkeypatch.setattr(torch, constructor, refuse)
    out_image, out_mask = augment(image, mask, None)
    assert out_image.shape == image.shape and out_mask.device.type == "meta"


@pytest.mark.parametrize("normalize", ["scale", "training_zscore", "none"])
def test_brightness_and_noise_mean_the_same_raw_change_under_every_normalization(normalize):
    """Brightness and noise amounts are in units of the raw intensity range: shift 0.1 moves a
    uint8 image by 25.5 grey levels and noise std 0.05 adds 12.75, whether the network sees
    the image / 255 or z-scored by the training slices (which made them 5-6x weaker) or as
    it is (255x weaker)."""
    from tests.data.test_device_volumes import _module, _set, _volume

    volumes = _set([_volume("a", (6, 40, 44), 1)])
    augmentation = EMCompose([RandomBrightness((0.1, 0.1), p=1.0)])
    module = _module(volumes, (16, 16), normalize=normalize, augmentation=augmentation)
    norm = module.normalization
    raw = torch.from_numpy(np.asarray(volumes.train[0].image[:4, :16, :16], np.float32))[:, None]
    image = norm(raw)
    mask = torch.zeros_like(image)
    shifted, _ = module.training_augmentation(image, mask, torch.Generator().manual_seed(0))
    to_raw = 1.0 / norm.range_unit() * 255.0  # input units -> grey levels
    assert torch.allclose((shifted - image) * to_raw, torch.full_like(image, 25.5), atol=1e-3)
    noisy = in_range_units(EMCompose([RandomGaussianNoise((0.05, 0.05), p=1.0)]),
                           norm.range_unit())
    big = norm(torch.full((64, 1, 32, 32), 100.0))
    added, _ = noisy(big, torch.zeros_like(big), torch.Generator().manual_seed(1))
    assert float(((added - big) * to_raw).std()) == pytest.approx(12.75, rel=0.02)
    if normalize == "scale":  # the unit is 1: the configured transforms themselves
        assert module.training_augmentation is augmentation


def test_the_range_unit_of_each_normalization() -> None:
    assert Normalization("scale", scale=255.0, dtype="uint8").range_unit() == 1.0
    assert Normalization("training_zscore", mean=100.0, std=50.0, dtype="uint8"
                         ).range_unit() == pytest.approx(255.0 / 50.0)
    assert Normalization("training_zscore", mean=0.5, std=0.25, dtype="float32"
                         ).range_unit() == pytest.approx(4.0)
    assert Normalization("none", dtype="uint16").range_unit() == 65535.0
    with pytest.raises(InputError, match="zscore"):
        Normalization("zscore").range_unit()
