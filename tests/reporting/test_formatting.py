"""One number and table style for report.py's report and the study's report."""

from __future__ import annotations

import math

from mitoseg.reporting.formatting import cell, markdown_table, number_text, p_text


def test_numbers_and_missing_values() -> None:
    assert number_text(0.912345) == "0.9123" and number_text(1.5, 2) == "1.50"
    assert number_text(30) == "30"
    assert number_text(math.nan) == number_text(None) == "n/a"


def test_p_values_three_decimals_or_scientific() -> None:
    assert p_text(0.0432) == "0.043" and p_text(0.5) == "0.500" and p_text(0.001) == "0.001"
    assert p_text(0.00012) == "1.20e-04"
    assert p_text(math.nan) == p_text(None) == "n/a"


def test_cells_never_split_a_row() -> None:
    assert cell("python study.py | tee  log\nnext") == "python study.py \\| tee log next"
    assert markdown_table(("a", "b"), [(1, "x|y")]) == ["| a | b |", "|---|---|", "| 1 | x\\|y |",
                                                         ""]


def test_both_reports_use_it(tmp_path) -> None:
    """The run report's baseline row and the study's tests print p the same way."""
    from mitoseg.reporting import collect_runs, markdown, summarize_runs
    from mitoseg.study.report import render_report
    from tests.reporting.conftest import make_run
    from tests.study.test_statistics import study_rows

    for seed, (a, b) in enumerate([(0.90, 0.80), (0.91, 0.85), (0.92, 0.78)]):
        make_run(tmp_path / f"u{seed}", ["model=unet_paper000"], seed, metrics={"as": a})
        make_run(tmp_path / f"f{seed}", ["model=fcn_paper000"], seed, model="fcn_paper000",
                 metrics={"as": b})
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/as"],
                            baseline="model=unet_paper000")
    fcn = next(r for r in report.rows if not r["baseline"])
    base = [line for line in markdown(report).splitlines()
            if line.startswith("| `model=unet_paper000` (baseline)")][1]  # after the overview
    assert "| n/a | n/a |" in base  # no test of the baseline against itself
    assert f"| {p_text(fcn['p_value'])} |" in markdown(report)
    study = render_report(study_rows())
    assert "| n/a |" not in study.split("## Robustness")[1].split("### Per-image")[0]
