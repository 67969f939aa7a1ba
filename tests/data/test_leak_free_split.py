"""Splits keep files that share a region on one side; the real masks' splits do not leak."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate
from scipy import ndimage

from mitoseg.data.fluo_datamodule import FluorescenceDataModule
from mitoseg.data.leak_free_split import check_split, split_without_leaks
from mitoseg.data.leakage import OverlapRule
from mitoseg.data.mask_sources import MaskSet, split_by_group
from mitoseg.errors import InputError
from tests.conftest import CONF, SHARED_DATA, compose_config
from tests.data.shared_strips import shared_strips

REAL_MASKS = SHARED_DATA / "fluo-masks"


def _scene_crops(seed: int, tiles: int, size: int = 64, stride: int = 48) -> list[np.ndarray]:
    """Crops cut every ``stride`` px from a larger mask: neighbours share a strip."""
    shape = (size, stride * (tiles - 1) + size)
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2)
    scene = noise > np.quantile(noise, 0.7)
    return [scene[:, x:x + size].copy() for x in range(0, shape[1] - size + 1, stride)]


def _synthetic_masks() -> MaskSet:
    """Four 'images' of 1, 2, 3 and 4 overlapping crops, each crop with a flipped copy."""
    masks, groups = [], []
    for image, tiles in enumerate((1, 2, 3, 4)):
        for crop in _scene_crops(image, tiles):
            groups += [len(groups) // 2] * 2
            masks += [crop, np.fliplr(crop)]
    return MaskSet(np.stack(masks), [str(i + 1) for i in range(len(masks))], np.array(groups),
                   "synthetic crops")


def _image_of(index: int) -> int:
    """The image a mask of ``_synthetic_masks`` was cut from (2, 4, 6, 8 masks per image)."""
    return int(np.searchsorted(np.cumsum([2, 4, 6, 8]), index, side="right"))


# ---------------------------------------------------------------------------------------------
# Splitting synthetic crops
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_crops_of_one_image_stay_on_one_side(seed):
    masks = _synthetic_masks()
    split = split_without_leaks(masks.masks, masks.ids, masks.groups, {"val": 2, "test": 2},
                                seed, OverlapRule())
    sides = {name: {_image_of(i) for i in idx} for name, idx in split.indices.items()}
    for a, b in itertools.combinations(sides, 2):
        assert not sides[a] & sides[b], f"image shared by {a} and {b}: {sides}"
    assert sorted(np.concatenate(list(split.indices.values())).tolist()) == list(range(20))
    assert split.record["clusters"]["count"] == 4
    assert split.record["check"].startswith("passed")
    assert [len(c) for c in split.record["clusters"]["of_several_groups"]] == [4, 6, 8]
    again = split_without_leaks(masks.masks, masks.ids, masks.groups, {"val": 2, "test": 2},
                                seed, OverlapRule())
    for name in split.indices:
        np.testing.assert_array_equal(split.indices[name], again.indices[name])


def test_a_split_that_leaks_is_refused():
    ids = ["a", "b", "c", "d"]
    check_split({"train": np.array([0, 1]), "test": np.array([2, 3])}, [(0, 1), (2, 3)], ids)
    with pytest.raises(InputError, match="refusing a split that leaks") as error:
        check_split({"train": np.array([0, 2]), "test": np.array([1, 3])}, [(0, 1)], ids)
    assert "'a' (train) with 'b' (test)" in str(error.value)


def test_too_few_clusters_are_refused_with_the_cluster_sizes():
    masks = _synthetic_masks()
    one_image = masks.subset(np.arange(12, 20))  # the 4 crops of one image: a single cluster
    with pytest.raises(InputError, match="1 such clusters") as error:
        split_without_leaks(one_image.masks, one_image.ids, one_image.groups,
                            {"val": 2, "test": 2}, 0, OverlapRule())
    assert "no training data" in str(error.value) and "[8]" in str(error.value)


def test_split_skips_clusters_larger_than_wanted():
    units = np.repeat(np.arange(5), [40, 12, 6, 6, 30])
    for seed in range(10):
        split = split_by_group(units, {"val": 10, "test": 6}, seed)
        assert len(split["test"]) in (6, 12) and len(split["val"]) in (12, 18)
        assert np.isin(np.flatnonzero(units == 0), split["train"]).all()  # 40 never held out


def test_datamodule_records_the_clusters_and_the_check():
    masks = _synthetic_masks()
    module = FluorescenceDataModule(lambda: masks, {"snr": 4.0}, {"val": 2, "test": 2}, 0, 0,
                                    overlap={"min_area": 900})
    record = json.loads(json.dumps(module.describe()))["leakage"]
    assert record["search"]["rule"]["min_area"] == 900
    assert record["search"]["pairs"] > 0 and record["check"].startswith("passed")
    with pytest.raises(InputError, match="dataset.overlap"):
        FluorescenceDataModule(lambda: masks, {"snr": 4.0}, {"val": 2, "test": 2}, 0, 0,
                               overlap={"area": 900})


# ---------------------------------------------------------------------------------------------
# The real masks, under every configuration that splits them
# ---------------------------------------------------------------------------------------------

def _preset_overrides(name: str) -> list[str]:
    preset = yaml.safe_load((CONF / "study_preset" / f"{name}.yaml").read_text())
    assert preset.get("dataset") == "fluo_masks"
    return [o for o in preset.get("train_overrides", []) if o.startswith("dataset.")]


def _real_split(overrides: list[str]):
    if not REAL_MASKS.is_dir():
        pytest.skip(f"real masks not present at {REAL_MASKS} (see ../shared/data/README.md)")
    cfg = compose_config("train", [*overrides, f"dataset.masks.path={REAL_MASKS}"])
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    return datamodule


CONFIGS = {
    "fluo_masks": ["dataset=fluo_masks"],
    "paper000_real_masks": ["experiment=paper000_real_masks"],
    "study_preset=paper": ["dataset=fluo_masks", *_preset_overrides("paper")],
    "study_preset=cpu_real": ["dataset=fluo_masks", *_preset_overrides("cpu_real")],
}
CASES = [("fluo_masks", 0), ("study_preset=cpu_real", 3)] + [
    pytest.param(name, seed, marks=pytest.mark.slow)
    for name, seed in itertools.product(CONFIGS, (1, 2, 3, 5, 8)) if (name, seed) != (
        "study_preset=cpu_real", 3)]


@pytest.mark.parametrize("config, data_seed", CASES)
def test_real_mask_splits_share_no_strip_between_splits(config, data_seed):
    datamodule = _real_split([*CONFIGS[config], f"data_seed={data_seed}"])
    masks = {name: dataset.masks.masks for name, dataset in datamodule.datasets.items()}
    for held_out, other in (("test", "train"), ("val", "train"), ("test", "val")):
        leaks = shared_strips(masks[held_out], masks[other])
        assert leaks == [], (f"{config}, data_seed={data_seed}: {len({i for i, _ in leaks})} "
                             f"{held_out} masks share a strip with {other} masks")
    assert len(masks["test"]) >= 30 and len(masks["val"]) >= 24
    record = datamodule.describe()["leakage"]
    assert record["check"].startswith("passed")
    assert record["clusters"]["per_split"]["test"] >= 1


def test_real_first_180_masks_cannot_be_split_without_leaks():
    with pytest.raises(InputError, match="1 such clusters"):
        _real_split(["dataset=fluo_masks", "dataset.masks.limit=180"])
