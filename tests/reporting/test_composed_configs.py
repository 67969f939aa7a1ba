"""One configuration (one override list) must be one composed config: runs started from other
defaults (another commit, an edited conf/ file) are refused, or pooled on request and said."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from mitoseg.errors import InputError
from mitoseg.reporting import collect_runs, markdown, summarize_runs
from tests.reporting.conftest import make_run, update_configs


def two_sweeps(root: Path, lr_old: float = 0.01, lr_new: float = 0.1) -> None:
    """The same overrides twice, seeds 0-2; conf/'s optimizer.lr changed in between."""
    for sweep, (values, lr) in {"s1": ([0.90, 0.91, 0.92], lr_old),
                                "s2": ([0.70, 0.72, 0.74], lr_new)}.items():
        for seed, value in enumerate(values):
            folder = make_run(root / sweep / str(seed), ["experiment=lucchi_fast"], seed,
                              metrics={"as": value})
            update_configs(folder, {"optimizer": {"lr": lr}, "task_folder": f"runs/{sweep}"})


def test_runs_of_one_override_list_with_other_composed_configs_are_refused(
        tmp_path: Path) -> None:
    two_sweeps(tmp_path)
    runs = collect_runs([tmp_path]).runs
    with pytest.raises(InputError, match=r"composed configs differ.*'experiment=lucchi_fast'.*"
                                         r"optimizer\.lr: 0\.01 \(3 runs, e\.g\. .*s1/0\) vs "
                                         r"0\.1 \(3 runs, e\.g\. .*s2/0\).*--mixed-configs"):
        summarize_runs(runs, ["test/as"])
    report = summarize_runs(runs, ["test/as"], mixed_configs=True)
    assert report.rows[0]["n"] == 3 and report.rows[0]["runs"] == 6  # pooled, as asked
    assert "pool different composed configs (--mixed-configs)" in markdown(report)


def test_result_neutral_differences_are_one_configuration(tmp_path: Path) -> None:
    two_sweeps(tmp_path, lr_new=0.01)  # only task_folder and paths differ
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/as"])
    assert report.rows[0]["runs"] == 6 and "--mixed-configs" not in markdown(report)


def test_one_config_written_two_ways_is_one_configuration(tmp_path: Path) -> None:
    """`train.py -m seed=0..2` (model left at its default, unet_paper000) and
    `train.py -m seed=3..5 model=unet_paper000,fcn_paper000`: the unet runs are one
    configuration of 6 seeds, labelled by the explicit spelling, and the report says so."""
    unet, fcn = [0.90, 0.91, 0.93, 0.92, 0.89, 0.91], [0.86, 0.88, 0.87]
    for seed, value in enumerate(unet):
        make_run(tmp_path / f"u{seed}", [] if seed < 3 else ["model=unet_paper000"], seed,
                 metrics={"as": value})
    for seed, value in enumerate(fcn, 3):
        make_run(tmp_path / f"f{seed}", ["model=fcn_paper000"], seed, model="fcn_paper000",
                 metrics={"as": value})
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/as"],
                            baseline="model=unet_paper000")
    rows = {r["configuration"]: r for r in report.rows}
    assert sorted(rows) == ["model=fcn_paper000", "model=unet_paper000"]
    assert rows["model=unet_paper000"]["n"] == 6
    expected = scipy_stats.ttest_ind(fcn, unet, equal_var=False).pvalue
    assert rows["model=fcn_paper000"]["p_value"] == pytest.approx(expected, rel=1e-12)
    assert "`model=unet_paper000` also written as `(defaults)`" in markdown(report)
