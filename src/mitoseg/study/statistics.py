"""Statistics of paper 000's robustness/sensitivity study, from the tidy per-image table.

Input: rows with the columns of ``study/per_image.csv`` (``COLUMNS``; one row per test image,
method and run), as read by the csv module (all text) or already typed. Every function here is
pure: rows in, lists of plain dicts out, so the same numbers feed the CSV tables, the figures
and the report.

Definitions (paper 000; see each function):
- mean ± SEM per condition over the images, SEM = std (ddof=1) / sqrt(n), nan values
  (undefined DDS; ABD of empty predictions under ``empty_abd: exclude``) dropped and counted. A
  network trained with several seeds has a row per image and seed: an image's value is its
  mean over the seeds, so n counts test images (paper 000: n = 30) and ``seeds`` says over how
  many seeds each image was averaged. A description of the images: they are not independent
  (``mitoseg.study.units``).
- every test compares *unit* values (column ``unit``: a crop with its flips/rotations, or a
  cluster of overlapping crops; the mean over its images and training seeds); ``units`` next
  to every ``n`` is the test's sample size, ``unit_sem`` the SEM over units.
- robustness = "average slope of the metric curve": the mean over consecutive levels of
  |Δ mean| / |Δ level| (``robustness_slope``).
- two-sample Student t-tests between methods (Welch on request), on unit values.
- cross-condition change = (mean tested elsewhere - mean tested at the training level) /
  mean tested at the training level * 100.
- pred_empty marks rows whose prediction is empty (sensitivity: on the original or the
  deformed image); empty_abd names the ABD convention for them (one per table).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import EMPTY_ABD
from mitoseg.study.units import describe_with_units, unit_t_test

COLUMNS = ("part", "family", "level", "train_level", "method", "seed", "image", "unit",
           "as", "abd_px", "abd_um", "das", "dds", "pred_empty", "empty_abd")
METRICS = ("as", "abd_px", "abd_um", "das", "dds")
PARTS = ("robustness", "cross", "mixture", "sensitivity")
FAMILIES = ("snr", "sib", "svb", "snr_corr", "sib_corr", "svb_corr", "deformation")
METHODS = ("fcn", "unet", "aam", "otsu", "local")
ACCURACY_METRICS = ("as", "abd_px")

Level = float
TrainLevel = Union[float, str]  # a level, "mix", or "" for methods that are not trained


# ----------------------------------------------------------------------------- reading rows

def read_rows(path: Union[str, Path]) -> list[dict[str, Any]]:
    """Read ``per_image.csv`` with the csv module and return normalized rows."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"study table '{path}' does not exist; expected the per-image CSV")
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return normalize_rows(rows, where=str(path))


def _float(value: Any) -> float:
    if value is None or (isinstance(value, str) and value.strip() in ("", "nan", "NaN", "None")):
        return math.nan
    return float(value)


def _train_level(value: Any) -> TrainLevel:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            return text  # "mix", or "" for classical methods
    return float(value)


def normalize_rows(rows: Iterable[Mapping[str, Any]], where: str = "rows") -> list[dict[str, Any]]:
    """Typed copies of ``rows``: level float, train_level float / "mix" / "", metrics float
    ("" and "nan" -> nan), pred_empty int 0/1, the other columns str. Idempotent. Missing
    columns, a row without a unit or an unreadable value stop with an InputError naming
    ``where``, the row and the column."""
    out = []
    for index, row in enumerate(rows):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise InputError(f"{where}: row {index} lacks column(s) {missing}; expected the columns "
                             f"{list(COLUMNS)} of study/per_image.csv (a table written before "
                             "'unit', 'pred_empty' and 'empty_abd' existed: re-run the analysis, "
                             "python study.py analyze_only=<study folder>)")
        column = "level"
        try:
            typed = {c: ("" if row[c] is None else str(row[c]).strip())
                     for c in ("part", "family", "method", "seed", "image", "unit", "empty_abd")}
            column = "unit"
            if not typed["unit"]:
                raise ValueError("every image needs the id of its independent unit (crop group "
                                 "or cluster), got none")
            column = "empty_abd"
            if typed["empty_abd"] not in EMPTY_ABD:
                raise ValueError(f"expected 'diagonal' or 'exclude', got {typed['empty_abd']!r}")
            column = "pred_empty"
            typed["pred_empty"] = {"0": 0, "0.0": 0, "1": 1, "1.0": 1}.get(str(row["pred_empty"]).strip())
            if typed["pred_empty"] is None:
                raise ValueError(f"expected 0 or 1, got {row['pred_empty']!r}")
            column = "level"
            typed["level"] = float(row["level"])
            if not math.isfinite(typed["level"]):
                raise ValueError("not finite")
            column = "train_level"
            typed["train_level"] = _train_level(row["train_level"])
            for column in METRICS:
                typed[column] = _float(row[column])
        except (TypeError, ValueError) as error:
            why = (f"expected a number, got {row[column]!r} ({error})"
                   if column in (*METRICS, "level", "train_level") else str(error))
            raise InputError(f"{where}: row {index}, column '{column}': {why}") from error
        out.append(typed)
    return out


# ----------------------------------------------------------------------------- ordering

def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value), "") if value in order else (len(order), value)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """fcn, unet, aam, otsu, local first (the paper's order), then the rest alphabetically."""
    return sorted(set(methods), key=lambda m: _rank(m, METHODS))


def ordered_families(families: Iterable[str]) -> list[str]:
    return sorted(set(families), key=lambda f: _rank(f, FAMILIES))


def level_order(family: str, levels: Iterable[float]) -> list[float]:
    """Levels in the paper's order, from the easiest condition to the hardest: SNR descending
    (8, 4, 1), blur and deformation ascending (2, 3, 4; -1, 1, 2, 3)."""
    return sorted(set(levels), reverse=family.startswith("snr"))


def format_level(family: str, level: TrainLevel) -> str:
    """8.0 -> "8"; space-variant blur M -> "1~M" as the paper writes it; "mix" stays."""
    if isinstance(level, str):
        return level
    text = str(int(level)) if float(level).is_integer() else f"{level:g}"
    return f"1~{text}" if family.startswith("svb") else text


def _sort_key(row: Mapping[str, Any], by: Sequence[str]) -> tuple:
    key: list[Any] = []
    for column in by:
        value = row[column]
        if column == "part":
            key.append(_rank(value, PARTS))
        elif column == "family":
            key.append(_rank(value, FAMILIES))
        elif column == "method":
            key.append(_rank(value, METHODS))
        elif column in ("level", "train_level"):
            numeric = isinstance(value, float)
            sign = -1.0 if numeric and str(row.get("family", "")).startswith("snr") else 1.0
            key.append((0, sign * value, "") if numeric else (1, 0.0, str(value)))
        else:
            key.append(str(value))
    return tuple(key)


def select(rows: Iterable[Mapping[str, Any]], **criteria: Any) -> list[dict[str, Any]]:
    """Normalized rows whose columns equal ``criteria`` (levels compared as numbers)."""
    out = []
    for row in normalize_rows(rows):
        if all(row[c] == (_train_level(v) if c == "train_level" else float(v) if c == "level" else v)
               for c, v in criteria.items()):
            out.append(row)
    return out


# ----------------------------------------------------------------------------- basics

def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InputError(f"metric '{metric}' is not a column of the study table; expected one of {METRICS}")


def _triples(rows: Iterable[Mapping[str, Any]], metric: str) -> list[tuple[float, str, tuple]]:
    return [(row[metric], row["unit"], _image(row)) for row in rows]


# rows that differ only in their seed (and what the seed changed) are one test image
IMAGE_KEY = ("part", "family", "level", "train_level", "method", "image")


def _image(row: Mapping[str, Any]) -> tuple:
    return tuple(row[c] for c in IMAGE_KEY)


def mean_sem(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    """Over the rows' finite values of ``metric``, per image (an image's value is its mean over
    the training seeds): mean, sem, std (ddof=1), n (images), images (with or without a finite
    value), dropped (nan values, one per image and seed) and seeds, the fewest and most seeds
    an image was averaged over ((0, 0) for untrained methods, whose rows have no seed); units
    and unit_sem over the units (``mitoseg.study.units.describe_with_units``)."""
    rows = list(rows)
    seeds: dict[tuple, set[str]] = {}
    for row in rows:
        if math.isfinite(row[metric]):
            seeds.setdefault(_image(row), set()).update({row["seed"]} - {""})
    counts = [len(found) for found in seeds.values()] or [0]
    described = describe_with_units([(row[metric], row["unit"], _image(row)) for row in rows])
    return described | {"seeds": (min(counts), max(counts))}


def compare(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]], metric: str,
            equal_var: bool) -> dict[str, Any]:
    """Two-sample t-test of ``metric`` between two sets of rows, on their unit values: t, p,
    units_1, units_2 (``mitoseg.study.units.unit_t_test``)."""
    return unit_t_test(_triples(a, metric), _triples(b, metric), equal_var)


def _test_name(equal_var: bool) -> str:
    return ("student" if equal_var else "welch") + ", unit means"


def robustness_slope(levels: Sequence[float], means: Sequence[float]) -> float:
    """Paper 000's robustness: the average slope of the metric curve (lower = more robust).

    Sort the points by level, take the slope of each segment between consecutive levels,
    |mean_(i+1) - mean_i| / (level_(i+1) - level_i), and average the segment slopes with equal
    weight. For SNR 8/4/1 that is (|m8 - m4| / 4 + |m4 - m1| / 3) / 2. The project's fidelity
    guide found this reproduces the paper's slopes (the paper gives no formula).
    Fewer than 2 levels, or any nan mean -> nan. Repeated levels are an error.
    """
    lv, m = np.asarray(levels, dtype=float), np.asarray(means, dtype=float)
    if lv.ndim != 1 or lv.shape != m.shape:
        raise InputError(f"robustness_slope: expected as many levels as means, got {lv.shape} and {m.shape}")
    if np.unique(lv).size != lv.size:
        raise InputError(f"robustness_slope: levels must be distinct, got {lv.tolist()}")
    if lv.size < 2 or not np.isfinite(m).all() or not np.isfinite(lv).all():
        return math.nan
    order = np.argsort(lv)
    return float(np.mean(np.abs(np.diff(m[order])) / np.diff(lv[order])))


def summarize_rows(rows: Iterable[Mapping[str, Any]], by: Sequence[str] = ("part", "family", "level", "method"),
              metric: str = "as") -> list[dict[str, Any]]:
    """One dict per group of ``by``: the group's columns, metric, mean, sem, std (ddof=1), n
    (images with a finite value, each the mean over its seeds), images, seeds and dropped (nan
    values ignored, e.g. undefined DDS) over the images (``mean_sem``); units and unit_sem over
    the independent units."""
    _check_metric(metric)
    bad = [c for c in by if c not in COLUMNS or c in METRICS]
    if bad:
        raise InputError(f"summarize_rows: cannot group by {bad}; expected columns among "
                         f"{[c for c in COLUMNS if c not in METRICS]}")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in normalize_rows(rows):
        groups.setdefault(tuple(row[c] for c in by), []).append(row)
    out = [{**dict(zip(by, key)), "metric": metric, **mean_sem(mine, metric)}
           for key, mine in groups.items()]
    return sorted(out, key=lambda r: _sort_key(r, by))


def pairwise_tests(rows: Iterable[Mapping[str, Any]], metric: str, family: str, level: float, *,
                   part: Optional[str] = None, train_level: Optional[TrainLevel] = None,
                   equal_var: bool = True) -> list[dict[str, Any]]:
    """Two-sample t-tests between every pair of methods in one condition, on unit values.

    part: None = "sensitivity" for family "deformation", else "robustness". train_level: keep
    only rows trained there (needed for part "cross"). equal_var=True is the classic Student
    test the paper names; False gives Welch's. nan values are dropped; fewer than 2 units on a
    side -> t and p nan. Returns dicts with part, family, level, metric, method_1, method_2,
    mean_1, mean_2, n1, n2 (images, each the mean over its seeds), units_1, units_2 (the
    test's sample sizes), t, p, test.
    """
    _check_metric(metric)
    part = part or ("sensitivity" if family == "deformation" else "robustness")
    criteria: dict[str, Any] = {"part": part, "family": family, "level": level}
    if train_level is not None:
        criteria["train_level"] = train_level
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in select(rows, **criteria):
        by_method.setdefault(row["method"], []).append(row)
    out = []
    for m1, m2 in combinations(ordered_methods(by_method), 2):
        s1, s2 = mean_sem(by_method[m1], metric), mean_sem(by_method[m2], metric)
        test = compare(by_method[m1], by_method[m2], metric, equal_var)
        out.append({"part": part, "family": family, "level": float(level), "metric": metric,
                    "method_1": m1, "method_2": m2, "mean_1": s1["mean"], "mean_2": s2["mean"],
                    "n1": s1["n"], "n2": s2["n"], **test, "test": _test_name(equal_var)})
    return out


def t_test_table(rows: Iterable[Mapping[str, Any]], equal_var: bool = True) -> list[dict[str, Any]]:
    """pairwise_tests for every robustness condition (as, abd_px) and every deformation level
    (das, dds)."""
    rows = normalize_rows(rows)
    out = []
    for part, metrics in (("robustness", ACCURACY_METRICS), ("sensitivity", ("das", "dds"))):
        mine = [r for r in rows if r["part"] == part]
        for family in ordered_families(r["family"] for r in mine):
            levels = level_order(family, (r["level"] for r in mine if r["family"] == family))
            for level in levels:
                for metric in metrics:
                    out += pairwise_tests(mine, metric, family, level, part=part, equal_var=equal_var)
    return out


def empty_prediction_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per condition and method (part, family, level, train_level, method): empty (rows whose
    prediction is empty), n (rows) and units (units with at least one empty prediction)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    by = ("part", "family", "level", "train_level", "method")
    for row in normalize_rows(rows):
        groups.setdefault(tuple(row[c] for c in by), []).append(row)
    out = [{**dict(zip(by, key)), "empty": sum(r["pred_empty"] for r in mine), "n": len(mine),
            "units": len({r["unit"] for r in mine if r["pred_empty"]})}
           for key, mine in groups.items()]
    return sorted(out, key=lambda r: _sort_key(r, by))


def empty_abd_convention(rows: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """The ABD convention for empty predictions the rows were scored with ("diagonal" or "exclude";
    None without rows); a table that mixes them cannot be summarized."""
    found = sorted({r["empty_abd"] for r in normalize_rows(rows)})
    if len(found) > 1:
        raise InputError(f"study table mixes ABD conventions for empty predictions {found}; "
                         "analyze all methods with one 'empty_abd'")
    return found[0] if found else None


# ----------------------------------------------------------------------------- tables

def robustness_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scheme 1 (trained and tested per condition): per family x method x metric (as, abd_px)
    the levels in the paper's order, mean / sem / n / seeds (per image) and units / unit_sems
    per level, and the robustness slope over the levels this method has. missing_levels lists
    the family's levels (seen for any method) that this method lacks, so a slope over fewer
    levels is never mistaken for a full one."""
    rows = [r for r in normalize_rows(rows) if r["part"] == "robustness"]
    out = []
    for family in ordered_families(r["family"] for r in rows):
        fam = [r for r in rows if r["family"] == family]
        all_levels = level_order(family, (r["level"] for r in fam))
        for method in ordered_methods(r["method"] for r in fam):
            mine = [r for r in fam if r["method"] == method]
            levels = level_order(family, (r["level"] for r in mine))
            for metric in ACCURACY_METRICS:
                per_level = [mean_sem([r for r in mine if r["level"] == lv], metric) for lv in levels]
                means = [s["mean"] for s in per_level]
                out.append({"family": family, "method": method, "metric": metric, "levels": levels,
                            "means": means, "sems": [s["sem"] for s in per_level],
                            "ns": [s["n"] for s in per_level],
                            "seeds": [s["seeds"] for s in per_level],
                            "units": [s["units"] for s in per_level],
                            "unit_sems": [s["unit_sem"] for s in per_level],
                            "dropped": sum(s["dropped"] for s in per_level),
                            "missing_levels": [lv for lv in all_levels if lv not in levels],
                            "slope": robustness_slope(levels, means)})
    return out


# paper 000's deformations (px; negative = erosion), over which it averages DDS
PAPER_DEFORMATION_LEVELS = (-1.0, 1.0, 2.0, 3.0)


def sensitivity_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per method: DAS and DDS mean / sem / n / seeds / dropped (per image) and units / unit_sem
    per deformation level (px, negative = erosion), and the paper's summaries: das_dilation_2_3 =
    mean of the per-level DAS means at +2 and +3 px (nan unless both exist), dds_all_levels =
    mean of the per-level DDS means over the paper's levels, ``PAPER_DEFORMATION_LEVELS`` (nan
    unless each was run and has a mean; within a level, images with a nan DDS are dropped first
    and dds_dropped counts them): a summary over fewer levels would sit beside the paper's as if
    it were the same number."""
    rows = [r for r in normalize_rows(rows) if r["part"] == "sensitivity"]
    out = []
    for method in ordered_methods(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        levels = level_order("deformation", (r["level"] for r in mine))
        entry: dict[str, Any] = {"method": method, "levels": levels}
        for metric in ("das", "dds"):
            per_level = [mean_sem([r for r in mine if r["level"] == lv], metric) for lv in levels]
            for field in ("mean", "sem", "n", "seeds", "dropped", "units", "unit_sem"):
                entry[f"{metric}_{field}"] = [s[field] for s in per_level]
        das = dict(zip(levels, entry["das_mean"]))
        dilation = [das.get(2.0, math.nan), das.get(3.0, math.nan)]
        entry["das_dilation_2_3"] = float(np.mean(dilation)) if np.isfinite(dilation).all() else math.nan
        dds = dict(zip(levels, entry["dds_mean"]))
        every = [dds.get(level, math.nan) for level in PAPER_DEFORMATION_LEVELS]
        entry["dds_all_levels"] = float(np.mean(every)) if np.isfinite(every).all() else math.nan
        out.append(entry)
    return out


def cross_condition_table(rows: Iterable[Mapping[str, Any]], equal_var: bool = True) -> list[dict[str, Any]]:
    """Scheme 2: per family x method x train level x test level x metric (as, abd_px), the mean
    / sem / n / seeds (per image) and units tested there, the reference (tested at the training
    level) and change_pct = (mean - reference_mean) / reference_mean * 100, with a two-sample
    t-test of the two sets of unit values.

    The reference comes from part "cross" rows tested at their training level when there are
    any, otherwise from part "robustness" rows of that level trained there (same network
    recipe, scheme 1); reference_source says which. That reference also appears as the
    test_level == train_level row (change 0), so the table is a full train x test grid.
    Cross rows whose train_level is not a number (untrained methods) are ignored.
    """
    rows = normalize_rows(rows)
    cross = [r for r in rows if r["part"] == "cross" and isinstance(r["train_level"], float)]
    single = [r for r in rows if r["part"] == "robustness" and r["train_level"] == r["level"]]
    out = []
    for family in ordered_families(r["family"] for r in cross):
        fam = [r for r in cross if r["family"] == family]
        for method in ordered_methods(r["method"] for r in fam):
            mine = [r for r in fam if r["method"] == method]
            for train in level_order(family, (r["train_level"] for r in mine)):
                trained = [r for r in mine if r["train_level"] == train]
                reference = [r for r in trained if r["level"] == train]
                source = "cross"
                if not reference:
                    reference = [r for r in single if r["family"] == family and r["method"] == method
                                 and r["level"] == train]
                    source = "robustness" if reference else "missing"
                tests = level_order(family, {r["level"] for r in trained} | ({train} if reference else set()))
                for test in tests:
                    here = [r for r in trained if r["level"] == test] if test != train else reference
                    for metric in ACCURACY_METRICS:
                        s, ref = mean_sem(here, metric), mean_sem(reference, metric)
                        tested = (compare(here, reference, metric, equal_var) if test != train
                                  else {"t": math.nan, "p": math.nan})
                        change = ((s["mean"] - ref["mean"]) / ref["mean"] * 100.0
                                  if ref["n"] and ref["mean"] != 0 else math.nan)
                        out.append({"family": family, "method": method, "train_level": train,
                                    "test_level": test, "metric": metric, "mean": s["mean"],
                                    "sem": s["sem"], "n": s["n"], "seeds": s["seeds"],
                                    "units": s["units"],
                                    "source": source if test == train else "cross",
                                    "reference_mean": ref["mean"], "reference_sem": ref["sem"],
                                    "reference_n": ref["n"], "reference_seeds": ref["seeds"],
                                    "reference_units": ref["units"],
                                    "reference_source": source, "change_pct": change,
                                    "t": tested["t"], "p": tested["p"]})
    return out


def average_change(cross_table: Iterable[Mapping[str, Any]], family: str, method: str,
                   train_level: float, test_levels: Sequence[float], metric: str) -> float:
    """Mean of change_pct over ``test_levels`` (the paper's "on average, the mean AS decreased
    by ~89.6 %" when trained at SNR 8 and tested at 4 and 1); nan if any test level is missing."""
    found = {float(r["test_level"]): r["change_pct"] for r in cross_table
             if r["family"] == family and r["method"] == method and r["metric"] == metric
             and float(r["train_level"]) == float(train_level)}
    values = [found.get(float(level), math.nan) for level in test_levels]
    return float(np.mean(values)) if values and np.isfinite(values).all() else math.nan


def mixture_table(rows: Iterable[Mapping[str, Any]], equal_var: bool = True) -> list[dict[str, Any]]:
    """Scheme 2 with a mixture: per family x method (those with part "mixture" rows) x test
    level x metric (as, abd_px), mixture-trained mean / sem / n / seeds (per image) / units next
    to single-condition-trained (part "robustness", trained at that level), difference = mixture -
    single, and a two-sample t-test between the two sets of unit values. Levels of either side
    are listed; the missing side is nan with n 0."""
    rows = normalize_rows(rows)
    mixed = [r for r in rows if r["part"] == "mixture"]
    single = [r for r in rows if r["part"] == "robustness" and r["train_level"] == r["level"]]
    out = []
    for family in ordered_families(r["family"] for r in mixed):
        for method in ordered_methods(r["method"] for r in mixed if r["family"] == family):
            mix = [r for r in mixed if r["family"] == family and r["method"] == method]
            one = [r for r in single if r["family"] == family and r["method"] == method]
            for level in level_order(family, [r["level"] for r in mix + one]):
                for metric in ACCURACY_METRICS:
                    a = [r for r in mix if r["level"] == level]
                    b = [r for r in one if r["level"] == level]
                    sa, sb = mean_sem(a, metric), mean_sem(b, metric)
                    tested = compare(a, b, metric, equal_var)
                    out.append({"family": family, "method": method, "level": level, "metric": metric,
                                "mixture_mean": sa["mean"], "mixture_sem": sa["sem"], "mixture_n": sa["n"],
                                "mixture_seeds": sa["seeds"], "mixture_units": sa["units"],
                                "single_mean": sb["mean"], "single_sem": sb["sem"], "single_n": sb["n"],
                                "single_seeds": sb["seeds"], "single_units": sb["units"],
                                "difference": sa["mean"] - sb["mean"], "t": tested["t"], "p": tested["p"]})
    return out
