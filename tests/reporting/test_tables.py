"""Summaries of a fake study: exact statistics per configuration, tests against the baseline,
failures shown, per-protocol rows, and the written files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from mitoseg.errors import InputError
from mitoseg.reporting import collect_runs, markdown, summarize_runs, write_report
from mitoseg.reporting.stats import holm
from tests.reporting.conftest import AS, FCN_ERROR, SHARED, make_run

BASELINE = "model=unet_paper000"


def rows_by_config(report, metric="test/as"):
    return {r["configuration"]: r for r in report.rows if r["metric"] == metric}


def test_statistics_per_configuration_are_exact(study: Path) -> None:
    report = summarize_runs(collect_runs([study]).runs, ["test/as"], baseline=BASELINE)
    rows = rows_by_config(report)
    assert list(rows) == [BASELINE, "model=fcn_paper000", "model=unet_paper000 optimizer=adam"]
    assert report.common == tuple(SHARED)
    for label, (model, values) in AS.items():
        row = rows[label]
        assert row["model"] == model and row["dataset"] == "FluorescenceDataModule"
        assert row["n"] == 3  # finished runs only
        assert row["mean"] == pytest.approx(sum(values) / 3, abs=1e-15)
        mean = sum(values) / 3
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        assert row["std"] == pytest.approx(std, rel=1e-12)
        assert (row["min"], row["max"]) == (min(values), max(values))
    assert (rows["model=fcn_paper000"]["failed"], rows["model=fcn_paper000"]["unfinished"]) == (1, 0)
    assert (rows[BASELINE]["failed"], rows[BASELINE]["unfinished"]) == (0, 1)


@pytest.mark.parametrize("test", ["welch", "mannwhitney"])
def test_p_values_against_the_baseline_and_holm(study: Path, test: str) -> None:
    report = summarize_runs(collect_runs([study]).runs, ["test/as"], baseline=BASELINE, test=test)
    rows = rows_by_config(report)
    base = AS[BASELINE][1]
    raw = []
    for label in ("model=fcn_paper000", "model=unet_paper000 optimizer=adam"):
        other = AS[label][1]
        expected = (scipy_stats.ttest_ind(other, base, equal_var=False).pvalue if test == "welch"
                    else scipy_stats.mannwhitneyu(other, base, alternative="two-sided").pvalue)
        assert rows[label]["p_value"] == pytest.approx(expected, rel=1e-12)
        assert rows[label]["test"] == test
        raw.append(expected)
    assert [rows[label]["p_holm"] for label in ("model=fcn_paper000",
                                                "model=unet_paper000 optimizer=adam")] \
        == pytest.approx(holm(raw))
    assert math.isnan(rows[BASELINE]["p_value"]) and rows[BASELINE]["baseline"]


def test_unstable_flag_follows_the_threshold(study: Path) -> None:
    runs = collect_runs([study]).runs
    rows = rows_by_config(summarize_runs(runs, ["test/as"], unstable_std=0.01))
    assert rows["model=fcn_paper000"]["unstable"]  # std 0.036
    assert not rows[BASELINE]["unstable"]  # std 0.005
    rows = rows_by_config(summarize_runs(runs, ["test/as"], unstable_std=0.001))
    assert rows[BASELINE]["unstable"]
    with pytest.raises(InputError, match="--unstable-std"):
        summarize_runs(runs, ["test/as"], unstable_std=-1)


def test_failed_and_unfinished_runs_are_listed(study: Path) -> None:
    report = summarize_runs(collect_runs([study]).runs, ["test/as", "test/abd_px"], baseline=BASELINE)
    text = markdown(report)
    assert "| failed | `model=fcn_paper000` | 3 |" in text and FCN_ERROR in text
    assert "| unfinished | `model=unet_paper000` | 3 |" in text
    assert "_fcn_failed" in text and "_unet_unfinished" in text  # their folders
    fcn = [ln for ln in text.splitlines() if ln.startswith("| `model=fcn_paper000` †")]
    assert len(fcn) == 3  # the overview and the two metric tables
    assert "| FluorescenceDataModule | 3 (+1 failed) | 0.8100 ± 0.0361 (0.8500) |" in fcn[0]
    assert all("| fcn_paper000 | 3 | 1 failed |" in line for line in fcn[1:])
    assert "## test/abd_px: dataset `FluorescenceDataModule`" in text


def test_a_configuration_whose_runs_all_failed_keeps_its_row(study: Path) -> None:
    sweep = next((study / "multirun" / "default").iterdir())
    make_run(sweep / "20_adam_fcn", [*SHARED, "model=fcn_paper000", "optimizer=adam"], 0,
             model="fcn_paper000", failed="NaN loss")
    report = summarize_runs(collect_runs([study]).runs, ["test/as"], baseline=BASELINE)
    row = rows_by_config(report)["model=fcn_paper000 optimizer=adam"]
    assert row["n"] == 0 and row["failed"] == 1 and math.isnan(row["p_value"])
    assert "no finished run" in markdown(report)


def test_inference_protocols_become_separate_rows(tmp_path: Path) -> None:
    values = {"model=unet_paper000": [(0.88, 0.89), (0.87, 0.90)],
              "model=fcn_paper000": [(0.80, 0.82), (0.81, 0.84)]}
    for label, per_seed in values.items():
        for seed, (plain, tta) in enumerate(per_seed):
            rows = [{"protocol": "full_image", "tta": False, "zfilter": 0, "iou_fg": plain},
                    {"protocol": "full_image", "tta": True, "zfilter": 5, "iou_fg": tta}]
            make_run(tmp_path / f"{label}_{seed}", [label], seed, model=label.split("=")[1],
                     metrics={"iou_fg": plain}, protocols=rows)
    report = summarize_runs(collect_runs([tmp_path]).runs, ["iou_fg"], baseline=BASELINE)
    expected = {
        (BASELINE, "full_image"): (2, 0.875), (BASELINE, "full_image +TTA +Z5"): (2, 0.895),
        ("model=fcn_paper000", "full_image"): (2, 0.805),
        ("model=fcn_paper000", "full_image +TTA +Z5"): (2, 0.83)}
    got = {(r["configuration"], r["protocol"]): (r["n"], r["mean"]) for r in report.rows}
    assert got.keys() == expected.keys()
    for key, (n, mean) in expected.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(mean), key
    text = markdown(report)
    assert ("## iou_fg (pooled over all test voxels): dataset `FluorescenceDataModule`, "
            "protocol `full_image +TTA +Z5`") in text
    # overview columns
    assert "| iou_fg full_image (pooled) | iou_fg full_image +TTA +Z5 (pooled) |" in text


def test_bad_metric_and_baseline_are_named(study: Path) -> None:
    runs = collect_runs([study]).runs
    with pytest.raises(InputError, match="'--metric'.*'test/iou'.*available: test/as"):
        summarize_runs(runs, ["test/iou"])
    with pytest.raises(InputError, match="'--baseline'.*'model=mnet'.*model=fcn_paper000"):
        summarize_runs(runs, ["test/as"], baseline="model=mnet")
    full = f"model=unet_paper000 {SHARED[0]}"  # the full label works too
    assert rows_by_config(summarize_runs(runs, ["test/as"], baseline=full))[BASELINE]["baseline"]


def test_write_report_files_and_refusal(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "seeds"
    written = write_report([study], out, metrics=["test/as", "test/abd_px"], baseline=BASELINE)
    assert sorted(written) == ["boxplot_test-abd_px.png", "boxplot_test-as.png", "report.md",
                               "runs.csv", "summary.csv"]
    png = (out / "boxplot_test-as.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = matplotlib.image.imread(out / "boxplot_test-as.png")
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    with open(out / "runs.csv") as stream:
        runs = list(csv.DictReader(stream))
    assert len(runs) == 11
    assert sorted(r["status"] for r in runs).count("finished") == 9
    failed = next(r for r in runs if r["status"] == "failed")
    assert failed["error"] == FCN_ERROR and failed["folder"].endswith("_fcn_failed")
    with open(out / "summary.csv") as stream:
        summary = list(csv.DictReader(stream))
    assert len(summary) == 6 and {r["metric"] for r in summary} == {"test/as", "test/abd_px"}
    fcn = next(r for r in summary if r["metric"] == "test/as" and r["model"] == "fcn_paper000")
    assert float(fcn["mean"]) == pytest.approx(sum(AS["model=fcn_paper000"][1]) / 3)
    assert (fcn["n"], fcn["failed"]) == ("3", "1")
    before = (out / "report.md").read_bytes()
    with pytest.raises(InputError, match="already holds report.md.*refusing"):
        write_report([study], out, metrics=["test/as"])
    assert (out / "report.md").read_bytes() == before


def test_seeds_are_the_units_across_runs(study: Path) -> None:
    """Two finished runs of one configuration with the same seed are one unit: n counts seeds,
    the seed's value is the mean of its runs, and the test uses those values."""
    sweep = next((study / "multirun" / "default").iterdir())
    make_run(sweep / "90_fcn_again_seed0", [*SHARED, "model=fcn_paper000"], 0, model="fcn_paper000",
             metrics={"as": 0.70, "abd_px": 3.0})
    report = summarize_runs(collect_runs([study]).runs, ["test/as"], baseline=BASELINE)
    row = rows_by_config(report)["model=fcn_paper000"]
    first, *rest = AS["model=fcn_paper000"][1]
    per_seed = [(first + 0.70) / 2, *rest]
    assert (row["n"], row["runs"]) == (3, 4)
    assert row["values"] == pytest.approx(per_seed)
    assert row["mean"] == pytest.approx(sum(per_seed) / 3)
    expected = scipy_stats.ttest_ind(per_seed, AS[BASELINE][1], equal_var=False).pvalue
    assert row["p_value"] == pytest.approx(expected, rel=1e-12)
    text = markdown(report)
    assert "n = independent seeds" in text and "3 (4 runs)" in text


@pytest.mark.parametrize("test, shown", [
    ("welch", "n/a (no variance: every value of each side is the same)"),
    ("mannwhitney", "0.100")])  # exact: 2 of the 20 splits of 3 vs 3
def test_constant_groups_get_no_t_test_and_ties_an_exact_p(tmp_path: Path, test: str,
                                                           shown: str) -> None:
    """Every baseline seed has 0 empty predictions, every other seed 1 of 30: Welch gave
    t = -inf, p = 0 and Mann-Whitney 0.047 (normal approximation on ties)."""
    for seed in range(3):
        make_run(tmp_path / f"a{seed}", ["model=unet_paper000"], seed,
                 metrics={"pred_empty": 0.0})
        make_run(tmp_path / f"b{seed}", ["model=fcn_paper000"], seed, model="fcn_paper000",
                 metrics={"pred_empty": 1 / 30})
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/pred_empty"],
                            baseline=BASELINE, test=test)
    row = rows_by_config(report, "test/pred_empty")["model=fcn_paper000"]
    assert (math.isnan(row["p_value"]) if test == "welch"
            else row["p_value"] == pytest.approx(0.1, rel=1e-12))
    assert f"| {shown} |" in markdown(report)


def test_a_seed_without_a_value_is_counted_and_marked(tmp_path: Path) -> None:
    """A finished seed whose metric is NaN (diverged) is out of n: its row and summary.csv
    count it (no_value) and mark the configuration, as for failed runs."""
    for seed, (a, b) in enumerate([(0.90, 0.80), (0.91, 0.85), (0.93, math.nan)]):
        make_run(tmp_path / f"a{seed}", ["model=unet_paper000"], seed, metrics={"as": a})
        make_run(tmp_path / f"b{seed}", ["model=fcn_paper000"], seed, model="fcn_paper000",
                 metrics={"as": b})
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/as"], baseline=BASELINE)
    fcn = rows_by_config(report)["model=fcn_paper000"]
    assert (fcn["n"], fcn["no_value"], fcn["failed"]) == (2, 1, 0)
    assert rows_by_config(report)[BASELINE]["no_value"] == 0
    text = markdown(report)
    assert "| `model=fcn_paper000` † | fcn_paper000 | 2 | 1 no value |" in text
    written = write_report([tmp_path], tmp_path / "out", ["test/as"], baseline=BASELINE)
    with open(written["summary.csv"]) as stream:
        summary = {r["configuration"]: r for r in csv.DictReader(stream)}
    assert summary["model=fcn_paper000"]["no_value"] == "1"


def test_runs_that_differ_in_an_ignored_key_are_separate_units(tmp_path: Path) -> None:
    """--ignore data_seed pools data splits as replicates: (seed 0, data_seed 0) and
    (seed 0, data_seed 1) are two independent runs, not one seed's two runs to average."""
    values = {(0, 0): 0.80, (1, 0): 0.90, (2, 0): 0.84, (0, 1): 0.92, (1, 1): 0.78,
              (2, 1): 0.88}
    for (seed, data_seed), value in values.items():
        folder = make_run(tmp_path / f"s{seed}_d{data_seed}",
                          ["model=unet_paper000", f"data_seed={data_seed}"], seed,
                          metrics={"as": value})
        config = yaml.safe_load((folder / "config.yaml").read_text())
        (folder / "config.yaml").write_text(yaml.safe_dump(config | {"data_seed": data_seed}))
    report = summarize_runs(collect_runs([tmp_path], ignore=["data_seed"]).runs, ["test/as"])
    (row,) = report.rows
    assert (row["n"], row["runs"]) == (6, 6)
    assert row["std"] == pytest.approx(float(np.std(list(values.values()), ddof=1)), rel=1e-12)
    rerun = make_run(tmp_path / "s0_d0_again", ["model=unet_paper000", "data_seed=0"], 0,
                     metrics={"as": 0.70})  # a second run of one unit is still averaged
    assert yaml.safe_load((rerun / "config.yaml").read_text())["data_seed"] == 0
    report = summarize_runs(collect_runs([tmp_path], ignore=["data_seed"]).runs, ["test/as"])
    assert (report.rows[0]["n"], report.rows[0]["runs"]) == (6, 7)
