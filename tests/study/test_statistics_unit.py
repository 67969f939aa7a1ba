"""statistics_unit: the study's tests on cluster means (default) or on crop means."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitoseg.errors import InputError
from mitoseg.study.run import _independence, rows_for_tests
from mitoseg.study.statistics import compare, normalize_rows, select

ROW = {"part": "robustness", "family": "snr", "level": 4.0, "train_level": 4.0, "seed": "0",
       "abd_px": 1.0, "abd_um": 0.1, "das": float("nan"), "dds": float("nan"),
       "pred_empty": 0, "empty_abd": "diagonal"}


def _rows() -> list[dict]:
    rows = []
    # 4 crops in 2 clusters; method b is better by 0.01 on every image
    for crop in range(4):
        for view in range(6):
            for method, shift in (("a", 0.0), ("b", 0.01)):
                rows.append(ROW | {"method": method, "image": f"{crop}-{view}",
                                   "unit": f"group-{crop}", "cluster": f"cluster-{crop // 2}",
                                   "as": 0.8 + 0.05 * crop + 0.001 * view + shift})
    return rows


def test_cluster_units_replace_crop_units_for_the_tests_only() -> None:
    rows = _rows()
    assert rows_for_tests(rows, "crop") is rows
    clustered = rows_for_tests(rows, "cluster")
    assert {r["unit"] for r in clustered} == {"cluster-0", "cluster-1"}
    assert {r["unit"] for r in rows} == {f"group-{i}" for i in range(4)}  # rows untouched
    def test(table):
        typed = normalize_rows(table)
        return compare(select(typed, method="a"), select(typed, method="b"), "as", True)
    assert (test(rows)["units_1"], test(clustered)["units_1"]) == (4, 2)
    with pytest.raises(InputError, match="statistics_unit"):
        rows_for_tests(rows, "image")


def test_the_report_says_how_many_independent_units_there_are() -> None:
    lines = _independence(_rows(), "crop")
    assert "48 images" not in lines["independent units in the test set"]  # images counted once
    assert "24 images, 4 crops" in lines["independent units in the test set"]
    assert "2 clusters" in lines["independent units in the test set"]


def test_the_default_unit_is_the_cluster_and_crop_units_that_overlap_are_called_so() -> None:
    """Crops of one cluster share pixels: tests on their means are pseudo-replicated, so the
    default tests clusters, and a study that asks for crops is told its p-values are too small;
    one cluster leaves no test, and the report says why."""
    from omegaconf import OmegaConf

    from mitoseg.config.paths import config_dir

    assert OmegaConf.load(Path(config_dir()) / "study.yaml").statistics_unit == "cluster"
    rows = _rows()  # 4 crops in 2 clusters
    assert "crops of one cluster share pixels" in _independence(rows, "crop")[
        "WARNING: units that overlap"]
    assert set(_independence(rows, "cluster")) == {"statistics unit (statistics_unit)",
                                                  "independent units in the test set"}
    one = [dict(row, cluster="cluster-0") for row in rows]
    assert "no two-sample test is possible" in _independence(one, "cluster")["tests"]
    separate = [dict(row, cluster=row["unit"]) for row in rows]  # e.g. procedural masks
    assert "WARNING: units that overlap" not in _independence(separate, "crop")
