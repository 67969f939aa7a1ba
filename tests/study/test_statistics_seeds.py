"""Per-image mean ± SEM when a network has one row per image per training seed.

Paper 000 gives mean ± SEM over its n = 30 test images. A network trained with several seeds
has one row per image and seed; the seeds are replicates of the same image, not more images.
So each image's value is its mean over the seeds first, n counts images and the SEM is over
the image values (the classical methods, one row per image, are unchanged). Brute-force
references use numpy on plain dicts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mitoseg.study.statistics import (
    cross_condition_table,
    mixture_table,
    pairwise_tests,
    robustness_table,
    sensitivity_table,
    summarize_rows,
)
from tests.study.test_statistics import make_row, study_rows, unit_means

SEEDS = (0, 1, 2)


def seeded_rows(seeds=SEEDS, images: int = 6, skip=(), level=4) -> list[dict]:
    """U-Net rows for every (seed, image) not in ``skip`` and AAM rows (one per image) at SNR
    ``level``; images differ by far more than seeds do, as on real data."""
    rng = np.random.default_rng(3)
    effect = rng.normal(0, 0.05, images)
    rows = [make_row("robustness", "snr", level, "unet", i, as_=0.7 + effect[i] + rng.normal(0, 0.01),
                     abd=1.0 + effect[i] + rng.normal(0, 0.02), seed=s)
            for s in seeds for i in range(images) if (s, i) not in skip]
    rows += [make_row("robustness", "snr", level, "aam", i, as_=0.68 + effect[i] + rng.normal(0, 0.01))
             for i in range(images)]
    return rows


def _matches(row, criteria) -> bool:
    for key, want in criteria.items():
        have = row[key]
        if key in ("level", "train_level") and have not in ("", "mix") and want not in ("", "mix"):
            if float(have) != float(want):
                return False
        elif str(have) != str(want):
            return False
    return True


def image_means(rows, metric, **criteria) -> dict[str, float]:
    """Brute force: image -> mean of its finite values over the seeds (rows matching criteria)."""
    found: dict[str, list[float]] = {}
    for row in rows:
        if _matches(row, criteria):
            value = float(row[metric]) if row[metric] not in ("", "nan") else math.nan
            if math.isfinite(value):
                found.setdefault(row["image"], []).append(value)
    return {image: float(np.mean(v)) for image, v in found.items()}


def bf_describe(rows, metric, **criteria) -> tuple[float, float, int]:
    """Brute force: mean, SEM (ddof=1) and n over the seed-averaged image values."""
    m = np.array(list(image_means(rows, metric, **criteria).values()))
    return float(m.mean()), float(m.std(ddof=1) / np.sqrt(m.size)), int(m.size)


def test_per_image_n_and_sem_count_images_not_seeds():
    rows = seeded_rows()
    groups = {g["method"]: g for g in summarize_rows(rows, by=("method",))}
    mean, sem, n = bf_describe(rows, "as", method="unet")
    unet = groups["unet"]
    assert (unet["n"], n) == (6, 6)  # 6 images, not 18 rows
    assert unet["sem"] == pytest.approx(sem) and unet["mean"] == pytest.approx(mean)
    # every image has every seed: the mean over images equals the mean over all rows
    assert unet["mean"] == pytest.approx(np.mean([float(r["as"]) for r in rows if r["method"] == "unet"]))
    assert unet["seeds"] == (3, 3) and groups["aam"]["seeds"] == (0, 0)
    # the pooled-row SEM was about sqrt(3) too small; the classical method is unchanged
    pooled = np.array([float(r["as"]) for r in rows if r["method"] == "unet"])
    assert unet["sem"] > 1.4 * pooled.std(ddof=1) / np.sqrt(pooled.size)
    assert groups["aam"]["sem"] == pytest.approx(bf_describe(rows, "as", method="aam")[1])
    assert groups["aam"]["n"] == 6
    # the units and their SEM (the tests' statistic): every image has every seed, so the unit
    # value (the mean of its images' seed means) is the mean of its rows
    assert unet["units"] == 3
    units = unit_means(rows, "as", method="unet")
    assert unet["unit_sem"] == pytest.approx(np.std(units, ddof=1) / np.sqrt(len(units)))
    (test,) = pairwise_tests(rows, "as", "snr", 4)
    assert (test["method_1"], test["n1"], test["n2"], test["units_1"]) == ("unet", 6, 6, 3)


def test_missing_seeds_average_each_image_over_the_seeds_it_has():
    """A failed seed for some images: each image is the mean of the seeds it has (one image,
    one weight); n stays the number of images; seeds gives the fewest and most per image."""
    rows = seeded_rows(skip={(2, 0), (2, 1), (1, 0)})
    (unet,) = [g for g in summarize_rows(rows, by=("method",)) if g["method"] == "unet"]
    mean, sem, n = bf_describe(rows, "as", method="unet")
    assert (unet["n"], unet["seeds"], unet["dropped"]) == (6, (1, 3), 0)
    assert unet["mean"] == pytest.approx(mean) and unet["sem"] == pytest.approx(sem)
    pooled = np.mean([float(r["as"]) for r in rows if r["method"] == "unet"])
    assert not unet["mean"] == pytest.approx(pooled, abs=1e-9)  # rows would weigh image 0 less
    # a seed that failed everywhere: every image has the same 2 seeds, mean equals pooled rows
    rows = seeded_rows(seeds=(0, 2))
    (unet,) = [g for g in summarize_rows(rows, by=("method",)) if g["method"] == "unet"]
    assert (unet["n"], unet["seeds"]) == (6, (2, 2))
    assert unet["mean"] == pytest.approx(np.mean([float(r["as"]) for r in rows if r["method"] == "unet"]))


def test_nan_at_some_seeds_is_left_out_and_counted():
    """ABD of an empty prediction under empty_abd: exclude is nan for that seed only: the image
    keeps the mean of its other seeds; an image nan at every seed is not among the n images."""
    rows = seeded_rows()
    for row in rows:
        if row["method"] == "unet" and (row["image"], row["seed"]) in (("crop000", "1"), ("crop002", "0"),
                                                                        ("crop002", "1"), ("crop002", "2")):
            row["abd_px"] = "nan"
    (unet,) = [g for g in summarize_rows(rows, by=("method",), metric="abd_px") if g["method"] == "unet"]
    mean, sem, n = bf_describe(rows, "abd_px", method="unet")
    assert (n, unet["n"], unet["images"], unet["dropped"], unet["seeds"]) == (5, 5, 6, 4, (2, 3))
    assert unet["mean"] == pytest.approx(mean) and unet["sem"] == pytest.approx(sem)


def _with_seeds(rows: list[dict]) -> list[dict]:
    """study_rows with every network row repeated for seeds 1 and 2 (values shifted per seed)."""
    out = list(rows)
    rng = np.random.default_rng(7)
    for seed in (1, 2):
        for row in rows:
            if row["seed"] == "0":
                copy = dict(row, seed=str(seed))
                for metric in ("as", "abd_px", "das", "dds"):
                    if copy[metric] not in ("", "nan"):
                        copy[metric] = str(float(copy[metric]) + rng.normal(0, 0.02))
                out.append(copy)
    return out


def test_every_table_and_figure_sem_is_over_images():
    """The SEMs behind Figures 2, 3, 4 and S5 and the report's cells (robustness, sensitivity,
    cross-condition, mixture) are over the seed-averaged images."""
    rows = _with_seeds(study_rows())
    for entry in robustness_table(rows):
        for level, sem, n in zip(entry["levels"], entry["sems"], entry["ns"]):
            want = bf_describe(rows, entry["metric"], part="robustness", family=entry["family"],
                               level=level, method=entry["method"])
            assert (sem, n) == (pytest.approx(want[1]), want[2]) and n == 6
    for entry in sensitivity_table(rows):
        for i, level in enumerate(entry["levels"]):
            for metric in ("das", "dds"):
                want = bf_describe(rows, metric, part="sensitivity", level=level, method=entry["method"])
                assert entry[f"{metric}_sem"][i] == pytest.approx(want[1])
                assert entry[f"{metric}_n"][i] == want[2]
    for entry in cross_condition_table(rows):
        if entry["source"] == "cross":
            want = bf_describe(rows, entry["metric"], part="cross", family=entry["family"],
                               level=entry["test_level"],
                               train_level=entry["train_level"], method=entry["method"])
            assert (entry["sem"], entry["n"]) == (pytest.approx(want[1]), 6)
    for entry in mixture_table(rows):
        want = bf_describe(rows, entry["metric"], part="mixture", family=entry["family"],
                           level=entry["level"], method=entry["method"])
        assert (entry["mixture_sem"], entry["mixture_n"]) == (pytest.approx(want[1]), 6)
        want = bf_describe(rows, entry["metric"], part="robustness", family=entry["family"],
                           level=entry["level"], train_level=entry["level"], method=entry["method"])
        assert (entry["single_sem"], entry["single_n"]) == (pytest.approx(want[1]), 6)


def unit_image_means(rows, metric, **criteria) -> dict[str, float]:
    """Brute force: unit -> the mean of its images' seed means (``image_means``)."""
    unit_of = {row["image"]: row["unit"] for row in rows if _matches(row, criteria)}
    per_unit: dict[str, list[float]] = {}
    for image, mean in image_means(rows, metric, **criteria).items():
        per_unit.setdefault(unit_of[image], []).append(mean)
    return {unit: float(np.mean(v)) for unit, v in per_unit.items()}


def test_unit_values_weigh_each_image_once_whatever_its_seeds():
    """Seeds missing or nan for some images (a failed run, empty_abd: exclude): a unit's value
    is the mean of its images' seed means, as the per-image description, so an image with
    more finite seeds does not weigh more in the tests and the unit SEM."""
    rows = seeded_rows(skip={(1, 0), (2, 0)})  # image 0 (unit of images 0 and 1): seed 0 only
    for row in rows:
        if row["method"] == "unet" and row["image"] == "crop003" and row["seed"] != "0":
            row["as"] = "nan"  # image 3: seed 0 only, the others nan
    (unet,) = [g for g in summarize_rows(rows, by=("method",)) if g["method"] == "unet"]
    units = unit_image_means(rows, "as", method="unet")
    pooled = unit_means(rows, "as", method="unet")
    assert not np.allclose(sorted(units.values()), sorted(pooled))  # rows would weigh otherwise
    assert unet["units"] == len(units) == 3
    want = np.array(list(units.values()))
    assert unet["unit_sem"] == pytest.approx(want.std(ddof=1) / np.sqrt(want.size))
    (test,) = pairwise_tests(rows, "as", "snr", 4)
    aam = np.array(list(unit_image_means(rows, "as", method="aam").values()))
    from scipy import stats
    expected = stats.ttest_ind(want, aam) if test["method_1"] == "unet" else stats.ttest_ind(aam, want)
    assert test["t"] == pytest.approx(expected.statistic) and test["p"] == pytest.approx(expected.pvalue)
