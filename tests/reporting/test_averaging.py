"""Which average a figure is: protocols.csv's iou_fg pools every test voxel, the headline
test/iou_fg is a mean over slices (over patches for per_patch; a 3D network's, one IoU per
test volume, its voxels pooled: the card's average); each table says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mitoseg.errors import InputError
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


def kasthuri_run(root: Path, seed: int, average: str, window: list[int]) -> Path:
    """A Kasthuri++ run whose headline (50 % overlap + TTA) is averaged as its card says:
    "volumes" (a 3D network: one IoU per test volume) or "images" (a 2D one: per slice)."""
    pooled, per_slice = 0.9013 + 0.001 * seed, 0.8871 + 0.001 * seed
    headline = pooled if average == "volumes" else per_slice
    folder = make_run(root / f"{average}{seed}", ["experiment=kasthuri_unet3d"], seed,
                      metrics={"iou_fg": headline, "iou_fg_over_volume": pooled,
                               "iou_fg_mean_per_slice": per_slice})
    body = json.loads((folder / "metrics.json").read_text())
    card = {"reconstruction": "overlap", "window": window, "overlap": 0.5, "blending": None,
            "tta": 16 if len(window) == 3 else 8, "zfilter": {"size": 0, "axis": "z"},
            "divisor": None, "precision": "32-true", "average": average, "threshold": 0.5,
            "threshold_source": "fixed",
            "test_set": {"fingerprint": "ab12", "units": 1, "description": "Kasthuri++ test"}}
    body |= {"headline": {"protocol": "overlap", "tta": True, "zfilter": 0},
             "protocol_card": card}
    (folder / "metrics.json").write_text(json.dumps(body))
    return folder


def test_a_3d_runs_headline_is_named_pooled_per_volume(tmp_path: Path) -> None:
    for seed in range(2):
        kasthuri_run(tmp_path / "3d", seed, "volumes", [20, 160, 160])
    report = summarize_runs(collect_runs([tmp_path / "3d"]).runs,
                            ["test/iou_fg", "test/iou_fg_mean_per_slice"])
    means = {r["metric"]: r["mean"] for r in report.rows}
    assert means["test/iou_fg"] == pytest.approx(0.9018)
    assert means["test/iou_fg_mean_per_slice"] == pytest.approx(0.8876)
    text = markdown(report)
    assert "## test/iou_fg (pooled over each test volume's voxels, mean over volumes): " \
           "dataset" in text
    assert "## test/iou_fg_mean_per_slice (mean over slices): dataset" in text
    assert "test/iou_fg overlap +TTA (pooled per volume)" in text


def test_a_2d_and_a_3d_headline_are_not_one_comparison(tmp_path: Path) -> None:
    kasthuri_run(tmp_path / "runs", 0, "volumes", [20, 160, 160])
    kasthuri_run(tmp_path / "runs", 1, "images", [256, 256])
    runs = collect_runs([tmp_path / "runs"]).runs
    with pytest.raises(InputError, match="card fields average, tta, window differ"):
        summarize_runs(runs, ["test/iou_fg"])
    mixed = summarize_runs(runs, ["test/iou_fg"], mixed_protocols=True)
    assert "## test/iou_fg (mean over slices / pooled over each test volume's voxels, mean " \
           "over volumes): dataset" in markdown(mixed)


def test_a_run_tested_on_several_volumes_is_named_a_mean_over_volumes(tmp_path: Path) -> None:
    """With several test volumes, protocols.csv's mean row and the headline hold each volume's
    figure averaged over the volumes (``em_evaluate.mean_over_volumes``): its pooled iou_fg is
    not the IoU of all test voxels pooled, and the tables say so."""
    from mitoseg.evaluation.em_evaluate import mean_over_volumes

    root = tmp_path / "runs"
    for seed in range(2):
        volumes = [{"test_volume": name, "protocol": "full_image", "tta": "True", "zfilter": 5,
                    "iou_fg": pooled, "iou_fg_mean_per_slice": per_slice}
                   for name, pooled, per_slice in (("a", 0.90, 0.91), ("b", 0.70, 0.72))]
        rows = volumes + mean_over_volumes(volumes)
        columns = {column: "" for row in rows for column in row}  # as csv writes them
        make_run(root / f"r{seed}", ["dataset=em_volumes"], seed,
                 metrics={"iou_fg": 0.815, "iou_fg_over_volume": 0.80},
                 protocols=[columns | row for row in rows])
    report = summarize_runs(collect_runs([root]).runs,
                            ["iou_fg", "iou_fg_mean_per_slice", "test/iou_fg_over_volume"])
    assert {r["metric"]: r["mean"] for r in report.rows}["iou_fg"] == pytest.approx(0.80)
    text = markdown(report)
    for heading in [
            "## iou_fg (pooled over each test volume's voxels, mean over volumes): dataset",
            "## iou_fg_mean_per_slice (mean over each test volume's slices, mean over volumes):",
            "## test/iou_fg_over_volume (pooled over each test volume's voxels, mean over "
            "volumes): dataset"]:
        assert heading in text, heading
    assert "(per slice, mean over volumes)" in text
