"""Cheng & Varshney's 2D/3D network: shapes for the non-default options, strides, counts, layer
plan, factorized convolutions and the stochastic downsampling (random only in training, seeded by
torch). The generic checks for cheng2d and cheng3d (input-size output on sizes off the stride,
gradients reaching every parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

import itertools

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.cheng_varshney import (ChengVarshneyNet, FactorizedConv,
                                                StochasticDownsampling)

SMALL = {"init_filters": 4, "growth": 2}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL, "downsampling": "max", "dropout": 0}, (1, 1, 24, 40), (1, 1, 24, 40)),
    ({**SMALL, "region": 2, "decoder_preactivation": True}, (2, 1, 13, 11), (2, 1, 13, 11)),
    # Training mode (stochastic downsampling) on a padded 3D input; the contract trains on 16^3.
    ({"spatial_dims": 3}, (2, 1, 10, 12, 14), (2, 1, 10, 12, 14)),  # padded to 16^3
    ({**SMALL, "spatial_dims": 3, "out_channels": 2, "downsampling": "max"},
     (2, 1, 5, 6, 7), (2, 2, 5, 6, 7)),  # BN in training needs > 1 value at 1/8: batch 2
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = ChengVarshneyNet(**kwargs).train(input_shape[0] > 1)  # BN train stats: batch > 1
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, stride", [
    ({}, 16), ({"downsampling": "max"}, 8), ({"region": 2}, 8), ({"region": 6}, 24),
    ({"spatial_dims": 3}, 16),
])
def test_stride_is_the_input_multiple(kwargs, stride):
    net = ChengVarshneyNet(**{**SMALL, **kwargs})
    assert net.stride == stride
    shape = (2, 1) + (stride,) * net.spatial_dims
    with torch.no_grad():  # a multiple of the stride runs without padding, in training mode too
        assert net.train()(torch.randn(shape)).shape == shape


@pytest.mark.parametrize("spatial_dims, region", [(2, 4), (3, 2)])
def test_training_randomness_comes_from_torch_seed_and_eval_is_fixed(spatial_dims, region):
    torch.manual_seed(0)
    # dropout=0: the only randomness left is the stochastic downsampling.
    net = ChengVarshneyNet(spatial_dims, **SMALL, dropout=0, region=region)
    x = torch.randn((2, 1) + (4 * region,) * spatial_dims)

    def train_output(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return net.train()(x)

    assert torch.equal(train_output(1), train_output(1))
    assert not torch.allclose(train_output(1), train_output(2))
    with torch.no_grad():
        torch.manual_seed(1)
        first = net.eval()(x)
        torch.manual_seed(2)
        assert torch.equal(first, net(x))
    # Without the stochastic layer (and without dropout), training mode is deterministic too.
    torch.manual_seed(0)
    pooled = ChengVarshneyNet(spatial_dims, **SMALL, dropout=0, downsampling="max").train()
    with torch.no_grad():
        torch.manual_seed(1)
        first = pooled(x)
        torch.manual_seed(2)
        assert torch.equal(first, pooled(x))


def test_stochastic_downsampling_keeps_half_of_every_band():
    layer = StochasticDownsampling(region=4).train()
    x = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    torch.manual_seed(0)
    out = layer(x)
    assert out.shape == (2, 3, 8, 12)
    # Recover the kept rows/columns; they are the same for every sample and channel.
    rows = (out[0, 0, :, 0] - x[0, 0, 0, 0]).div(24).floor().long()
    cols = (out[0, 0, 0, :] - x[0, 0, rows[0], 0]).long()
    assert torch.equal(out, x[:, :, rows][:, :, :, cols])
    for kept in (rows, cols):
        bands = kept.view(-1, 2)
        assert (bands // 4 == torch.arange(len(bands))[:, None]).all()  # two per band of 4
        assert (bands[:, 0] < bands[:, 1]).all()  # distinct and in order


def test_stochastic_downsampling_draws_every_pattern_and_eval_is_regular():
    layer = StochasticDownsampling(region=4)
    torch.manual_seed(0)
    seen = {tuple(layer.train().positions(4).tolist()) for _ in range(100)}
    assert seen == set(itertools.combinations(range(4), 2))  # all 6 row pairs
    x = torch.randn(2, 3, 8, 12, 16)
    torch.testing.assert_close(layer.eval()(x), x[:, :, ::2, ::2, ::2], rtol=0, atol=0)
    torch.manual_seed(5)
    first = layer.train()(x)
    torch.manual_seed(5)
    assert torch.equal(first, layer(x)) and first.shape == (2, 3, 4, 6, 8)


def test_stochastic_downsampling_bad_arguments():
    for region in (0, 3, 2.5, True):
        with pytest.raises(ValueError, match="region"):
            StochasticDownsampling(region)
    with pytest.raises(ValueError, match="multiple"):
        StochasticDownsampling(4)(torch.randn(1, 1, 8, 10))


@pytest.mark.parametrize("spatial_dims, kernels, shares", [
    (2, [(1, 3), (3, 1)], [20, 20]),
    (3, [(1, 1, 3), (1, 3, 1), (3, 1, 1)], [14, 13, 13]),
])
def test_factorized_convolution(spatial_dims, kernels, shares):
    conv = FactorizedConv(spatial_dims, 8, 40, stride=2)
    assert [b.kernel_size for b in conv.branches] == kernels
    assert [b.out_channels for b in conv.branches] == shares
    out = conv(torch.randn((1, 8) + (12,) * spatial_dims))
    assert out.shape == (1, 40) + (6,) * spatial_dims
    full = 8 * 40 * 3**spatial_dims
    assert n_params(conv) == 8 * 40 * 3 + 40 and n_params(conv) < full / 2


@pytest.mark.parametrize("spatial_dims, count", [(2, 591_780), (3, 788_036)])
def test_parameter_counts(spatial_dims, count):
    # Paper 002 states no count for these networks.
    assert n_params(ChengVarshneyNet(spatial_dims)) == count
    assert n_params(ChengVarshneyNet(spatial_dims, dropout=0, downsampling="max")) == count


def test_layer_plan():
    net = ChengVarshneyNet(2)
    widths = [block.body[-1].branches[0].out_channels * 2 for block in net.encoder]
    assert widths == list(range(24, 121, 8))  # 13 blocks, +8 each, 17 input channels
    downsampling = [i for i, b in enumerate(net.encoder) if b.shortcut is not None]
    assert downsampling == [2, 6]
    assert all(isinstance(net.encoder[i].shortcut[0], StochasticDownsampling) for i in (2, 6))
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.1 for m in net.modules()) == 13
    assert not any(isinstance(m, nn.Dropout) for m in ChengVarshneyNet(2, **SMALL,
                                                                        dropout=0).modules())
    ups = [m for m in net.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.out_channels, u.kernel_size) for u in ups] == [(64, (3, 3)), (32, (3, 3)),
                                                              (1, (2, 2))]
    assert len(net.decoder) == 3 + 4 + 2
    # Only the 3x3 of each decoder bottleneck is a full kernel; the encoder has none.
    full = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(full) == 1 + 6  # the input block's strided conv + 6 decoder bottlenecks
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.decoder.modules())
    with_act = ChengVarshneyNet(2, decoder_preactivation=True)
    assert sum(isinstance(m, nn.PReLU) for m in with_act.decoder.modules()) == 6 * 3
    maxed = ChengVarshneyNet(3, **SMALL, downsampling="max")
    assert isinstance(maxed.encoder[2].shortcut[0], nn.MaxPool3d)


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 1}, {"spatial_dims": 4}, {"in_channels": 0}, {"out_channels": 0},
    {"init_filters": 0}, {"growth": 1.5}, {"dropout": 1.0}, {"dropout": -0.1},
    {"downsampling": "avg"}, {"region": 3}, {"region": 0}, {"region": True},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="ChengVarshneyNet"):
        ChengVarshneyNet(**kwargs)


@pytest.mark.parametrize("name, spatial_dims, count", [("cheng2d", 2, 591_780),
                                                       ("cheng3d", 3, 788_036)])
def test_yaml_builds_the_class(name, spatial_dims, count):
    net = hydra.utils.instantiate(OmegaConf.load(f"conf/model/{name}.yaml"))
    assert isinstance(net, ChengVarshneyNet) and net.spatial_dims == spatial_dims
    assert n_params(net) == count and net.dropout_rate == 0.1
