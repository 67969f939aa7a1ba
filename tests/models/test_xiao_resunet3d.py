"""Xiao et al.'s deeply supervised 3D residual U-Net: non-default shapes, the auxiliary outputs
and their weights, counts, config. The generic checks (input-size output on sizes off the stride,
gradients reaching every parameter, seeding, deep supervision only in training, stored outputs)
live in test_contract.py."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.xiao_resunet3d import XiaoResUNet3D
from tests.conftest import CONF

SMALL = {"filters": (4, 6, 8, 10)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("kwargs, shape", [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 5, 9, 13)),
    ({**SMALL, "stem_channels": 5}, (1, 1, 1, 8, 8)),  # a single slice
])
def test_output_shape_in_eval_mode(kwargs, shape):
    torch.manual_seed(0)
    with torch.no_grad():
        out = XiaoResUNet3D(**kwargs).eval()(torch.randn(shape))
    assert out.shape == (shape[0], kwargs.get("out_channels", 1), *shape[2:])
    assert torch.isfinite(out).all()


def test_architecture_and_parameter_count():
    net = XiaoResUNet3D()
    assert net.stride == 8 and net.filters == (32, 48, 64, 80)
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool3d)]
    assert len(pools) == 1 and pools[0].kernel_size == (1, 2, 2)  # applied 3 times, never in z
    residual_widths = [net.enc1, net.enc2, net.enc3, net.bottleneck, net.dec3, net.dec2, net.dec1]
    assert [b.body[-1][0].out_channels for b in residual_widths] == [32, 48, 64, 80, 64, 48, 32]
    assert net.stem[0].out_channels == 3 and net.last[0].out_channels == 3
    assert not any(isinstance(m, (nn.ReLU, nn.ConvTranspose3d)) for m in net.modules())
    assert n_params(net) == 1_072_905
    assert n_params(XiaoResUNet3D(deep_supervision=False)) == 1_072_905 - (64 + 1) - (32 + 1)
    # The authors' port classifies 2 classes with a softmax: 1,073,007 trainable parameters.
    assert n_params(XiaoResUNet3D(out_channels=2)) == 1_073_007


def test_deep_supervision_list_in_training_tensor_in_eval():
    torch.manual_seed(0)
    net = XiaoResUNet3D(**SMALL).train()
    shape = (2, 1, 3, 16, 24)  # multiples of 8: no padding shifts the upsampling blocks
    x = torch.randn(shape)
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(o.shape == shape for o in outputs)
    assert net.deep_supervision_weights == (1.0, 0.15, 0.3)
    # aux 1 comes from the 1/4-resolution level, upsampled by nearest neighbour: 4 x 4 blocks.
    aux1 = outputs[1][0, 0, 0]
    assert torch.equal(aux1[:4, :4], aux1[0, 0].expand(4, 4))
    with torch.no_grad():
        assert isinstance(net.eval()(x), torch.Tensor)
    plain = XiaoResUNet3D(**SMALL, deep_supervision=False).train()
    assert isinstance(plain(x), torch.Tensor) and plain.deep_supervision_weights == (1.0,)


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 2}, {"in_channels": 0}, {"out_channels": 0}, {"filters": (32, 48, 64)},
    {"filters": (32, 48, 0, 80)}, {"filters": (32, 48, 64, 80.5)}, {"stem_channels": 0},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="XiaoResUNet3D"):
        XiaoResUNet3D(**kwargs)


def test_yaml_instantiates_the_network():
    net = instantiate(OmegaConf.load(CONF / "model" / "xiao_resunet3d.yaml"))
    assert isinstance(net, XiaoResUNet3D) and net.deep_supervision
    assert n_params(net) == 1_072_905


@pytest.mark.slow
def test_xiao_subvolume_size():
    torch.manual_seed(0)
    shape = (1, 1, 20, 256, 256)  # Xiao's 256 x 256 x 20 training subvolumes
    with torch.no_grad():
        out = XiaoResUNet3D().eval()(torch.randn(shape))
    assert out.shape == shape and torch.isfinite(out).all()
