"""The non-finite loss check: at once on the CPU, in groups of steps read back a group later on
an accelerator (so the CPU never waits for the GPU to check a loss)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from mitoseg.training.finite_check import FINITE_CHECK_EVERY, LaggedFiniteCheck
from mitoseg.training.module import SegmentationModule


def module() -> SegmentationModule:
    return SegmentationModule(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.BCEWithLogitsLoss(),
                              partial(torch.optim.SGD, lr=0.1))


def test_cpu_loss_is_checked_at_once() -> None:
    m = module()
    m._check_finite(torch.tensor(0.5), "train")
    with pytest.raises(FloatingPointError, match="train loss is nan at step 0"):
        m._check_finite(torch.tensor(float("nan")), "train")
    with pytest.raises(FloatingPointError, match="val loss is inf"):
        m._check_finite(torch.tensor(float("inf")), "val")


def losses(check: LaggedFiniteCheck, steps: range, bad: dict[int, float]) -> None:
    for step in steps:
        check.add(step, torch.tensor(bad.get(step, 0.1)))


def test_a_group_is_read_back_when_the_next_one_is_sent() -> None:
    check = LaggedFiniteCheck(every=5)
    losses(check, range(0, 10), {6: float("inf"), 8: float("nan")})  # 2nd group sent, not read
    assert check.pending == [] and check.in_flight.steps == (5, 6, 7, 8, 9)
    losses(check, range(10, 14), {})
    with pytest.raises(FloatingPointError, match="train loss is inf at step 6"):
        check.add(14, torch.tensor(0.1))  # sends the 3rd group, reads the 2nd


def test_the_end_of_an_epoch_reads_every_loss_added() -> None:
    check = LaggedFiniteCheck(every=5)
    losses(check, range(0, 7), {})
    check.flush()  # all finite: nothing raised, nothing left
    assert check.pending == [] and check.in_flight is None
    losses(check, range(7, 9), {8: float("nan")})  # a partial group
    with pytest.raises(FloatingPointError, match="train loss is nan at step 8"):
        check.flush()


def test_the_module_defers_accelerator_losses_and_flushes_at_epoch_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    m = module()
    added = []
    monkeypatch.setattr(m._finite_check, "add", lambda step, loss: added.append(step))
    on_gpu = torch.tensor(float("nan")).to("meta")  # any device but the CPU
    m._check_finite(on_gpu, "train")  # not read now
    assert added == [0]
    flushed = []
    monkeypatch.setattr(m._finite_check, "flush", lambda: flushed.append(True))
    m.on_train_epoch_end(), m.on_train_end()
    assert flushed == [True, True]
    assert FINITE_CHECK_EVERY == m._finite_check.every == 25


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_checking_never_waits_for_the_device() -> None:
    check = LaggedFiniteCheck(every=5)
    loss = torch.ones((), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
    try:
        for step in range(9):  # the first group sent at step 4: computed, copied, not read
            check.add(step, loss * step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.in_flight.steps == (0, 1, 2, 3, 4) and check.in_flight.finite.is_pinned()
    check.flush()
    losses(check, range(5), {})
    bad = torch.tensor(float("inf"), device="cuda")
    for step in range(5, 10):
        check.add(step, bad)
    with pytest.raises(FloatingPointError, match="train loss is inf at step 5"):
        check.flush()
