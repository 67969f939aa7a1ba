"""The fast overlapped inference (windows of many slices per call, batched TTA) against a plain
loop over windows, and against the one-image-at-a-time path."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from mitoseg.errors import InputError
from mitoseg.inference.network import net_predictor
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.sliding import sliding_window_predict, sliding_window_predict_stack
from mitoseg.inference.tta import predict_with_tta, tta_transforms
from mitoseg.inference.windows import window
from mitoseg.models.nets.unet_paper002 import UNetPaper002


def ref_starts(n: int, p: int, stride: int) -> list[int]:
    starts, s = [], 0
    while s + p < n:
        starts.append(s)
        s += stride
    return starts + [n - p]


def reference(predict, volume: torch.Tensor, patch: tuple[int, int], tta: bool,
              kind: str = "spline") -> torch.Tensor:
    """Plain loop: every slice, every window, every transform one call; float64 sums."""
    transforms = tta_transforms(2) if tta else tta_transforms(2)[:1]
    w = window(patch, kind).double()
    out = torch.zeros(volume.shape, dtype=torch.float64)
    for z in range(volume.shape[0]):
        num = torch.zeros(volume.shape[1:], dtype=torch.float64)
        den = torch.zeros(volume.shape[1:], dtype=torch.float64)
        for y in ref_starts(volume.shape[1], patch[0], patch[0] // 2):
            for x in ref_starts(volume.shape[2], patch[1], patch[1] // 2):
                tile = volume[z, y:y + patch[0], x:x + patch[1]][None, None]
                pred = sum(t.inverse(predict(t.forward(tile))).double() for t in transforms)
                num[y:y + patch[0], x:x + patch[1]] += pred[0, 0] / len(transforms) * w
                den[y:y + patch[0], x:x + patch[1]] += w
        out[z] = num / den
    return out


@pytest.fixture(scope="module")
def small_unet() -> nn.Module:
    torch.manual_seed(0)
    return UNetPaper002(spatial_dims=2, filters=(4, 8, 16, 32, 64)).eval()


@pytest.fixture
def one_thread():
    """Tiny convolutions on a busy 2-core machine: one thread is steadier than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("tta, batch_tta", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("patch", [(32, 32), (32, 48)])
def test_fast_reconstruction_equals_plain_window_loop(small_unet: nn.Module, tta: bool,
                                                      batch_tta: bool, patch: tuple[int, int],
                                                      one_thread) -> None:
    """A real network (convolutions, dropout off): fast path == reference within 1e-5."""
    volume = torch.rand((2, 48, 64), generator=torch.Generator().manual_seed(1))
    predict = net_predictor(small_unet, "cpu")
    got = reconstruct(predict, volume, "overlap_blend", patch, 2, tta=tta, batch_size=5,
                      batch_tta=batch_tta)
    expected = reference(predict, volume, patch, tta)
    assert (got.probabilities.double() - expected).abs().max() <= 1e-5


def tile_dependent(batch: torch.Tensor) -> torch.Tensor:
    """Element-wise per window except for the window mean: batch-size invariant, bit for bit."""
    ramp = torch.linspace(-1, 1, batch.shape[-1])
    return torch.sigmoid(batch * (1 + ramp) + batch.mean(dim=(1, 2, 3), keepdim=True))


@pytest.mark.parametrize("batch_size", [1, 4, 7, 64])
@pytest.mark.parametrize("kind", ["constant", "spline"])
def test_stack_equals_one_image_at_a_time_bit_for_bit(batch_size: int, kind: str) -> None:
    stack = torch.randn((5, 1, 37, 53), generator=torch.Generator().manual_seed(2))
    got = sliding_window_predict_stack(tile_dependent, stack, (16, 20), 0.5, kind, batch_size)
    for z in range(stack.shape[0]):
        one = sliding_window_predict(tile_dependent, stack[z], (16, 20), 0.5, kind, 3)
        assert torch.equal(got[z], one)


@pytest.mark.parametrize("shape", [(2, 1, 6, 6), (2, 1, 5, 7), (2, 1, 3, 5, 7)])
@pytest.mark.parametrize("reduce", ["mean", "median"])
def test_batched_tta_equals_sequential_tta(shape: tuple, reduce: str) -> None:
    seen: list[tuple] = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(batch.shape))
        return tile_dependent(batch) if batch.ndim == 4 else torch.sigmoid(batch)

    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    dims = len(shape) - 2
    sequential = predict_with_tta(predict, x, dims, reduce)
    seen.clear()
    batched = predict_with_tta(predict, x, dims, reduce, batched=True)
    torch.testing.assert_close(batched, sequential, atol=1e-6, rtol=0)
    n = len(tta_transforms(dims))
    square = shape[-1] == shape[-2]
    assert len(seen) == (1 if square else 2)  # one call per input shape
    assert sum(s[0] for s in seen) == n * shape[0]


def test_reconstruct_batches_tta_copies_and_slices_together() -> None:
    calls: list[int] = []

    def predict(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return torch.sigmoid(batch)

    volume = torch.randn((4, 32, 48))
    result = reconstruct(predict, volume, "overlap_blend", (16, 16), 2, tta=True, batch_size=10,
                         batch_tta=True)
    tiles = 3 * 5  # per slice
    assert sum(calls) == 4 * tiles * 8 and max(calls) == 10 * 8
    torch.testing.assert_close(result.probabilities, torch.sigmoid(volume), atol=1e-6, rtol=0)
    calls.clear()  # on the CPU by default: TTA copies one by one, windows of all slices shared
    again = reconstruct(predict, volume, "overlap_blend", (16, 16), 2, tta=True, batch_size=10)
    assert sum(calls) == 4 * tiles * 8 and max(calls) == 10 and len(calls) == 6 * 8
    torch.testing.assert_close(again.probabilities, result.probabilities, atol=1e-6, rtol=0)


def test_stack_on_another_device_argument_and_numpy_input() -> None:
    stack = np.random.default_rng(4).normal(size=(2, 1, 20, 30)).astype(np.float32)
    got = sliding_window_predict_stack(torch.sigmoid, stack, (16, 16), device="cpu")
    torch.testing.assert_close(got, torch.sigmoid(torch.from_numpy(stack)), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="images"):
        sliding_window_predict_stack(torch.sigmoid, stack[0], (16, 16))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_net_predictor_returns_float_probabilities(small_unet: nn.Module, precision: str,
                                                   one_thread) -> None:
    predict = net_predictor(small_unet, "cpu", precision, channels_last=True)
    x = torch.rand((2, 1, 32, 32))
    out = predict(x)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 32, 32)
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    plain = net_predictor(small_unet, "cpu")(x)
    assert (out - plain).abs().max() < (5e-2 if precision == "bf16-mixed" else 1e-5)
    logits = net_predictor(small_unet, "cpu", sigmoid=False)(x)
    torch.testing.assert_close(torch.sigmoid(logits), plain)
    with pytest.raises(InputError, match="precision"):
        net_predictor(small_unet, "cpu", "fp8")


def test_tta_partial_is_what_reconstruct_uses() -> None:
    """The batched TTA wrapper keeps the (B, K, *patch) contract of predict."""
    wrapped = partial(predict_with_tta, torch.sigmoid, spatial_dims=2, batched=True)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(wrapped(x), torch.sigmoid(x), atol=1e-6, rtol=0)
