"""report.py without --metric reports the runs' own optimized_metric, and says why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mitoseg.errors import InputError
from mitoseg.reporting import collect_runs, write_report
from mitoseg.reporting.tables import default_metrics
from tests.reporting.conftest import make_run, update_configs
from tests.reporting.test_report_cli import run


def em_run(folder: Path, seed: int, iou: float, optimized: str = "test/iou_fg") -> Path:
    """An EM run: no test/as, its config optimizes test/iou_fg."""
    make_run(folder, ["experiment=lucchi_unet2d"], seed, metrics={"iou_fg": iou, "dice": 0.9})
    update_configs(folder, {"optimized_metric": optimized})
    return folder


def test_an_em_sweep_reports_its_own_optimized_metric(tmp_path: Path) -> None:
    for seed, iou in enumerate([0.80, 0.84]):
        em_run(tmp_path / "runs" / f"{seed}", seed, iou)
    written = write_report([tmp_path / "runs"], tmp_path / "out")
    assert "boxplot_test-iou_fg.png" in written
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## test/iou_fg: dataset" in text and "0.8200 ± 0.0283" in text
    done = run("report.py", str(tmp_path / "runs"), "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "boxplot_test-iou_fg.png").is_file()


def test_metrics_json_names_it_first(tmp_path: Path) -> None:
    folder = em_run(tmp_path / "r", 0, 0.8, optimized="test/as")
    body = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(body | {"optimized_metric": "test/dice"}))
    assert default_metrics(collect_runs([tmp_path]).runs) == ["test/dice"]


def test_runs_that_disagree_are_refused_with_the_names(tmp_path: Path) -> None:
    em_run(tmp_path / "em", 0, 0.8)
    make_run(tmp_path / "fluo", [], 0, metrics={"as": 0.9})
    with pytest.raises(InputError, match=r"disagree on their optimized_metric \('test/as' by 1 "
                                         r"run\(s\), e.g. .*fluo; 'test/iou_fg' by 1 run\(s\), "
                                         r"e.g. .*em\); give --metric"):
        write_report([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_optimized_metric_no_run_records_is_named(tmp_path: Path) -> None:
    em_run(tmp_path / "em", 0, 0.8, optimized="test/as")  # an EM run left at the default
    with pytest.raises(InputError, match="optimized_metric 'test/as' is recorded by no finished "
                                         "run; available: test/iou_fg, test/dice"):
        write_report([tmp_path], tmp_path / "out")
