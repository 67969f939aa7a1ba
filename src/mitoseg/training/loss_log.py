"""The training loss in the logs, without Lightning's cost on every step.

Each ``LightningModule.log`` call costs about 1 ms of CPU time (Lightning moves its bookkeeping
to the value's device at every call). At small batches on a GPU the CPU's work per step is
what bounds the step, and this call was most of what the framework added to a bare loop's step
(profile of ``bench_training.py`` at batch 16, issue 17). So:

- the epoch's loss is summed on the device and handed to Lightning once, after the epoch's last
  batch, as ``train/loss_epoch`` (and as ``train/loss`` for a scheduler or checkpoint that
  monitors it);
- a step's loss is logged (``train/loss_step``) only on the steps Lightning writes to the
  loggers (every ``trainer.log_every_n_steps``, or a step after which a callback stops the run),
  or on every step while a progress bar shows it. Both are logged in ``on_train_batch_end``,
  after the callbacks' own: by then a step's stop (``max_time``) and its optimizer step are
  known.

The epoch's loss is the mean over its batches weighted by the images that hold a voxel that
counts (the whole batch without ignored voxels), so a batch with nothing to learn from does not
pull the mean towards its loss of 0. Nothing is read back from the device.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class EpochMean:
    """A weighted mean over an epoch's batches, summed where the values are (no read-back)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.weight: torch.Tensor | int = 0

    def add(self, value: torch.Tensor, weight: torch.Tensor | int) -> None:
        """``value`` of a batch, standing for ``weight`` images (an int or a device tensor)."""
        part = value.detach().float() * weight
        self.total = part if self.total is None else self.total + part
        self.weight = self.weight + weight

    def pop(self) -> torch.Tensor | None:
        """The mean so far (None when nothing was added), and start again."""
        if self.total is None:
            return None
        mean = self.total / self.weight
        self.total, self.weight = None, 0
        return mean


def step_is_written(trainer: Any) -> bool:
    """Will Lightning write this training step's logged values to the loggers? (Its own test,
    ``should_update_logs``; True where a Lightning version lacks it: then every step logs.)"""
    connector = getattr(trainer, "_logger_connector", None)
    written = getattr(connector, "should_update_logs", True)
    return bool(written) or bool(getattr(trainer, "fast_dev_run", False))


def ends_epoch(trainer: Any, batch_idx: int) -> bool:
    """After batch ``batch_idx`` has trained (``on_train_batch_end``): was it the epoch's last
    one, the last of the loader or the one whose optimizer step reached ``trainer.max_steps``?"""
    batches = trainer.num_training_batches
    last_of_loader = not math.isinf(batches) and batch_idx + 1 >= batches
    steps = trainer.max_steps
    return last_of_loader or (steps is not None and steps >= 0 and trainer.global_step >= steps)
