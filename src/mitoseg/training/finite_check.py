"""Stop a diverged training run without making the CPU wait for the GPU.

Reading a loss back (``if not torch.isfinite(loss)``) makes the CPU wait until the GPU has
finished the step, so the next batch would be prepared only once the GPU has gone idle. A read
every few steps still drains the GPU's queue each time. So on an accelerator the training losses
are collected, and every ``every`` steps whether they are finite is computed on the device and
copied to pinned host memory without waiting. That copy is read when the next group is sent
(by then long done) or at the end of the epoch. The error names the first non-finite step, at
most two groups after it happened. On the CPU there is no queue: every loss is checked at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FINITE_CHECK_EVERY = 25  # steps per group of training losses checked together


def diverged(split: str, value: float, step: int) -> FloatingPointError:
    return FloatingPointError(f"{split} loss is {value} at step {step}: "
                              "training diverged (lower the learning rate?)")


@dataclass
class _SentGroup:
    """A group of losses whose finiteness is on its way to the host (``ready`` when copied)."""

    steps: tuple[int, ...]
    losses: tuple[torch.Tensor, ...]
    finite: torch.Tensor
    ready: torch.cuda.Event | None

    def raise_if_not_finite(self) -> None:
        if self.ready is not None:
            self.ready.synchronize()  # recorded a group ago: normally done already
        finite = self.finite.tolist()
        if not all(finite):
            first = finite.index(False)
            raise diverged("train", float(self.losses[first]), self.steps[first])


class LaggedFiniteCheck:
    """Training losses (on any device) checked for NaN and infinity in groups of ``every``
    steps, each group read back on the host one group later (see the module's docstring)."""

    def __init__(self, every: int = FINITE_CHECK_EVERY) -> None:
        self.every = int(every)
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.in_flight: _SentGroup | None = None

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.pending.append((int(step), loss.detach()))
        if len(self.pending) >= self.every:
            self._send()

    def flush(self) -> None:
        """Check every loss added so far (waits for the device: the end of an epoch)."""
        self._send()
        group, self.in_flight = self.in_flight, None
        if group is not None:
            group.raise_if_not_finite()

    def _send(self) -> None:
        if not self.pending:
            return
        steps, losses = zip(*self.pending)
        self.pending = []
        finite = torch.isfinite(torch.stack(losses))
        ready = None
        if finite.device.type == "cuda":
            host = torch.empty(finite.shape, dtype=torch.bool, pin_memory=True)
            host.copy_(finite, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            finite = host
        earlier, self.in_flight = self.in_flight, _SentGroup(steps, losses, finite, ready)
        if earlier is not None:
            earlier.raise_if_not_finite()
