"""Tiramisu / FC-DenseNet103 (Jégou et al. 2017, compared in paper 002): non-default shapes,
dropout, counts, the dense-block layout, config. The generic checks (input-size output on sizes
off the stride, gradients reaching every parameter, seeding, stored outputs) live in
test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.tiramisu import Tiramisu

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL = {"first_filters": 8, "growth_rate": 4, "layers_per_block": (2, 2, 3, 2, 2)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def n_running_stats(net: nn.Module) -> int:
    return sum(b.numel() for name, b in net.named_buffers() if "running" in name)


@pytest.fixture(scope="module")
def default_net() -> Tiramisu:
    torch.manual_seed(0)
    return Tiramisu()


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL, "layers_per_block": (1, 1, 1, 1, 1, 1, 1), "dropout": 0}, (1, 1, 40, 24),
     (1, 1, 40, 24)),
    (SMALL, (1, 1, 2, 3), (1, 1, 2, 3)),  # below the stride
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = Tiramisu(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(0)
    net = Tiramisu(**SMALL)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        assert torch.equal(net.eval()(x), net(x))


def test_parameter_count_matches_the_publication(default_net):
    trainable = n_params(default_net)
    assert trainable == 9_318_657
    assert abs(trainable / 9.4e6 - 1) < 0.05  # Jégou et al.: FC-DenseNet103 has 9.4 M
    # The reference (Lasagne) counts the BN statistics too: 9.42 M, i.e. "9.4 M".
    assert trainable + n_running_stats(default_net) == 9_421_729


def test_fc_densenet103_architecture(default_net):
    net = default_net
    assert net.stride == 32 and len(net.transitions_down) == len(net.transitions_up) == 5
    blocks = [*net.down_blocks, net.bottleneck, *net.up_blocks]
    assert [len(block.layers) for block in blocks] == [4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4]
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # The "103 layers": first conv + 91 dense layers + 5 TD + 5 TU + final 1x1 conv.
    assert sum(net.layers_per_block) == 91 and len(convs) == 103
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in convs) == 5
    # Skip widths 48 + 16 * cumulative layers: 112, 192, 304, 464, 656.
    assert [td[0][2].out_channels for td in net.transitions_down] == [112, 192, 304, 464, 656]
    # Each transition up carries only the previous block's new maps.
    assert [tu.in_channels for tu in net.transitions_up] == [240, 192, 160, 112, 80]
    assert {m.p for m in net.modules() if isinstance(m, nn.Dropout)} == {0.2}
    assert net.head.in_channels == 80 + 112 + 4 * 16  # TU maps + skip + last block's maps


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"in_channels": 0}, {"out_channels": 0}, {"first_filters": 0},
    {"growth_rate": 0}, {"layers_per_block": (4, 5)}, {"layers_per_block": (4,)},
    {"layers_per_block": (4, 0, 4)}, {"layers_per_block": (4, 2.5, 4)}, {"dropout": 1.0},
    {"dropout": -0.2},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="Tiramisu"):
        Tiramisu(**kwargs)


def test_yaml_instantiates_the_class():
    net = instantiate(OmegaConf.load(CONF / "tiramisu.yaml"))
    assert isinstance(net, Tiramisu) and n_params(net) == 9_318_657
