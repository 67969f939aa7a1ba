"""EM patch sampling: shapes, foreground weighting, tiling coverage, split and overlap guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.data.em_datamodule import EMDataModule, EMVolumes, check_no_overlap
from mitoseg.data.em_patches import ForegroundSampler, RandomPatchDataset, TiledPatchDataset
from mitoseg.data.em_split import validation_block_starts
from mitoseg.errors import InputError


def volume(depth: int = 20, height: int = 48, width: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (depth, height, width), dtype=np.uint8)
    labels = np.zeros((depth, height, width), np.uint8)
    labels[:, 5:9, 40:46] = 255  # a small mitochondrion: 24 of 3072 pixels per slice
    return image, labels


def test_2d_random_patches_have_the_patch_shape_and_matching_labels() -> None:
    image, labels = volume()
    dataset = RandomPatchDataset(image, labels, range(20), (16, 24), patches_per_image=3)
    assert len(dataset) == 60
    torch.manual_seed(0)
    sample = dataset[5]
    assert sample["image"].shape == (1, 16, 24) and sample["mask"].shape == (1, 16, 24)
    z, y, x = (int(part[1:]) for part in sample["mask_id"].split("-"))
    assert torch.equal(sample["image"][0], torch.from_numpy(image[z, y:y + 16, x:x + 24] / 255.0).float())
    assert torch.equal(sample["mask"][0], torch.from_numpy(labels[z, y:y + 16, x:x + 24] > 0).float())


def test_3d_patches_stay_inside_their_block() -> None:
    image, labels = volume(depth=30)
    dataset = RandomPatchDataset(image, labels, range(10, 25), (8, 16, 16), patches_per_image=50)
    torch.manual_seed(1)
    for index in range(len(dataset)):
        sample = dataset[index]
        assert sample["image"].shape == (1, 8, 16, 16)
    with pytest.raises(InputError, match="contiguous"):
        RandomPatchDataset(image, labels, [1, 2, 5, 6, 7, 8, 9, 10, 11], (4, 8, 8))


def test_foreground_weight_raises_the_share_of_patches_with_mitochondria() -> None:
    image, labels = volume()
    rng = np.random.default_rng(0)
    shares = {}
    for weight in (1.0, 50.0):
        sampler = ForegroundSampler(labels, range(20), weight)
        hits = [labels[sampler.centre(rng, (48, 64))] > 0 for _ in range(4000)]
        shares[weight] = np.mean(hits)
    # exact expectation of the two-step draw: q = w * n_fg / (w * n_fg + n_bg)
    n_fg, n_all = 24, 48 * 64
    assert shares[1.0] == pytest.approx(n_fg / n_all, abs=0.01)
    assert shares[50.0] == pytest.approx(50 * n_fg / (50 * n_fg + n_all - n_fg), abs=0.03)


@pytest.mark.parametrize("limit", [None, 100_000])  # all held; held, then given up past 100k
def test_the_foreground_scan_holds_4_bytes_a_voxel_at_most(limit: int | None) -> None:
    """Held positions cost 4 bytes a foreground voxel, never joined into a second copy: the
    scan's peak is bounded by ``coords_limit`` whatever the volume (benchmarks/
    bench_patch_sampling.py: (z, y, x) int32 triplets and their concatenation took up to 24
    bytes a voxel, 384 MB at the default limit)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    labels = (rng.random((40, 256, 256)) < 0.2).astype(np.uint8)  # 524k foreground voxels
    options = {} if limit is None else {"coords_limit": limit}
    sampler = ForegroundSampler(labels, range(40), 5.0, **options)
    tracemalloc.start()
    count = sampler.foreground_count()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    held = count if limit is None else limit
    assert peak < 4.5 * held + 2**20, f"{peak / held:.1f} bytes a held voxel"
    assert sampler.holds_coordinates is (limit is None)


def test_tiles_cover_every_pixel_of_the_validation_slices() -> None:
    image, labels = volume(height=50, width=70)
    dataset = TiledPatchDataset(image, labels, [3, 7], (16, 24))
    seen = np.zeros((20, 50, 70), bool)
    for z, y, x in dataset.origins:
        seen[z, y:y + 16, x:x + 24] = True
    assert seen[[3, 7]].all() and not seen[[0, 1, 2, 4]].any()


def test_overlap_guard_refuses_a_test_set_taken_from_training() -> None:
    image, labels = volume()
    check_no_overlap(EMVolumes(image[:15], labels[:15], image[15:], labels[15:], (5, 5, 5), "ok"))
    with pytest.raises(InputError, match="overlap"):
        check_no_overlap(EMVolumes(image[:15], labels[:15], image[12:], labels[12:], (5, 5, 5), "x"))
    with pytest.raises(InputError, match="labels' shape"):
        check_no_overlap(EMVolumes(image, labels[:, :10], image[:2] // 2, labels[:2], (5, 5, 5), "x"))


def make_module(patch, **kwargs) -> EMDataModule:
    image, labels = volume(depth=40)
    other, other_labels = volume(depth=6, seed=1)
    source = lambda: EMVolumes(image, labels, other, other_labels, (5.0, 5.0, 5.0), "toy")  # noqa: E731
    return EMDataModule(source, patch, split_seed=kwargs.pop("split_seed", 0), seed=0,
                        batch_size=4, **kwargs)


def test_validation_is_ten_percent_of_slices_seeded_by_the_split_seed() -> None:
    first, again, other = make_module((16, 16)), make_module((16, 16)), make_module((16, 16), split_seed=1)
    for module in (first, again, other):
        module.setup()
    assert len(first.val_z) == 4 and first.val_z == again.val_z and first.val_z != other.val_z
    assert not set(first.val_z) & set(first.train_z)
    assert len(first.train_z) + len(first.val_z) == 40


def test_3d_validation_is_a_contiguous_block() -> None:
    module = make_module((8, 16, 16))
    module.setup()
    assert module.val_z == list(range(module.val_z[0], module.val_z[0] + 4))
    assert module.train_z == [z for z in range(40) if z not in module.val_z]  # both sides train
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 16, 16)


def slice_numbered(depth: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Every voxel of slice z holds z, so a patch tells which slices it came from."""
    image = np.broadcast_to(np.arange(depth, dtype=np.uint8)[:, None, None], (depth, size, size))
    return np.ascontiguousarray(image), np.zeros((depth, size, size), np.uint8)


def patch_slices(sample: dict) -> list[int]:
    return [int(round(v)) for v in (sample["image"][0, :, 0, 0] * 255).tolist()]


def test_3d_patches_come_from_either_block_and_never_cross_the_gap() -> None:
    image, labels = slice_numbered(30)
    blocks = [list(range(0, 10)), list(range(14, 30))]
    dataset = RandomPatchDataset(image, labels, blocks[0] + blocks[1], (8, 4, 4),
                                 patches_per_image=20)
    assert len(dataset) == (2 + 2) * 2 * 2 * 20  # tiles of each block (z, y, x) x 20
    torch.manual_seed(0)
    used = set()
    for index in range(len(dataset)):
        zs = patch_slices(dataset[index])
        assert zs == list(range(zs[0], zs[0] + 8)) and any(set(zs) <= set(b) for b in blocks), zs
        used.update(zs)
    assert used == set(blocks[0] + blocks[1])


def test_3d_block_shorter_than_the_patch_is_refused_not_dropped() -> None:
    image, labels = slice_numbered(30)
    with pytest.raises(InputError, match=r"contiguous.*slices 1-2 \(2 slices\)"):
        RandomPatchDataset(image, labels, [1, 2] + list(range(5, 30)), (8, 4, 4))


@pytest.mark.parametrize("depth", [122, 132])  # Lucchi less 33 test slices, with/without a gap
def test_3d_split_trains_on_every_slice_for_every_seed(depth: int) -> None:
    """Issue 14.4: 80-slice patches; a validation block at a random place made 6 of 20 seeds
    crash and the others silently drop the smaller training block."""
    image, labels = slice_numbered(depth)
    test_image, test_labels = volume(depth=2, height=8, width=8, seed=3)
    source = lambda: EMVolumes(image, labels, test_image, test_labels, (5, 5, 5), "toy")  # noqa: E731
    n_val = round(0.1 * depth)
    for seed in range(20):
        module = EMDataModule(source, (80, 8, 8), split_seed=seed, seed=0, batch_size=2)
        module.setup()
        assert module.val_z == list(range(module.val_z[0], module.val_z[0] + n_val)), seed
        assert sorted(module.train_z + module.val_z) == list(range(depth)), seed
        torch.manual_seed(seed)
        for index in range(0, len(module.datasets["train"]), 7):
            zs = patch_slices(module.datasets["train"][index])
            assert len(zs) == 80 and set(zs) <= set(module.train_z), (seed, zs)
        described = sum(b - a + 1 for a, b in module.describe()["train_slices"])
        assert described == depth - n_val, seed


def test_validation_block_keeps_each_training_side_empty_or_patch_deep() -> None:
    assert validation_block_starts(122, 12, 80) == [0, 110]
    assert validation_block_starts(200, 20, 80) == [0, *range(80, 101), 180]
    assert validation_block_starts(40, 4, 8) == [0, *range(8, 29), 36]
    with pytest.raises(InputError, match=r"85 training slices.*9 .*validation.*76.*80"):
        validation_block_starts(85, 9, 80)


def test_describe_lists_the_slices_of_each_split() -> None:
    module = make_module((8, 16, 16), split_seed=3)
    described = module.describe()
    covered = [z for a, b in described["train_slices"] for z in range(a, b + 1)]
    assert covered == module.train_z and described["train_slice_count"] == 36
    assert described["val_slices"] == module.val_z and described["test_slices"] == [[0, 5]]
    assert described["validation"] == "contiguous block" and described["test_gap_slices"] is None
