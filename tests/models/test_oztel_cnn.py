"""Oztel et al.'s patch CNN run fully convolutionally: non-default shapes, counts (paper 002's
0.14 M), the fully connected layers as convolutions, the dense map's consistency with 32 x 32
patches, dropout. The generic checks (input-size output on sizes off the stride, gradients
reaching every parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.oztel_cnn import OztelCNN


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def trained_like_net(seed: int = 0, **kwargs) -> OztelCNN:
    """An eval-mode net whose input BN has non-trivial statistics (not the identity)."""
    torch.manual_seed(seed)
    net = OztelCNN(**kwargs)
    if isinstance(net.norm, nn.BatchNorm2d):
        net.norm.running_mean.fill_(0.3)
        net.norm.running_var.fill_(2.0)
    return net.eval()


CASES = [
    ({}, (1, 1, 5, 7), (1, 1, 5, 7)),  # below the patch size: padded up to 32 x 32
    ({"in_channels": 2, "out_channels": 3, "dropout": 0, "input_norm": False},
     (2, 2, 33, 40), (2, 3, 33, 40)),
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    net = trained_like_net(**kwargs)
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert net.stride == 8 and net.patch_size == 32


def test_parameter_count_matches_the_paper():
    count = n_params(OztelCNN())
    assert count == 143_395
    assert abs(count / 0.14e6 - 1) < 0.05  # paper 002: "relatively low (0.14M)"
    assert n_params(OztelCNN(out_channels=2)) == 143_460  # the original 2-class softmax head
    assert n_params(OztelCNN(input_norm=False)) == 143_393


def test_four_convolutions_then_fully_connected_layers_as_convolutions():
    net = OztelCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [
        (32, (5, 5)), (32, (5, 5)), (64, (5, 5)), (64, (4, 4)), (1, (1, 1))]
    pools = [type(m) for m in net.features if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert pools == [nn.MaxPool2d, nn.AvgPool2d, nn.AvgPool2d]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5]
    assert not any(isinstance(m, nn.Dropout) for m in OztelCNN(dropout=0).modules())


def test_patch_logit_is_the_fully_connected_classifier_on_the_patch():
    net = trained_like_net()
    patches = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        features = net.features(net.norm(patches))
        assert features.shape == (5, 64, 4, 4)  # 32 -> 16 -> 8 -> 4
        fc1, fc2 = net.classifier[0], net.classifier[2]
        hidden = F.relu(F.linear(features.flatten(1), fc1.weight.flatten(1), fc1.bias))
        logits = F.linear(hidden, fc2.weight.flatten(1), fc2.bias)
        grid = net.patch_logits(patches)
    assert grid.shape == (5, 1, 1, 1)
    torch.testing.assert_close(grid.flatten(1), logits)


def test_a_patch_gives_its_centre_logit_everywhere():
    net = trained_like_net()
    patches = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        dense, grid = net(patches), net.patch_logits(patches)
    assert dense.shape == (4, 1, 32, 32)
    assert torch.equal(dense[:, :, 16, 16], grid[:, :, 0, 0])  # the labelled centre pixel
    assert torch.equal(dense, grid.expand_as(dense))  # constant map: one patch, one logit


def test_dense_map_passes_through_every_patch_logit_at_its_window_centre():
    net = trained_like_net()
    image = torch.randn(2, 1, 96, 80)  # multiples of 8: nothing padded
    with torch.no_grad():
        dense, grid = net(image), net.patch_logits(image)
    assert grid.shape == (2, 1, 96 // 8 - 3, 80 // 8 - 3)
    # Window (i, j) covers rows 8i..8i+31, cols 8j..8j+31; its centre is (8i + 16, 8j + 16).
    assert torch.equal(dense[:, :, 16:81:8, 16:65:8], grid)
    # Between centres the map is linear; outside the outer centres it is constant.
    torch.testing.assert_close(dense[:, :, 20, 16], grid[:, :, :2, 0].mean(dim=2))
    torch.testing.assert_close(dense[:, :, 18, 16], 0.75 * grid[:, :, 0, 0]
                               + 0.25 * grid[:, :, 1, 0])
    assert torch.equal(dense[:, :, :17, 16], grid[:, :, :1, 0].expand(2, 1, 17))
    assert torch.equal(dense[:, :, 80:, 64:], grid[:, :, -1:, -1:].expand(2, 1, 16, 16))


def test_whole_image_logits_see_context_beyond_their_window():
    # The first grid entry of an image and that of its top-left 32 x 32 crop share the zero
    # padding on the top and left, but inside the image the right and bottom edges see real
    # neighbours: the fully convolutional map is the sliding window with context (a 67-pixel
    # receptive field, cut to rows/cols 0..52 in the top-left corner), not 32 x 32 crops
    # classified one by one.
    net = trained_like_net()
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        crop_logit = net.patch_logits(image[:, :, :32, :32])[0, 0, 0, 0]
        whole_logit = net.patch_logits(image)[0, 0, 0, 0]
        for edge, changes in ((53, False), (52, True)):  # entry (0, 0) sees pixels 0..52
            cut = image.clone()
            cut[:, :, edge:, :] = 0
            cut[:, :, :, edge:] = 0
            assert torch.equal(net.patch_logits(cut)[0, 0, 0, 0], whole_logit) != changes
    assert not torch.isclose(crop_logit, whole_logit)


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(0)
    net = OztelCNN()
    x = torch.randn(2, 1, 40, 48)
    with torch.no_grad():
        torch.manual_seed(1)
        first = net.train()(x)
        torch.manual_seed(2)
        assert not torch.equal(first, net(x))
        assert torch.equal(net.eval()(x), net(x))


@pytest.mark.parametrize("kwargs", [
    {"in_channels": 0}, {"out_channels": 0}, {"dropout": 1.0}, {"dropout": -0.1},
    {"input_norm": "yes"},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="OztelCNN"):
        OztelCNN(**kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 24, 32), (1, 1, 36, 40), (1, 32, 32)])
def test_patch_logits_rejects_sizes_forward_would_pad(shape):
    with pytest.raises(ValueError, match="OztelCNN"):
        OztelCNN().eval().patch_logits(torch.zeros(shape))


def test_yaml_builds_the_class():
    net = hydra.utils.instantiate(OmegaConf.load("conf/model/oztel_cnn.yaml"))
    assert isinstance(net, OztelCNN) and n_params(net) == 143_395
