"""dataset=em_volumes through train.py: TIFF + HDF5 training volumes, two test volumes (OME-Zarr
with a band of ignored voxels, Zarr with unannotated slices); the per-volume scores are
recomputed here from the checkpoint with plain numpy over the voxels that count."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from mitoseg.data.volume_sources import open_volume
from mitoseg.evaluation.predictor import Predictor
from mitoseg.training.train import train
from tests.conftest import compose_config

TESTS = ("dataset.volumes.test=[{name:ome_zarr,image:test.ome.zarr,labels:test_labels.ome.zarr},"
         "{name:zarr_sparse,image:val.zarr,labels:val_labels.zarr}]")
RUN = [
    "dataset=em_volumes_example", "dataset.volumes.val=[]", TESTS, "dataset.val_fraction=0.2",
    "dataset.patch_size=[64,64]", "dataset.batch_size=4", "dataset.eval_batch_size=4",
    "model=unet2d_paper002", "model.filters=[4,8,8,16,16]", "inference=em_quick",
    "inference.patch_size=[64,64]", "trainer=cpu", "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "logger=none", "optimized_metric=test/iou_fg",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("root")
    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config("train", [*RUN, f"paths.output_root={root}"], run_dir))
    return run_dir, root / "example_volumes"


def test_every_test_volume_is_scored_and_the_headline_is_their_mean(run) -> None:
    run_dir, _ = run
    rows = read_csv(run_dir / "protocols.csv")
    names = [(r["test_volume"], r["zfilter"]) for r in rows]
    assert names == [("ome_zarr", "0"), ("ome_zarr", "5"), ("zarr_sparse", "0"),
                     ("zarr_sparse", "5"), ("mean", "0"), ("mean", "5")]
    by = {(r["test_volume"], r["zfilter"]): r for r in rows}
    for key in ("iou_fg", "dice", "iou_fg_mean_per_slice"):
        pair = [float(by[(v, "5")][key]) for v in ("ome_zarr", "zarr_sparse")]
        assert float(by[("mean", "5")][key]) == pytest.approx(np.mean(pair), abs=1e-12)
        assert float(by[("mean", "5")][f"{key}_std"]) == pytest.approx(np.std(pair, ddof=1))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["iou_fg"]["n"] == 2
    assert metrics["test"]["iou_fg"]["mean"] == pytest.approx(
        float(by[("mean", "5")]["iou_fg_mean_per_slice"]))
    assert metrics["test"]["iou_fg_over_volume"]["mean"] == pytest.approx(
        float(by[("mean", "5")]["iou_fg"]))
    assert by[("mean", "5")]["card_test_set_units"] == "2"
    data = json.loads((run_dir / "data.json").read_text())
    assert data["ignore_label"] is True
    assert [v["name"] for v in data["volume_list"]] == ["tif_stack", "hdf5", "ome_zarr",
                                                        "zarr_sparse"]


def test_the_scores_skip_ignored_voxels(run) -> None:
    """Recomputed independently: the checkpoint's masks, IoU over the voxels that count."""
    run_dir, root = run
    rows = {(r["test_volume"], r["zfilter"]): r for r in read_csv(run_dir / "protocols.csv")}
    inference = compose_config("train", RUN).inference
    predictor = Predictor.from_checkpoint(run_dir / "checkpoints" / "best.ckpt", inference,
                                          device="cpu")
    predictor.progress = False
    for name, image, labels in (("ome_zarr", "test.ome.zarr", "test_labels.ome.zarr"),
                                ("zarr_sparse", "val.zarr", "val_labels.zarr")):
        raw = np.asarray(open_volume(root / labels)[:])
        counts = raw != 2
        masks = np.asarray(predictor.masks(predictor.probabilities(
            np.asarray(open_volume(root / image)[:]))), bool)
        truth = raw == 1
        inter = np.count_nonzero(masks & truth & counts)
        union = np.count_nonzero((masks | truth) & counts)
        expected = inter / union if union else 1.0
        assert float(rows[(name, "5")]["iou_fg"]) == pytest.approx(expected, abs=1e-9), name
        if np.any(masks & ~counts):  # predicted mitochondria where nothing is annotated ...
            unmasked = np.count_nonzero(masks & truth) / np.count_nonzero(masks | truth)
            assert unmasked < expected  # ... would count as false positives, were they scored


def test_the_example_files_are_the_formats_it_names(run) -> None:
    _, root = run
    assert isinstance(zarr.open(str(root / "val.zarr"), mode="r"), zarr.Array)
    assert open_volume(root / "test.ome.zarr").voxel_size_nm == (5.0, 5.0, 5.0)
    assert open_volume(f"{root / 'train_b.h5'}:/raw").shape == (24, 160, 160)
