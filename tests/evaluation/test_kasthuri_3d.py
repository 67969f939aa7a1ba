"""Paper 002's 3D networks on Kasthuri++ (anisotropic, 30 x 3 x 3 nm) through the real configs:
the data set's 3D patches fit its 85 training slices less validation, the networks do not pool
z, elastic deformation is physical along z, and the 3D evaluation protocols score the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.io as skio
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mitoseg.data.em_augment import RandomElastic
from mitoseg.errors import InputError
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.predictor import Predictor
from mitoseg.reporting import collect_runs, markdown, summarize_runs
from mitoseg.training.train import train
from tests.conftest import compose_config


def write_kasthuri(root: Path, train_depth: int, test_depth: int, height: int,
                   width: int) -> Path:
    """Casser et al.'s layout: dark ellipsoids (mitochondria) elongated along z, label 255, and
    a band outside the tissue labelled 2 at the right edge."""
    rng = np.random.default_rng(0)
    for split, depth in (("Train", train_depth), ("Test", test_depth)):
        z, y, x = np.mgrid[:depth, :height, :width]
        labels = np.zeros((depth, height, width), bool)
        for _ in range(max(2, depth * height * width // 40000)):
            cz, cy, cx = rng.uniform(0, depth), rng.uniform(0, height), rng.uniform(0, width)
            labels |= ((z - cz) / 4.0) ** 2 + ((y - cy) / 9.0) ** 2 + ((x - cx) / 6.0) ** 2 <= 1
        image = np.where(labels, 70, 170) + rng.normal(0, 12, labels.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        out = np.where(labels, 255, 0).astype(np.uint8)
        out[:, :, -3:] = 2
        for folder, stack in ((f"{split}_In", image), (f"{split}_Out", out)):
            (root / "Kasthuri++" / folder).mkdir(parents=True)
        for index in range(depth):
            skio.imsave(root / "Kasthuri++" / f"{split}_In" / f"mask{index:04d}.png",
                        image[index], check_contrast=False)
            skio.imsave(root / "Kasthuri++" / f"{split}_Out" / f"{index}.png", out[index],
                        check_contrast=False)
    return root


@pytest.fixture(scope="module")
def full_depth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kasthuri++'s depths (85 training, 75 test slices) on a small (y, x) plane."""
    return write_kasthuri(tmp_path_factory.mktemp("kasthuri"), 85, 75, 168, 176)


def test_3d_patches_fit_kasthuri_depths_and_deform_physically(full_depth: Path) -> None:
    cfg = compose_config("train", ["experiment=kasthuri_unet3d", f"paths.shared_data={full_depth}",
                                   "dataset.num_workers=0"])
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    assert list(datamodule.patch_size) == [20, 160, 160]
    assert len(datamodule.val_z) == 8 and datamodule.val_z == list(
        range(datamodule.val_z[0], datamodule.val_z[0] + 8))  # one contiguous block
    assert len(datamodule.train_z) == 77
    elastic = [t for t in datamodule.training_augmentation.transforms
               if isinstance(t, RandomElastic)]
    assert len(elastic) == 1 and elastic[0].spacing == (10.0, 1.0, 1.0)
    batch = next(iter(datamodule.train_dataloader()))
    assert tuple(batch["image"].shape[1:]) == (1, 20, 160, 160)


def test_paper_80_cubed_patches_do_not_fit_kasthuri(full_depth: Path) -> None:
    cfg = compose_config("train", ["experiment=kasthuri_unet3d", f"paths.shared_data={full_depth}",
                                   "dataset.num_workers=0", "dataset.patch_size=[80,80,80]"])
    with pytest.raises(InputError, match="fewer than the patch depth 80"):
        instantiate(cfg.dataset).setup()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run of the recipe on small 6 x 32 x 32 patches: (data root, run folder)."""
    root = tmp_path_factory.mktemp("kasthuri-run")
    data = write_kasthuri(root / "data", 24, 10, 168, 168)
    run = root / "run"
    overrides = [
        "experiment=kasthuri_unet3d", f"paths.shared_data={data}", "model.filters=[4,8,8,16]",
        "dataset.patch_size=[6,32,32]", "dataset.batch_size=2", "dataset.eval_batch_size=2",
        "dataset.num_workers=0", "trainer=cpu", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger=none", "inference.batch_size=32"]
    train(compose_config("train", overrides, run))
    return data, run


def test_kasthuri_unet3d_trains_and_scores_the_paper_3d_protocols(trained) -> None:
    _, run = trained
    with open(run / "protocols.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {(r["protocol"], r["tta"], r["zfilter"]) for r in rows} == {
        (p, t, z) for p in ("per_patch", "overlap") for t in ("False", "True") for z in ("0", "5")}
    written = json.loads((run / "metrics.json").read_text())
    assert written["headline"] == {"protocol": "overlap", "tta": True, "zfilter": 0}
    data = json.loads((run / "data.json").read_text())
    assert data["voxel_size_nm"] == [30.0, 3.0, 3.0]
    assert data["augmentation_spacing"] == [10.0, 1.0, 1.0]


def test_the_3d_headline_is_one_iou_over_the_reconstructed_volume(trained) -> None:
    """Paper 002's per image (50 % overlap) figure is "the average over all reconstructed
    images"; a 3D network's reconstructed image is the volume: test/iou_fg is TP / (TP + FP +
    FN) over the valid voxels of the test volume (protocols.csv's pooled iou_fg), not the
    mean over its z-slices, which metrics.json keeps as iou_fg_mean_per_slice."""
    _, run = trained
    with open(run / "protocols.csv") as stream:
        rows = list(csv.DictReader(stream))
    written = json.loads((run / "metrics.json").read_text())
    headline = next(r for r in rows if (r["protocol"], r["tta"], r["zfilter"]) == (
        "overlap", "True", "0"))
    assert written["protocol_card"]["average"] == "volumes"
    assert {(r["protocol"], r["card_average"]) for r in rows} == {
        ("overlap", "volumes"), ("per_patch", "patches")}  # per patch: over the 3D patches
    for key in ("iou_fg", "iou_bg", "iou_overall", "dice"):
        assert written["test"][key]["mean"] == pytest.approx(float(headline[key]), abs=1e-12)
    assert written["test"]["iou_fg_mean_per_slice"]["mean"] == pytest.approx(
        float(headline["iou_fg_mean_per_slice"]), abs=1e-12)
    # and it is another number than the mean over slices, which it was before
    assert abs(written["test"]["iou_fg"]["mean"]
               - written["test"]["iou_fg_mean_per_slice"]["mean"]) > 1e-4
    # brute force on the overlap row without TTA (16 times cheaper than the headline's, the
    # same scoring): the checkpoint's reconstruction, thresholded, its voxels counted here
    cfg = OmegaConf.load(run / "config.yaml")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    (test,) = datamodule.volumes.test
    settings = OmegaConf.merge(cfg.inference, {"headline": {"tta": False}})
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "best.ckpt", inference=settings,
                                          device="cpu")
    predicted = predictor.probabilities(np.asarray(test.image)) > cfg.postproc.threshold
    truth = np.asarray(test.labels) > 0
    valid = np.asarray(test.valid(), bool)
    assert not valid.all()  # Kasthuri++'s label 2 is ignored
    tp = np.sum(predicted & truth & valid)
    wrong = np.sum((predicted != truth) & valid)
    untested = next(r for r in rows if (r["protocol"], r["tta"], r["zfilter"]) == (
        "overlap", "False", "0"))
    assert float(untested["iou_fg"]) == pytest.approx(tp / (tp + wrong), abs=1e-9)


def test_report_names_the_3d_headlines_average(trained) -> None:
    _, run = trained
    report = summarize_runs(collect_runs([run]).runs, ["test/iou_fg"])
    (row,) = report.rows
    written = json.loads((run / "metrics.json").read_text())
    assert row["mean"] == pytest.approx(written["test"]["iou_fg_over_volume"]["mean"])
    text = markdown(report)
    assert "## test/iou_fg (pooled over each test volume's voxels, mean over volumes): " \
           "dataset" in text
    assert "test/iou_fg overlap +TTA (pooled per volume)" in text


def test_evaluate_with_the_data_set_named_keeps_the_checkpoints_3d_patches(trained,
                                                                            tmp_path) -> None:
    """evaluate.py names no model, so a data set given there made 2D patches (256 x 256) for a
    3D checkpoint; its windows are the checkpoint's training patches."""
    data, run = trained
    summary = evaluate(compose_config("evaluate", [
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "dataset=kasthuri_pp",
        f"paths.shared_data={data}", "dataset.num_workers=0", "inference=em_matrix_3d",
        "inference.protocols=[overlap]", "inference.tta=[false]", "inference.zfilter=[0]",
        "inference.headline.tta=false"], tmp_path))
    assert summary["data"]["patch_size"] == [20, 160, 160]  # the data set's 3D default
    assert summary["protocol_card"]["window"] == [6, 32, 32]  # the network's training patches
