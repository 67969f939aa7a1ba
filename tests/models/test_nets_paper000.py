"""The U-Net and FCN of paper 000: shapes for the non-default options and below the stride,
architecture counts, the FCN's bilinear up-samplers, bad arguments. The generic checks for
unet_paper000 and fcn_paper000 (input-size output on sizes off the stride, gradients reaching every
parameter, seeding, stored outputs) live in test_contract.py; padding in
tests/inference/test_padding.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.models.nets.fcn_paper000 import FCNPaper000
from mitoseg.models.nets.unet_paper000 import UNetPaper000

NETS = [UNetPaper000, FCNPaper000]

# (kwargs, input shape, expected output shape), MONAI style. Small widths: CPU-fast.
CASES = [
    ({"base_channels": 4, "in_channels": 2}, (2, 2, 40, 40), (2, 1, 40, 40)),
    ({"base_channels": 4, "out_channels": 2}, (1, 1, 40, 24), (1, 2, 40, 24)),
    ({"base_channels": 2, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({"base_channels": 2}, (1, 1, 2, 3), (1, 1, 2, 3)),  # tiny: replicate padding
]
UNET_ONLY = [({"base_channels": 4, "batch_norm": True}, (2, 1, 37, 53), (2, 1, 37, 53))]


def _cases():
    for net in NETS:
        for kwargs, shape, expected in CASES + (UNET_ONLY if net is UNetPaper000 else []):
            yield pytest.param(net, kwargs, shape, expected,
                               id=f"{net.__name__}-{'-'.join(f'{k}{v}' for k, v in kwargs.items())}"
                                  f"-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("net_class, kwargs, input_shape, expected", list(_cases()))
def test_output_shape(net_class, kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = net_class(spatial_dims=2, **kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def _count_calls(net: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """How many 3x3 convolutions, max-poolings and transposed convolutions a forward pass runs."""
    counts = {"conv3x3": 0, "maxpool": 0, "convtranspose": 0, "conv1x1": 0}

    def hook(module, _inputs, _output):
        if isinstance(module, nn.MaxPool2d):
            counts["maxpool"] += 1
        elif isinstance(module, nn.ConvTranspose2d):
            counts["convtranspose"] += 1
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            counts["conv3x3"] += 1
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            counts["conv1x1"] += 1

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    return counts


def test_unet_architecture_counts():
    net = UNetPaper000(2, 1, 1, base_channels=4)
    counts = _count_calls(net, torch.zeros(1, 1, 64, 64))
    assert counts == {"conv3x3": 14, "maxpool": 3, "convtranspose": 3, "conv1x1": 1}
    # The modules themselves, not just the calls: 14 distinct 3x3 convolutions.
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in net.modules()) == 14
    # Channels double at every pooling: c, 2c, 4c, 8c.
    widths = [m.out_channels for m in net.modules()
              if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert widths[:8] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert widths[8:] == [16, 16, 8, 8, 4, 4]
    # Batch norm only when asked for.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with_bn = UNetPaper000(2, 1, 1, base_channels=4, batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 14


def test_fcn_architecture_counts():
    net = FCNPaper000(2, 1, 1, base_channels=4)
    counts = _count_calls(net, torch.zeros(1, 1, 64, 64))
    assert counts["conv3x3"] == 9
    assert counts["maxpool"] == 3
    assert counts["convtranspose"] == 2  # the two fused up-sampling paths
    assert counts["conv1x1"] == 2  # their score layers
    blocks = [sum(isinstance(m, nn.Conv2d) for m in block.modules())
              for block in (net.block1, net.block2, net.block3, net.block4)]
    assert blocks == [2, 2, 3, 2]


@pytest.mark.parametrize("net_class", NETS)
@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"spatial_dims": 1}, {"base_channels": 0}, {"in_channels": 0},
    {"out_channels": 0},
])
def test_bad_arguments_raise_value_error(net_class, kwargs):
    with pytest.raises(ValueError):
        net_class(**kwargs)


@pytest.mark.parametrize("factor, layer", [(4, "up_pool2"), (8, "up_last")])
def test_fcn_upsamplers_start_as_bilinear_interpolation(factor, layer):
    net = FCNPaper000(2, 1, 2, base_channels=4)
    upsample = getattr(net, layer)
    with torch.no_grad():
        constant = upsample(torch.full((1, 2, 10, 12), 3.0))
        assert constant.shape == (1, 2, 10 * factor, 12 * factor)
        interior = constant[..., factor:-factor, factor:-factor]
        torch.testing.assert_close(interior, torch.full_like(interior, 3.0))
        # Not only constants: any map is bilinearly interpolated (half-pixel centres).
        x = torch.randn(1, 2, 10, 12)
        expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        got = upsample(x)
        torch.testing.assert_close(got[..., factor:-factor, factor:-factor],
                                   expected[..., factor:-factor, factor:-factor])
    # ... and stays learnable.
    assert upsample.weight.requires_grad


def test_fcn_maps_a_constant_image_to_a_constant_away_from_borders():
    torch.manual_seed(0)
    net = FCNPaper000(2, 1, 1, base_channels=4).eval()
    with torch.no_grad():
        out = net(torch.full((1, 1, 200, 200), 2.0))
    # Zero padding of the 3x3 convolutions reaches about 40 px in; beyond that, one value.
    centre = out[..., 48:-48, 48:-48]
    torch.testing.assert_close(centre, torch.full_like(centre, float(centre[0, 0, 0, 0])))
