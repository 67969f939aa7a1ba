"""Tests for mitoseg.study.statistics against brute-force computations on hand-made rows."""

from __future__ import annotations

import csv
import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from mitoseg.errors import InputError
from mitoseg.study.statistics import (
    COLUMNS,
    average_change,
    cross_condition_table,
    empty_abd_convention,
    empty_prediction_table,
    format_level,
    level_order,
    mixture_table,
    normalize_rows,
    pairwise_tests,
    read_rows,
    robustness_slope,
    robustness_table,
    select,
    sensitivity_table,
    summarize_rows,
    t_test_table,
)

METHODS = ("fcn", "unet", "aam")
LEVELS = {"snr": (8, 4, 1), "sib": (2, 3, 4)}


UNIT_SIZE = 2  # images per independent unit in these rows (the real crops have 6)


def make_row(part, family, level, method, image, as_=0.5, abd=1.0, train_level=None, das="", dds="",
             pred_empty=0, empty_abd="diagonal", seed=None):
    """One row as the csv module would read it: every value text."""
    if train_level is None:
        train_level = "" if method == "aam" else level
    if seed is None:
        seed = "" if method == "aam" else "0"
    return {"part": part, "family": family, "level": str(level), "train_level": str(train_level),
            "method": method, "seed": str(seed), "image": f"crop{image:03d}",
            "unit": f"group-{image // UNIT_SIZE}", "as": str(as_), "abd_px": str(abd),
            "abd_um": str(abd * 0.0645), "das": str(das), "dds": str(dds),
            "pred_empty": str(pred_empty), "empty_abd": empty_abd}


def study_rows(seed: int = 0, images: int = 6) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for family, levels in LEVELS.items():
        for m, method in enumerate(METHODS):
            for k, level in enumerate(levels):
                for i in range(images):
                    rows.append(make_row("robustness", family, level, method, i,
                                         0.9 - 0.04 * m - 0.03 * k * (m + 1) + rng.normal(0, 0.02),
                                         1.0 + 0.2 * k * (m + 1) + rng.normal(0, 0.05)))
    for method in METHODS:
        for level in (-1, 1, 2, 3):
            for i in range(images):
                dds = "nan" if (i == 0 and level == -1) else 0.7 + rng.normal(0, 0.05)
                rows.append(make_row("sensitivity", "deformation", level, method, i,
                                     train_level="" if method == "aam" else 4,
                                     das=0.2 + 0.1 * abs(level) + rng.normal(0, 0.03), dds=dds))
    for method in ("fcn", "unet"):
        for train, tests in ((8, (4, 1)), (4, (8, 1))):
            for test in tests:
                for i in range(images):
                    rows.append(make_row("cross", "snr", test, method, i, 0.5 + rng.normal(0, 0.05),
                                         2.0 + rng.normal(0, 0.1), train_level=train))
        for level in (8, 4, 1):
            for i in range(images):
                rows.append(make_row("mixture", "snr", level, method, i, 0.85 + rng.normal(0, 0.03),
                                     1.2 + rng.normal(0, 0.05), train_level="mix"))
    return rows


def values(rows, metric, **criteria):
    """Brute force: the finite values of ``metric`` in the rows that match, with plain loops."""
    out = []
    for row in rows:
        ok = True
        for key, want in criteria.items():
            have = row[key]
            if key in ("level", "train_level") and have not in ("", "mix"):
                ok &= float(have) == float(want)
            else:
                ok &= str(have) == str(want)
        if ok and row[metric] not in ("", "nan") and not math.isnan(float(row[metric])):
            out.append(float(row[metric]))
    return out


def unit_means(rows, metric, **criteria):
    """Brute force: the mean of the finite values of each unit, in order of first appearance."""
    units = {}
    for row in rows:
        if values([row], metric, **criteria):
            units.setdefault(row["unit"], []).append(float(row[metric]))
    return [sum(v) / len(v) for v in units.values()]


def bf_mean(xs):
    return sum(xs) / len(xs)


def bf_sem(xs):
    m = bf_mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) / math.sqrt(len(xs))


# ----------------------------------------------------------------------------- slope

def test_slope_by_hand():
    # SNR 8/4/1: (|m8 - m4| / 4 + |m4 - m1| / 3) / 2
    assert robustness_slope([8, 4, 1], [0.95, 0.93, 0.82]) == pytest.approx((0.02 / 4 + 0.11 / 3) / 2)
    assert robustness_slope([1, 8, 4], [0.82, 0.95, 0.93]) == pytest.approx((0.02 / 4 + 0.11 / 3) / 2)
    assert robustness_slope([2, 3, 4], [1.0, 1.5, 1.2]) == pytest.approx((0.5 + 0.3) / 2)


def test_slope_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(2, 7))
        levels = rng.permutation(rng.choice(np.arange(1, 30), n, replace=False)).astype(float)
        means = rng.normal(size=n)
        pairs = sorted(zip(levels, means))
        segments = []
        for (l0, m0), (l1, m1) in zip(pairs[:-1], pairs[1:]):
            segments.append(abs(m1 - m0) / abs(l1 - l0))
        assert robustness_slope(levels, means) == pytest.approx(sum(segments) / len(segments))


def test_slope_edge_cases():
    assert math.isnan(robustness_slope([4], [0.9]))
    assert math.isnan(robustness_slope([8, 4, 1], [0.9, float("nan"), 0.8]))
    with pytest.raises(InputError, match="distinct"):
        robustness_slope([4, 4], [0.9, 0.8])
    with pytest.raises(InputError, match="as many"):
        robustness_slope([8, 4], [0.9])


# ----------------------------------------------------------------------------- summaries

def test_summarize_brute_force():
    rows = study_rows()
    table = summarize_rows(rows, by=("part", "family", "level", "method"), metric="as")
    assert len(table) == 2 * 3 * 3 + 3 * 4 + 2 * 3 + 2 * 3  # robustness, sensitivity, cross (levels 8, 4, 1), mixture
    for entry in table:
        xs = values(rows, "as", part=entry["part"], family=entry["family"], level=entry["level"],
                    method=entry["method"])
        assert entry["n"] == len(xs) and entry["dropped"] == 0
        assert entry["mean"] == pytest.approx(bf_mean(xs))
        assert entry["sem"] == pytest.approx(bf_sem(xs))
        assert entry["std"] == pytest.approx(bf_sem(xs) * math.sqrt(len(xs)))
    snr = [e["level"] for e in table if e["part"] == "robustness" and e["family"] == "snr" and e["method"] == "fcn"]
    assert snr == [8.0, 4.0, 1.0]  # the paper's order


def test_summarize_counts_units_and_their_sem():
    rows = study_rows()
    for entry in summarize_rows(rows, by=("part", "family", "level", "method"), metric="abd_px"):
        where = dict(part=entry["part"], family=entry["family"], level=entry["level"], method=entry["method"])
        units = unit_means(rows, "abd_px", **where)
        assert entry["units"] == len(units) == 3  # 6 images (12 for the two cross train levels)
        assert entry["unit_sem"] == pytest.approx(bf_sem(units))


def test_summarize_drops_nan_and_counts():
    rows = study_rows()
    table = summarize_rows([r for r in rows if r["part"] == "sensitivity"], by=("level", "method"), metric="dds")
    erosion = [e for e in table if e["level"] == -1.0]
    assert all(e["dropped"] == 1 and e["n"] == 5 for e in erosion)
    for entry in table:
        xs = values(rows, "dds", part="sensitivity", level=entry["level"], method=entry["method"])
        assert entry["mean"] == pytest.approx(bf_mean(xs))


def test_summarize_bad_arguments():
    with pytest.raises(InputError, match="metric 'iou'"):
        summarize_rows(study_rows(), metric="iou")
    with pytest.raises(InputError, match="group by"):
        summarize_rows(study_rows(), by=("as",))


def test_csv_round_trip(tmp_path):
    rows = study_rows()
    path = tmp_path / "per_image.csv"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    read = read_rows(path)
    assert read == normalize_rows(rows) == normalize_rows(read)
    assert read[0]["level"] == 8.0 and read[0]["train_level"] == 8.0
    assert {r["train_level"] for r in read if r["method"] == "aam"} == {""}
    assert {r["train_level"] for r in read if r["part"] == "mixture"} == {"mix"}


def test_bad_rows_are_named():
    row = make_row("robustness", "snr", 8, "fcn", 0)
    del row["abd_px"]
    with pytest.raises(InputError, match="abd_px"):
        normalize_rows([row], where="per_image.csv")
    for column in ("unit", "pred_empty", "empty_abd"):
        row = make_row("robustness", "snr", 8, "fcn", 0)
        del row[column]
        with pytest.raises(InputError, match=f"lacks column.*'{column}'"):
            normalize_rows([row], where="per_image.csv")
    with pytest.raises(InputError, match="row 0, column 'unit': every image needs the id of its "):
        normalize_rows([dict(make_row("robustness", "snr", 8, "fcn", 0), unit="")])
    with pytest.raises(InputError, match="row 0, column 'pred_empty'"):
        normalize_rows([make_row("robustness", "snr", 8, "fcn", 0, pred_empty="yes")])
    with pytest.raises(InputError, match="row 0, column 'empty_abd'.*'diagonal' or 'exclude'"):
        normalize_rows([make_row("robustness", "snr", 8, "fcn", 0, empty_abd="zero")])
    with pytest.raises(InputError, match="row 0, column 'level'"):
        normalize_rows([make_row("robustness", "snr", "high", "fcn", 0)])
    with pytest.raises(InputError, match="column 'as'"):
        normalize_rows([make_row("robustness", "snr", 8, "fcn", 0, as_="good")])
    with pytest.raises(InputError, match="does not exist"):
        read_rows("/nonexistent/per_image.csv")


def test_ordering_and_labels():
    assert level_order("snr", [1.0, 8.0, 4.0]) == [8.0, 4.0, 1.0]
    assert level_order("sib", [4.0, 2.0, 3.0]) == [2.0, 3.0, 4.0]
    assert level_order("deformation", [3.0, -1.0, 1.0]) == [-1.0, 1.0, 3.0]
    assert format_level("svb", 3.0) == "1~3" and format_level("snr", 8.0) == "8"
    assert format_level("sib", 2.5) == "2.5" and format_level("snr", "mix") == "mix"
    assert len(select(study_rows(), part="robustness", family="snr", level="4", method="aam")) == 6


# ----------------------------------------------------------------------------- t-tests

def bf_t(a, b, equal_var):
    ma, mb, na, nb = bf_mean(a), bf_mean(b), len(a), len(b)
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    if equal_var:
        pooled = ((na - 1) * va + (nb - 1) * vb) / (na + nb - 2)
        t, df = (ma - mb) / math.sqrt(pooled * (1 / na + 1 / nb)), na + nb - 2
    else:
        se2 = va / na + vb / nb
        t = (ma - mb) / math.sqrt(se2)
        df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return t, 2 * stats.t.sf(abs(t), df)


@pytest.mark.parametrize("equal_var", [True, False])
def test_pairwise_tests_brute_force(equal_var):
    rows = study_rows()
    out = pairwise_tests(rows, "abd_px", "snr", 4, equal_var=equal_var)
    assert [(e["method_1"], e["method_2"]) for e in out] == list(combinations(METHODS, 2))
    for entry in out:
        where = dict(part="robustness", family="snr", level=4)
        a = unit_means(rows, "abd_px", **where, method=entry["method_1"])
        b = unit_means(rows, "abd_px", **where, method=entry["method_2"])
        t, p = bf_t(a, b, equal_var)
        assert (entry["n1"], entry["n2"]) == (6, 6)  # images, a description
        assert (entry["units_1"], entry["units_2"]) == (3, 3)  # the sample size of the test
        assert entry["t"] == pytest.approx(t) and entry["p"] == pytest.approx(p)
        image_p = bf_t(values(rows, "abd_px", **where, method=entry["method_1"]),
                       values(rows, "abd_px", **where, method=entry["method_2"]), equal_var)[1]
        assert entry["p"] != pytest.approx(image_p)  # not the pseudo-replicated test
        assert entry["test"] == ("student" if equal_var else "welch") + ", unit means"


def test_pseudo_replicates_do_not_make_false_significance():
    """Null data like the study's: 5 crops x 6 highly correlated images per method. A test over
    the 30 images calls about half of these null comparisons significant; over crops, ~5 %."""
    rng = np.random.default_rng(3)
    calls, image_calls, runs = 0, 0, 200
    for _ in range(runs):
        rows = []
        for method in ("fcn", "unet"):
            crops = rng.normal(0.8, 0.1, size=5)  # crop effect >> image noise (ICC ~ 0.9)
            rows += [make_row("robustness", "snr", 4, method, 6 * c + i, as_=crops[c] + rng.normal(0, 0.03))
                     for c in range(5) for i in range(6)]
        for row in rows:
            row["unit"] = f"crop-{int(row['image'][4:]) // 6}"
        (entry,) = pairwise_tests(rows, "as", "snr", 4)
        assert (entry["n1"], entry["units_1"]) == (30, 5)
        calls += entry["p"] < 0.05
        image_calls += bf_t(values(rows, "as", method="fcn"), values(rows, "as", method="unet"), True)[1] < 0.05
    assert calls / runs <= 0.10 and image_calls / runs >= 0.3, (calls, image_calls)


def test_seeds_are_replicates_within_a_unit():
    """Rows of three training seeds on the same 3 units: still 3 units, each the mean over seeds."""
    rows = [make_row("robustness", "snr", 4, method, i, as_=0.5 + 0.1 * seed + 0.01 * i + 0.2 * m,
                     seed=seed) for m, method in enumerate(("fcn", "unet")) for seed in range(3)
            for i in range(6)]
    (entry,) = pairwise_tests(rows, "as", "snr", 4)
    # n1 describes the images: 6 test images, each the mean over its 3 seeds (it was 18, the
    # rows, which paper 000's n = 30 images never counts); the test's sample is the 3 units
    assert (entry["n1"], entry["units_1"]) == (6, 3)
    a, b = unit_means(rows, "as", method="fcn"), unit_means(rows, "as", method="unet")
    assert entry["p"] == pytest.approx(bf_t(a, b, True)[1])


def test_pairwise_tests_sensitivity_and_small_groups():
    rows = study_rows()
    dds = pairwise_tests(rows, "dds", "deformation", -1)
    assert dds and all(e["part"] == "sensitivity" and e["n1"] == 5 for e in dds)
    few = [make_row("robustness", "snr", 8, m, 0) for m in METHODS]
    assert all(math.isnan(e["p"]) for e in pairwise_tests(few, "as", "snr", 8))
    cross = pairwise_tests(rows, "as", "snr", 1, part="cross", train_level=8)
    assert [(e["method_1"], e["method_2"], e["n1"]) for e in cross] == [("fcn", "unet", 6)]


def test_tests_table_covers_every_condition():
    table = t_test_table(study_rows())
    keys = {(e["part"], e["family"], e["level"], e["metric"]) for e in table}
    assert len(keys) == 2 * 3 * 2 + 4 * 2 and len(table) == 3 * len(keys)


# ----------------------------------------------------------------------------- tables

def test_robustness_table_brute_force():
    rows = study_rows()
    table = robustness_table(rows)
    assert len(table) == 2 * 3 * 2
    for entry in table:
        levels = LEVELS[entry["family"]]
        assert entry["levels"] == [float(lv) for lv in levels] and entry["missing_levels"] == []
        means = [bf_mean(values(rows, entry["metric"], part="robustness", family=entry["family"],
                                level=lv, method=entry["method"])) for lv in levels]
        assert entry["means"] == pytest.approx(means) and entry["ns"] == [6, 6, 6]
        assert entry["units"] == [3, 3, 3]
        pairs = sorted(zip(levels, means))
        slopes = [abs(m1 - m0) / (l1 - l0) for (l0, m0), (l1, m1) in zip(pairs, pairs[1:])]
        assert entry["slope"] == pytest.approx(sum(slopes) / len(slopes))


def test_robustness_table_flags_missing_levels():
    rows = [r for r in study_rows() if not (r["part"] == "robustness" and r["method"] == "aam"
                                            and r["family"] == "snr" and r["level"] == "1")]
    aam = [e for e in robustness_table(rows) if e["method"] == "aam" and e["family"] == "snr"]
    assert all(e["levels"] == [8.0, 4.0] and e["missing_levels"] == [1.0] for e in aam)


def test_sensitivity_table_brute_force():
    rows = study_rows()
    table = sensitivity_table(rows)
    assert [e["method"] for e in table] == list(METHODS)
    for entry in table:
        assert entry["levels"] == [-1.0, 1.0, 2.0, 3.0]
        das = {lv: bf_mean(values(rows, "das", part="sensitivity", level=lv, method=entry["method"]))
               for lv in (-1, 1, 2, 3)}
        dds = {lv: bf_mean(values(rows, "dds", part="sensitivity", level=lv, method=entry["method"]))
               for lv in (-1, 1, 2, 3)}
        assert entry["das_mean"] == pytest.approx(list(das.values()))
        assert entry["das_dilation_2_3"] == pytest.approx((das[2] + das[3]) / 2)
        assert entry["dds_all_levels"] == pytest.approx(sum(dds.values()) / 4)
        assert entry["dds_n"] == [5, 6, 6, 6] and entry["dds_dropped"] == [1, 0, 0, 0]
        assert entry["das_units"] == entry["dds_units"] == [3, 3, 3, 3]
    no_dilation = [r for r in rows if r["part"] == "sensitivity" and r["level"] != "3"]
    assert all(math.isnan(e["das_dilation_2_3"]) for e in sensitivity_table(no_dilation))
    # a study without the erosion level, or with a level of no finite DDS: its DDS summary is
    # not the paper's mean over all levels, so it is nan rather than a mean over fewer levels
    no_erosion = [r for r in rows if r["part"] == "sensitivity" and r["level"] != "-1"]
    assert all(math.isnan(e["dds_all_levels"]) for e in sensitivity_table(no_erosion))
    undefined = [dict(r, dds="nan") if r["part"] == "sensitivity" and r["level"] == "1" else r
                 for r in rows]
    assert all(math.isnan(e["dds_all_levels"]) for e in sensitivity_table(undefined))


def test_cross_condition_table_brute_force():
    rows = study_rows()
    table = cross_condition_table(rows)
    grid = {(e["method"], e["train_level"], e["test_level"], e["metric"]): e for e in table}
    assert len(table) == 2 * 2 * 3 * 2  # methods x train levels x (2 tests + reference) x metrics
    for (method, train, test, metric), entry in grid.items():
        ref = bf_mean(values(rows, metric, part="robustness", family="snr", level=train, method=method))
        here = (values(rows, metric, part="cross", family="snr", level=test, method=method, train_level=train)
                if test != train else
                values(rows, metric, part="robustness", family="snr", level=train, method=method))
        assert entry["reference_mean"] == pytest.approx(ref) and entry["reference_source"] == "robustness"
        assert entry["mean"] == pytest.approx(bf_mean(here))
        assert entry["change_pct"] == pytest.approx((bf_mean(here) - ref) / ref * 100)
        if test != train:
            ref_units = unit_means(rows, metric, part="robustness", family="snr", level=train, method=method)
            here_units = unit_means(rows, metric, part="cross", family="snr", level=test, method=method,
                                    train_level=train)
            assert entry["p"] == pytest.approx(bf_t(here_units, ref_units, True)[1])
            assert (entry["n"], entry["units"], entry["reference_units"]) == (6, 3, 3)
    expected = (grid[("unet", 8.0, 4.0, "as")]["change_pct"] + grid[("unet", 8.0, 1.0, "as")]["change_pct"]) / 2
    assert average_change(table, "snr", "unet", 8, [4, 1], "as") == pytest.approx(expected)
    assert math.isnan(average_change(table, "snr", "unet", 8, [4, 2], "as"))
    assert math.isnan(average_change(table, "snr", "aam", 8, [4], "as"))


def test_cross_reference_prefers_cross_rows_at_the_training_level():
    rows = study_rows()
    rows += [make_row("cross", "snr", 8, "fcn", i, 0.8, 1.5, train_level=8) for i in range(4)]
    entry = next(e for e in cross_condition_table(rows) if e["method"] == "fcn" and e["train_level"] == 8.0
                 and e["test_level"] == 4.0 and e["metric"] == "as")
    here = bf_mean(values(rows, "as", part="cross", level=4, method="fcn", train_level=8))
    assert entry["reference_source"] == "cross" and entry["reference_n"] == 4
    assert entry["change_pct"] == pytest.approx((here - 0.8) / 0.8 * 100)


def test_mixture_table_brute_force():
    rows = study_rows()
    table = mixture_table(rows)
    assert {e["method"] for e in table} == {"fcn", "unet"}  # the AAM is never trained
    assert len(table) == 2 * 3 * 2
    for entry in table:
        mix = values(rows, entry["metric"], part="mixture", level=entry["level"], method=entry["method"])
        one = values(rows, entry["metric"], part="robustness", family="snr", level=entry["level"],
                     method=entry["method"])
        assert entry["mixture_mean"] == pytest.approx(bf_mean(mix))
        assert entry["single_mean"] == pytest.approx(bf_mean(one))
        assert entry["difference"] == pytest.approx(bf_mean(mix) - bf_mean(one))
        mix_units = unit_means(rows, entry["metric"], part="mixture", level=entry["level"],
                               method=entry["method"])
        one_units = unit_means(rows, entry["metric"], part="robustness", family="snr",
                               level=entry["level"], method=entry["method"])
        assert entry["p"] == pytest.approx(bf_t(mix_units, one_units, True)[1])
        assert (entry["mixture_n"], entry["mixture_units"], entry["single_units"]) == (6, 3, 3)


def test_tables_of_absent_parts_are_empty():
    only = [r for r in study_rows() if r["part"] == "robustness"]
    assert sensitivity_table(only) == [] and cross_condition_table(only) == [] and mixture_table(only) == []
    assert robustness_table([]) == [] and summarize_rows([]) == []


# ----------------------------------------------------------------------------- empty predictions

def test_empty_predictions_are_counted_per_condition_and_method():
    rows = study_rows()
    marked = 0
    for row in rows:
        if row["part"] == "robustness" and row["family"] == "snr" and row["level"] == "1" \
                and row["method"] == "aam" and row["image"] in ("crop000", "crop003"):
            row["pred_empty"], row["abd_px"] = "1", str(math.hypot(200, 200))
            marked += 1
    assert marked == 2
    table = empty_prediction_table(rows)
    assert len(table) == len(summarize_rows(rows, by=("part", "family", "level", "train_level", "method")))
    (hit,) = [e for e in table if e["empty"]]
    assert (hit["part"], hit["family"], hit["level"], hit["method"]) == ("robustness", "snr", 1.0, "aam")
    assert (hit["empty"], hit["n"], hit["units"]) == (2, 6, 2)
    assert sum(e["n"] for e in table) == len(rows)


def test_the_empty_abd_convention_is_one_per_table():
    rows = study_rows()
    assert empty_abd_convention(rows) == "diagonal"
    assert empty_abd_convention([dict(r, empty_abd="exclude") for r in rows]) == "exclude"
    with pytest.raises(InputError, match="mixes ABD conventions for empty predictions"):
        empty_abd_convention(rows[:3] + [dict(rows[3], empty_abd="exclude")])
    assert empty_abd_convention([]) is None
