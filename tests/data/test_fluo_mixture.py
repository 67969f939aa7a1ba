"""Equal mixtures of image conditions (paper 000 scheme 2): every condition equally often.

Counted three ways: the pure schedule over many (masks, repeats, conditions), the data set
that uses it, and every study preset's training data module for each mixture and a range of
``train_repeats``.
"""

from __future__ import annotations

from collections import Counter
import pytest
from hydra.utils import instantiate

from mitoseg.data.fluo_dataset import FluorescenceMaskDataset, SyntheticFluorescenceDataset
from mitoseg.data.mask_sources import procedural_mask_set
from mitoseg.data.mixture import condition_of_sample, mixture_length
from mitoseg.study.plan import MIXTURES
from mitoseg.synth.fluorescence import FluorescenceParams
from tests.conftest import CONF, SHARED_DATA, compose_config

SNRS = (1.0, 4.0, 8.0)


def _counts(dataset) -> Counter:
    """Conditions of the samples as they come out of the data set."""
    if isinstance(dataset, FluorescenceMaskDataset):
        return Counter(int(dataset[i]["condition"]) for i in range(len(dataset)))
    return Counter(SNRS.index(dataset[i]["record"]["snr"]) for i in range(len(dataset)))


@pytest.mark.parametrize("conditions", [1, 2, 3, 4])
def test_schedule_is_equal_for_any_number_of_masks_and_repeats(conditions: int) -> None:
    for masks in range(1, 31):
        for repeats in range(1, 8):
            length = mixture_length(masks, repeats, conditions)
            assert masks * repeats <= length < masks * repeats + conditions
            assert length % conditions == 0
            schedule = [condition_of_sample(i, masks, conditions) for i in range(length)]
            counts = Counter(schedule)
            assert set(counts) == set(range(conditions)), (masks, repeats)
            assert len(set(counts.values())) == 1, (masks, repeats, counts)
            per_mask = Counter((i % masks, c) for i, c in enumerate(schedule))
            if repeats % conditions == 0:  # then every mask under every condition equally
                assert set(per_mask.values()) == {repeats // conditions}, (masks, repeats)
            else:  # no mask sees a condition twice before it has seen all of them
                for mask in range(masks):
                    seen = [per_mask[(mask, c)] for c in range(conditions)]
                    assert max(seen) - min(seen) <= 1, (masks, repeats, mask, seen)


def test_schedule_refuses_bad_arguments() -> None:
    from mitoseg.errors import InputError

    with pytest.raises(InputError, match="conditions"):
        mixture_length(10, 1, 0)
    with pytest.raises(InputError, match="repeats"):
        mixture_length(10, 0, 3)
    with pytest.raises(IndexError):
        condition_of_sample(-1, 10, 3)


@pytest.mark.parametrize("repeats", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("count", [12, 13, 14])
def test_dataset_shows_every_condition_equally_often(count: int, repeats: int) -> None:
    """The issue: with (i // n) % k, repeats=2 of SNR 1/4/8 never showed SNR 8."""
    masks = procedural_mask_set(count=count, seed=0, shape=(16, 16))
    conditions = [FluorescenceParams(snr=s) for s in SNRS]
    for dataset in (SyntheticFluorescenceDataset(masks, conditions, 0, "train", repeats),
                    FluorescenceMaskDataset(masks, conditions, 0, "train", repeats)):
        counts = _counts(dataset)
        assert sorted(counts) == [0, 1, 2] and len(set(counts.values())) == 1, counts
        assert Counter(dataset[i]["mask_id"] for i in range(len(dataset))).keys() == set(masks.ids)


def _presets() -> list[str]:
    return sorted(p.stem for p in (CONF / "study_preset").glob("*.yaml"))


@pytest.mark.parametrize("preset", _presets())
def test_every_preset_mixture_is_equal_for_any_train_repeats(preset: str) -> None:
    """What the study trains for each mixture, counted from its training data module (the
    preset's split and masks; small procedural masks, since only their number matters)."""
    study = compose_config("study", [f"study_preset={preset}"])
    if study.dataset == "fluo_masks" and not (SHARED_DATA / "fluo-masks").is_dir():
        pytest.skip(f"real masks not found at {SHARED_DATA / 'fluo-masks'}")
    overrides = [o for o in study.train_overrides if o.startswith("dataset.")]
    if study.dataset != "fluo_masks":
        overrides.append("dataset.masks.shape=[16,16]")
    preset_repeats = [int(o.split("=")[1]) for o in overrides
                      if o.startswith("dataset.train_repeats=")]
    masks = None
    for mixture in MIXTURES:
        cfg = compose_config("train", [f"dataset={study.dataset}", f"condition={mixture}",
                                       f"paths.shared_data={SHARED_DATA}", *overrides])
        masks = masks or instantiate(cfg.dataset.masks)()
        for repeats in sorted(set(preset_repeats + [1, 2, 3, 4, 5])):
            module = instantiate(cfg.dataset, masks=lambda: masks, train_repeats=repeats)
            module.setup()
            train = module.datasets["train"]
            counts = Counter(train.condition_of(i) for i in range(len(train)))
            assert len(counts) == len(cfg.dataset.train_conditions) == 3, (mixture, repeats)
            assert len(set(counts.values())) == 1, (preset, mixture, repeats, counts)
            assert module.describe()["train_condition_counts"] == [counts[k] for k in range(3)]
