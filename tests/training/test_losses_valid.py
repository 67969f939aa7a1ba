"""Every loss with an ignore mask ``valid``: brute-force references on the valid voxels
alone, no effect (value or gradient) from the logits of ignored voxels, and valid=None or all
ones unchanged."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F

from mitoseg.errors import InputError
from mitoseg.training.losses import (
    BCEDiceLoss,
    BCELoss,
    DeepSupervisionLoss,
    SoftDiceLoss,
    SoftJaccardLoss,
    WeightedBCELoss,
    takes_valid,
)
from tests.conftest import CONF

LOSS_CONFIGS = sorted(path.stem for path in (CONF / "loss").glob("*.yaml"))


def sample(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, target and valid (B, 1, 6, 5); image 2 has no valid voxel at all."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(4, 1, 6, 5, generator=generator, dtype=torch.float64)
    target = (torch.rand(4, 1, 6, 5, generator=generator) > 0.6).double()
    valid = (torch.rand(4, 1, 6, 5, generator=generator) > 0.4).double()
    valid[2] = 0.0
    return logits, target, valid


def bce_reference(logits, target, valid, pos_weight=None) -> torch.Tensor:
    keep = valid > 0
    return F.binary_cross_entropy_with_logits(logits[keep], target[keep], pos_weight=pos_weight)


def overlap_reference(logits, target, valid, score) -> torch.Tensor:
    """Per image, ``score(p, t)`` on that image's valid voxels gathered flat; images without
    a valid voxel are left out of the mean."""
    losses = []
    for x, t, v in zip(logits, target, valid):
        keep = v > 0
        if keep.any():
            losses.append(1 - score(torch.sigmoid(x[keep]), t[keep]))
    return torch.stack(losses).mean()


def dice_score(p, t, smooth=1.0):
    return (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def jaccard_score(p, t, smooth=1.0):
    overlap = (p * t).sum()
    return (overlap + smooth) / (p.sum() + t.sum() - overlap + smooth)


REFERENCES = [
    (BCELoss(), lambda x, t, v: bce_reference(x, t, v)),
    (WeightedBCELoss(3.0), lambda x, t, v: bce_reference(x, t, v, torch.tensor(3.0))),
    (SoftDiceLoss(), lambda x, t, v: overlap_reference(x, t, v, dice_score)),
    (SoftJaccardLoss(), lambda x, t, v: overlap_reference(x, t, v, jaccard_score)),
    (BCEDiceLoss(0.7, 0.3), lambda x, t, v: 0.7 * bce_reference(x, t, v)
     + 0.3 * overlap_reference(x, t, v, dice_score)),
]


@pytest.mark.parametrize("loss, reference", REFERENCES, ids=lambda x: type(x).__name__)
def test_loss_equals_the_loss_of_the_valid_voxels_alone(loss, reference) -> None:
    logits, target, valid = sample()
    expected = reference(logits, target, valid)
    assert loss(logits, target, valid).item() == pytest.approx(expected.item(), rel=1e-12)


def test_deep_supervision_passes_valid_to_every_output() -> None:
    logits, target, valid = sample()
    outputs = [logits, 0.5 * logits]
    got = DeepSupervisionLoss(SoftDiceLoss(), [3, 1])(outputs, target, valid)
    expected = (0.75 * overlap_reference(logits, target, valid, dice_score)
                + 0.25 * overlap_reference(0.5 * logits, target, valid, dice_score))
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    single = DeepSupervisionLoss(BCELoss())(logits, target, valid)
    assert single.item() == pytest.approx(bce_reference(logits, target, valid).item(), rel=1e-12)


def configured(name: str) -> torch.nn.Module:
    return instantiate(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))


def call(loss, logits, target, valid=None):
    outputs = [logits, 0.5 * logits] if isinstance(loss, DeepSupervisionLoss) else logits
    return loss(outputs, target) if valid is None else loss(outputs, target, valid)


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_every_configured_loss_takes_valid(name) -> None:
    assert takes_valid(configured(name))


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_all_ones_valid_equals_no_valid(name) -> None:
    loss = configured(name)
    logits, target, _ = sample(1)
    plain = call(loss, logits, target)
    assert call(loss, logits, target, torch.ones_like(target)).item() == pytest.approx(
        plain.item(), rel=1e-12)


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_ignored_logits_change_neither_the_loss_nor_the_gradient(name) -> None:
    loss = configured(name)
    logits, target, valid = sample(2)
    ignored = valid == 0
    changed = torch.where(ignored, -50 * logits + 7.0, logits)
    values, gradients = [], []
    for x in (logits, changed):
        x = x.clone().requires_grad_()
        value = call(loss, x, target, valid)
        value.backward()
        values.append(value.detach())
        gradients.append(x.grad)
    assert torch.equal(values[0], values[1])
    assert torch.equal(gradients[0], gradients[1])
    assert torch.all(gradients[0][ignored] == 0.0)
    assert gradients[0][~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_nothing_valid_is_a_zero_loss_not_nan(name) -> None:
    loss = configured(name)
    logits, target, _ = sample(3)
    logits.requires_grad_()
    value = call(loss, logits, target, torch.zeros_like(target))
    value.backward()
    assert value.item() == 0.0 and torch.all(logits.grad == 0.0)


def test_valid_of_another_shape_is_refused_by_name() -> None:
    logits, target, valid = sample()
    for loss in (BCELoss(), WeightedBCELoss(2.0), SoftDiceLoss(), SoftJaccardLoss()):
        with pytest.raises(InputError, match=f"{type(loss).__name__}: 'valid' must be"):
            loss(logits, target, valid[:, :, :3])


def test_a_plain_torch_loss_does_not_take_valid() -> None:
    assert not takes_valid(torch.nn.BCEWithLogitsLoss())
    assert not takes_valid(DeepSupervisionLoss(torch.nn.BCEWithLogitsLoss()))
    assert takes_valid(DeepSupervisionLoss(BCELoss()))


def test_bce_without_valid_is_torch_bce_bit_for_bit() -> None:
    logits, target, _ = sample(4)
    expected = torch.nn.BCEWithLogitsLoss()(logits, target)
    assert torch.equal(BCELoss()(logits, target), expected)
    assert torch.equal(BCEDiceLoss()(logits, target), expected + SoftDiceLoss()(logits, target))
