"""What the data modules share: the setup guard and the loaders of their splits.

A data module fills ``datasets`` (split name -> Dataset) in ``_build`` once; ``setup`` may be
called any number of times. Each declares ``evaluation``: how a network trained on it is
evaluated ("image_set": per-image metric rows; "volume_matrix": paper 002's protocol matrix
on a test volume; see ``mitoseg.evaluation.modality``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from mitoseg.data.loaders import make_loader


class SplitDataModule(pl.LightningDataModule):
    """A data module whose splits are built once into ``datasets``."""

    evaluation: ClassVar[str]
    datasets: dict[str, Any]
    batch_size: int
    eval_batch_size: int
    num_workers: int

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        size = self.batch_size if split == "train" else self.eval_batch_size
        return make_loader(self.datasets[split], size, shuffle, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
