"""The training loaders' batches do not depend on the number of worker processes.

Every random draw of a sample is keyed by the epoch's draw of ``EpochSampler`` (main process)
and the sample's index (``mitoseg.data.loaders``): two epochs of batches with 0 and with 2
workers are equal, for EM patches of several volumes (each volume with its own draws) and
augmented image pairs. Training end to end with workers: tests/training/
test_workers_result_neutral.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.data.augment import Compose, RandomDihedral
from mitoseg.data.em_patches import ConcatPatches, RandomPatchDataset
from mitoseg.data.loaders import EpochSampler, SampleKey, make_loader
from mitoseg.data.paired_folder import PairedImageDataset


def _volume(seed: int, shape=(6, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 255).astype(np.uint8), rng.random(shape) < 0.3


def _patches() -> ConcatPatches:
    return ConcatPatches([RandomPatchDataset(*_volume(seed), range(6), (16, 16),
                                             patches_per_image=2, foreground_weight=3.0,
                                             volume_number=seed) for seed in (0, 1)])


def _pairs() -> PairedImageDataset:
    rng = np.random.default_rng(5)
    images = [rng.random((24, 24)).astype(np.float32) for _ in range(10)]
    masks = [rng.random((24, 24)) < 0.4 for _ in range(10)]
    return PairedImageDataset(images, masks, [f"p{i}" for i in range(10)], seed=3,
                              augment=Compose([RandomDihedral()]))


def _epochs(dataset, workers: int, epochs: int = 2) -> list[torch.Tensor]:
    loader = make_loader(dataset, 4, shuffle=True, num_workers=workers)
    batches = []
    for epoch in range(epochs):
        torch.manual_seed(100 + epoch)  # what EpochSeeding does at each epoch's start
        batches += [torch.cat([batch["image"].flatten(), batch["index"].double()])
                    for batch in loader]
    return batches


@pytest.mark.parametrize("make", [_patches, _pairs], ids=["em_patches", "image_pairs"])
def test_batches_are_the_same_with_and_without_workers(make) -> None:
    without, with_workers = _epochs(make(), 0), _epochs(make(), 2)
    assert len(without) == len(with_workers)
    assert all(torch.equal(a, b) for a, b in zip(without, with_workers))
    first_epoch = len(without) // 2
    assert not all(torch.equal(a, b) for a, b in zip(without[:first_epoch],
                                                     without[first_epoch:]))


def test_the_sampler_keys_an_epoch_with_one_draw_and_volumes_draw_apart() -> None:
    dataset = _patches()
    torch.manual_seed(0)
    keys = list(EpochSampler(dataset, shuffle=True))
    assert sorted(key.index for key in keys) == list(range(len(dataset)))
    assert len({key.draw for key in keys}) == 1
    # one volume twice: the same local index under the same epoch draw, yet other windows
    twice = ConcatPatches([RandomPatchDataset(*_volume(0), range(6), (16, 16))] * 2)
    first = twice[SampleKey(3, 7)]["mask_id"]
    second = twice[SampleKey(twice.cumulative_sizes[0] + 3, 7)]["mask_id"]
    assert first != second
    assert dataset[SampleKey(5, 11)]["mask_id"] == dataset[SampleKey(5, 11)]["mask_id"]
