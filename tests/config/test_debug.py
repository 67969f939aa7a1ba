"""debug=tiny (conf/debug/tiny.yaml): a run of seconds on the CPU with any data set; for EM
data it also shrinks the test: the first 8 test slices and the cheap inference matrix."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from mitoseg.training.train import train
from tests.conftest import compose_config

# synthetic EM volumes of 16 x 96 x 96 (train) and 24 x 96 x 96 (test), a 4-channel U-Net
SMALL_EM = ["dataset=synthetic_em", "dataset.volumes.train_shape=[16,96,96]",
            "dataset.volumes.test_shape=[24,96,96]", "dataset.patch_size=[64,64]",
            "model.base_channels=4", "logger=none"]


def test_tiny_em_run_tests_eight_slices_with_the_quick_matrix(tmp_path: Path) -> None:
    cfg = compose_config("train", [*SMALL_EM, "augmentation=none", "debug=tiny"], tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_epochs == 1
    assert cfg.trainer.limit_train_batches == 3 and not cfg.trainer.enable_progress_bar
    started = time.perf_counter()
    metrics = train(cfg)
    assert time.perf_counter() - started < 120
    with open(tmp_path / "protocols.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {(r["protocol"], r["tta"], r["zfilter"]) for r in rows} == {
        ("overlap_blend", "False", "0"), ("overlap_blend", "False", "5")}
    data = json.loads((tmp_path / "data.json").read_text())
    assert "first 8 of 24 slices" in json.dumps(data)
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test"]["iou_fg"]["mean"] <= 1.0
    assert "test volume (8, 96, 96)" in (tmp_path / "protocols.md").read_text()
