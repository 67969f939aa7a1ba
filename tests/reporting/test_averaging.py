"""Which average a figure is: protocols.csv's iou_fg pools every test voxel, the headline
test/iou_fg is a mean over slices (over patches for per_patch); each table says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitoseg.reporting import collect_runs, markdown, summarize_runs
from tests.reporting.conftest import make_run

POOLED, PER_SLICE = [0.861, 0.865, 0.858], [0.868, 0.873, 0.866]


def lucchi_runs(root: Path) -> Path:
    for seed in range(3):
        rows = [{"protocol": "full_image", "tta": "True", "zfilter": 5, "iou_fg": POOLED[seed],
                 "iou_fg_mean_per_slice": PER_SLICE[seed], "iou_fg_mean_per_patch": ""},
                {"protocol": "per_patch", "tta": "False", "zfilter": 0, "iou_fg": 0.80,
                 "iou_fg_mean_per_slice": 0.81, "iou_fg_mean_per_patch": 0.79}]
        folder = make_run(root / f"r{seed}", ["experiment=lucchi_unet2d"], seed,
                          metrics={"iou_fg": PER_SLICE[seed], "iou_fg_over_volume": POOLED[seed]},
                          protocols=rows)
        metrics = (folder / "metrics.json").read_text()
        (folder / "metrics.json").write_text(metrics.replace(
            '"fit_seconds"', '"headline": {"protocol": "full_image", "tta": "True", '
                             '"zfilter": 5}, "fit_seconds"'))
    return root


def test_every_table_says_which_average_it_holds(tmp_path: Path) -> None:
    runs = collect_runs([lucchi_runs(tmp_path)]).runs
    metrics = ["test/iou_fg", "test/iou_fg_over_volume", "iou_fg", "iou_fg_over_volume",
               "iou_fg_mean_per_patch"]
    report = summarize_runs(runs, metrics)
    means = {(r["metric"], r["protocol"]): r["mean"] for r in report.rows}
    full = "full_image +TTA +Z5"
    assert means[("iou_fg_over_volume", full)] == pytest.approx(sum(POOLED) / 3)
    assert means[("iou_fg_over_volume", full)] == means[("iou_fg", full)]
    assert means[("test/iou_fg", full)] == pytest.approx(sum(PER_SLICE) / 3)
    text = markdown(report)
    for heading in [
            "## test/iou_fg (mean over slices): dataset",
            "## test/iou_fg_over_volume (pooled over all test voxels): dataset",
            "## iou_fg (pooled over all test voxels): dataset",
            "## iou_fg_over_volume (pooled over all test voxels): dataset",
            "## iou_fg_mean_per_patch (mean over patches): dataset"]:
        assert heading in text, heading


def test_the_score_columns_are_the_volume_metrics() -> None:
    from mitoseg.metrics.volume import METRIC_KEYS
    from mitoseg.runs.protocol_columns import SCORE_COLUMNS

    assert SCORE_COLUMNS == METRIC_KEYS
