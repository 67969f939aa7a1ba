"""Losses against direct formulas, and deep supervision through the module."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mitoseg.training.losses import DeepSupervisionLoss, SoftJaccardLoss, WeightedBCELoss
from mitoseg.training.module import SegmentationModule, with_deep_supervision
from tests.conftest import CONF


def sample() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 4, generator=generator)
    target = (torch.rand(2, 1, 5, 4, generator=generator) > 0.6).float()
    return logits, target


def test_weighted_bce_is_the_pixel_formula() -> None:
    logits, target = sample()
    w = 3.0
    expected = []
    for z, y in zip(logits.flatten().tolist(), target.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        expected.append(-(w * y * math.log(p) + (1 - y) * math.log(1 - p)))
    assert WeightedBCELoss(w)(logits, target).item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert WeightedBCELoss(1.0)(logits, target).item() == pytest.approx(
        torch.nn.BCEWithLogitsLoss()(logits, target).item(), rel=1e-6)


def test_soft_jaccard_is_one_minus_soft_iou_per_image() -> None:
    logits, target = sample()
    losses = []
    for i in range(2):
        p, t = torch.sigmoid(logits[i]).flatten().tolist(), target[i].flatten().tolist()
        inter = sum(a * b for a, b in zip(p, t))
        union = sum(p) + sum(t) - inter
        losses.append(1 - (inter + 1) / (union + 1))
    assert SoftJaccardLoss()(logits, target).item() == pytest.approx(sum(losses) / 2, rel=1e-5)
    perfect = SoftJaccardLoss(smooth=0.0)(torch.where(target > 0, 50.0, -50.0), target)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)


def test_deep_supervision_weighted_sum_and_defaults() -> None:
    logits, target = sample()
    base = torch.nn.BCEWithLogitsLoss()
    outputs = [logits, logits * 0.5, logits * 0.0]
    parts = [base(o, target).item() for o in outputs]
    assert DeepSupervisionLoss(base, [2, 1, 1])(outputs, target).item() == pytest.approx(
        0.5 * parts[0] + 0.25 * parts[1] + 0.25 * parts[2], rel=1e-6)
    halving = DeepSupervisionLoss(base)(outputs, target).item()
    assert halving == pytest.approx((parts[0] + parts[1] / 2 + parts[2] / 4) / 1.75, rel=1e-6)
    assert DeepSupervisionLoss(base)(logits, target).item() == pytest.approx(parts[0])
    with pytest.raises(ValueError, match="3 outputs"):
        DeepSupervisionLoss(base, [1, 1])(outputs, target)


def test_deep_supervision_nets_get_their_own_weights_and_train() -> None:
    net = instantiate(OmegaConf.load(CONF / "model" / "xiao_resunet3d.yaml"))
    loss = with_deep_supervision(net, torch.nn.BCEWithLogitsLoss())
    assert isinstance(loss, DeepSupervisionLoss) and loss.weights == [1.0, 0.15, 0.3]
    plain = instantiate(OmegaConf.load(CONF / "model" / "unet2d_paper002.yaml"))
    assert isinstance(with_deep_supervision(plain, torch.nn.BCEWithLogitsLoss()),
                      torch.nn.BCEWithLogitsLoss)
    module = SegmentationModule(net, torch.nn.BCEWithLogitsLoss(),
                                lambda params: torch.optim.SGD(params, lr=0.1))
    batch = {"image": torch.rand(2, 1, 8, 16, 16), "mask": (torch.rand(2, 1, 8, 16, 16) > 0.5).float()}
    module.train()
    loss_value, logits = module._shared_step(batch, "val")
    loss_value.backward()
    assert logits.shape == batch["mask"].shape and torch.isfinite(loss_value)


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "dice", "bce_dice", "jaccard", "deep_supervision"])
def test_loss_configs(name: str) -> None:
    loss = instantiate(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))
    logits, target = sample()
    value = loss(logits.requires_grad_(), target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
