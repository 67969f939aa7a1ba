"""Paper 002's U-Net and Attention U-Net (2D and 3D): shapes for the non-default options,
dropout, counts, layout, ablation switches, attention gates. The generic checks for
unet2d_paper002, unet3d_paper002, attention_unet and attention_unet3d (input-size output on sizes
off the stride, gradients reaching every parameter, seeding, stored outputs) live in
test_contract.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mitoseg.models.nets.attention_unet_paper002 import AttentionGate, AttentionUNetPaper002
from mitoseg.models.nets.unet_paper002 import UNetPaper002

NETS = [UNetPaper002, AttentionUNetPaper002]
SMALL_2D = {"filters": (4, 8, 8), "dropout": (0.1, 0.2, 0.3)}
SMALL_3D = {"spatial_dims": 3, "filters": (4, 6, 8), "dropout": (0.1, 0.2, 0.3)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL_2D, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL_2D, "upsample": "nearest", "batch_norm": True}, (2, 1, 37, 53), (2, 1, 37, 53)),
    ({"dropout": 0, "activation": "relu", "init": "glorot_uniform"}, (1, 1, 64, 48),
     (1, 1, 64, 48)),
    ({**SMALL_3D, "out_channels": 2, "batch_norm": True}, (2, 1, 5, 6, 7), (2, 2, 5, 6, 7)),
    ({**SMALL_3D, "upsample": "nearest"}, (1, 1, 12, 16, 8), (1, 1, 12, 16, 8)),
]


@pytest.mark.parametrize("net_class", NETS)
@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(net_class, kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = net_class(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("net_class", NETS)
def test_3d_paper_patch_size(net_class):
    with torch.no_grad():
        out = net_class(spatial_dims=3).eval()(torch.randn(1, 1, 80, 80, 80))
    assert out.shape == (1, 1, 80, 80, 80) and torch.isfinite(out).all()


@pytest.mark.parametrize("net_class", NETS)
def test_eval_is_deterministic_and_training_uses_dropout(net_class):
    torch.manual_seed(0)
    net = net_class(**SMALL_2D)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))  # dropout active
        assert torch.equal(net.eval()(x), net(x))


def test_parameter_counts_match_the_paper():
    unet_2d, attention_2d = n_params(UNetPaper002(2)), n_params(AttentionUNetPaper002(2))
    unet_3d, attention_3d = n_params(UNetPaper002(3)), n_params(AttentionUNetPaper002(3))
    assert abs(unet_2d / 1.94e6 - 1) < 0.05 and unet_2d == 1_940_817
    assert unet_2d < attention_2d < 1.05 * unet_2d  # gates add 3.4 %
    assert unet_3d == 788_817 and unet_3d < attention_3d < 1.05 * unet_3d
    # The paper: 3D models have "three times fewer" parameters; with these widths it is 2.5x.
    assert 2.4 < unet_2d / unet_3d < 2.5 and 2.4 < attention_2d / attention_3d < 2.5
    # "four-level" counted without the bottleneck (16..128) would be 0.48 M, far from 1.94 M.
    assert n_params(UNetPaper002(2, filters=(16, 32, 64, 128), dropout=0)) < 0.5e6


def _rates(blocks: nn.ModuleList) -> list[float]:
    rates = []
    for block in blocks:
        dropouts = [m for m in block if isinstance(m, nn.Dropout)]
        assert len(dropouts) <= 1
        rates.append(dropouts[0].p if dropouts else 0.0)
    return rates


def test_dropout_per_level_rises_to_the_bottleneck_and_falls_back():
    net = UNetPaper002(2)
    assert _rates(net.encoders) == [0.1, 0.1, 0.2, 0.2, 0.3]  # last = bottleneck
    assert _rates(net.decoders) == [0.2, 0.2, 0.1, 0.1]  # from the deepest decoder up
    assert _rates(UNetPaper002(3).encoders) == [0.1, 0.1, 0.2, 0.3]
    assert _rates(UNetPaper002(3).decoders) == [0.2, 0.1, 0.1]
    assert not any(isinstance(m, nn.Dropout) for m in UNetPaper002(2, dropout=0).modules())
    assert _rates(UNetPaper002(2, dropout=0.5).encoders) == [0.5] * 5
    # Fig. 2a order: conv3x3, ELU, dropout, conv3x3, ELU.
    assert [type(m) for m in net.encoders[0]] == [nn.Conv2d, nn.ELU, nn.Dropout, nn.Conv2d, nn.ELU]


@pytest.mark.parametrize("spatial_dims, convs, pools", [(2, 18, 4), (3, 14, 3)])
def test_architecture_counts(spatial_dims, convs, pools):
    net = AttentionUNetPaper002(spatial_dims)
    conv, up = {2: (nn.Conv2d, nn.ConvTranspose2d),
                3: (nn.Conv3d, nn.ConvTranspose3d)}[spatial_dims]
    kernel = (3,) * spatial_dims

    def is_3x3(m: nn.Module) -> bool:
        return isinstance(m, conv) and m.kernel_size == kernel

    assert sum(is_3x3(m) for m in net.modules()) == convs
    assert sum(isinstance(m, up) for m in net.modules()) == pools
    assert len(net.gates) == pools and net.unet.stride == 2**pools
    widths = [m.out_channels for m in net.modules() if is_3x3(m)]
    assert widths[::2] == list(net.unet.filters) + list(reversed(net.unet.filters[:-1]))
    nearest = UNetPaper002(spatial_dims, upsample="nearest")
    assert not any(isinstance(m, up) for m in nearest.modules())


def test_ablation_switches_change_the_modules():
    def kinds(net: nn.Module) -> set[type]:
        return {type(m) for m in net.modules()}

    assert nn.ELU in kinds(UNetPaper002(2)) and nn.ReLU not in kinds(UNetPaper002(2))
    relu = UNetPaper002(2, activation="relu")
    assert nn.ReLU in kinds(relu) and nn.ELU not in kinds(relu)
    assert nn.BatchNorm2d not in kinds(UNetPaper002(2))
    with_bn = UNetPaper002(2, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 18
    with_bn_3d = UNetPaper002(3, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in with_bn_3d.modules()) == 14
    # Kernel init of the bottleneck's second conv (256 -> 256, fan_in = fan_out = 2304).
    torch.manual_seed(0)
    he = UNetPaper002(2).encoders[-1][-2].weight
    glorot = UNetPaper002(2, init="glorot_uniform").encoders[-1][-2].weight
    assert he.std().item() == pytest.approx(math.sqrt(2 / 2304), rel=0.02)
    assert he.abs().max() <= 2 * math.sqrt(2 / 2304) / 0.8796 + 1e-6  # Keras' truncation
    assert glorot.std().item() == pytest.approx(math.sqrt(2 / 4608), rel=0.02)
    assert glorot.abs().max() <= math.sqrt(6 / 4608) + 1e-6


@pytest.mark.parametrize("net_class", NETS)
@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 1}, {"spatial_dims": 4}, {"in_channels": 0}, {"out_channels": 0},
    {"filters": (16,)}, {"filters": (16, 0)}, {"filters": (16, 2.5)},
    {"dropout": (0.1, 0.2)}, {"dropout": 1.0}, {"dropout": -0.1},
    {"filters": (16, 32, 64, 128)},  # 4 levels: the 5-level default dropout does not fit
    {"activation": "gelu"}, {"init": "orthogonal"}, {"upsample": "bilinear"},
])
def test_bad_arguments_raise_value_error(net_class, kwargs):
    with pytest.raises(ValueError):
        net_class(**kwargs)


def test_bad_gate_arguments_raise_value_error():
    with pytest.raises(ValueError):
        UNetPaper002(skip_gate="attention")
    with pytest.raises(ValueError):
        AttentionGate(1, 8, 16)
    with pytest.raises(ValueError):
        AttentionGate(2, 8, 0)


@pytest.mark.parametrize("skip_shape, gate_shape", [
    ((2, 8, 32, 32), (2, 16, 16, 16)), ((2, 8, 9, 13), (2, 16, 5, 7)),
    ((1, 6, 8, 10, 12), (1, 12, 4, 5, 6)),
])
def test_attention_gate_coefficients(skip_shape, gate_shape):
    torch.manual_seed(0)
    gate = AttentionGate(len(skip_shape) - 2, skip_shape[1], gate_shape[1])
    skip, coarse = torch.randn(skip_shape) * 5, torch.randn(gate_shape) * 5
    alpha = gate.coefficients(skip, coarse)
    assert alpha.shape == (skip_shape[0], 1, *skip_shape[2:])
    assert alpha.min() >= 0 and alpha.max() <= 1 and alpha.std() > 0
    torch.testing.assert_close(gate(skip, coarse), skip * alpha)


@pytest.mark.parametrize("kwargs, shape", [({}, (1, 1, 37, 53)), (SMALL_3D, (1, 1, 9, 10, 11))])
def test_attention_gates_inside_the_network(kwargs, shape):
    torch.manual_seed(0)
    net = AttentionUNetPaper002(**kwargs).eval()
    seen = []

    def hook(module, inputs, output):
        skip, coarse = inputs
        alpha = module.coefficients(skip, coarse)
        assert alpha.shape == (skip.shape[0], 1, *skip.shape[2:])
        assert 0 <= alpha.min() and alpha.max() <= 1
        assert coarse.shape[2:] == tuple(s // 2 for s in skip.shape[2:])  # one level coarser
        torch.testing.assert_close(output, skip * alpha)
        seen.append(skip.shape[1])

    for gate in net.gates:
        gate.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.randn(shape))
    assert seen == list(reversed(net.unet.filters[:-1]))


ANISOTROPIC = ["unet3d_anisotropic", "attention_unet3d_anisotropic", "se_unet3d_anisotropic",
               "residual_unet3d_anisotropic"]


@pytest.mark.parametrize("name", ANISOTROPIC)
def test_anisotropic_networks_never_pool_z(name):
    """Paper 002's Kasthuri++ change: every level keeps the depth, y and x halve as before, and
    a depth of 5 (no multiple of anything) goes in and out unpadded."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import CONF

    torch.manual_seed(0)
    net = instantiate(OmegaConf.load(CONF / "model" / f"{name}.yaml")).eval()
    unet = net.unet if hasattr(net, "unet") else net
    assert unet.filters == (28, 36, 48, 64) and unet.pooling_factor == (1, 2, 2)
    shapes = []
    for encoder in unet.encoders:
        encoder.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[2:])))
    x = torch.randn(1, 1, 5, 40, 48)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape
    assert shapes == [(5, 40, 48), (5, 20, 24), (5, 10, 12), (5, 5, 6)]
    if name.startswith("attention"):
        assert all(gate.w_x.stride == (1, 2, 2) for gate in net.gates)


def test_z_pooling_changes_nothing_else():
    """With z pooling (the default) the network is the Lucchi one, and without it the same
    parameters arranged along z: the same count less the z taps of the 2x2x2 up-convolutions."""
    torch.manual_seed(0)
    pooled = UNetPaper002(3, 1, 1, filters=(4, 8, 16), dropout=0.1)
    torch.manual_seed(0)
    flat = UNetPaper002(3, 1, 1, filters=(4, 8, 16), dropout=0.1, z_pooling=False)
    up_weights = sum(m.weight.numel() for m in pooled.upsamplers)
    assert sum(p.numel() for p in pooled.parameters()) - sum(
        p.numel() for p in flat.parameters()) == up_weights // 2
    assert pooled.pooling_factor == (2, 2, 2) and pooled.size_multiple == (4, 4, 4)
    assert flat.size_multiple == (1, 4, 4)


def test_z_pooling_off_is_refused_in_2d():
    with pytest.raises(ValueError, match="z_pooling"):
        UNetPaper002(2, 1, 1, z_pooling=False)
    with pytest.raises(ValueError, match="factor"):
        AttentionGate(3, 8, 16, factor=(2, 2))
