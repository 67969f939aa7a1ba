"""Per-epoch seeding: every epoch's randomness depends only on (seed, epoch).

Lightning restores weights, optimizer, scheduler, loop counters and callback states from a
checkpoint, but not the random number generators. Reseeding Python, NumPy and torch at the
start of every training epoch from (seed, epoch) makes the batch order, the random patches,
the augmentation and dropout of epoch e the same whether the run went through without a
stop or was killed and resumed from the checkpoint of epoch e - 1.
"""

from __future__ import annotations

import hashlib

import pytorch_lightning as pl


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for one epoch of one run, well mixed (seeds s, s+1 do not share epochs)."""
    digest = hashlib.sha256(f"mitoseg-epoch:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class EpochSeeding(pl.Callback):
    """Reseed every RNG at the start of each training epoch from ``epoch_seed(seed, epoch)``.

    Lightning creates the training iterator (and prefetches its first batch) after this hook
    from the second epoch on, but before it in the first epoch of a fit -- including the
    first epoch after a resumption. So in the first epoch of a process the iterator is made
    again after seeding: the batch order, the random patches and the augmentation of every
    epoch then come from the same RNG state, resumed or not. The loader's workers draw nothing
    of their own: each sample's draws are keyed by the sampler's draw of the epoch, made in the
    main process after this reseeding (``mitoseg.data.loaders``), so this holds with any
    number of workers.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._first_epoch_of_fit = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_epoch_of_fit = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(epoch_seed(self.seed, trainer.current_epoch), workers=True,
                           verbose=False)
        if self._first_epoch_of_fit:
            self._first_epoch_of_fit = False
            fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)  # Lightning >= 2.0
            if fetcher is not None:
                iter(fetcher)  # a new iterator, drawn from the seeded state
