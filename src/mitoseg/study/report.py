"""The study's markdown report: every measured figure next to paper 000's published one.

``write_study_report(rows, out_dir)`` writes, into a folder it never overwrites:
report.md, robustness.csv, sensitivity.csv, cross_condition.csv, mixture.csv, tests.csv,
empty_predictions.csv and figures/ (see mitoseg.study.figures). A part of the study without
rows is reported as missing, and every published number is listed even when its measured
counterpart is missing. Every n of images comes with its number of independent units, the
sample size of the tests (mitoseg.study.units).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from mitoseg.errors import InputError
from mitoseg.reporting.formatting import MISSING, markdown_table, number_text, p_text
from mitoseg.runs.files import write_new_text
from mitoseg.study import figures as figs
from mitoseg.study.statistics import (
    PARTS,
    average_change,
    cross_condition_table,
    empty_abd_convention,
    empty_prediction_table,
    format_level,
    mixture_table,
    normalize_rows,
    ordered_families,
    ordered_methods,
    robustness_table,
    sensitivity_table,
    summarize_rows,
    t_test_table,
)

__all__ = ["PUBLISHED", "published_figures", "write_study_report", "render_report"]

PUBLISHED_FILE = "published_paper000.yaml"  # shipped inside mitoseg.study


def published_figures() -> dict[str, Any]:
    """Paper 000's published figures, read from ``published_paper000.yaml`` in this package
    (a fresh copy each call): source, n_per_condition, abd_unit, robustness_slope,
    sensitivity, cross_change_pct."""
    text = resources.files("mitoseg.study").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


PUBLISHED: dict[str, Any] = published_figures()

SENSITIVITY_KEYS = {"das_dilation_2_3": "DAS, mean over dilation 2-3 px",
                    "das_erosion_1": "DAS at erosion 1 px", "das_dilation_1": "DAS at dilation 1 px",
                    "dds_all_levels": "DDS, mean over all levels"}
META_KEYS = ("command", "hardware", "mask source", "seeds", "n per condition")
CSV_COLUMNS = {
    "robustness": ["family", "method", "metric", "levels", "means", "sems", "ns", "units",
                   "unit_sems", "dropped", "missing_levels", "slope", "published_slope"],
    "sensitivity": ["method", "levels", "das_mean", "das_sem", "das_n", "das_units", "das_unit_sem",
                    "das_dropped", "dds_mean", "dds_sem", "dds_n", "dds_units", "dds_unit_sem",
                    "dds_dropped", "das_dilation_2_3", "dds_all_levels",
                    "published_das_dilation_2_3", "published_dds_all_levels"],
    "cross_condition": ["family", "method", "train_level", "test_level", "metric", "mean", "sem", "n",
                        "units", "source", "reference_mean", "reference_sem", "reference_n",
                        "reference_units", "reference_source", "change_pct", "t", "p"],
    "mixture": ["family", "method", "level", "metric", "mixture_mean", "mixture_sem", "mixture_n",
                "mixture_units", "single_mean", "single_sem", "single_n", "single_units",
                "difference", "t", "p"],
    "tests": ["part", "family", "level", "metric", "method_1", "method_2", "mean_1", "mean_2",
              "n1", "n2", "units_1", "units_2", "t", "p", "test"],
    "empty_predictions": ["part", "family", "level", "train_level", "method", "empty", "n", "units"],
}
FIGURE_NAMES = ("figure2", "figure3", "figure4", "figure_s2", "figure_s5")
MAIN_FAMILIES = ("snr", "sib", "svb")
METRIC_NAMES = {"as": "AS", "abd_px": "ABD (px)", "das": "DAS", "dds": "DDS"}


# ----------------------------------------------------------------------------- formatting

def _pct(value: Optional[float]) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:+.1f} %"


def _csv_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(_csv_cell(v) for v in value)
    return "" if value is None else str(value)


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _seeds_text(seeds: Sequence[int]) -> str:
    """", 3 seeds each" when the images are averaged over several training seeds, else ""."""
    low, high = min(seeds), max(seeds)
    if high <= 1:
        return ""
    return f", {low} seeds each" if low == high else f", {low} to {high} seeds each"


def _mean_sem(mean: float, sem: float, n: int, units: int, dropped: int = 0,
              seeds: tuple[int, int] = (0, 0)) -> str:
    """Per-image mean ± SEM, with the images (each the mean over its training seeds, how many
    named when more than one) and the independent units they come from, and the nan values
    left out (undefined DDS; ABD of empty predictions under empty_abd: exclude)."""
    left_out = f"; {dropped} nan left out" if dropped else ""
    if not n:
        return f"none defined ({dropped} nan left out)" if dropped else "missing"
    return (f"{number_text(mean)} ± {number_text(sem)} (n={n} images{_seeds_text(seeds)}, "
            f"{units} units{left_out})")


# ----------------------------------------------------------------------------- sections

def _span(values: Sequence[int]) -> str:
    values = sorted(set(values))
    return f"{values[0]}" if len(values) == 1 else f"{values[0]} to {values[-1]}"


def _meta_section(meta: Mapping[str, Any], rows: list[dict]) -> list[str]:
    groups = summarize_rows(rows, by=("part", "family", "level", "train_level", "method"), metric="as")
    seeds = [g["seeds"] for g in groups if g["seeds"][1] > 1]
    averaged = (f"; a network's value per image is its mean over "
                f"{_span([s for pair in seeds for s in pair])} training seeds" if seeds else "")
    measured = ("no rows" if not groups else
                f"{_span([g['images'] for g in groups])} images per condition, "
                f"{_span([g['units'] for g in groups])} units{averaged}")
    empty = empty_prediction_table(rows)
    body = [(key, meta.get(key, "not given")) for key in META_KEYS]
    body += [(key, value) for key, value in meta.items() if key not in META_KEYS]
    body.append(("n per condition, measured", f"{measured} (paper 000: n = {PUBLISHED['n_per_condition']} "
                                              "images; its tests count images)"))
    body.append(("empty predictions", f"{sum(e['empty'] for e in empty)} of {len(rows)} rows; ABD "
                                      f"convention `empty_abd: {empty_abd_convention(rows)}` "
                                      "(see 'Empty predictions')"))
    return ["## Run", ""] + markdown_table(("", ""), body)


def _parts_section(rows: list[dict]) -> list[str]:
    body = []
    for part in PARTS:
        mine = [r for r in rows if r["part"] == part]
        families = ordered_families(r["family"] for r in mine)
        status = f"{len(mine)} rows" if mine else "**missing** (no rows)"
        body.append((part, ", ".join(families) or "-", ", ".join(ordered_methods(r["method"] for r in mine)) or "-",
                     status))
    have = {r["family"] for r in rows if r["part"] == "robustness"}
    for family in MAIN_FAMILIES:
        if family not in have:
            body.append((f"robustness / {family}", family, "-", "**missing** (no rows)"))
    unknown = sorted({r["part"] for r in rows} - set(PARTS))
    lines = ["## Parts of the study", ""] + markdown_table(("part", "families", "methods", "status"), body)
    if unknown:
        lines += [f"Rows with unknown part values were ignored: {unknown}.", ""]
    return lines


def _mean_sem_tables(rows: list[dict], part: str, families: Sequence[str], metrics: Sequence[str]) -> list[str]:
    lines = []
    for family in families:
        for metric in metrics:
            groups = [g for g in summarize_rows([r for r in rows if r["part"] == part and r["family"] == family],
                                           by=("family", "level", "method"), metric=metric)]
            if not groups:
                continue
            levels = list(dict.fromkeys(g["level"] for g in groups))
            body = []
            for method in ordered_methods(g["method"] for g in groups):
                cells = {g["level"]: g for g in groups if g["method"] == method}
                body.append([figs.method_label(method)] + [
                    _mean_sem(cells[lv]["mean"], cells[lv]["sem"], cells[lv]["n"], cells[lv]["units"],
                              cells[lv]["dropped"], cells[lv]["seeds"]) if lv in cells else "missing"
                    for lv in levels])
            lines += [f"{family}, {METRIC_NAMES[metric]}, per-image mean ± SEM:", ""]
            lines += markdown_table(["method"] + [format_level(family, lv) for lv in levels], body)
    return lines


def _tests_lines(tests: list[dict], part: str, families: Sequence[str]) -> list[str]:
    mine = [t for t in tests if t["part"] == part and t["family"] in families]
    if not mine:
        return ["No t-tests (fewer than two methods with rows).", ""]
    body = [(t["family"], format_level(t["family"], t["level"]), METRIC_NAMES[t["metric"]],
             f"{figs.method_label(t['method_1'])} vs {figs.method_label(t['method_2'])}",
             number_text(t["t"], 3), p_text(t["p"]), t["n1"], t["n2"], t["units_1"], t["units_2"]) for t in mine]
    return ["Tests on unit means: n1 / n2 count images, units 1 / units 2 the units "
            "(statistics_unit) that are the samples of the test.", ""] + markdown_table(
        ("family", "level", "metric", "pair", "t", "p", "n1", "n2", "units 1", "units 2"), body)


def _slope_lines(table: list[dict], families: Sequence[str], published: Mapping[str, Any]) -> list[str]:
    body = []
    for family in families:
        for metric in ("as", "abd_px"):
            pub = published.get("robustness_slope", {}).get(family, {}).get(metric, {})
            measured = {e["method"]: e for e in table if e["family"] == family and e["metric"] == metric}
            for method in ordered_methods(list(pub) + list(measured)):
                entry = measured.get(method)
                if entry is None:
                    value, used = "missing (no rows)", "-"
                else:
                    value = number_text(entry["slope"])
                    used = ", ".join(format_level(family, lv) for lv in entry["levels"])
                    if entry["missing_levels"]:
                        used += " (missing: " + ", ".join(format_level(family, lv)
                                                          for lv in entry["missing_levels"]) + ")"
                body.append((family, METRIC_NAMES[metric], figs.method_label(method), value,
                             number_text(pub.get(method)) if method in pub else "not published", used))
    return markdown_table(("family", "metric", "method", "measured slope", "published slope", "levels"), body)


def _robustness_section(rows, table, tests, published) -> list[str]:
    lines = ["## Robustness (Figure 2)", "",
             "Robustness = average slope of the metric curve (lower = more robust): the levels are "
             "sorted, the slope |Δ mean| / |Δ level| of each segment between consecutive levels is "
             "taken, and the segment slopes are averaged with equal weight (SNR 8/4/1: "
             "(|m8 − m4| / 4 + |m4 − m1| / 3) / 2).", ""]
    present = [f for f in ordered_families(e["family"] for e in table) if not f.endswith("_corr")]
    families = list(dict.fromkeys(list(MAIN_FAMILIES) + present))
    for family in families:
        if family not in present:
            lines += [f"**Missing**: no robustness rows for family `{family}`.", ""]
    lines += _slope_lines(table, families, published)
    lines += ["### Per-image mean ± SEM per condition", ""] + _mean_sem_tables(rows, "robustness", present, ("as", "abd_px"))
    lines += ["### Two-sample t-tests between methods", ""] + _tests_lines(tests, "robustness", present)
    return lines


def _sensitivity_section(rows, table, tests, published) -> list[str]:
    lines = ["## Sensitivity (Figure 3)", ""]
    pub = published.get("sensitivity", {})
    if not table:
        lines += ["**Missing**: no rows with part `sensitivity`.", ""]
    measured = {e["method"]: e for e in table}

    def value(entry: Optional[dict], key: str) -> str:
        if entry is None:
            return "missing (no rows)"
        if key in ("das_dilation_2_3", "dds_all_levels"):
            return number_text(entry[key])
        level = -1.0 if key == "das_erosion_1" else 1.0
        if level not in entry["levels"]:
            return "missing (level not run)"
        i = entry["levels"].index(level)
        return _mean_sem(entry["das_mean"][i], entry["das_sem"][i], entry["das_n"][i], entry["das_units"][i],
                         seeds=entry["das_seeds"][i])

    body = []
    for key, label in SENSITIVITY_KEYS.items():
        for method in ordered_methods(list(pub.get(key, {})) + list(measured)):
            p = pub.get(key, {})
            body.append((label, figs.method_label(method), value(measured.get(method), key),
                         number_text(p[method], 4 if key in ("das_dilation_2_3", "dds_all_levels") else 2)
                         if method in p else "not published"))
    lines += ["DAS at 2-3 px = mean of the per-level DAS means at dilation 2 and 3 px; DDS over all "
              "levels = mean of the per-level DDS means (undefined DDS dropped first).", ""]
    lines += markdown_table(("figure", "method", "measured", "published"), body)
    if table:
        lines += ["### Per-image mean ± SEM per deformation level", ""]
        lines += _mean_sem_tables(rows, "sensitivity", ("deformation",), ("das", "dds"))
        dropped = sum(sum(e["dds_dropped"]) for e in table)
        if dropped:
            lines += [f"{dropped} undefined DDS value(s) (ground truth unchanged) were dropped.", ""]
        lines += ["### Two-sample t-tests between methods", ""] + _tests_lines(tests, "sensitivity", ("deformation",))
    return lines


def _cross_section(table, published) -> list[str]:
    lines = ["## Cross-condition testing (Supplementary Figure S2)", "",
             "change = (mean tested elsewhere − mean tested at the training level) / mean tested at "
             "the training level × 100, averaged over the listed test levels.", ""]
    if not table:
        lines += ["**Missing**: no rows with part `cross`.", ""]
    body = []
    seen = set()
    for entry in published.get("cross_change_pct", []):
        family, train, tests, metric = entry["family"], entry["train_level"], entry["test_levels"], entry["metric"]
        measured_methods = {e["method"] for e in table if e["family"] == family and e["train_level"] == train}
        for method in ordered_methods(list(entry["values"]) + list(measured_methods)):
            seen.add((family, float(train), method))
            change = average_change(table, family, method, train, tests, metric)
            have = method in measured_methods
            body.append((family, format_level(family, train), ", ".join(format_level(family, t) for t in tests),
                         METRIC_NAMES[metric], figs.method_label(method),
                         _pct(change) if have else "missing (no rows)",
                         _pct(entry["values"][method]) if method in entry["values"] else "not published",
                         entry.get("note", "")))
    lines += markdown_table(("family", "trained at", "tested at", "metric", "method", "measured change",
                     "published change", "note"), body)
    if table:
        body = [(e["family"], figs.method_label(e["method"]), format_level(e["family"], e["train_level"]),
                 format_level(e["family"], e["test_level"]), METRIC_NAMES[e["metric"]],
                 _mean_sem(e["mean"], e["sem"], e["n"], e["units"], seeds=e["seeds"]), e["source"],
                 _pct(e["change_pct"]),
                 p_text(e["p"])) for e in table]
        lines += ["### Per-image mean ± SEM, trained at x tested at", "",
                  "The training-level reference comes from part `cross` rows tested there when present, "
                  "otherwise from part `robustness` (source column); p: two-sample t-test against it, "
                  "on unit means.", ""]
        lines += markdown_table(("family", "method", "trained at", "tested at", "metric", "mean ± SEM", "source",
                         "change", "p"), body)
    return lines


def _mixture_section(table) -> list[str]:
    lines = ["## Mixture vs single-condition training (Figure 4)", ""]
    if not table:
        return lines + ["**Missing**: no rows with part `mixture`.", ""]
    body = [(e["family"], figs.method_label(e["method"]), format_level(e["family"], e["level"]),
             METRIC_NAMES[e["metric"]],
             _mean_sem(e["mixture_mean"], e["mixture_sem"], e["mixture_n"], e["mixture_units"],
                       seeds=e["mixture_seeds"]),
             _mean_sem(e["single_mean"], e["single_sem"], e["single_n"], e["single_units"],
                       seeds=e["single_seeds"]),
             number_text(e["difference"]), p_text(e["p"])) for e in table]
    lines += ["Paper 000 found the two matched in most cases (p > 0.1) and gives no numbers beyond "
              "its Figure 4 p-values. Cells: per-image mean ± SEM; p: two-sample t-test on unit "
              "means.", ""]
    return lines + markdown_table(("family", "method", "test level", "metric", "mixture-trained",
                           "single-condition", "difference", "p"), body)


def _correlated_section(rows, table, tests) -> list[str]:
    lines = ["## Spatially correlated images (Supplementary Figure S5)", ""]
    families = [f for f in ordered_families(e["family"] for e in table) if f.endswith("_corr")]
    if not families:
        return lines + ["**Missing**: no robustness rows for sib_corr / svb_corr.", ""]
    lines += ["Paper 000 publishes no numbers for these, only the trend: networks keep about the "
              "same AS and slightly worse ABD, AAM degrades.", ""]
    lines += _slope_lines(table, families, {})
    lines += _mean_sem_tables(rows, "robustness", families, ("as", "abd_px"))
    return lines + ["### Two-sample t-tests", ""] + _tests_lines(tests, "robustness", families)


def _empty_section(rows: list[dict]) -> list[str]:
    convention = empty_abd_convention(rows)
    meaning = {"diagonal": "the image diagonal (282.8 px on 200 x 200 images), so a total miss "
                           "scores worst and stays in every ABD mean (one such image moves a mean "
                           "of 30 by about 9 px); DDS inherits it",
               "exclude": "nan: left out of the ABD means and the tests (and DDS with it), "
                      "counted here instead",
               None: "no rows"}[convention]
    table = empty_prediction_table(rows)
    lines = ["## Empty predictions", "",
             f"ABD of an empty prediction against a non-empty mask: `empty_abd: {convention}`, "
             f"{meaning}. The study option `empty_abd` chooses it (diagonal or exclude); per_image.csv "
             "marks each such row (`pred_empty`; sensitivity rows: on the original or the deformed "
             "image).", ""]
    hit = [e for e in table if e["empty"]]
    if not hit:
        return lines + [f"No empty predictions in {sum(e['n'] for e in table)} rows.", ""]
    body = [(e["part"], e["family"], format_level(e["family"], e["level"]),
             format_level(e["family"], e["train_level"]) or "-", figs.method_label(e["method"]),
             f"{e['empty']} of {e['n']} ({e['units']} units)") for e in hit]
    lines += [f"Conditions with empty predictions ({len(hit)} of {len(table)}; all others have none):", ""]
    return lines + markdown_table(("part", "family", "level", "trained at", "method", "empty predictions"), body)


def _figures_section(written: Optional[Mapping[str, list[Path]]], out_dir: Path) -> list[str]:
    titles = {"figure2": "Figure 2, robustness", "figure3": "Figure 3, sensitivity",
              "figure4": "Figure 4, mixture vs single-condition training",
              "figure_s2": "Supplementary Figure S2, cross-condition testing",
              "figure_s5": "Supplementary Figure S5, correlated images"}
    lines = ["## Figures", "", "Error bars: per-image SEM over the test images, each a network's "
                               "mean over its training seeds (a description of the images; the "
                               "tests above use unit means).", ""]
    if written is None:
        return lines + ["No figures were drawn for this report (switched off).", ""]
    for name in FIGURE_NAMES:
        paths = written.get(name)
        if not paths:
            lines += [f"{titles[name]}: **missing**, no rows for this part.", ""]
        else:
            png = next(p for p in paths if p.suffix == ".png")
            lines += [f"{titles[name]}:", "", f"![{name}]({png.relative_to(out_dir).as_posix()})", ""]
    return lines


# ----------------------------------------------------------------------------- entry points

def render_report(rows: Iterable[Mapping[str, Any]], published: Mapping[str, Any] = PUBLISHED,
                  meta: Optional[Mapping[str, Any]] = None,
                  figures: Optional[Mapping[str, list[Path]]] = None, out_dir: Path = Path("."),
                  equal_var: bool = True) -> str:
    """The report's markdown text (no files written)."""
    rows = normalize_rows(rows)
    robust, tests = robustness_table(rows), t_test_table(rows, equal_var=equal_var)
    lines = ["# Paper 000 robustness and sensitivity study", "",
             f"Published values: {published.get('source', 'source not given')}. "
             f"ABD unit of the published values: {published.get('abd_unit', 'not given')}.", "",
             "Statistics: mean ± SEM are per-image (SEM = std with ddof=1 / sqrt(n images)); a "
             "network trained with several seeds counts each test image once, its value the mean "
             "over the seeds (n images, k seeds each), as paper 000's n = 30 counts images. A "
             "description of the test images, which are not independent (each crop comes with its "
             "flips/rotations; overlapping crops share pixels). Tests are two-sample "
             f"{'Student' if equal_var else 'Welch'} t-tests, as in the paper, but on unit means: "
             "a unit is what statistics_unit names in the table below: a cluster of crops that "
             "share a region (the independent unit, the default) or a crop with its "
             "flips/rotations (per_image.csv `cluster` and `unit`; each procedural mask is a unit "
             "of its own either way), and its value is the mean of its images, each the mean over "
             "its training seeds. Every n of images comes "
             "with its number of units, the tests' sample size. Paper 000's p-values treat its 30 "
             "images as independent samples, so they are not comparable with these.", ""]
    lines += _meta_section(meta or {}, rows) + _parts_section(rows)
    lines += _robustness_section(rows, robust, tests, published)
    lines += _sensitivity_section(rows, sensitivity_table(rows), tests, published)
    lines += _cross_section(cross_condition_table(rows, equal_var=equal_var), published)
    lines += _mixture_section(mixture_table(rows, equal_var=equal_var))
    lines += _correlated_section(rows, robust, tests)
    lines += _empty_section(rows)
    lines += _figures_section(figures, out_dir)
    return "\n".join(lines).rstrip() + "\n"


def write_study_report(rows: Iterable[Mapping[str, Any]], out_dir: Union[str, Path],
                       published: Mapping[str, Any] = PUBLISHED,
                       meta: Optional[Mapping[str, Any]] = None, *, figures: bool = True,
                       equal_var: bool = True) -> Path:
    """Write report.md, the six CSV tables and (figures=True) figures/ into ``out_dir``.

    meta: shown at the top (command, hardware, mask source, seeds, n per condition, and any
    other keys). Refuses, before writing anything, if any of the files already exists.
    Returns the path of report.md.
    """
    rows = normalize_rows(rows)
    out_dir = Path(out_dir)
    targets = [out_dir / "report.md"] + [out_dir / f"{name}.csv" for name in CSV_COLUMNS]
    if figures:
        targets += [out_dir / "figures" / f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "svg")]
    taken = [str(p) for p in targets if p.exists()]
    if taken:
        raise InputError(f"refusing to overwrite existing study results {taken}; choose a new folder")

    robust = robustness_table(rows)
    for entry in robust:
        entry["published_slope"] = (published.get("robustness_slope", {}).get(entry["family"], {})
                                    .get(entry["metric"], {}).get(entry["method"]))
    sens = sensitivity_table(rows)
    for entry in sens:
        for key in ("das_dilation_2_3", "dds_all_levels"):
            entry[f"published_{key}"] = published.get("sensitivity", {}).get(key, {}).get(entry["method"])
    tables = {"robustness": robust, "sensitivity": sens,
              "cross_condition": cross_condition_table(rows, equal_var=equal_var),
              "mixture": mixture_table(rows, equal_var=equal_var),
              "tests": t_test_table(rows, equal_var=equal_var),
              "empty_predictions": empty_prediction_table(rows)}
    for name, table in tables.items():
        write_new_text(out_dir / f"{name}.csv", _csv_text(CSV_COLUMNS[name], table))
    written = figs.write_figures(rows, out_dir / "figures") if figures else None
    text = render_report(rows, published, meta, written, out_dir, equal_var)
    return write_new_text(out_dir / "report.md", text)
