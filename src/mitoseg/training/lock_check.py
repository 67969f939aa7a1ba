"""A Lightning callback that stops training once the run folder's lock is no longer this
run's (``mitoseg.runs.lock``: another process took it over after this one stalled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl


class LockCheck(pl.Callback):
    """Call ``check`` (``RunLock.check``: raises ``RunLockLost``) after every training batch
    and at the end of every validation, before the epoch's checkpoints are written."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.check = check

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any,
                           **kwargs: Any) -> None:
        self.check()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.check()
