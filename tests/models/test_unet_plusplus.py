"""U-Net++ (Zhou et al. 2018, compared in paper 002): non-default shapes, gradients with deep
supervision on (off in conf/model), dropout, the deep-supervision heads, counts, nested layout,
config. The generic checks (input-size output on sizes off the stride, gradients reaching every
parameter, seeding, stored outputs) live in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.models.nets.unet_plusplus import UNetPlusPlus

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
SMALL = {"filters": (4, 8, 8)}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# (kwargs, input shape, expected output shape), MONAI style.
CASES = [
    ({**SMALL, "in_channels": 2, "out_channels": 3}, (2, 2, 9, 17), (2, 3, 9, 17)),
    ({**SMALL, "dropout": 0, "deep_supervision": True}, (1, 1, 2, 3), (1, 1, 2, 3)),  # < stride
    ({"filters": (4, 8, 16, 16, 32, 32)}, (1, 1, 40, 24), (1, 1, 40, 24)),  # 5 poolings
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shape(kwargs, input_shape, expected):
    torch.manual_seed(0)
    net = UNetPlusPlus(**kwargs).eval()
    with torch.no_grad():
        out = net(torch.randn(input_shape))
    assert out.shape == expected and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.fixture(scope="module")
def default_net() -> UNetPlusPlus:
    torch.manual_seed(0)
    return UNetPlusPlus()


def test_backward_with_deep_supervision_reaches_every_parameter():
    # conf/model has deep supervision off: the contract never trains the auxiliary heads.
    torch.manual_seed(0)
    net = UNetPlusPlus(**SMALL, deep_supervision=True)
    image = torch.randn(2, 1, 20, 27, requires_grad=True)
    target = (torch.rand(2, 1, 20, 27) > 0.8).float()
    outputs = net(image)
    assert isinstance(outputs, list)
    sum(F.binary_cross_entropy_with_logits(o, target) for o in outputs).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(0)
    net = UNetPlusPlus(**SMALL)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        assert torch.equal(net.eval()(x), net(x))


def test_deep_supervision_list_in_training_tensor_in_eval():
    torch.manual_seed(0)
    net = UNetPlusPlus(**SMALL, dropout=0, deep_supervision=True)
    x = torch.randn(2, 1, 21, 30)
    with torch.no_grad():
        outputs = net.train()(x)
        main = net.eval()(x)
    assert isinstance(outputs, list) and len(outputs) == 2  # X0,2 (main) and X0,1
    assert all(o.shape == (2, 1, 21, 30) for o in outputs)
    assert isinstance(main, torch.Tensor) and torch.equal(outputs[0], main)
    assert not torch.allclose(outputs[0], outputs[1])
    # Without deep supervision a tensor in both modes, and only the main head exists.
    plain = UNetPlusPlus(**SMALL, deep_supervision=False)
    assert isinstance(plain.train()(x), torch.Tensor) and len(plain.heads) == 1
    assert len(UNetPlusPlus(filters=(2, 2, 2, 2, 2), deep_supervision=True).heads) == 4


def test_parameter_counts_match_the_official_code(default_net):
    # The official model_logic.py: "Standard UNet++ ... Total params: 9,041,601".
    assert n_params(default_net) == 9_041_601
    assert n_params(UNetPlusPlus(deep_supervision=True)) == 9_041_601 + 3 * 33


def test_nested_architecture(default_net):
    net = default_net
    assert net.stride == 16 and net.filters == (32, 64, 128, 256, 512)
    assert [len(row) for row in net.nodes] == [5, 4, 3, 2, 1]  # 15 nodes X[i][j], i + j <= 4
    # X[i][j] reads the up-sampled X[i+1][j-1] plus all j earlier nodes of its row.
    for i, row in enumerate(net.nodes):
        for j, node in enumerate(row):
            if j > 0:
                assert node[0].in_channels == (j + 1) * net.filters[i]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == 10
    assert {m.p for m in net.modules() if isinstance(m, nn.Dropout)} == {0.5}
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 30  # 2 per node


@pytest.mark.parametrize("kwargs", [
    {"spatial_dims": 3}, {"in_channels": 0}, {"out_channels": 0}, {"filters": (16,)},
    {"filters": (16, 0)}, {"filters": (16, 2.5)}, {"dropout": 1.0}, {"dropout": -0.1},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="UNetPlusPlus"):
        UNetPlusPlus(**kwargs)


def test_yaml_instantiates_the_class():
    cfg = OmegaConf.load(CONF / "unet_plusplus.yaml")
    assert "filters" not in cfg and "dropout" not in cfg  # the official defaults
    cfg.filters = [2, 2, 2, 2, 2]  # a narrow net: building 9 M He-normal weights is slow
    net = instantiate(cfg)
    assert isinstance(net, UNetPlusPlus) and not net.deep_supervision and len(net.heads) == 1
