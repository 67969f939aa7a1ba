"""MultiResUNet (Ibtehaz & Rahman 2020, compared in paper 002): non-default shapes, counts,
MultiRes widths and Res paths, shift-only batch norm, config. The generic checks (input-size output
on sizes off the stride, gradients reaching every parameter, seeding, stored outputs) live in
test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.multiresunet import MultiResUNet

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL = {"filters": 4}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def n_running_stats(net: nn.Module) -> int:
    return sum(b.numel() for name, b in net.named_buffers() if "running" in name)


@pytest.fixture(scope="module")
def default_net() -> MultiResUNet:
    torch.manual_seed(0)
    return MultiResUNet()


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({"filters": 8, "alpha": 1.0}, (2, 1, 40, 24), (2, 1, 40, 24)),
    (SMALL, (1, 1, 2, 3), (1, 1, 2, 3)),  # below the stride
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = MultiResUNet(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_parameter_counts(default_net):
    assert n_params(default_net) == 7_237_982
    # Keras' "Total params" includes the BN moving statistics; the publication reports
    # 7,262,019 for MultiResUNet.
    total = n_params(default_net) + n_running_stats(default_net)
    assert total == 7_262_504 and abs(total / 7_262_019 - 1) < 0.05
    assert abs(n_params(default_net) / 7_262_019 - 1) < 0.05


def test_multires_widths_and_res_paths(default_net):
    net = default_net
    # W = 1.67 U split int(0.167 W) + int(0.333 W) + int(0.5 W), U = 32 .. 512.
    assert [block.out_channels for block in net.encoders] == [51, 105, 212, 426, 853]
    assert [[conv[0].out_channels for conv in block.convs] for block in net.encoders[:2]] == \
        [[8, 17, 26], [17, 35, 53]]
    assert [len(path.units) for path in net.res_paths] == [4, 3, 2, 1]
    assert [path.units[0]["conv"][0].out_channels for path in net.res_paths] == \
        [32, 64, 128, 256]
    assert [d.out_channels for d in net.decoders] == [426, 212, 105, 51]
    assert net.stride == 16
    # conv_bn: no conv bias; BN shift without scale (Keras scale=False).
    conv, norm = net.head[0], net.head[1]
    assert conv.bias is None and norm.weight is None and norm.bias.requires_grad
    assert norm.eps == 1e-3 and norm.momentum == pytest.approx(0.01)
    assert net.encoders[0].norm_out.weight is not None  # the block's own BNs keep gamma


def test_shift_only_batch_norm_learns_its_shift():
    torch.manual_seed(0)
    net = MultiResUNet(**SMALL).train()
    norm = net.head[1]
    with torch.no_grad():
        norm.bias.fill_(2.0)
        out = net(torch.randn(4, 1, 16, 16))
    # Batch statistics make the pre-shift output zero-mean, so the mean is the shift.
    assert out.mean().item() == pytest.approx(2.0, abs=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"in_channels": 0}, {"out_channels": 0}, {"filters": 0},
    {"filters": 2.5}, {"alpha": 0}, {"alpha": -1.67}, {"filters": 1, "alpha": 1.0},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="MultiResUNet"):
        MultiResUNet(**kwargs)


def test_yaml_instantiates_the_class():
    net = instantiate(OmegaConf.load(CONF / "multiresunet.yaml"))
    assert isinstance(net, MultiResUNet) and n_params(net) == 7_237_982
