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
        assert set(item) == {"origin", "index"}
        image, mask = device.device_patches(item["origin"][None])
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
