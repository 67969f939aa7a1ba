"""checkpoints/last.ckpt: the whole training state after every epoch, what resume continues from.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes last.ckpt only in a step where it
also writes a top-k checkpoint, so once the monitored metric stops improving last.ckpt stays
at the best epoch: a resumed run would train again every epoch since then, and "the last
weights" would be the best ones. A checkpoint without a monitor is written at the end of each
epoch instead, over the one before.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt`` after every training epoch (a class of its own so that its
    state in a checkpoint never mixes with the best-checkpoint callback's, whose settings may
    be the same: ``monitor: null``)."""

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                         enable_version_counter=False)
