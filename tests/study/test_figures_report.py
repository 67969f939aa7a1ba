"""Tests for mitoseg.study.figures and mitoseg.study.report: files written, never overwritten,
published and measured values side by side, absent parts reported as missing."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mitoseg.errors import InputError
from mitoseg.study import figures as figs
from mitoseg.study.report import PUBLISHED, render_report, write_study_report
from mitoseg.study.statistics import (
    average_change,
    cross_condition_table,
    robustness_table,
    sensitivity_table,
)
from tests.study.test_statistics import make_row, study_rows

FIGURES = {"figure2": figs.figure2_robustness, "figure3": figs.figure3_sensitivity,
           "figure4": figs.figure4_mixture, "figure_s2": figs.figure_s2_cross,
           "figure_s5": figs.figure_s5_correlated}


@pytest.fixture(scope="module")
def rows():
    rows = study_rows()
    # the correlated family of Supplementary Figure S5, and the space-variant blur of Figure 2
    for family in ("sib_corr", "svb"):
        rows += [dict(r, family=family) for r in rows if r["part"] == "robustness" and r["family"] == "sib"]
    return rows


def _check_written(paths, folder, name):
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.svg"]
    assert all(p.parent == folder and p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:2000]


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_written_once(rows, tmp_path, name):
    paths = FIGURES[name](rows, tmp_path)
    _check_written(paths, tmp_path, name)
    before = [p.read_bytes() for p in paths]
    with pytest.raises(InputError, match="overwrite"):
        FIGURES[name](rows, tmp_path)
    assert [p.read_bytes() for p in paths] == before


@pytest.mark.parametrize("name, part", [("figure2", "robustness"), ("figure3", "sensitivity"),
                                        ("figure4", "mixture"), ("figure_s2", "cross"),
                                        ("figure_s5", "robustness")])
def test_figure_skipped_without_its_part(rows, tmp_path, name, part):
    assert FIGURES[name]([r for r in rows if r["part"] != part], tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_figure_s5_skipped_without_correlated_rows(rows, tmp_path):
    assert figs.figure_s5_correlated([r for r in rows if not r["family"].endswith("_corr")], tmp_path) == []


def test_no_file_written_when_one_of_the_pair_exists(rows, tmp_path):
    (tmp_path / "figure3.svg").write_text("earlier")
    with pytest.raises(InputError, match="figure3.svg"):
        figs.figure3_sensitivity(rows, tmp_path)
    assert not (tmp_path / "figure3.png").exists()
    assert (tmp_path / "figure3.svg").read_text() == "earlier"


def test_example_panel(tmp_path):
    truth = np.zeros((40, 40), bool)
    truth[10:30, 12:25] = True
    image = np.random.default_rng(0).normal(100, 10, truth.shape) + 100 * truth
    predictions = {"fcn": np.roll(truth, 1, axis=0), "unet": truth, "aam": np.zeros_like(truth)}
    paths = figs.example_panel(image, truth, predictions, tmp_path / "example_snr4.png")
    _check_written(paths, tmp_path, "example_snr4")
    with pytest.raises(InputError, match="overwrite"):
        figs.example_panel(image, truth, predictions, tmp_path / "example_snr4")
    with pytest.raises(InputError, match="'unet'"):
        figs.example_panel(image, truth, {"unet": truth[:-1]}, tmp_path / "other")


# ----------------------------------------------------------------------------- report

def test_report_puts_measured_next_to_published(rows, tmp_path):
    meta = {"command": "python study.py part=all", "hardware": "1x H100", "mask source": "fluo-masks",
            "seeds": "0, 1", "n per condition": 6}
    path = write_study_report(rows, tmp_path, meta=meta, figures=False)
    text = path.read_text()
    assert path == tmp_path / "report.md"
    head = text.split("## Parts of the study")[0]
    for value in meta.values():
        assert str(value) in head
    # every published figure of paper 000, with its source
    assert "fidelity.md" in text
    for family in PUBLISHED["robustness_slope"].values():
        for metric in family.values():
            for value in metric.values():
                assert f"| {value:.4f} |" in text
    for key, per_method in PUBLISHED["sensitivity"].items():
        for value in per_method.values():
            assert (f"| {value:.4f} |" if key in ("das_dilation_2_3", "dds_all_levels") else f"| {value:.2f} |") in text
    for entry in PUBLISHED["cross_change_pct"]:
        for value in entry["values"].values():
            assert f"{value:+.1f} %" in text
    # and the measured ones beside them
    for entry in robustness_table(rows):
        if entry["family"] in ("snr", "sib", "svb"):
            published = PUBLISHED["robustness_slope"][entry["family"]][entry["metric"]][entry["method"]]
            assert f"| {entry['slope']:.4f} | {published:.4f} |" in text
    for entry in sensitivity_table(rows):
        published = PUBLISHED["sensitivity"]["das_dilation_2_3"][entry["method"]]
        assert f"| {entry['das_dilation_2_3']:.4f} | {published:.4f} |" in text
    change = average_change(cross_condition_table(rows), "snr", "fcn", 8, [4, 1], "as")
    assert f"| {change:+.1f} % | -89.6 % |" in text
    assert "missing" not in text.split("## Sensitivity")[0].split("## Parts of the study")[1]
    assert "n/a" not in text.split("## Sensitivity")[0].split("| family | metric | method")[1].split("###")[0]


def test_report_tables_and_no_overwrite(rows, tmp_path):
    write_study_report(rows, tmp_path, figures=False)
    for name in ("robustness", "sensitivity", "cross_condition", "mixture", "tests"):
        with (tmp_path / f"{name}.csv").open(newline="") as stream:
            assert list(csv.DictReader(stream)), name
    with (tmp_path / "robustness.csv").open(newline="") as stream:
        first = next(csv.DictReader(stream))
    entry = robustness_table(rows)[0]
    assert float(first["slope"]) == pytest.approx(entry["slope"])
    assert first["levels"] == "8.0;4.0;1.0" and float(first["published_slope"]) == 0.0112
    before = (tmp_path / "report.md").read_bytes()
    with pytest.raises(InputError, match="overwrite"):
        write_study_report(rows, tmp_path, figures=False)
    assert (tmp_path / "report.md").read_bytes() == before


def test_report_with_figures(rows, tmp_path):
    path = write_study_report(rows, tmp_path)
    text = path.read_text()
    for name in ("figure2", "figure3", "figure4", "figure_s2", "figure_s5"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "figures" / f"{name}.svg").stat().st_size > 0
        assert f"](figures/{name}.png)" in text


def test_absent_parts_are_reported_missing(tmp_path):
    only_snr = [make_row("robustness", "snr", level, method, i, 0.9 - 0.01 * i, 1 + 0.1 * i)
                for level in (8, 4, 1) for method in ("fcn", "unet") for i in range(3)]
    text = write_study_report(only_snr, tmp_path).read_text()
    for part in ("sensitivity", "cross", "mixture"):
        assert f"| {part} | - | - | **missing** (no rows) |" in text
        assert f"**Missing**: no rows with part `{part}`" in text
    assert "**Missing**: no robustness rows for family `sib`" in text
    assert "**Missing**: no robustness rows for sib_corr / svb_corr" in text
    assert "| snr | ABD (px) | AAM | missing (no rows) | 0.2162 |" in text
    assert "| DDS, mean over all levels | AAM | missing (no rows) | 0.5271 |" in text
    assert "| snr | 8 | 4, 1 | AS | FCN | missing (no rows) | -89.6 % |" in text
    assert "Figure 3, sensitivity: **missing**" in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["figure2.png", "figure2.svg"]
    with (tmp_path / "mixture.csv").open(newline="") as stream:
        reader = csv.reader(stream)
        assert next(reader)[:2] == ["family", "method"] and list(reader) == []


def test_render_report_without_rows():
    text = render_report([], meta={"command": "python study.py | tee log"})
    assert "| command | python study.py \\| tee log |" in text  # a '|' must not split the row
    assert text.count("**missing** (no rows)") >= 4 and "0.0112" in text and "0.7672" in text
    assert "No figures were drawn" in text


def test_report_gives_the_units_next_to_every_n(rows, tmp_path):
    """Tests run on independent units; every n of images comes with its number of units."""
    import re

    text = write_study_report(rows, tmp_path, figures=False).read_text()
    assert re.findall(r"\(n=\d+ images, \d+ units\)", text)
    assert not re.findall(r"\(n=\d+\)", text)
    assert "unit means" in text.split("## Run")[0] and "per-image" in text.split("## Run")[0]
    assert "| family | level | metric | pair | t | p | n1 | n2 | units 1 | units 2 |" in text
    # images, not rows: a network trained with several seeds has a row per image and seed
    assert "6 images per condition, 3 units (paper 000: n = 30 images" in text
    with (tmp_path / "tests.csv").open(newline="") as stream:
        tests = list(csv.DictReader(stream))
    assert {t["units_1"] for t in tests} == {"3"} and {t["test"] for t in tests} == {"student, unit means"}
    with (tmp_path / "mixture.csv").open(newline="") as stream:
        assert {r["mixture_units"] for r in csv.DictReader(stream)} == {"3"}


def test_report_counts_empty_predictions_and_names_the_convention(rows, tmp_path):
    rows = [dict(r) for r in rows]
    hits = [r for r in rows if r["part"] == "robustness" and r["family"] == "snr" and r["level"] == "1"
            and r["method"] == "unet"][:2]
    for row in hits:
        row["pred_empty"], row["abd_px"] = "1", "282.8"
    text = write_study_report(rows, tmp_path, figures=False).read_text()
    section = text.split("## Empty predictions")[1].split("\n## ")[0]
    assert "`empty_abd: diagonal`" in section and "282.8 px" in section
    assert "| robustness | snr | 1 | 1 | U-Net | 2 of 6 (1 units) |" in section
    assert "2 of" in text.split("## Run")[1].split("##")[0]  # the total in the run summary
    with (tmp_path / "empty_predictions.csv").open(newline="") as stream:
        table = list(csv.DictReader(stream))
    assert sum(int(r["empty"]) for r in table) == 2
    excluded = [dict(r, empty_abd="exclude", abd_px="nan" if r["pred_empty"] == "1" else r["abd_px"])
                for r in rows]
    text = render_report(excluded)
    assert "`empty_abd: exclude`" in text and "left out of the ABD means" in text
    assert "(n=4 images, 2 units; 2 nan left out)" in text.split("snr, ABD (px)")[1].split("###")[0]


def test_report_counts_images_and_seeds_separately():
    """Paper 000's n = 30 counts test images: a network's rows of 3 seeds on 6 images are 6
    images (each the mean over its seeds), not 18, with the SEM over those 6 values."""
    from tests.study.test_statistics_seeds import bf_describe, seeded_rows

    rows = seeded_rows()
    text = render_report(rows)
    cells = text.split("snr, AS, per-image mean ± SEM:")[1].split("\n\n")[1]
    mean, sem, _ = bf_describe(rows, "as", method="unet")
    assert f"| U-Net | {mean:.4f} ± {sem:.4f} (n=6 images, 3 seeds each, 3 units) |" in cells
    mean, sem, _ = bf_describe(rows, "as", method="aam")
    assert f"| AAM | {mean:.4f} ± {sem:.4f} (n=6 images, 3 units) |" in cells
    assert "n=18" not in text and "18 rows (images)" not in text
    run = text.split("## Run")[1].split("\n## ")[0]
    assert ("6 images per condition, 3 units; a network's value per image is its mean over 3 "
            "training seeds") in run
    # a seed that failed for one image: that image is the mean of the 2 seeds it has
    text = render_report(seeded_rows(skip={(2, 0)}))
    assert "(n=6 images, 2 to 3 seeds each, 3 units)" in text
    assert "mean over 2 to 3 training seeds" in text


def test_figure2_error_bars_are_the_sem_over_seed_averaged_images(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from tests.study.test_statistics_seeds import _with_seeds, bf_describe

    rows = _with_seeds(study_rows())
    drawn = []
    original = Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(y), list(kwargs["yerr"])))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy)
    figs.figure2_robustness(rows, tmp_path)
    want = [bf_describe(rows, "as", part="robustness", family="snr", level=lv, method="unet")
            for lv in (8, 4, 1)]
    matches = [yerr for label, y, yerr in drawn
               if label == "U-Net" and y == pytest.approx([w[0] for w in want])]
    assert matches and matches[0] == pytest.approx([w[1] for w in want])
