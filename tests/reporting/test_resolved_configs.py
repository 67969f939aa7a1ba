"""One configuration (one override list) must be one resolved config: runs started from other
defaults (another commit, an edited conf/ file) are refused, or pooled on request and said."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mitoseg.errors import InputError
from mitoseg.reporting import collect_runs, markdown, summarize_runs
from tests.reporting.conftest import make_run


def two_sweeps(root: Path, lr_old: float = 0.01, lr_new: float = 0.1) -> None:
    """The same overrides twice, seeds 0-2; conf/'s optimizer.lr changed in between."""
    for sweep, (values, lr) in {"s1": ([0.90, 0.91, 0.92], lr_old),
                                "s2": ([0.70, 0.72, 0.74], lr_new)}.items():
        for seed, value in enumerate(values):
            folder = make_run(root / sweep / str(seed), ["experiment=lucchi_fast"], seed,
                              metrics={"as": value})
            config = yaml.safe_load((folder / "config.yaml").read_text())
            config |= {"optimizer": {"lr": lr}, "task_folder": f"runs/{sweep}",
                       "paths": {"output_dir": str(folder)}}  # result-neutral differences
            (folder / "config.yaml").write_text(yaml.safe_dump(config))


def test_runs_of_one_override_list_with_other_resolved_configs_are_refused(
        tmp_path: Path) -> None:
    two_sweeps(tmp_path)
    runs = collect_runs([tmp_path]).runs
    with pytest.raises(InputError, match=r"resolved configs differ.*'experiment=lucchi_fast'.*"
                                         r"optimizer\.lr: 0\.01 \(3 runs, e\.g\. .*s1/0\) vs "
                                         r"0\.1 \(3 runs, e\.g\. .*s2/0\).*--mixed-configs"):
        summarize_runs(runs, ["test/as"])
    report = summarize_runs(runs, ["test/as"], mixed_configs=True)
    assert report.rows[0]["n"] == 3 and report.rows[0]["runs"] == 6  # pooled, as asked
    assert "pool different resolved configs (--mixed-configs)" in markdown(report)


def test_result_neutral_differences_are_one_configuration(tmp_path: Path) -> None:
    two_sweeps(tmp_path, lr_new=0.01)  # only task_folder and paths differ
    report = summarize_runs(collect_runs([tmp_path]).runs, ["test/as"])
    assert report.rows[0]["runs"] == 6 and "--mixed-configs" not in markdown(report)
