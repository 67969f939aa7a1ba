"""The one way the data modules build their DataLoaders, and the keys of random samples.

A training sample's random draws (an EM window's corner, a paired image's augmentation) must
not depend on which loader worker makes it, or ``dataset.num_workers`` would change what a run
learns. So the sampler, in the main process, draws one value per epoch from torch's generator
(which ``EpochSeeding`` reseeds from (seed, epoch)) and hands each index out with it as a
``SampleKey``; a data set that declares ``keyed_draws`` draws from
``np.random.default_rng([draw, index])`` and nothing else. The loader's own seed (for its
workers' generators) comes from a generator of its own, so making an iterator never moves
the global one: with 0 workers or 8, resumed or not, the same draws in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

DRAW_HIGH = 2**31 - 1  # draws are 31-bit, as torch.randint(0, DRAW_HIGH) gives them


class SampleKey(NamedTuple):
    """Sample ``index`` of an epoch whose random draws are keyed by ``draw``."""

    index: int
    draw: int


def new_draw() -> int:
    """One draw of torch's (global) generator, for a sample or an epoch."""
    return int(torch.randint(0, DRAW_HIGH, ()).item())


def item_index(item: int | SampleKey) -> int:
    """The sample index of a sampler's item (a ``SampleKey`` or a plain index)."""
    return int(item[0]) if isinstance(item, tuple) else int(item)


def sample_key(item: int | SampleKey) -> SampleKey:
    """A sampler's item as a key: a ``SampleKey`` as it is; a plain index (a data set indexed
    directly) gets a fresh draw of torch's generator."""
    if isinstance(item, tuple):
        return SampleKey(int(item[0]), int(item[1]))
    return SampleKey(int(item), new_draw())


def batch_key(items: Sequence[int | SampleKey]) -> tuple[list[int], int]:
    """The indices of a batch of sampler items and the one draw they share (plain indices:
    one fresh draw for the batch)."""
    indices = [item_index(item) for item in items]
    return indices, (int(items[0][1]) if items and isinstance(items[0], tuple) else new_draw())


def member_key(key: SampleKey, member: int, local: int) -> SampleKey:
    """The key of item ``local`` of member ``member`` of a concatenation: its own draw per
    member, so equal local indices of two members do not draw alike."""
    draw = int(np.random.default_rng([key.draw, member]).integers(DRAW_HIGH))
    return SampleKey(local, draw)


def keyed_draws(dataset: Dataset) -> bool:
    """Whether ``dataset`` takes ``SampleKey`` items (declares ``keyed_draws``)."""
    return bool(getattr(dataset, "keyed_draws", False))


class EpochSampler(Sampler):
    """The order of an epoch (shuffled or not) and, for a data set with ``keyed_draws``, its
    items as ``SampleKey``s, all from one draw of torch's generator made when the epoch's
    iterator starts, in the main process."""

    def __init__(self, dataset: Dataset, shuffle: bool) -> None:
        self.length, self.shuffle = len(dataset), bool(shuffle)
        self.keyed = keyed_draws(dataset)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Any]:
        if not (self.shuffle or self.keyed):
            return iter(range(self.length))
        draw = new_draw()
        order = (np.random.default_rng([draw]).permutation(self.length) if self.shuffle
                 else np.arange(self.length)).tolist()
        return iter([SampleKey(i, draw) for i in order] if self.keyed else order)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    """Workers persist across epochs (no re-fork per epoch); randomness is keyed by sample (see
    the module's docstring), so the number of workers does not change a result.

    Where CUDA is present, batches come in pinned (page-locked) memory: copying a pageable
    tensor to the GPU first waits for everything queued on the GPU, once per tensor of every
    batch, so the CPU could not prepare the next step while the GPU runs this one.
    """
    own = torch.Generator().manual_seed(new_draw())  # the workers' seeds, not the global stream
    sampler = EpochSampler(dataset, shuffle) if shuffle or keyed_draws(dataset) else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available(), generator=own)
