"""Validation tiles score every voxel once.

Where a side is not a multiple of the tile, ``TiledPatchDataset`` shifts the last tile back to
end at the border, so it overlaps the tile before it. The validation loss and metrics sum over
tiles, so the overlap counted twice: 17.6 % of the in-plane voxels of Kasthuri++'s 1463 x 1613
slices with 160-pixel tiles (audit 2026-12-05, F4). Each tile's ``valid`` now leaves out what an
earlier tile covers; the network still sees the whole tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from mitoseg.data.em_patches import TiledPatchDataset


def volume(shape: Sequence[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, shape, dtype=np.uint8),
            (rng.random(shape) > 0.7).astype(np.uint8))


def times_scored(dataset: TiledPatchDataset, shape: Sequence[int]) -> np.ndarray:
    """How many tiles score each voxel of the volume (brute force: every tile's ``valid``
    added at its window; a tile without ``valid`` scores its whole window)."""
    counts = np.zeros(shape, np.int64)
    for index, (z, y, x) in enumerate(dataset.origins):
        sample = dataset[index]
        scored = (sample["valid"][0].numpy() > 0.5 if "valid" in sample
                  else np.ones(sample["mask"].shape[1:], bool))
        depth = 1 if dataset.spatial_dims == 2 else dataset.patch[0]
        counts[z:z + depth, y:y + dataset.patch[-2], x:x + dataset.patch[-1]] += \
            scored.reshape(depth, *dataset.patch[-2:])
    return counts


CASES = [  # volume shape, validation slices, tile
    ((3, 100, 130), [0, 2], (32, 32)),  # 2D: neither side a multiple of the tile
    ((2, 64, 96), [1], (32, 32)),  # 2D: both sides multiples (no shifted tile)
    ((7, 70, 90), list(range(1, 6)), (4, 32, 32)),  # 3D block of 5 slices: every axis shifted
    ((5, 40, 33), list(range(5)), (5, 16, 11)),  # 3D: one tile deep, x a multiple
]


@pytest.mark.parametrize(("shape", "z", "tile"), CASES)
def test_every_validation_voxel_is_scored_by_exactly_one_tile(shape, z, tile) -> None:
    image, labels = volume(shape)
    counts = times_scored(TiledPatchDataset(image, labels, z, tile), shape)
    expected = np.zeros(shape, np.int64)
    expected[z] = 1
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize(("shape", "z", "tile"), CASES)
def test_with_ignored_voxels_each_valid_voxel_is_scored_once(shape, z, tile) -> None:
    image, labels = volume(shape)
    ignored = np.random.default_rng(1).random(shape) < 0.2
    counts = times_scored(TiledPatchDataset(image, labels, z, tile, ignored=ignored), shape)
    expected = np.zeros(shape, np.int64)
    expected[z] = ~ignored[z]
    np.testing.assert_array_equal(counts, expected)


def test_a_kasthuri_sized_block_scores_its_voxels_once() -> None:
    """The audit's case: an 8-slice block of 1463 x 1613 slices in 160-pixel tiles."""
    shape = (8, 1463, 1613)
    image = np.zeros(shape, np.uint8)
    dataset = TiledPatchDataset(image, image, range(8), (8, 160, 160))
    counts = times_scored(dataset, shape)
    assert counts.sum() == 8 * 1463 * 1613 and counts.min() == counts.max() == 1


@pytest.mark.parametrize(("shape", "z", "tile"), CASES)
def test_the_network_sees_whole_tiles_and_every_tile_scores_some_voxel(shape, z, tile) -> None:
    """Only the scoring changes: the image is the full window, and no tile is left with
    nothing to score (which would add a spurious val/as)."""
    image, labels = volume(shape)
    dataset = TiledPatchDataset(image, labels, z, tile)
    for index, (z0, y, x) in enumerate(dataset.origins):
        sample = dataset[index]
        window = ((z0,) if len(tile) == 2 else (slice(z0, z0 + tile[0]),)) + (
            slice(y, y + tile[-2]), slice(x, x + tile[-1]))
        np.testing.assert_array_equal(sample["image"][0].numpy(),
                                      (image[window] / 255.0).astype(np.float32))
        assert sample["valid"].shape == sample["mask"].shape and sample["valid"].sum() > 0
