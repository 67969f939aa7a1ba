"""The one Predictor: 2D images, stacks and volumes; 2D and 3D networks; the stored scaling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.reconstruction import ReconstructionSettings, from_inference_config
from mitoseg.inference.network import net_predictor
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.zfilter import median_z_filter
from mitoseg.models.nets.unet_paper002 import UNetPaper002
from mitoseg.postproc.binarize import Binarize

WHOLE = ReconstructionSettings("whole_image")


def _net(spatial_dims: int) -> torch.nn.Module:
    torch.manual_seed(0)
    filters = [4, 8, 8, 16, 16] if spatial_dims == 2 else [4, 8, 8, 16]
    return UNetPaper002(spatial_dims=spatial_dims, filters=filters).eval()


def _predictor(net: torch.nn.Module, spatial_dims: int, settings=WHOLE,
               normalization: Normalization = Normalization("none"), **kwargs) -> Predictor:
    return Predictor.from_module(net, normalization, spatial_dims, settings, Binarize(0.5),
                                 device="cpu", **kwargs)


@torch.no_grad()
def _old_predict_probabilities(net, image, normalization):
    """The removed ``evaluation/predict.predict_probabilities``, verbatim: the reference."""
    x = torch.from_numpy(np.asarray(normalization(image), dtype=np.float32))[None, None]
    return torch.sigmoid(net.to("cpu")(x).float())[0, 0].cpu().numpy()


def test_whole_image_equals_the_old_2d_prediction_exactly() -> None:
    net = _net(2)
    image = np.random.default_rng(0).normal(100, 20, (48, 80)).astype(np.float32)
    normalization = Normalization("zscore")
    got = _predictor(net, 2, normalization=normalization).probabilities(image)
    assert got.dtype == np.float32 and got.shape == image.shape
    assert np.array_equal(got, _old_predict_probabilities(net, image, normalization))


def test_a_2d_network_over_a_stack_goes_slice_by_slice() -> None:
    net = _net(2)
    stack = np.random.default_rng(1).random((5, 32, 48)).astype(np.float32)
    predictor = _predictor(net, 2)
    together = predictor.probabilities(stack)
    assert together.shape == stack.shape
    # one batched call against one call per slice: equal up to float32 rounding of the
    # convolutions (batch size changes the summation order on some backends)
    for z in range(len(stack)):
        np.testing.assert_allclose(together[z], predictor.probabilities(stack[z]), rtol=0,
                                   atol=1e-6)


def test_a_3d_network_sees_the_volume_whole() -> None:
    net = _net(3)
    volume = np.random.default_rng(2).random((8, 32, 32)).astype(np.float32)
    got = _predictor(net, 3).probabilities(volume)
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(volume)[None, None]))[0, 0].numpy()
    assert np.array_equal(got, expected)
    blend = ReconstructionSettings("overlap_blend", patch_size=(8, 16, 16), batch_size=4)
    got = _predictor(net, 3, blend).probabilities(volume)
    reference = reconstruct(net_predictor(net, "cpu"), volume, "overlap_blend", (8, 16, 16), 3,
                            batch_size=4, device="cpu").probabilities.numpy()
    assert np.array_equal(got, reference)
    with pytest.raises(InputError, match="3D network needs a volume"):
        _predictor(net, 3).probabilities(volume[0])


def test_the_stored_normalization_is_applied_first() -> None:
    net = _net(2)
    raw = np.random.default_rng(3).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    scaled = _predictor(net, 2, normalization=Normalization("scale", scale=255.0))
    plain = _predictor(net, 2, normalization=Normalization("none"))
    assert np.array_equal(scaled.probabilities(raw),
                          plain.probabilities(raw.astype(np.float32) / np.float32(255.0)))
    zscore = _predictor(net, 2, normalization=Normalization("zscore"))
    assert np.array_equal(zscore.probabilities(raw[0]),
                          plain.probabilities(Normalization("zscore")(raw[0])))


def test_tta_and_z_filter_use_the_inference_kernels() -> None:
    net = _net(2)
    stack = np.random.default_rng(4).random((6, 32, 32)).astype(np.float32)
    settings = from_inference_config(
        {"headline": {"protocol": "full_image", "tta": True, "zfilter": 5}, "divisor": 16},
        patch_size=(32, 32))
    assert (settings.reconstruction, settings.tta, settings.zfilter) == ("full_image", True, 5)
    got = _predictor(net, 2, settings).probabilities(stack)
    raw = reconstruct(net_predictor(net, "cpu"), stack, "full_image", (32, 32), 2, tta=True,
                      device="cpu").probabilities.numpy()
    assert np.array_equal(got, median_z_filter(raw, 5))
    card = settings.describe(2)
    assert card["tta"] == 8 and card["zfilter"] == {"size": 5, "axis": "z"}
    assert card["window"] is None and card["overlap"] is None


def test_the_description_of_an_input_names_only_the_z_filter_that_runs() -> None:
    """The z-median needs more than one slice: a single image (or a one-slice stack) is
    predicted and described without it, a stack with it."""
    settings = from_inference_config({"headline": {"protocol": "full_image", "zfilter": 5}},
                                     patch_size=(32, 32))
    predictor = _predictor(_net(2), 2, settings)
    stack = np.random.default_rng(5).random((3, 32, 32)).astype(np.float32)
    unfiltered = _predictor(_net(2), 2, replace(settings, zfilter=0)).probabilities(stack)
    assert np.array_equal(predictor.probabilities(stack[0]), unfiltered[0])
    assert predictor.describe((32, 32))["reconstruction"]["zfilter"]["size"] == 0
    assert predictor.describe((1, 32, 32))["reconstruction"]["zfilter"]["size"] == 0
    assert predictor.describe((3, 32, 32))["reconstruction"]["zfilter"]["size"] == 5
    assert predictor.describe()["reconstruction"]["zfilter"]["size"] == 5  # as configured


def test_masks_image_by_image_or_as_a_volume() -> None:
    seen = []

    class NeedsImage:
        needs_image = True

        def __call__(self, probabilities, image=None):
            seen.append(image)
            return probabilities > 0.5

    probabilities = np.random.default_rng(5).random((3, 8, 8)).astype(np.float32)
    image = np.arange(3 * 64, dtype=np.float32).reshape(3, 8, 8)
    predictor = Predictor.from_module(_net(2), Normalization("none"), 2, WHOLE, NeedsImage(),
                                      device="cpu")
    masks = predictor.masks(probabilities, image)
    assert masks.dtype == bool and np.array_equal(masks, probabilities > 0.5)
    assert len(seen) == 3 and all(np.array_equal(s, i) for s, i in zip(seen, image))
    volume = Predictor.from_module(_net(2), Normalization("none"), 2, WHOLE, NeedsImage(),
                                   device="cpu", volume_postproc=True)
    seen.clear()
    volume.masks(probabilities, image)
    assert len(seen) == 1 and seen[0].shape == (3, 8, 8)


def test_bad_reconstructions_are_refused() -> None:
    with pytest.raises(InputError, match="unknown reconstruction"):
        ReconstructionSettings("sideways")
    with pytest.raises(InputError, match="needs a window"):
        ReconstructionSettings("overlap")
    with pytest.raises(InputError, match="zfilter"):
        ReconstructionSettings("full_image", zfilter=4)
    with pytest.raises(InputError, match="2D image"):
        _predictor(_net(2), 2).probabilities(np.zeros((2, 2, 8, 8), np.float32))


def test_a_compiled_network_gives_the_same_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """inference.compile: torch.compile of the network; the card does not change."""
    pytest.importorskip("torch._inductor")
    compiled_nets, real = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda net: compiled_nets.append(net) or real(net))
    net = _net(2)
    stack = np.random.default_rng(6).random((3, 32, 32)).astype(np.float32)  # one shape
    settings = from_inference_config({"headline": {"protocol": "full_image", "tta": True},
                                      "compile": True}, patch_size=(32, 32))
    assert settings.compile and from_inference_config({}, None).compile is False
    compiled = _predictor(net, 2, settings).probabilities(stack)
    assert compiled_nets == [net]
    eager = _predictor(net, 2, settings.__class__(**{**settings.__dict__, "compile": False}))
    np.testing.assert_allclose(compiled, eager.probabilities(stack), rtol=0, atol=1e-5)
    assert settings.describe(2) == eager.settings.describe(2)


def test_a_network_that_cannot_be_compiled_runs_uncompiled_after_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def call(batch):  # noqa: ANN001, ANN202
            raise RuntimeError("no C++ compiler found\nlong trace")
        return call

    monkeypatch.setattr(torch, "compile", failing)
    net = _net(2)
    image = np.random.default_rng(7).random((32, 48)).astype(np.float32)
    settings = ReconstructionSettings("whole_image", compile=True)
    with caplog.at_level("WARNING", logger="mitoseg.inference.network"):
        predictor = _predictor(net, 2, settings)
        first, second = predictor.probabilities(image), predictor.probabilities(image)
    assert np.array_equal(first, _predictor(net, 2).probabilities(image))
    assert np.array_equal(first, second)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["torch.compile failed (RuntimeError: no C++ compiler found); "
                        "predicting without it"]
    with pytest.raises(RuntimeError, match="Given groups=1"):  # a wrong input still stops
        predictor.predict(torch.zeros(1, 3, 32, 32))
