"""Cicek et al.'s vanilla 3D U-Net: non-default shapes, layout, the published parameter count,
config. The generic checks (input-size output on sizes off the stride, gradients reaching every
parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.unet3d_cicek import UNet3DCicek
from tests.conftest import CONF

SMALL = {"filters": (4, 8, 8, 16)}  # 2 poolings


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def on_meta(**kwargs) -> UNet3DCicek:
    """Build without allocating or initializing weights (parameter counts only)."""
    with torch.device("meta"):
        return UNet3DCicek(**kwargs)


@pytest.mark.parametrize("kwargs, shape", [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 10, 11)),
    ({**SMALL, "batch_norm": False}, (1, 1, 3, 5, 7)),
])
def test_output_shape(kwargs, shape):
    torch.manual_seed(0)
    with torch.no_grad():
        out = UNet3DCicek(**kwargs).eval()(torch.randn(shape))
    assert out.shape == (shape[0], kwargs.get("out_channels", 1), *shape[2:])
    assert torch.isfinite(out).all()


def test_architecture_and_parameter_count():
    net = on_meta()
    assert net.stride == 8
    widths = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv3d)
              and m.kernel_size == (3, 3, 3)]
    assert widths == [32, 64, 64, 128, 128, 256, 256, 512, 256, 256, 128, 128, 64, 64]
    ups = [(m.in_channels, m.out_channels) for m in net.modules()
           if isinstance(m, nn.ConvTranspose3d)]
    assert ups == [(512, 512), (256, 256), (128, 128)]
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 14
    assert n_params(net) == 19_073_665
    assert abs(n_params(net) / 19_069_955 - 1) < 0.05
    # The published 19,069,955 (3 channels in, 3 labels out) counts no BN scale/shift and no
    # transposed-convolution bias; with those removed the count is exact.
    published = on_meta(in_channels=3, out_channels=3)
    bn = sum(p.numel() for m in published.modules() if isinstance(m, nn.BatchNorm3d)
             for p in m.parameters())
    up_bias = sum(m.bias.numel() for m in published.modules()
                  if isinstance(m, nn.ConvTranspose3d))
    assert n_params(published) - bn - up_bias == 19_069_955
    assert not any(isinstance(m, nn.BatchNorm3d)
                   for m in UNet3DCicek(**SMALL, batch_norm=False).modules())


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 2}, {"in_channels": 0}, {"out_channels": 0}, {"filters": (32, 64)},
    {"filters": (32, 0, 64)}, {"filters": (32, 64, 128.5)},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="UNet3DCicek"):
        UNet3DCicek(**kwargs)


def test_yaml_instantiates_the_network():
    with torch.device("meta"):
        net = instantiate(OmegaConf.load(CONF / "model" / "unet3d_cicek.yaml"))
    assert isinstance(net, UNet3DCicek) and n_params(net) == 19_073_665


@pytest.mark.slow
def test_paper002_patch_size():
    torch.manual_seed(0)
    shape = (1, 1, 80, 80, 80)  # paper 002's 3D subvolumes
    with torch.no_grad():
        out = UNet3DCicek().eval()(torch.randn(shape))
    assert out.shape == shape and torch.isfinite(out).all()
