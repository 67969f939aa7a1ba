"""evaluate.py on EM volumes refuses a test volume that holds the checkpoint's training slices
(issue 8, item 7, for volumes: e.g. a Lucchi model tested on Lucchi++'s Test_*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mitoseg.errors import InputError
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.evaluation.test_em_end_to_end import EM_2D

SHAPE = "[12,64,64]"
TRAINED = [o for o in EM_2D if not o.startswith("dataset.volumes")] + [
    f"dataset.volumes.train_shape={SHAPE}", f"dataset.volumes.test_shape={SHAPE}",
    "dataset.volumes.seed=1000003"]  # its training volume is synthetic seed 1000003
# synthetic_volumes makes the test volume from seed + 1000003: with seed 0 it is exactly the
# checkpoint's training volume
SAME_AS_TRAINING = ["dataset=synthetic_em", f"dataset.volumes.train_shape={SHAPE}",
                    f"dataset.volumes.test_shape={SHAPE}", "dataset.volumes.seed=0",
                    "dataset.patch_size=[32,32]", "inference=em_quick"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("em-overlap")
    train(compose_config("train", TRAINED, run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_a_test_volume_made_of_training_slices_is_refused(checkpoint: Path,
                                                           tmp_path: Path) -> None:
    cfg = compose_config("evaluate", [f"ckpt_path={checkpoint}", *SAME_AS_TRAINING], tmp_path)
    with pytest.raises(InputError, match="copies of slices of the checkpoint's training volume"):
        evaluate(cfg)


def test_allowed_overlap_is_scored_and_marked(checkpoint: Path, tmp_path: Path) -> None:
    cfg = compose_config("evaluate", [f"ckpt_path={checkpoint}", *SAME_AS_TRAINING,
                                      "allow_training_overlap=true"], tmp_path)
    evaluate(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert next(iter(summary)) == "WARNING"
    assert summary["training_overlap"]["exact_copies"] == 12


def test_the_checkpoint_own_test_volume_passes(checkpoint: Path, tmp_path: Path) -> None:
    evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}"], tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    overlap = summary["training_overlap"]
    assert overlap["checked"] and overlap["exact_copies"] == overlap["near_copies"] == 0
