"""nnU-Net's plain U-Net (2D/3D): the planned Lucchi topology, per-axis padding, shapes for the
non-default options, the deep-supervision heads and weights, counts, config. The generic checks
for nnunet2d and nnunet3d (input-size output on sizes off the stride, gradients reaching every
parameter, seeding, deep supervision only in training, stored outputs) live in test_contract.py."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.nnunet_plain import PLANNED_PATCH_SIZE, NNUNetPlain, padded_size
from tests.conftest import CONF

SMALL_2D = {"features": (4, 8, 8, 8), "strides": (1, 2, 2, (1, 2))}
SMALL_3D = {"spatial_dims": 3, "features": (4, 6, 8, 8, 8)}  # with the planned 3D strides
TINY_PLANNED_2D = {"features": (4,) * 9}  # the planned 2D strides, cheap widths


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def on_meta(*args, **kwargs) -> NNUNetPlain:
    """Build without allocating or initializing weights (structure and counts only)."""
    with torch.device("meta"):
        return NNUNetPlain(*args, **kwargs)


@pytest.mark.parametrize("size, padded", [
    ((200, 200), (256, 256)), ((768, 1024), (768, 1024)), ((37, 53), (128, 512)),
    ((129, 256), (256, 256)),
])
def test_each_axis_is_padded_to_its_own_total_stride(size, padded):
    assert padded_size(size, (128, 256)) == padded
    assert padded_size((40, 208, 288), (8, 16, 16)) == (40, 208, 288)


# (kwargs, input shape), MONAI style; the output must have the input's spatial shape.
CASES = [
    (TINY_PLANNED_2D, (2, 1, 768, 64)),  # H a multiple of its stride (128), W padded to 256
    ({**SMALL_2D, "in_channels": 2, "out_channels": 3}, (2, 2, 30, 50)),
    ({**SMALL_2D, "norm": "batch", "kernel_sizes": (3, 3, (1, 3), 3)}, (2, 1, 17, 9)),
    ({**SMALL_3D, "out_channels": 2}, (1, 1, 18, 20, 22)),
    ({"spatial_dims": 3, "features": (4, 8), "strides": (1, 2)}, (2, 1, 5, 6, 7)),
]


@pytest.mark.parametrize("kwargs, shape", CASES)
def test_output_shape_in_eval_mode(kwargs, shape):
    torch.manual_seed(0)
    net = NNUNetPlain(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(shape))
    out_channels = kwargs.get("out_channels", 1)
    assert out.shape == (shape[0], out_channels, *shape[2:]) and torch.isfinite(out).all()


def test_planned_topology():
    net_2d, net_3d = on_meta(2), on_meta(3)
    assert net_2d.features == (32, 64, 128, 256, 480, 480, 480, 480, 480)
    assert net_2d.strides == ((1, 1),) + ((2, 2),) * 7 + ((1, 2),)
    assert net_2d.axis_strides == (128, 256) and net_2d.stride == 256
    assert net_3d.features == (32, 64, 128, 256, 320)
    assert net_3d.strides == ((1, 1, 1),) + ((2, 2, 2),) * 3 + ((1, 2, 2),)
    assert net_3d.axis_strides == (8, 16, 16) and net_3d.stride == 16
    for net in (net_2d, net_3d):
        assert all(k == (3,) * len(k) for k in net.kernel_sizes)
        convs = [m for m in net.encoder.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
        assert [c.stride for c in convs[::2]] == list(net.strides)  # first conv of each stage
        norms = [m for m in net.modules() if isinstance(m, (nn.InstanceNorm2d, nn.InstanceNorm3d))]
        assert len(norms) == 2 * (2 * len(net.strides) - 1) and all(m.affine for m in norms)
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)) for m in net.modules())
        slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
        assert slopes == {0.01}
    # The planned patches (and the Lucchi slice) need no padding.
    for dims, patch in PLANNED_PATCH_SIZE.items():
        net = net_2d if dims == 2 else net_3d
        assert all(p % a == 0 for p, a in zip(patch, net.axis_strides))


def test_parameter_counts():
    # 52,095,552 / 16,218,944 with nnU-Net's unused (weight 0) lowest head; no paper figure.
    assert n_params(on_meta(2)) == 52_095_072
    assert n_params(on_meta(3)) == 16_218_688
    assert n_params(on_meta(2, deep_supervision=False)) == 52_095_072 - 1_888
    assert n_params(on_meta(3, deep_supervision=False)) == 16_218_688 - 192


@pytest.mark.parametrize("kwargs, shape, n_outputs", [
    (TINY_PLANNED_2D, (1, 1, 50, 70), 7),  # 8 decoder stages, the lowest has weight 0
    ({**SMALL_3D}, (2, 1, 9, 17, 12), 3),
    ({"spatial_dims": 3, "features": (4, 8, 8), "strides": (1, 2, 2)}, (1, 1, 8, 8, 8), 1),
])
def test_deep_supervision_list_in_training_tensor_in_eval(kwargs, shape, n_outputs):
    torch.manual_seed(0)
    net = NNUNetPlain(**kwargs).train()
    outputs = net(torch.randn(shape))
    assert isinstance(outputs, list) and len(outputs) == n_outputs == len(net.heads)
    assert all(o.shape == (shape[0], 1, *shape[2:]) for o in outputs)
    weights = net.deep_supervision_weights
    assert len(weights) == n_outputs and sum(weights) == pytest.approx(1.0)
    assert all(a == pytest.approx(2 * b) for a, b in zip(weights, weights[1:]))
    with torch.no_grad():
        assert isinstance(net.eval()(torch.randn(shape)), torch.Tensor)
    plain = NNUNetPlain(**kwargs, deep_supervision=False).train()
    assert isinstance(plain(torch.randn(shape)), torch.Tensor) and len(plain.heads) == 1


def test_training_main_output_equals_eval_output_with_instance_norm():
    torch.manual_seed(0)
    net = NNUNetPlain(**SMALL_2D)  # InstanceNorm without running stats: same in both modes
    x = torch.randn(1, 1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(net.train()(x)[0], net.eval()(x))


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 1}, {"spatial_dims": 4}, {"in_channels": 0}, {"out_channels": 0},
    {"features": (32, 64)},  # 2 features for the 9 planned stages
    {"features": (4, 0), "strides": (1, 2)}, {"features": (4, 2.5), "strides": (1, 2)},
    {"features": (4,), "strides": (1,)}, {"strides": (1, 0)}, {"strides": (1, (2, 2, 2))},
    {"features": (4, 8), "strides": (1, 2), "kernel_sizes": (3, 2)},
    {"features": (4, 8), "strides": (1, 2), "kernel_sizes": (3,)},
    {"n_conv_per_stage": 0}, {"norm": "group"},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="NNUNetPlain"):
        NNUNetPlain(**kwargs)


@pytest.mark.parametrize("name, dims", [("nnunet2d", 2), ("nnunet3d", 3)])
def test_yaml_instantiates_the_planned_network(name, dims):
    with torch.device("meta"):
        net = instantiate(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    assert isinstance(net, NNUNetPlain) and net.strides == on_meta(dims).strides
    assert net.deep_supervision and len(net.encoder) == (9 if dims == 2 else 5)


@pytest.mark.slow
@pytest.mark.parametrize("dims", [2, 3])
def test_planned_patch_size(dims):
    torch.manual_seed(0)
    shape = (1, 1, *PLANNED_PATCH_SIZE[dims])  # 768 x 1024 slices; 40 x 208 x 288 patches
    with torch.no_grad():
        out = NNUNetPlain(dims).eval()(torch.randn(shape))
    assert out.shape == shape and torch.isfinite(out).all()
