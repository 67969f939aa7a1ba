"""FCN-8s / FCN-32s on VGG16 (paper 002's comparison): sub-stride inputs, channels, dropout,
counts, layout, config. The generic checks (input-size output on sizes off the stride, gradients
reaching every parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.fcn_vgg16 import FCNVGG16

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
VARIANTS = ["fcn8", "fcn32"]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module", params=VARIANTS)
def net(request) -> FCNVGG16:
    """One 50 M-parameter net per variant for the whole module (building one takes ~0.5 s)."""
    torch.manual_seed(0)
    return FCNVGG16(variant=request.param)


def test_output_shape_below_the_stride(net):
    shape = (1, 1, 9, 17)  # smaller than one stride (32): padded up and cropped back
    with torch.no_grad():
        out = net.eval()(torch.randn(shape))
    assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_channels():
    torch.manual_seed(0)
    net = FCNVGG16(in_channels=2, out_channels=3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 40, 40)).shape == (1, 3, 40, 40)


def test_eval_is_deterministic_and_training_uses_dropout(net):
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), net(x))
        torch.manual_seed(1)
        assert not torch.equal(net.train()(x), net.eval()(x))


def test_parameter_counts_match_paper_002():
    fcn8, fcn32 = FCNVGG16(variant="fcn8"), FCNVGG16(variant="fcn32")
    assert n_params(fcn8) == 50_378_467
    assert abs(n_params(fcn8) / 50.38e6 - 1) < 0.05  # paper 002: "FCN8 is 50.38M"
    assert n_params(fcn32) == 50_377_409  # score layers/transposed convs of FCN-8s: +1,058
    # The paper's figure needs the 3x3 fc6: a 7x7 one (classic VGG16 fc6) gives 134 M.
    fc6 = fcn8.classifier[0]
    assert fc6.kernel_size == (3, 3) and fc6.out_channels == 4096
    assert n_params(fcn8) + 512 * 4096 * (49 - 9) > 1.05 * 50.38e6


def test_architecture():
    fcn8, fcn32 = FCNVGG16(variant="fcn8"), FCNVGG16(variant="fcn32")
    for net in (fcn8, fcn32):
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        widths = [m.out_channels for m in convs if m.kernel_size == (3, 3)]
        assert widths == [64, 64, 128, 128, 256, 256, 256] + [512] * 6 + [4096]
        assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5
        assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
        assert net.stride == 32
    ups = [m for m in fcn8.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride) for m in ups] == [((4, 4), (2, 2))] * 2 + [((16, 16), (8, 8))]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in fcn32.modules())


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"in_channels": 0}, {"out_channels": 0}, {"variant": "fcn16"},
    {"dropout": 1.0}, {"dropout": -0.1},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="FCNVGG16"):
        FCNVGG16(**kwargs)


@pytest.mark.parametrize("name, variant", [("fcn8", "fcn8"), ("fcn32", "fcn32")])
def test_yaml_instantiates_the_class(name, variant):
    net = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(net, FCNVGG16) and net.variant == variant
