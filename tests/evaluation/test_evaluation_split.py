"""evaluate.py scores the checkpoint's own split, and refuses to score its training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from mitoseg.errors import InputError
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.training.train import train
from tests.conftest import TINY, compose_config

TRAIN_SEED = 3
TINY_DATA = [o for o in TINY if o.startswith("dataset.")]
TINY_REST = [o for o in TINY if not o.startswith("dataset.")]


def _mask_folder(folder: Path) -> list[str]:
    """Six 'images', each cut into three 64 x 64 tiles that share 16-px strips (group_size 1)."""
    folder.mkdir()
    number = 0
    for image in range(6):
        noise = ndimage.gaussian_filter(np.random.default_rng(image).normal(size=(64, 160)), 2)
        scene = noise > np.quantile(noise, 0.75)
        for x in (0, 48, 96):
            number += 1
            tifffile.imwrite(folder / f"{number}.tif", scene[:, x:x + 64].astype(np.uint8) * 255)
    return ["dataset=fluo_masks", f"dataset.masks.path={folder}", "dataset.masks.group_size=1",
            "dataset.masks.polarity=normal", "dataset.split={val:3,test:3}",
            "dataset.batch_size=4", "dataset.eval_batch_size=4"]


@pytest.fixture(scope="module")
def procedural_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("procedural")
    train(compose_config("train", [*TINY, f"data_seed={TRAIN_SEED}"], run_dir))
    return run_dir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("folder")
    dataset = _mask_folder(root / "masks")
    train(compose_config("train", [*TINY_REST, *dataset, f"data_seed={TRAIN_SEED}"],
                         root / "run"))
    return root / "run", dataset


def _evaluate(run: Path, out: Path, *overrides: str) -> dict:
    return evaluate(compose_config("evaluate", [f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                                                *overrides], out))


def test_a_named_dataset_is_split_with_the_checkpoints_data_seed(procedural_run, tmp_path):
    summary = _evaluate(procedural_run, tmp_path, "dataset=fluo_procedural", *TINY_DATA)
    trained = json.loads((procedural_run / "metrics.json").read_text())["test"]
    assert summary["data"]["split_seed"] == TRAIN_SEED
    assert summary["seeds"]["data_seed"] == {"value": TRAIN_SEED, "from": "checkpoint"}
    assert summary["metrics"]["as"]["mean"] == pytest.approx(trained["as"]["mean"], abs=1e-6)
    assert summary["training_overlap"]["checked"]
    assert summary["training_overlap"]["overlapping_masks"] == {"train": 0, "val": 0}


def test_a_checkpoint_trained_on_images_made_on_the_device_is_checked(tmp_path):
    """trainer=gpu makes the training images on the device (dataset.synthesis=device), whose
    training dataset holds no masks: the overlap check reads the masks the data module dealt to
    each split instead of refusing the checkpoint as 'not masks'."""
    run_dir = tmp_path / "run"
    train(compose_config("train", [*TINY, f"data_seed={TRAIN_SEED}", "dataset.synthesis=device"],
                         run_dir))
    summary = _evaluate(run_dir, tmp_path / "eval")
    assert summary["training_overlap"]["checked"] is True
    assert summary["training_overlap"]["overlapping_masks"] == {"train": 0, "val": 0}
    assert summary["training_overlap"]["compared_with"]["train"] > 0


def test_an_explicit_data_seed_still_wins(procedural_run, tmp_path):
    summary = _evaluate(procedural_run, tmp_path, "dataset=fluo_procedural", *TINY_DATA,
                        "data_seed=5")
    assert summary["data"]["split_seed"] == 5
    assert summary["seeds"]["data_seed"] == {"value": 5, "from": "command line"}
    with pytest.raises(InputError, match="no dataset=... is given"):
        _evaluate(procedural_run, tmp_path / "b", "data_seed=5")
    with pytest.raises(InputError, match="data_seed"):
        _evaluate(procedural_run, tmp_path / "c", "dataset=fluo_procedural", "data_seed=-1")


def test_the_checkpoints_own_split_of_a_mask_folder_passes_the_check(folder_run, tmp_path):
    run, dataset = folder_run
    summary = _evaluate(run, tmp_path, *dataset)
    overlap = summary["training_overlap"]
    assert overlap["checked"] and overlap["overlapping_masks"] == {"train": 0, "val": 0}
    assert overlap["compared_with"]["train"] > 0 and "WARNING" not in summary
    val = _evaluate(run, tmp_path / "val", *dataset, "split=val")["training_overlap"]
    assert val["compared_with"].keys() == {"train"} and val["overlapping_masks"] == {"train": 0}
    stored = json.loads((run / "data.json").read_text())
    assert summary["data"]["test_mask_ids"] == stored["test_mask_ids"]


def test_a_split_that_overlaps_the_training_masks_is_refused(folder_run, tmp_path):
    run, dataset = folder_run
    with pytest.raises(InputError, match="refusing to score") as error:
        _evaluate(run, tmp_path / "a", *dataset, "data_seed=0")
    assert "share a region with masks the checkpoint has seen" in str(error.value)
    assert "0 with its training masks" not in str(error.value)
    assert not (tmp_path / "a" / "summary.json").exists()
    summary = _evaluate(run, tmp_path / "b", *dataset, "data_seed=0",
                        "allow_training_overlap=true")
    assert summary["WARNING"].startswith("SCORED ON DATA THE CHECKPOINT HAS SEEN")
    assert summary["training_overlap"]["overlapping_masks"]["train"] > 0
    saved = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert next(iter(saved)) == "WARNING"  # the first thing a reader sees


def test_a_checkpoint_from_before_leak_free_splits_is_not_trusted(procedural_run, tmp_path):
    checkpoint = torch.load(procedural_run / "checkpoints" / "best.ckpt", weights_only=True)
    del checkpoint["mitoseg_config"]["dataset"]["overlap"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    cfg = [f"ckpt_path={old}", "dataset=fluo_procedural", *TINY_DATA]
    with pytest.raises(InputError, match="trained before leak-free splits"):
        evaluate(compose_config("evaluate", cfg, tmp_path / "a"))
    summary = evaluate(compose_config("evaluate", [*cfg, "allow_training_overlap=true"],
                                      tmp_path / "b"))
    assert summary["WARNING"].startswith("NOT CHECKED")
    assert summary["training_overlap"]["checked"] is False


def _split_ids(dataset: list[str], data_seed: int) -> dict[str, set[str]]:
    from hydra.utils import instantiate

    module = instantiate(compose_config("train", [*dataset, f"data_seed={data_seed}"]).dataset)
    module.setup()
    return {name: set(part.masks.ids) for name, part in module.datasets.items()}


def test_a_test_split_that_picked_the_checkpoint_is_refused(folder_run, tmp_path):
    """The checkpoint's validation masks chose it (best val/loss): not a fair test set either."""
    run, dataset = folder_run
    trained = _split_ids(dataset, TRAIN_SEED)
    seed = next(s for s in range(50) if _split_ids(dataset, s)["test"] <= trained["val"])
    with pytest.raises(InputError, match="0 with its training masks, [1-9]\\d* with its "
                                         "validation masks"):
        _evaluate(run, tmp_path, *dataset, f"data_seed={seed}")
