"""Casser et al.'s lightweight 2D U-Net: non-default shapes, dropout, counts, the public code's
layout. The generic checks (input-size output on sizes off the stride, gradients reaching every
parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.casser_unet import CasserUNet

SMALL = {"start_filters": 4}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL, "dropout": 0}, (1, 1, 5, 3), (1, 1, 5, 3)),  # below the stride
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = CasserUNet(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert net.stride == 16


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(0)
    net = CasserUNet(**SMALL)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        assert torch.equal(net.eval()(x), net(x))
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2
    no_dropout = CasserUNet(**SMALL, dropout=0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())
    assert n_params(no_dropout) == n_params(net)


def test_parameter_count():
    # Paper 002 states no count for this network; 1.96 M from its public code at f = 16.
    assert n_params(CasserUNet()) == 1_958_533
    assert n_params(CasserUNet(start_filters=8, dropout=0.5)) == 490_181  # the code's defaults


def test_layout_of_the_public_code():
    net = CasserUNet()
    three = [c for c in convs(net) if c.kernel_size == (3, 3)]
    assert [c.out_channels for c in three[:10:2]] == [16, 32, 64, 128, 256]  # encoder
    assert [c.out_channels for c in three[10:18:2]] == [128, 64, 32, 16]  # decoder
    assert three[-1].out_channels == 2  # the 2-channel 3x3 conv before the 1x1 head
    # Up-convolutions (2x2 after nearest upsampling): 128, 64, 64 (sic), 16.
    ups = [c for c in convs(net) if c.kernel_size == (2, 2)]
    assert [c.out_channels for c in ups] == [128, 64, 64, 16]
    assert [net.decoders[i][0].in_channels for i in range(4)] == [256, 128, 96, 32]
    assert convs(net)[-1].kernel_size == (1, 1) and convs(net)[-1].out_channels == 1
    assert len(convs(net)) == 24 and not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 23  # not after the head


def test_even_kernel_is_padded_after_like_tensorflow():
    up = CasserUNet(**SMALL).up_convs[0]
    assert isinstance(up[1][0], nn.ZeroPad2d) and up[1][0].padding == (0, 1, 0, 1)


@pytest.mark.parametrize("kwargs", [
    {"in_channels": 0}, {"out_channels": 0}, {"start_filters": 0}, {"start_filters": 2.5},
    {"start_filters": True}, {"dropout": 1.0}, {"dropout": -0.1},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="CasserUNet"):
        CasserUNet(**kwargs)


def test_yaml_builds_the_class():
    net = hydra.utils.instantiate(OmegaConf.load("conf/model/casser_unet.yaml"))
    assert isinstance(net, CasserUNet) and n_params(net) == 1_958_533
