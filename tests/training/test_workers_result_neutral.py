"""``dataset.num_workers`` changes how fast batches come, not what a run learns.

Every random draw of a training sample (EM window corners, paired-image augmentation) is keyed
by a value the sampler draws in the main process once per epoch and by the sample's index, so it
does not depend on which worker process makes the sample; the loader's own seed draw never
touches the global generator. Runs with 0 and 2 workers end with the same weights and the same
test numbers, bit for bit (and a resumed run with workers equals an uninterrupted one: the
workers hold no random state of their own).
"""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path

import torch

from tests.conftest import TINY, python_command
from tests.training.test_resume import HERE, run, weights

EM = ["dataset=synthetic_em", "dataset.volumes.train_shape=[12,64,64]",
      "dataset.volumes.test_shape=[6,64,64]", "dataset.patch_size=[32,32]",
      "dataset.batch_size=4", "dataset.eval_batch_size=4", "model=unet2d_paper002",
      "model.filters=[4,8,8,16,16]", "model.dropout=0.2", "augmentation=paper2d",
      "postproc=em_default", "inference=em_quick", "trainer=cpu", "trainer.max_epochs=2",
      "+trainer.limit_train_batches=3", "dataset.foreground_weight=3",
      "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv",
      "optimized_metric=test/iou_fg", "seed=3"]
FLUORESCENCE = [o for o in TINY if not o.startswith("logger")] + [
    "trainer.max_epochs=3", "logger=csv", "seed=3",
    "augmentation=dihedral"]


def _scores(table: Path) -> list[dict[str, str]]:
    """A results table's rows without their timings (``inference_seconds``)."""
    with open(table) as stream:
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")}
                for row in csv.DictReader(stream)]


def _same_run(a: Path, b: Path) -> None:
    first, second = json.loads((a / "metrics.json").read_text()), json.loads(
        (b / "metrics.json").read_text())
    assert first["test"] == second["test"] and first["final"] == second["final"]
    for table in ("test_per_image.csv", "protocols.csv"):  # fluorescence; EM
        assert (a / table).exists() == (b / table).exists()
        if (a / table).exists():
            assert _scores(a / table) == _scores(b / table)
    wa, wb = weights(a / "checkpoints" / "last.ckpt"), weights(b / "checkpoints" / "last.ckpt")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_fluorescence_runs_with_and_without_loader_workers_are_identical(tmp_path: Path) -> None:
    """Three epochs: the loader's persistent iterator (2 workers) and a new one per epoch (none)
    used to draw the shuffle order from the global generator at different points."""
    folders = []
    for workers in (0, 2):
        folder = tmp_path / f"workers{workers}"
        done = run(python_command("train.py", *FLUORESCENCE, f"dataset.num_workers={workers}",
                                  f"hydra.run.dir={folder}"))
        assert done.returncode == 0, done.stderr[-3000:]
        folders.append(folder)
    _same_run(*folders)


def test_em_run_killed_with_workers_and_resumed_with_others_equals_a_run_without(
        tmp_path: Path) -> None:
    """Window corners were drawn from each worker's own generator: other corners with 2 workers
    than with none, and other again after a resumption."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run(python_command("train.py", *EM, "dataset.num_workers=0",
                              f"hydra.run.dir={straight}"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = run([sys.executable, str(HERE / "kill_during_training.py"), "1", *EM,
                "dataset.num_workers=2", f"hydra.run.dir={killed}"])
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    done = run(python_command("train.py", *EM, "dataset.num_workers=1", f"resume={killed}"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((killed / "metrics.json").read_text())["resumed"] == 1
    assert "num_workers" not in done.stderr  # nothing to warn about
    _same_run(straight, killed)
