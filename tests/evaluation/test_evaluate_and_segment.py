"""A trained checkpoint re-scores its own test set exactly, and segments users' own files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage import io as skio

from mitoseg.errors import InputError
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.segment import segment
from mitoseg.training.train import train
from tests.conftest import TINY, compose_config


class Payload:
    """Stands for any pickled object a hostile checkpoint could carry."""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY

    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config("train", TINY, run_dir))
    return run_dir


def test_evaluate_reproduces_the_training_test_metrics(trained_run: Path, tmp_path: Path) -> None:
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    summary = evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}"], tmp_path))
    trained = json.loads((trained_run / "metrics.json").read_text())["test"]
    for name in ("as", "abd_px", "abd_um"):
        assert summary["metrics"][name]["mean"] == pytest.approx(trained[name]["mean"], abs=1e-6)
    assert (tmp_path / "test_per_image.csv").is_file() and (tmp_path / "summary.json").is_file()


def test_evaluate_and_segment_score_at_the_precision_the_run_tested_at(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """A run trained and tested in bf16 (trainer=gpu's default) is re-scored in bf16: in fp32
    evaluate.py's numbers differed from the run's metrics.json (AS 0.16008 against 0.15952
    here) with nothing in its record to say why; segment.py likewise."""
    run_dir = tmp_path_factory.mktemp("bf16")
    train(compose_config("train", [*TINY, "trainer.precision=bf16-mixed", "seed=1"], run_dir))
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    summary = evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}"], tmp_path / "ev"))
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    for name in ("as", "abd_px"):
        assert summary["metrics"][name]["mean"] == pytest.approx(trained[name]["mean"], abs=1e-6)
    from mitoseg.evaluation.predictor import Predictor

    assert Predictor.from_checkpoint(checkpoint, device="cpu").settings.precision == "bf16-mixed"


def test_evaluate_with_another_threshold_and_no_overwrite(trained_run: Path, tmp_path: Path) -> None:
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose_config("evaluate", [f"ckpt_path={checkpoint}", "postproc=threshold_0.9"],
                         tmp_path)
    assert evaluate(cfg)["postproc"]["threshold"] == 0.9
    with pytest.raises(InputError, match="refusing to overwrite"):
        evaluate(cfg)


def test_checkpoint_loads_weights_only_and_rejects_foreign_files(trained_run: Path,
                                                                 tmp_path: Path) -> None:
    net, config = load_network(trained_run / "checkpoints" / "last.ckpt")
    assert not net.training and config["model"]["base_channels"] == 4
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(InputError, match="not a mitoseg checkpoint"):
        load_network(foreign)

    # an arbitrary object: weights_only loading must refuse to unpickle it
    torch.save({"payload": Payload()}, tmp_path / "pickle.ckpt")
    with pytest.raises(InputError, match="could not be loaded safely"):
        load_network(tmp_path / "pickle.ckpt")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_network(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("section, where, via", [
    ("model", "model._target_", "pathlib"),
    ("dataset", "dataset.augmentation.transforms[0]._target_", "pathlib"),
    ("postproc", "postproc._target_", "pathlib"),
    # the same callable reached through a mitoseg module that imports it
    ("model", "model._target_", "mitoseg.evaluation.checkpoints"),
    ("dataset", "dataset.augmentation.transforms[0]._target_", "mitoseg.data.image_io"),
])
def test_a_checkpoint_that_names_a_foreign_callable_is_refused_before_it_runs(
        trained_run: Path, tmp_path: Path, section: str, where: str, via: str) -> None:
    """weights_only stops pickled code, but the stored config goes to Hydra's instantiate,
    which calls whatever _target_ names: pathlib.Path.write_text would write a file (a .pth in
    site-packages runs code at the next start). Only classes and functions defined in the
    section's mitoseg package may be named, at any depth of the sections evaluate.py and
    segment.py build, also where a mitoseg module imports the foreign one."""
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    written = tmp_path / "written.pth"
    hostile = {"_target_": f"{via}.Path.write_text",
               "self": {"_target_": f"{via}.Path", "_args_": [str(written)]},
               "data": "import os"}
    config = checkpoint["mitoseg_config"]
    if section == "dataset":  # nested: a transform of the stored augmentation
        config["dataset"]["augmentation"] = {"_target_": "mitoseg.data.em_augment.EMCompose",
                                             "transforms": [hostile]}
    else:
        config[section] = hostile
    torch.save(checkpoint, tmp_path / "hostile.ckpt")
    with pytest.raises(InputError, match=rf"'{via}.Path.write_text' at '{re.escape(where)}'"):
        load_network(tmp_path / "hostile.ckpt")
    with pytest.raises(InputError, match="Path.write_text"):
        segment(compose_config("segment", [f"ckpt_path={tmp_path / 'hostile.ckpt'}",
                                           f"input={tmp_path / 'none.tif'}",
                                           f"output_dir={tmp_path / 'out'}"]))
    assert not written.exists()


def test_segment_files_folder_and_stack(trained_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(inputs / "cell1.tif", rng.normal(100, 10, (70, 90)).astype(np.float32))
    skio.imsave(inputs / "cell2.png", rng.integers(0, 255, (64, 64)).astype(np.uint8),
                check_contrast=False)
    tifffile.imwrite(inputs / "stack.tif", rng.normal(100, 10, (3, 48, 40)).astype(np.float32),
                     photometric="minisblack")  # 3 slices, not one planar RGB image
    out = tmp_path / "out"
    cfg = compose_config("segment", [f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
                                     f"input={inputs}", f"output_dir={out}"])
    record = segment(cfg)
    assert [Path(r["input"]).name for r in record["images"]] == ["cell1.tif", "cell2.png",
                                                                 "stack.tif"]
    assert tifffile.imread(out / "cell1_prob.tif").shape == (70, 90)
    assert tifffile.imread(out / "stack_mask.tif").shape == (3, 48, 40)
    probabilities = tifffile.imread(out / "cell2_prob.tif")
    mask = tifffile.imread(out / "cell2_mask.tif")
    assert np.array_equal(mask == 255, probabilities > record["postproc"]["threshold"])
    saved = json.loads((out / "segmentation.json").read_text())
    assert saved["pixel_size_um"] == pytest.approx(0.0645) and saved["postproc"]["threshold"] == 0.5
    with pytest.raises(InputError, match="refusing to overwrite"):
        segment(cfg)


def test_segment_refuses_nan_images(trained_run: Path, tmp_path: Path) -> None:
    image = np.ones((32, 32), np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "bad.tif", image)
    cfg = compose_config("segment", [f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
                                     f"input={tmp_path / 'bad.tif'}",
                                     f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(InputError, match=r"bad\.tif.*NaN"):
        segment(cfg)
    assert not (tmp_path / "out").exists()
