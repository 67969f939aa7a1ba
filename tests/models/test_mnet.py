"""M-Net (Fu et al. 2018, compared in paper 002): non-default shapes, gradients through the fused
output alone, side outputs, fusion, counts, config. The generic checks (input-size output on sizes
off the stride, gradients reaching every parameter, seeding, deep supervision only in training,
stored outputs) live in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.mnet import MNet, fuse_probabilities

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL = {"filters": (4, 8, 8, 16, 16)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def default_net() -> MNet:
    torch.manual_seed(0)
    return MNet()


# (kwargs, input shape, expected output shape), MONAI style; eval mode: fused logits only.
CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({"filters": (4, 8, 8)}, (1, 1, 40, 24), (1, 1, 40, 24)),  # 2 poolings, one scale input
    ({"filters": (4, 8)}, (1, 1, 5, 7), (1, 1, 5, 7)),  # no scale input at all
    (SMALL, (1, 1, 2, 3), (1, 1, 2, 3)),  # below the stride
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = MNet(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert isinstance(out, torch.Tensor) and out.shape == expected
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_backward_without_deep_supervision_reaches_every_parameter(default_net):
    # conf/model trains with the side outputs (the contract's case); here the fused output alone.
    net = default_net.train()
    net.deep_supervision = False
    net.zero_grad(set_to_none=True)
    image = torch.randn(2, 1, 20, 27, requires_grad=True)
    target = (torch.rand(2, 1, 20, 27) > 0.8).float()
    try:
        output = net(image)
    finally:
        net.deep_supervision = True
    assert isinstance(output, torch.Tensor)
    F.binary_cross_entropy_with_logits(output, target).backward()
    for name, parameter in net.named_parameters():  # the fused output reaches every side
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_deep_supervision_list_in_training_tensor_in_eval():
    torch.manual_seed(0)
    net = MNet(**SMALL)
    x = torch.randn(2, 1, 21, 30)
    with torch.no_grad():
        outputs = net.train()(x)
        fused = net.eval()(x)
    assert isinstance(outputs, list) and len(outputs) == 5  # fused + 4 side outputs
    assert all(o.shape == (2, 1, 21, 30) for o in outputs)
    assert torch.equal(outputs[0], fused)  # no dropout/BN: train and eval agree
    # The main output is the average of the side probabilities, as a logit.
    mean_probability = torch.stack([torch.sigmoid(s) for s in outputs[1:]]).mean(0)
    torch.testing.assert_close(torch.sigmoid(fused), mean_probability)
    off = MNet(**SMALL, deep_supervision=False).train()
    assert isinstance(off(x), torch.Tensor)


def test_side_outputs_are_piecewise_constant_at_their_scale():
    torch.manual_seed(0)
    net = MNet(**SMALL).train()
    with torch.no_grad():
        _, finest, *_, coarsest = net(torch.randn(1, 1, 32, 32))
    # The coarsest side output lives on the 1/8 grid, nearest-up-sampled to full size.
    blocks = coarsest.unfold(2, 8, 8).unfold(3, 8, 8)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))
    assert finest.unfold(2, 2, 2).unfold(3, 2, 2).std(dim=(-1, -2)).max() > 0


def test_fuse_probabilities_is_stable_for_extreme_logits():
    logits = [torch.tensor([[-200.0, 50.0, 0.0]]), torch.tensor([[-300.0, 80.0, 0.0]])]
    fused = fuse_probabilities(logits)
    assert torch.isfinite(fused).all()
    assert fused[0, 0] < -150 and fused[0, 1] > 40 and fused[0, 2] == 0


def test_parameter_count_and_architecture(default_net):
    net = default_net
    assert n_params(net) == 8_538_596 and net.stride == 16
    # Multi-scale inputs: average-pooled image at 1/2, 1/4, 1/8 through a 3x3 conv.
    assert [s[0].out_channels for s in net.scale_inputs] == [64, 128, 256]
    assert [e[0].in_channels for e in net.encoders] == [1, 64 + 32, 128 + 64, 256 + 128, 256]
    assert [side.in_channels for side in net.sides] == [256, 128, 64, 32]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in net.modules())


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"in_channels": 0}, {"out_channels": 0}, {"filters": (16,)},
    {"filters": (16, 0)}, {"filters": (16, 2.5)},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="MNet"):
        MNet(**kwargs)


def test_yaml_instantiates_the_class():
    net = instantiate(OmegaConf.load(CONF / "mnet.yaml"))
    assert isinstance(net, MNet) and net.deep_supervision and n_params(net) == 8_538_596
