"""FluorescenceDataModule: reproducible samples, seeds that do what they say, batches, records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.data.augment import RandomDihedral
from mitoseg.data.fluo_dataset import RECORD_KEYS
from mitoseg.data.fluo_datamodule import FluorescenceDataModule
from mitoseg.data.mask_sources import MaskSet, procedural_mask_set
from mitoseg.errors import InputError

COUNT, SPLIT, BATCH = 40, {"val": 6, "test": 6}, 4


@pytest.fixture(scope="module")
def mask_set() -> MaskSet:
    return procedural_mask_set(count=COUNT, seed=0)


def _module(mask_set: MaskSet, **changes) -> FluorescenceDataModule:
    options = dict(masks=lambda: mask_set, condition={"snr": 4.0}, split=SPLIT, split_seed=0,
                   seed=0, batch_size=BATCH)
    options.update(changes)
    module = FluorescenceDataModule(**options)
    module.setup("fit")
    return module


def _same_sample(a: dict, b: dict) -> bool:
    return (torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
            and a["mask_id"] == b["mask_id"] and a["record"] == b["record"])


def test_split_sizes_and_disjoint_masks(mask_set):
    module = _module(mask_set)
    sizes = {name: len(ds) for name, ds in module.datasets.items()}
    assert sizes == {"train": COUNT - 12, "val": 6, "test": 6}
    ids = {name: set(ds.masks.ids) for name, ds in module.datasets.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])


def test_sample_is_deterministic(mask_set):
    a, b = _module(mask_set), _module(mask_set)
    for split in ("train", "val", "test"):
        for index in (0, 3, len(a.datasets[split]) - 1):
            first = a.datasets[split][index]
            assert _same_sample(first, a.datasets[split][index])  # same object, asked twice
            assert _same_sample(first, b.datasets[split][index])  # a fresh module
    # Order does not matter: sample 5 is the same whether or not 0-4 were made first.
    fresh = _module(mask_set)
    assert _same_sample(fresh.datasets["train"][5], a.datasets["train"][5])


def test_samples_do_not_depend_on_worker_count(mask_set):
    def batches(workers: int) -> list[dict]:
        module = _module(mask_set, num_workers=workers, eval_batch_size=3)
        return list(module.val_dataloader())

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["mask"], b["mask"])
        assert a["mask_id"] == b["mask_id"]


def test_training_seed_changes_train_images_only(mask_set):
    a, b = _module(mask_set, seed=0), _module(mask_set, seed=1)
    for split in ("val", "test"):
        assert a.datasets[split].masks.ids == b.datasets[split].masks.ids
        for index in range(len(a.datasets[split])):
            assert _same_sample(a.datasets[split][index], b.datasets[split][index])
    assert a.datasets["train"].masks.ids == b.datasets["train"].masks.ids
    for index in (0, 1, 2):
        x, y = a.datasets["train"][index], b.datasets["train"][index]
        assert torch.equal(x["mask"], y["mask"])  # same mask ...
        assert not torch.equal(x["image"], y["image"])  # ... new noise


def test_split_seed_changes_the_split(mask_set):
    a, b = _module(mask_set, split_seed=0), _module(mask_set, split_seed=1)
    assert set(a.describe()["test_mask_ids"]) != set(b.describe()["test_mask_ids"])
    assert len(b.describe()["test_mask_ids"]) == 6


def test_val_and_test_streams_differ(mask_set):
    # Same split seed for both, but their own streams: not the same noise on the same index.
    module = _module(mask_set)
    val, test = module.datasets["val"].generate(0), module.datasets["test"].generate(0)
    assert val[2]["stream"] == "val" and test[2]["stream"] == "test"
    assert not np.array_equal(val[0], test[0])


def test_train_condition_mixture(mask_set):
    snrs = [1.0, 4.0, 8.0]
    module = _module(mask_set, train_conditions=[{"snr": s} for s in snrs], train_repeats=3)
    train = module.datasets["train"]
    n = len(train.masks)
    assert len(train) == 3 * n
    for index in range(0, 3 * n, 5):
        sample = train[index]
        assert sample["record"]["snr"] == snrs[train.condition_of(index)], index
        assert sample["mask_id"] == train.masks.ids[index % n]
    # Every mask appears once under every condition; the same mask, a different image.
    assert sorted(train.condition_of(i) for i in (2, 2 + n, 2 + 2 * n)) == [0, 1, 2]
    assert module.describe()["train_condition_counts"] == [n, n, n]
    images = [train[i]["image"] for i in (2, 2 + n, 2 + 2 * n)]
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])
    # Evaluation stays on the single condition.
    assert {module.datasets["val"][i]["record"]["snr"] for i in range(6)} == {4.0}


def test_test_condition_is_used_for_val_and_test(mask_set):
    module = _module(mask_set, condition={"snr": 4.0, "blur": "invariant", "blur_sigma": 2.0},
                     test_condition={"snr": 1.0})
    assert module.datasets["train"][0]["record"]["snr"] == 4.0
    assert module.datasets["train"][0]["record"]["blur"] == "invariant"
    for split in ("val", "test"):
        record = module.datasets[split][0]["record"]
        assert record["snr"] == 1.0 and record["blur"] == "psf"
    assert module.describe()["test_condition"]["snr"] == 1.0


@pytest.mark.parametrize("option", ["condition", "train_conditions", "test_condition"])
def test_unknown_condition_key_is_refused(mask_set, option):
    bad = {"snr": 4.0, "sigma_noise": 3.0}
    options = {option: [bad] if option == "train_conditions" else bad}
    with pytest.raises(InputError, match="sigma_noise"):
        FluorescenceDataModule(masks=lambda: mask_set, **{"condition": {"snr": 4.0}, **options},
                               split=SPLIT, split_seed=0, seed=0)


def test_invalid_condition_value_and_options_are_refused(mask_set):
    common = dict(masks=lambda: mask_set, split=SPLIT, split_seed=0, seed=0)
    with pytest.raises(InputError, match="'snr'"):
        FluorescenceDataModule(condition={"snr": 0}, **common)
    with pytest.raises(InputError, match="batch_size"):
        FluorescenceDataModule(condition={}, batch_size=0, **common)
    with pytest.raises(InputError, match="normalize"):
        _module(mask_set, normalize="minmax")


def test_describe_lists_the_test_masks(mask_set):
    module = _module(mask_set)
    description = module.describe()
    assert description["test_mask_ids"] == module.datasets["test"].masks.ids
    assert len(description["test_mask_ids"]) == 6
    assert set(description["test_mask_ids"]) <= set(mask_set.ids)
    assert not set(description["test_mask_ids"]) & set(module.datasets["train"].masks.ids)
    assert description["sizes"] == {"train": COUNT - 12, "val": 6, "test": 6}
    assert description["split_seed"] == 0 and description["seed"] == 0
    assert description["train_conditions"][0]["snr"] == 4.0


def test_batches_and_collated_records(mask_set):
    module = _module(mask_set)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (BATCH, 1, 200, 200)
    assert batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (BATCH, 1, 200, 200)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    per_image_mean = batch["image"].mean(dim=(1, 2, 3))
    per_image_std = batch["image"].std(dim=(1, 2, 3))
    assert torch.allclose(per_image_mean, torch.zeros(BATCH), atol=1e-4)
    assert torch.allclose(per_image_std, torch.ones(BATCH), atol=1e-3)
    # Records survive the default collation: numbers become tensors, strings lists.
    record = batch["record"]
    assert set(record) == set(RECORD_KEYS)
    assert torch.is_tensor(record["snr"]) and record["snr"].shape == (BATCH,)
    assert torch.all(record["snr"] == 4.0)
    assert torch.all(record["background_sigma"] > 0)
    assert record["blur"] == ["psf"] * BATCH
    assert len(batch["mask_id"]) == BATCH and torch.is_tensor(batch["index"])
    fractions = batch["mask"].mean(dim=(1, 2, 3)).double()
    assert torch.allclose(record["foreground_fraction"].double(), fractions, atol=1e-6)
    # Evaluation loaders are not shuffled: they run through the split in order.
    val = next(iter(module.val_dataloader()))
    assert val["index"].tolist() == [0, 1, 2, 3]
    assert val["mask_id"] == module.datasets["val"].masks.ids[:4]
    # Each image knows its independent unit: the group its mask was split by.
    groups = module.datasets["val"].masks.groups[:4]
    assert val["unit"] == [f"group-{g}" for g in groups]


def test_unnormalized_images_keep_their_levels(mask_set):
    module = _module(mask_set, normalize="none", condition={"snr": 4.0, "background_mean": 100.0})
    sample = module.datasets["val"][0]
    background = sample["image"][sample["mask"] == 0]
    assert abs(float(background.mean()) - 100.0) < 5.0


def test_augmentation_is_deterministic_and_keeps_masks_valid(mask_set):
    module = _module(mask_set, augmentation=RandomDihedral())
    train = module.datasets["train"]
    a, b = train[7], train[7]
    assert _same_sample(a, b)
    original = torch.from_numpy(train.masks.masks[7].astype(np.float32))
    views = [torch.rot90(original, k) for k in range(4)]
    views += [torch.flip(view, dims=(1,)) for view in views]
    assert any(torch.equal(a["mask"][0], view) for view in views)
    # Validation and test are never augmented.
    assert torch.equal(module.datasets["val"][0]["mask"][0],
                       torch.from_numpy(module.datasets["val"].masks.masks[0].astype(np.float32)))


# ---------------------------------------------------------------- synthesis on the device

def _device_batches(module: FluorescenceDataModule, count: int) -> list[dict]:
    module.setup()
    torch.manual_seed(0)  # the shuffle order (training seeds it per epoch)
    batches = []
    for batch in module.train_dataloader():
        batch = module.on_before_batch_transfer(batch, 0)
        batches.append(module.on_after_batch_transfer(batch, 0))  # the device here: the CPU
        if len(batches) == count:
            break
    return batches


def _datamodule(synthesis: str, **extra) -> FluorescenceDataModule:
    options = dict(masks=lambda: procedural_mask_set(count=40, seed=3, shape=(48, 48)),
                   condition={"snr": 4.0}, split={"val": 4, "test": 4}, split_seed=1, seed=5,
                   batch_size=8, augmentation=RandomDihedral(), synthesis=synthesis)
    return FluorescenceDataModule(**(options | extra))


def test_device_synthesis_makes_normalized_images_of_the_cpu_distribution() -> None:
    device, cpu = _datamodule("device"), _datamodule("cpu")
    batches = _device_batches(device, 3)
    images = torch.cat([b["image"] for b in batches])
    assert images.shape[1:] == (1, 48, 48) and images.dtype == torch.float32
    flat = images.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(len(flat)), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(len(flat)), atol=1e-4, rtol=0)
    cpu.setup()
    # Same masks and augmentation in the same order: the image model alone differs.
    for index in range(8):
        torch.testing.assert_close(device.datasets["train"][index]["mask"],
                                   cpu.datasets["train"][index]["mask"])
    first = batches[0]
    reference = torch.stack([cpu.datasets["train"][int(i)]["image"] for i in first["index"]])
    foreground = first["mask"] > 0.5  # brighter inside the mitochondria in both, by a like margin
    gap = first["image"][foreground].mean() - first["image"][~foreground].mean()
    gap_cpu = reference[foreground].mean() - reference[~foreground].mean()
    assert float(gap) == pytest.approx(float(gap_cpu), rel=0.25)


def test_device_synthesis_is_reproducible_and_keeps_validation_and_test_images() -> None:
    first = _device_batches(_datamodule("device"), 2)
    again = _device_batches(_datamodule("device"), 2)
    for a, b in zip(first, again):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    other_seed = _device_batches(_datamodule("device", seed=6), 1)
    assert not torch.equal(other_seed[0]["image"], first[0]["image"])
    device, cpu = _datamodule("device"), _datamodule("cpu")
    device.setup(), cpu.setup()
    for split in ("val", "test"):
        torch.testing.assert_close(device.datasets[split][0]["image"], cpu.datasets[split][0]["image"],
                                   rtol=0, atol=0)


def _device_images(module: FluorescenceDataModule, indices: list[int]) -> dict[int, torch.Tensor]:
    """The device-made images of training samples ``indices``, made as one batch."""
    module.setup()
    train = module.datasets["train"]
    batch = torch.utils.data.default_collate([train[i] for i in indices])
    batch = module.on_after_batch_transfer(module.on_before_batch_transfer(batch, 0), 0)
    return dict(zip(indices, batch["image"]))


def test_device_synthesis_fixes_each_sample_image_as_the_cpu_does() -> None:
    """``train_repeats`` means what it says on either path: a training sample's image is the
    same whichever batch it comes in (epochs reshuffle the batches), as the CPU data set makes
    it. Before, the noise was drawn per batch, so it changed with the batch's other members:
    on a GPU (where ``synthesis`` defaults to ``device``) every epoch saw new noise."""
    module = _datamodule("device", train_conditions=[{"snr": 8.0}, {"snr": 1.0}])
    alone = _device_images(module, [3])
    first = _device_images(module, [0, 1, 2, 3, 4, 5, 6, 7])
    second = _device_images(module, [20, 3, 11, 9, 30, 2, 17, 25])
    for index in (3, 2):
        torch.testing.assert_close(first[index], second[index], rtol=0, atol=0)
    # Alone: the same draws; the blur's convolution may round differently for a batch of one.
    torch.testing.assert_close(alone[3], first[3], rtol=0, atol=1e-5)
    # Two realizations of one mask (train_repeats=2: samples i and i + masks) differ.
    repeats = _datamodule("device", train_repeats=2)
    repeats.setup()
    masks = len(repeats.datasets["train"]) // 2
    pair = _device_images(repeats, [1, 1 + masks])
    assert not torch.equal(pair[1], pair[1 + masks])


def test_device_synthesis_mixes_conditions_by_sample() -> None:
    """A mixture (paper 000 scheme 2): each sample gets its own condition's noise level."""
    module = _datamodule("device", train_conditions=[{"snr": 8.0}, {"snr": 1.0}], normalize="none",
                         train_repeats=2)
    batches = _device_batches(module, 4)
    for batch in batches:
        for image, mask, condition in zip(batch["image"], batch["mask"], batch["condition"]):
            background = image[mask < 0.5]
            expected = 100.0 / (8.0 if int(condition) == 0 else 1.0)  # sigma = contrast / SNR
            assert float(background.std()) == pytest.approx(expected, rel=0.5)


def test_unknown_synthesis_option_is_refused() -> None:
    with pytest.raises(InputError, match="'synthesis' must be one of \\['cpu', 'device'\\], got 'gpu'"):
        _datamodule("gpu")
