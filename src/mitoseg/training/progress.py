"""One log line per epoch: progress that costs nothing on a GPU and reads well in cluster logs.

A progress bar refreshed every step reads the logged loss back from the GPU each time, which
makes the CPU wait for the step to finish instead of preparing the next batch; `trainer=gpu`
therefore turns the bar off, and this line is what remains.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class EpochSummary(pl.Callback):
    """Logs, after every training epoch (validation included), the epoch's metrics and time."""

    def __init__(self, keys: tuple[str, ...] = ("train/loss_epoch", "val/loss", "val/as",
                                                "val/iou_fg")) -> None:
        self.keys = tuple(keys)
        self._started = time.perf_counter()
        self._validated_epoch: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            # an epoch without validation shows no val/ values: Lightning keeps the last ones
            validated = self._validated_epoch == trainer.current_epoch
            keys = tuple(k for k in self.keys if validated or not k.startswith("val/"))
            log.info("%s", epoch_line(trainer.current_epoch, trainer.max_epochs,
                                      trainer.callback_metrics, keys,
                                      time.perf_counter() - self._started))


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict[str, Any], keys: tuple[str, ...],
               seconds: float) -> str:
    """'epoch 3/8: train/loss_epoch 0.412, val/loss 0.398, val/as 0.871 (12.3 s)'."""
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = []
    for key in keys:
        if key in metrics:
            value = float(metrics[key])
            parts.append(f"{key} {value:.4g}" if math.isfinite(value) else f"{key} {value}")
    shown = ", ".join(parts) if parts else "no metrics yet"
    return f"epoch {epoch + 1}{total}: {shown} ({seconds:.1f} s)"
