"""Where training windows are drawn (placement) and where they are cut (sampling=device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.data.em_patches import RandomPatchDataset
from mitoseg.data.em_sources import synthetic_volumes
from mitoseg.errors import InputError


def _module(patch, **options) -> EMDataModule:
    shape = (12, 48, 40) if len(patch) == 2 else (20, 40, 36)
    module = EMDataModule(lambda: synthetic_volumes(shape, (4, 48, 40) if len(patch) == 2
                                                    else (4, 40, 36)),
                          patch, split_seed=0, seed=0, patches_per_image=3, batch_size=4,
                          **options)
    module.setup()
    return module


@pytest.mark.parametrize("patch", [(16, 24), (6, 16, 12)])
@pytest.mark.parametrize("normalize", ["scale", "training_zscore"])
def test_device_patches_equal_the_loader_patches_at_the_same_corners(patch, normalize) -> None:
    loader = _module(patch, normalize=normalize)
    device = _module(patch, normalize=normalize, sampling="device")
    for index in range(6):
        torch.manual_seed(index)
        expected = loader.datasets["train"][index]
        torch.manual_seed(index)
        item = device.datasets["train"][index]
        assert set(item) == {"origin", "volume", "index"}
        image, mask, valid = device.device_patches(item["origin"][None], torch.tensor([0]))
        torch.testing.assert_close(image[0], expected["image"], rtol=0, atol=0)
        torch.testing.assert_close(mask[0], expected["mask"], rtol=0, atol=0)
        z, y, x = item["origin"].tolist()
        assert expected["mask_id"] == f"z{z}-y{y}-x{x}" or len(patch) == 3


def test_a_device_batch_is_cut_and_augmented_in_on_after_batch_transfer() -> None:
    module = _module((16, 24), sampling="device")
    batch = next(iter(module.train_dataloader()))
    assert batch["origin"].shape == (4, 3)
    out = module.on_after_batch_transfer(dict(batch), 0)
    assert out["image"].shape == out["mask"].shape == (4, 1, 16, 24)
    assert out["image"].dtype == torch.float32 and set(out["mask"].unique().tolist()) <= {0.0, 1.0}


def test_uniform_placement_draws_every_corner_equally_often() -> None:
    image = np.zeros((2, 10, 12), np.uint8)
    labels = np.zeros_like(image, bool)
    torch.manual_seed(0)
    counts = {"centred": np.zeros((7, 7)), "uniform": np.zeros((7, 7))}
    for placement, table in counts.items():
        dataset = RandomPatchDataset(image, labels, [0, 1], (4, 6), patches_per_image=1,
                                     placement=placement)
        for index in range(7000):
            _, y0, x0 = dataset.origin(index)
            table[y0, x0] += 1
    uniform = counts["uniform"]
    assert uniform.sum() == 7000 and (uniform > 0).all()
    expected = 7000 / 49
    chi2 = float(((uniform - expected) ** 2 / expected).sum())
    assert chi2 < 90  # 48 degrees of freedom: p < 1e-4 above about 90
    # centred windows pile up at the borders: the corner (0, 0) takes the centres of a 2 x 3
    # block, an inner corner those of one pixel
    centred = counts["centred"]
    assert centred[0, 0] > 4 * centred[3, 3]


def test_bad_sampling_and_placement_are_refused() -> None:
    with pytest.raises(InputError, match="sampling"):
        _module((16, 24), sampling="gpu")
    with pytest.raises(InputError, match="placement"):
        _module((16, 24), placement="random")
    with pytest.raises(InputError, match="normalize"):
        _module((16, 24), normalize="zscore")


def test_val_fraction_zero_trains_on_every_slice_without_validation() -> None:
    module = _module((16, 24), val_fraction=0.0)
    assert module.train_z == list(range(12)) and module.val_z == []
    assert module.val_dataloader() == []


def _corner_counts(dataset: RandomPatchDataset, batches: int, size: int) -> np.ndarray:
    corners = np.concatenate([dataset.origins(list(range(b * size, (b + 1) * size)))
                              for b in range(batches)])
    table = np.zeros((7, 7))
    np.add.at(table, (corners[:, 1], corners[:, 2]), 1)
    return table


def test_batched_corners_follow_the_per_sample_placements() -> None:
    image = np.zeros((2, 10, 12), np.uint8)
    labels = np.zeros_like(image, bool)
    torch.manual_seed(0)
    uniform = _corner_counts(RandomPatchDataset(image, labels, [0, 1], (4, 6),
                                                placement="uniform"), 100, 70)
    assert uniform.sum() == 7000 and (uniform > 0).all()
    expected = 7000 / 49
    assert float(((uniform - expected) ** 2 / expected).sum()) < 90  # 48 dof, p < 1e-4
    centred = _corner_counts(RandomPatchDataset(image, labels, [0, 1], (4, 6),
                                                placement="centred"), 100, 70)
    # the centred law exactly: corner (0, 0) takes the centres of a 3 x 4 block (rows 0-2,
    # cols 0-3) out of 10 x 12, an inner corner those of one pixel
    assert abs(centred[0, 0] / 7000 - 12 / 120) < 0.015
    assert abs(centred[3, 3] / 7000 - 1 / 120) < 0.005


@pytest.mark.parametrize("placement", ["centred", "uniform"])
def test_batched_3d_windows_stay_inside_their_block_and_cover_it(placement) -> None:
    image = np.zeros((20, 8, 8), np.uint8)
    labels = np.zeros_like(image, bool)
    blocks = [range(0, 7), range(12, 20)]  # a gap of slices 7-11 (e.g. validation)
    dataset = RandomPatchDataset(image, labels, [z for b in blocks for z in b], (4, 4, 4),
                                 placement=placement)
    torch.manual_seed(1)
    corners = dataset.origins(list(range(4000)))
    starts = set()
    for z, y, x in corners:
        block = next(b for b in blocks if z in b)
        assert z + 4 - 1 in block and 0 <= y <= 4 and 0 <= x <= 4
        starts.add(int(z))
    assert starts == {0, 1, 2, 3, 12, 13, 14, 15, 16}  # every window depth position is drawn


def test_batched_foreground_weighting_draws_foreground_centres_at_the_stated_rate() -> None:
    image = np.zeros((4, 32, 32), np.uint8)
    labels = np.zeros_like(image, bool)
    labels[:, 4:8, 4:8] = True  # 64 of 4096 voxels in the slices drawn
    dataset = RandomPatchDataset(image, labels, [0, 1, 2, 3], (8, 8), foreground_weight=10.0,
                                 placement="uniform")
    n_fg, n_all = 64, 4096
    q = 10 * n_fg / (10 * n_fg + n_all - n_fg)
    torch.manual_seed(2)
    corners = dataset.origins(list(range(20000)))
    # a foreground centre (4..7) puts the 8 x 8 window's corner at 0..3 in both axes
    near = ((corners[:, 1] <= 3) & (corners[:, 2] <= 3)).mean()
    uniform_share = (4 / 25) ** 2  # a uniform corner lands in 0..3 x 0..3 by chance
    assert abs(near - (q + (1 - q) * uniform_share)) < 0.015


def test_the_loader_draws_whole_batches_of_corners_reproducibly() -> None:
    module = _module((16, 24), sampling="device")
    dataset = module.datasets["train"]
    torch.manual_seed(3)
    first = next(iter(module.train_dataloader()))
    torch.manual_seed(3)
    again = next(iter(module.train_dataloader()))
    assert torch.equal(first["origin"], again["origin"]) and first["origin"].shape == (4, 3)
    calls = []
    draw = dataset.origins
    dataset.origins = lambda indices: calls.append(list(indices)) or draw(indices)
    batch = next(iter(module.train_dataloader()))
    assert [[key.index for key in keys] for keys in calls] == [batch["index"].tolist()]
    assert len({key.draw for key in calls[0]}) == 1  # one draw for the whole batch
    loader = _module((16, 24))
    torch.manual_seed(4)
    items = loader.datasets["train"].__getitems__([0, 5])
    torch.manual_seed(4)
    singles = [loader.datasets["train"][0], loader.datasets["train"][5]]
    for batch_item, single in zip(items, singles):
        assert torch.equal(batch_item["image"], single["image"])
