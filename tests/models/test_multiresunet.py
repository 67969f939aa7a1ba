"""MultiResUNet (Ibtehaz & Rahman 2020, compared in paper 002): shapes, gradients, counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
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
    (SMALL, (1, 1, 200, 200), (1, 1, 200, 200)),  # padded to 208
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({"filters": 8, "alpha": 1.0}, (2, 1, 40, 24), (2, 1, 40, 24)),
    (SMALL, (1, 1, 2, 3), (1, 1, 2, 3)),
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = MultiResUNet(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_default_net_on_a_size_not_divisible_by_16(default_net):
    with torch.no_grad():
        out = default_net.eval()(torch.randn(2, 1, 21, 30))
    assert out.shape == (2, 1, 21, 30) and torch.isfinite(out).all()


def test_backward_gives_finite_gradients_for_every_parameter(default_net):
    net = default_net.train()
    net.zero_grad(set_to_none=True)
    image = torch.randn(2, 1, 20, 27, requires_grad=True)
    target = (torch.rand(2, 1, 20, 27) > 0.8).float()
    F.binary_cross_entropy_with_logits(net(image), target).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_same_seed_same_net_other_seed_other_net():
    x = torch.randn(1, 1, 40, 40)

    def output(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return MultiResUNet(**SMALL).eval()(x)

    assert torch.equal(output(3), output(3))
    assert not torch.allclose(output(3), output(4))


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
