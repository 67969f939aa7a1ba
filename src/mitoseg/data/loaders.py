"""The one way the data modules build their DataLoaders."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    """Workers persist across epochs (no re-fork per epoch); randomness is per sample/seed.

    Where CUDA is present, batches come in pinned (page-locked) memory: copying a pageable
    tensor to the GPU first waits for everything queued on the GPU, once per tensor of every
    batch, so the CPU could not prepare the next step while the GPU runs this one.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
