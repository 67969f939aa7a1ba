"""EM batch augmentation with extra mask channels (the data module stacks ``valid`` as mask
channel 1): every channel moves exactly like channel 0, and adding channels changes nothing
else."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from mitoseg.data.em_augment import EMCompose, RandomRotation
from mitoseg.data.em_augment_geometric import check_batch
from mitoseg.errors import InputError
from tests.data.test_em_augment import PRESETS, batch, gen

EM_PRESETS = sorted(path.stem for path in PRESETS.glob("*.yaml")
                    if OmegaConf.load(path)._target_ == "mitoseg.data.em_augment.EMCompose")
TRANSFORMS = [(name, index, transform) for name in EM_PRESETS
              for index, transform in enumerate(hydra.utils.instantiate(
                  OmegaConf.load(PRESETS / f"{name}.yaml")).transforms)]
SPATIAL = [(24, 24), (8, 16, 16)]


def other_mask(like: torch.Tensor, seed: int) -> torch.Tensor:
    """A random {0, 1} mask: many edges, so interpolated values often land near 0.5."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(like.shape, generator=generator) > 0.5).to(like.dtype)


def test_every_em_preset_is_covered() -> None:
    assert {"paper2d", "paper3d", "strong"} <= set(EM_PRESETS)
    assert len(TRANSFORMS) >= 10


@pytest.mark.parametrize("name, index, transform", TRANSFORMS,
                         ids=[f"{n}-{i}-{type(t).__name__}" for n, i, t in TRANSFORMS])
@pytest.mark.parametrize("spatial", SPATIAL, ids=["2d", "3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_extra_channels_move_like_channel_0_and_change_nothing_else(name, index, transform,
                                                                    spatial, dtype) -> None:
    image, mask = batch(spatial, size=4)
    mask, other = mask.to(dtype), other_mask(mask.to(dtype), index)
    alone_image, alone_mask = transform(image, mask, gen(5))
    both_image, both_mask = transform(image, torch.cat([mask, other], dim=1), gen(5))
    _, other_alone = transform(image, other, gen(5))
    assert both_mask.shape == (4, 2, *spatial) and both_mask.dtype == dtype
    assert torch.equal(both_image, alone_image)
    assert torch.equal(both_mask[:, :1], alone_mask)
    assert torch.equal(both_mask[:, 1:], other_alone)


@pytest.mark.parametrize("name", EM_PRESETS)
def test_whole_presets_carry_three_channels(name) -> None:
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / f"{name}.yaml"))
    image, mask = batch((8, 16, 16) if name == "paper3d" else (24, 24), size=3)
    channels = [mask, other_mask(mask, 1), other_mask(mask, 2)]
    out_image, out_mask = augment(image, torch.cat(channels, dim=1), gen(9))
    for k, channel in enumerate(channels):
        alone_image, alone = augment(image, channel, gen(9))
        assert torch.equal(out_mask[:, k:k + 1], alone) and torch.equal(out_image, alone_image)


def test_reflected_borders_carry_the_validity_of_what_they_copy() -> None:
    """Free rotation pads nothing with a constant: a corner filled by reflection holds real
    (reflected) image content, so its valid channel is the reflected validity, not 0."""
    image = torch.rand(1, 1, 32, 32)
    valid = torch.ones(1, 1, 32, 32)
    _, out = RandomRotation(degrees=(45.0, 45.0), p=1.0)(image, valid, gen())
    assert torch.equal(out, valid)  # an all-valid patch stays all valid, corners included


def test_mask_needs_at_least_one_channel_and_the_image_size() -> None:
    image, mask = batch((8, 8))
    assert check_batch("t", image, torch.cat([mask] * 3, dim=1), None) == 2
    for bad in (mask[:, :0], mask[:, :, :4], mask[:2], mask[:, 0]):
        with pytest.raises(InputError, match=r"mask must be .* K >= 1 channels"):
            EMCompose([])(image, bad, gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spatial", SPATIAL, ids=["2d", "3d"])
def test_extra_channels_on_the_gpu(spatial) -> None:
    augment = hydra.utils.instantiate(OmegaConf.load(PRESETS / "strong.yaml"))
    image, mask = (t.cuda() for t in batch(spatial, size=4))
    other = other_mask(mask.cpu(), 3).cuda()
    both_image, both = augment(image, torch.cat([mask, other], dim=1), gen(2, "cuda"))
    alone_image, alone = augment(image, mask, gen(2, "cuda"))
    _, other_alone = augment(image, other, gen(2, "cuda"))
    assert torch.equal(both_image, alone_image) and torch.equal(both[:, :1], alone)
    assert torch.equal(both[:, 1:], other_alone)
