"""The study's per-image rows (mitoseg.study.analysis) without training: units, empty
predictions and the ABD convention, with stand-in segmenters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from mitoseg.errors import InputError
from mitoseg.study import analysis
from mitoseg.study.analysis import score_rows, sensitivity_rows
from mitoseg.study.statistics import COLUMNS, normalize_rows
from mitoseg.synth.fluorescence import FluorescenceParams
from tests.conftest import SHARED_DATA, compose_config

BASE = {"part": "robustness", "family": "snr", "level": 4.0, "train_level": 4.0, "method": "unet",
        "seed": 0}


def _dataset(overrides: list[str]) -> dict:
    cfg = compose_config("train", [f"paths.shared_data={SHARED_DATA}", *overrides])
    return OmegaConf.to_container(cfg.dataset, resolve=True)


@pytest.fixture(scope="module")
def procedural_images():
    return analysis.test_images(_dataset(["dataset.masks.count=24", "dataset.masks.shape=[48,48]",
                                 "dataset.split={val:4,test:4}"]), "snr4")


def _empty(image: np.ndarray) -> np.ndarray:
    return np.zeros(image.shape, bool)


def _truth_of(images):
    masks = {item.image.tobytes(): item.mask for item in images}
    return lambda image: masks.get(image.tobytes(), np.zeros(image.shape, bool))


def test_procedural_test_images_are_each_their_own_unit(procedural_images):
    units = [item.unit for item in procedural_images]
    assert len(units) == 4 and len(set(units)) == 4 and all(u.startswith("group-") for u in units)


def test_real_test_images_are_grouped_by_crop() -> None:
    """The test images of the real masks are whole crops x 6 flips/rotations (units of 6
    consecutive file numbers), dealt as whole clusters of crops that share a region (30 or 36
    images by data_seed): each image also names its cluster, which holds whole crops."""
    if not (SHARED_DATA / "fluo-masks").is_dir():
        pytest.skip(f"real masks not found at {SHARED_DATA / 'fluo-masks'}")
    images = analysis.test_images(_dataset(["dataset=fluo_masks"]), "snr4")
    by_unit: dict[str, list[int]] = {}
    for item in images:
        by_unit.setdefault(item.unit, []).append(int(item.image_id))
    assert len(images) in (30, 36) and len(by_unit) == len(images) // 6
    clusters: dict[str, set[str]] = {}
    for item in images:
        clusters.setdefault(item.cluster, set()).add(item.unit)
    assert item.cluster.startswith("cluster-") and 1 <= len(clusters) <= len(by_unit)
    assert sum(len(units) for units in clusters.values()) == len(by_unit)  # a crop in one cluster
    for numbers in by_unit.values():
        assert sorted(numbers) == list(range(min(numbers), min(numbers) + 6))
        assert (min(numbers) - 1) % 6 == 0


@pytest.mark.parametrize("empty_abd", ["diagonal", "exclude"])
def test_rows_carry_unit_empty_prediction_and_convention(procedural_images, empty_abd):
    rows = score_rows(_empty, procedural_images, 0.0645, BASE, empty_abd)
    rows += score_rows(_truth_of(procedural_images), procedural_images, 0.0645, BASE | {"method": "fcn"},
                       empty_abd)
    assert all(set(COLUMNS) <= set(row) for row in rows)
    normalize_rows(rows)  # what the report reads
    empty, perfect = rows[:4], rows[4:]
    assert [r["unit"] for r in empty] == [item.unit for item in procedural_images]
    assert {r["pred_empty"] for r in empty} == {1} and {r["pred_empty"] for r in perfect} == {0}
    assert {r["empty_abd"] for r in rows} == {empty_abd}
    diagonal = math.hypot(48, 48)
    for row in empty:
        assert row["as"] == 0.0
        if empty_abd == "diagonal":
            assert row["abd_px"] == pytest.approx(diagonal)
        else:
            assert math.isnan(row["abd_px"]) and math.isnan(row["abd_um"])
    assert all(r["abd_px"] == 0.0 and r["as"] == 1.0 for r in perfect)


def test_sensitivity_rows_mark_an_empty_prediction_on_either_image(procedural_images):
    params = FluorescenceParams(snr=4.0)
    base = {"part": "sensitivity", "family": "deformation", "train_level": 4.0, "method": "unet", "seed": 0}
    calls = {"n": 0}

    def every_other(image: np.ndarray) -> np.ndarray:  # original found, deformed image empty
        calls["n"] += 1
        return np.ones(image.shape, bool) if calls["n"] % 2 else np.zeros(image.shape, bool)

    for empty_abd in ("diagonal", "exclude"):
        rows = sensitivity_rows(every_other, procedural_images[:2], [2], params, 0.0645, 0, base, empty_abd)
        assert len(rows) == 2 and {r["pred_empty"] for r in rows} == {1}
        assert {r["unit"] for r in rows} == {item.unit for item in procedural_images[:2]}
        dds = [r["dds"] for r in rows]
        assert all(math.isnan(d) for d in dds) if empty_abd == "exclude" else all(d > 10 for d in dds)
    with pytest.raises(InputError, match="empty_abd"):
        score_rows(_empty, procedural_images, 0.0645, BASE, "zero")
