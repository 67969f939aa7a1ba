"""speed.channels_last and speed.compile: same outputs and checkpoints as the plain network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mitoseg.evaluation.checkpoints import load_network
from mitoseg.models.nets.unet_paper000 import UNetPaper000
from mitoseg.training.module import SegmentationModule
from mitoseg.training.train import train
from tests.conftest import compose_config


def module(**speed: bool) -> SegmentationModule:
    torch.manual_seed(0)
    net = UNetPaper000(base_channels=4)
    return SegmentationModule(net, torch.nn.BCEWithLogitsLoss(),
                              lambda params: torch.optim.SGD(params, lr=0.01), **speed)


def test_channels_last_converts_the_network_and_keeps_outputs_and_names() -> None:
    plain, fast = module(), module(channels_last=True)
    weight = next(p for p in fast.net.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(fast(image), plain(image), rtol=1e-4, atol=1e-4)  # other kernels
    assert list(fast.state_dict()) == list(plain.state_dict())


def test_channels_last_leaves_a_3d_network_as_it_is() -> None:
    """NHWC is a 2D layout: converting 5D weights raised at build ("required rank 4 tensor")."""
    from mitoseg.models.nets.unet_paper002 import UNetPaper002

    torch.manual_seed(0)
    net = UNetPaper002(spatial_dims=3, filters=[4, 8, 8, 16])
    built = SegmentationModule(net, torch.nn.BCEWithLogitsLoss(),
                               lambda params: torch.optim.SGD(params, lr=0.01), channels_last=True)
    assert not built.channels_last
    assert built(torch.randn(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_validation_thresholds_probabilities_in_float32_under_bf16() -> None:
    """Under bf16 autocast sigmoid rounds small positive logits to exactly 0.5, so they would
    count as background in val/as against the test's float32 probabilities."""
    logits = torch.tensor([0.004, 0.0078, -0.004, 1.0]).view(1, 1, 2, 2).bfloat16()
    assert not (torch.sigmoid(logits) > 0.5)[0, 0, 0].any()  # what bf16 alone gives
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module().foreground(logits)
    assert got.flatten().tolist() == [True, True, False, True]


def test_compiled_network_is_not_a_submodule() -> None:
    """A compiled wrapper registered as a submodule would prefix every checkpoint key with
    `_orig_mod.` and duplicate the parameters; the plain names must stay."""
    plain, compiled = module(), module(compile=True)
    assert compiled._compiled_net is not None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert all("_orig_mod" not in name for name, _ in compiled.named_modules())
    assert sum(p.numel() for p in compiled.parameters()) == sum(p.numel() for p in plain.parameters())


def test_training_with_channels_last_gives_the_plain_run_metrics(tmp_path: Path,
                                                                 tiny_overrides: list[str]) -> None:
    plain = train(compose_config("train", tiny_overrides, tmp_path / "plain"))
    fast = train(compose_config("train", [*tiny_overrides, "speed.channels_last=true"],
                                tmp_path / "fast"))
    assert fast["test"]["as"]["mean"] == pytest.approx(plain["test"]["as"]["mean"], abs=1e-4)
    net, config = load_network(tmp_path / "fast" / "checkpoints" / "best.ckpt")  # strict names
    plain_net, _ = load_network(tmp_path / "plain" / "checkpoints" / "best.ckpt")
    assert config["speed"]["channels_last"] is True
    for (name, value), (plain_name, plain_value) in zip(net.state_dict().items(),
                                                        plain_net.state_dict().items()):
        assert name == plain_name
        torch.testing.assert_close(value, plain_value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_training_with_torch_compile_runs_and_saves_plain_names(tmp_path: Path,
                                                                tiny_overrides: list[str]) -> None:
    """torch.compile on the CPU needs a C++ compiler; compiling takes tens of seconds."""
    metrics = train(compose_config("train", [*tiny_overrides, "speed.compile=true"], tmp_path))
    assert 0.0 <= metrics["test"]["as"]["mean"] <= 1.0
    net, config = load_network(tmp_path / "checkpoints" / "best.ckpt")  # strict: plain names
    assert config["speed"]["compile"] is True and isinstance(net, torch.nn.Module)


def test_training_with_images_made_on_the_device(tmp_path: Path, tiny_overrides: list[str]) -> None:
    """dataset.synthesis=device through Lightning's batch hooks (the device here: the CPU)."""
    overrides = [*tiny_overrides, "dataset.synthesis=device"]
    first = train(compose_config("train", overrides, tmp_path / "first"))
    again = train(compose_config("train", overrides, tmp_path / "again"))
    assert 0.0 <= first["test"]["as"]["mean"] <= 1.0
    assert again["test"]["as"]["mean"] == first["test"]["as"]["mean"]  # reproducible
