"""EM through the real configs: train on procedural volumes, then paper 002's inference matrix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mitoseg.evaluation.evaluate import evaluate
from mitoseg.training.train import train
from tests.conftest import compose_config

EM_2D = [
    "dataset=synthetic_em", "dataset.volumes.train_shape=[12,64,64]",
    "dataset.volumes.test_shape=[6,64,64]", "dataset.patch_size=[32,32]", "dataset.batch_size=4",
    "dataset.eval_batch_size=4", "model=unet2d_paper002", "model.filters=[4,8,8,16,16]",
    "augmentation=paper2d", "postproc=em_default", "inference=em_quick", "trainer=cpu",
    "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "logger=none", "optimized_metric=test/iou_fg",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def em_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("em-run")
    train(compose_config("train", EM_2D, run_dir))
    return run_dir


def test_training_writes_the_inference_matrix(em_run: Path) -> None:
    rows = read_csv(em_run / "protocols.csv")
    assert [(r["protocol"], r["tta"], r["zfilter"]) for r in rows] == [
        ("overlap_blend", "False", "0"), ("overlap_blend", "False", "5")]
    metrics = json.loads((em_run / "metrics.json").read_text())
    # the headline is the configured protocol (em_quick: blended overlap, z-median 5), not row 0,
    # averaged over the images (slices) as paper 002 averages a reconstructed image; the
    # foreground IoU of the voxels pooled stays beside it
    for key in ("iou_fg", "iou_bg", "iou_overall", "dice"):
        assert metrics["test"][key]["mean"] == pytest.approx(float(rows[1][f"{key}_mean_per_slice"]))
    assert metrics["test"]["iou_fg_over_volume"]["mean"] == pytest.approx(float(rows[1]["iou_fg"]))
    assert metrics["protocol_card"]["average"] == "images"
    assert metrics["headline"] == {"protocol": "overlap_blend", "tta": False, "zfilter": 5}
    assert "| overlap_blend | no | 5 |" in (em_run / "protocols.md").read_text()
    data = json.loads((em_run / "data.json").read_text())
    assert data["voxel_size_nm"] == [5.0, 5.0, 5.0] and len(data["val_slices"]) == 1


def test_evaluate_runs_the_full_matrix_on_the_checkpoint(em_run: Path, tmp_path: Path) -> None:
    checkpoint = em_run / "checkpoints" / "best.ckpt"
    evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}", "inference=em_matrix",
                                         "inference.batch_size=16"], tmp_path))
    rows = read_csv(tmp_path / "protocols.csv")
    keys = {(r["protocol"], r["tta"], r["zfilter"]) for r in rows}
    assert len(rows) == len(keys) == 16  # 4 protocols x 2 TTA x 2 Z-filter
    trained = read_csv(em_run / "protocols.csv")[0]
    again = next(r for r in rows if (r["protocol"], r["tta"], r["zfilter"]) == (
        "overlap_blend", "False", "0"))
    assert float(again["iou_fg"]) == pytest.approx(float(trained["iou_fg"]), abs=1e-9)
    assert all(r["iou_fg_mean_per_patch"] for r in rows if r["protocol"] == "per_patch")


def test_3d_training_on_subvolumes(tmp_path: Path) -> None:
    overrides = [o for o in EM_2D if not o.startswith(("model", "dataset.patch", "augmentation"))]
    overrides += ["model=unet3d_paper002", "+model.filters=[4,8,8,16]", "augmentation=paper3d",
                  "dataset.patch_size=[8,32,32]", "dataset.volumes.train_shape=[24,48,48]"]
    metrics = train(compose_config("train", overrides, tmp_path))
    assert 0.0 <= metrics["test"]["iou_fg"]["mean"] <= 1.0
    assert json.loads((tmp_path / "data.json").read_text())["patch_size"] == [8, 32, 32]


def test_a_headline_outside_the_matrix_is_refused(tmp_path: Path) -> None:
    from mitoseg.errors import InputError
    cfg = compose_config("train", EM_2D + ["inference.headline.tta=true"], tmp_path)
    with pytest.raises(InputError, match="headline"):
        train(cfg)
