"""Paper 002's SE U-Net (2D and 3D): shapes and gradients for the non-default options, dropout,
counts, SE placement and the SE block itself, config. The generic checks for se_unet and se_unet3d
(input-size output on sizes off the stride, gradients reaching every parameter, seeding, stored
outputs) live in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.se_unet_paper002 import SEUNetPaper002, SqueezeExcitation
from mitoseg.models.nets.unet_paper002 import UNetPaper002

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL_2D = {"filters": (4, 8, 8), "dropout": (0.1, 0.2, 0.3)}
SMALL_3D = {"spatial_dims": 3, "filters": (4, 6, 8), "dropout": (0.1, 0.2, 0.3)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL_2D, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL_2D, "upsample": "nearest", "batch_norm": True}, (2, 1, 37, 53), (2, 1, 37, 53)),
    ({"dropout": 0, "activation": "relu", "init": "glorot_uniform", "se_every_conv": True},
     (1, 1, 64, 48), (1, 1, 64, 48)),
    ({"spatial_dims": 3, "se_in_bottleneck": True}, (1, 1, 20, 28, 36), (1, 1, 20, 28, 36)),
    ({**SMALL_3D, "out_channels": 2, "batch_norm": True}, (2, 1, 5, 6, 7), (2, 2, 5, 6, 7)),
    ({**SMALL_3D, "upsample": "nearest", "se_ratio": 2}, (1, 1, 12, 16, 8), (1, 1, 12, 16, 8)),
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = SEUNetPaper002(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, shape", [
    ({**SMALL_3D, "se_every_conv": True}, (2, 1, 9, 10, 11)),
    ({**SMALL_2D, "se_in_bottleneck": True, "batch_norm": True}, (2, 1, 20, 24))])
def test_backward_gives_finite_gradients_for_every_parameter(kwargs, shape):
    torch.manual_seed(0)
    net = SEUNetPaper002(**kwargs)
    image = torch.randn(shape, requires_grad=True)
    target = (torch.rand(shape) > 0.8).float()
    F.binary_cross_entropy_with_logits(net(image), target).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(0)
    net = SEUNetPaper002(**SMALL_2D)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        assert torch.equal(net.eval()(x), net(x))


def test_parameter_counts():
    se_2d, se_3d = n_params(SEUNetPaper002(2)), n_params(SEUNetPaper002(3))
    unet_2d, unet_3d = n_params(UNetPaper002(2)), n_params(UNetPaper002(3))
    assert se_2d == 1_946_257 and se_3d == 789_793
    # Two bias-free FC layers C -> max(1, C // 16) -> C per SE, in encoder and decoder.
    assert se_2d - unet_2d == 2 * sum(2 * c * max(1, c // 16) for c in (16, 32, 64, 128))
    assert se_3d - unet_3d == 2 * sum(2 * c * max(1, c // 16) for c in (28, 36, 48))
    # The paper: "less than 2M in our proposed 2D models" (1.95 M, within 5 % of 2 M).
    assert se_2d < 2e6 and abs(se_2d / 2e6 - 1) < 0.05
    # "three times fewer" parameters in 3D: 2.46x fewer here, as for the U-Net it builds on.
    assert 2.4 < se_2d / se_3d < 2.5


@pytest.mark.parametrize("spatial_dims, stride, bottleneck", [(2, 16, 256), (3, 8, 64)])
def test_se_placement(spatial_dims, stride, bottleneck):
    net = SEUNetPaper002(spatial_dims)
    assert net.stride == stride
    encoders, decoders = net.unet.encoders, net.unet.decoders
    # Roy et al.: after every encoder and decoder block, not the bottleneck.
    assert [isinstance(b[-1], SqueezeExcitation) for b in encoders] == \
        [True] * (len(encoders) - 1) + [False]
    assert all(isinstance(b[-1], SqueezeExcitation) for b in decoders)
    assert all(sum(isinstance(m, SqueezeExcitation) for m in b) == 1 for b in decoders)
    assert len(net.se_blocks) == 2 * (len(encoders) - 1)
    deeper = SEUNetPaper002(spatial_dims, se_in_bottleneck=True)
    assert deeper.unet.encoders[-1][-1].excite[0].in_features == bottleneck
    assert len(deeper.se_blocks) == len(net.se_blocks) + 1
    # The paper's other variant: one after every convolution (act -> SE -> dropout).
    every = SEUNetPaper002(spatial_dims, se_every_conv=True)
    assert len(every.se_blocks) == 2 * len(net.se_blocks)
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    assert [type(m) for m in every.unet.encoders[0]] == [
        conv, nn.ELU, SqueezeExcitation, nn.Dropout, conv, nn.ELU, SqueezeExcitation]


def test_reduction_ratio_and_hidden_units():
    hidden = [se.excite[0].out_features for se in SEUNetPaper002(2).se_blocks]
    assert hidden == [1, 2, 4, 8, 8, 4, 2, 1]  # C // 16, encoder then deepest decoder first
    assert [se.excite[0].out_features for se in SEUNetPaper002(3).se_blocks] == \
        [1, 2, 3, 3, 2, 1]
    assert [se.excite[0].out_features for se in SEUNetPaper002(2, se_ratio=4).se_blocks][:2] \
        == [4, 8]
    assert all(layer.bias is None for se in SEUNetPaper002(2).se_blocks
               for layer in se.excite if isinstance(layer, nn.Linear))


@pytest.mark.parametrize("shape", [(2, 32, 7, 9), (3, 5, 4, 6, 8)])
def test_squeeze_excitation_rescales_each_channel(shape):
    torch.manual_seed(0)
    se = SqueezeExcitation(shape[1], ratio=16)
    x = torch.randn(shape) * 3
    gains = se.scales(x)
    assert gains.shape == shape[:2] and (gains > 0).all() and (gains < 1).all()
    torch.testing.assert_close(se(x), x * gains.view(*shape[:2], *(1,) * (len(shape) - 2)))
    # Squeeze = global average: a spatial permutation does not change the gains.
    flat = x.flatten(2)
    shuffled = flat[..., torch.randperm(flat.shape[-1])].view(shape)
    torch.testing.assert_close(se.scales(shuffled), gains)
    # Excitation = sigmoid(W2 relu(W1 z)), bias-free.
    z = x.mean(dim=tuple(range(2, x.dim())))
    w1, w2 = se.excite[0].weight, se.excite[2].weight
    torch.testing.assert_close(gains, torch.sigmoid(F.relu(z @ w1.T) @ w2.T))


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 1}, {"spatial_dims": 4}, {"in_channels": 0}, {"out_channels": 0},
    {"filters": (16,)}, {"filters": (16, 0)}, {"filters": (16, 2.5)},
    {"dropout": (0.1, 0.2)}, {"dropout": 1.0}, {"dropout": -0.1},
    {"filters": (16, 32, 64, 128)},  # 4 levels in 2D: no default dropout of that length
    {"activation": "gelu"}, {"init": "orthogonal"}, {"upsample": "bilinear"},
    {"se_ratio": 0}, {"se_ratio": 2.5}, {"se_ratio": True},
    {"se_in_bottleneck": "yes"}, {"se_every_conv": 1},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="SEUNetPaper002"):
        SEUNetPaper002(**kwargs)


def test_bad_squeeze_excitation_arguments_raise_value_error():
    with pytest.raises(ValueError, match="SqueezeExcitation"):
        SqueezeExcitation(0)
    with pytest.raises(ValueError, match="SqueezeExcitation"):
        SqueezeExcitation(8, ratio=0)


@pytest.mark.parametrize("name, spatial_dims", [("se_unet", 2), ("se_unet3d", 3)])
def test_yaml_builds_the_paper_network(name, spatial_dims):
    torch.manual_seed(0)
    net = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(net, SEUNetPaper002)
    assert n_params(net) == n_params(SEUNetPaper002(spatial_dims))
    shape = (1, 1, 24, 24) if spatial_dims == 2 else (1, 1, 8, 12, 16)
    with torch.no_grad():
        assert net.eval()(torch.randn(shape)).shape == shape
