"""A run killed mid-training and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY, python_command

HERE = Path(__file__).resolve().parent


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = os.environ | {"WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def per_image(folder: Path) -> list[dict[str, str]]:
    with open(folder / "test_per_image.csv") as stream:
        return list(csv.DictReader(stream))


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    # dropout and a cosine schedule: randomness in the training step and state in the scheduler
    overrides = [o for o in TINY if not o.startswith(("trainer.max_epochs", "model."))]
    overrides += ["trainer.max_epochs=3", "seed=5", "scheduler=cosine", "logger=csv",
                  "model=unet2d_paper002", "model.filters=[4,8,16]", "model.dropout=0.2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    done = run(python_command("train.py", *overrides, f"hydra.run.dir={straight}"))
    assert done.returncode == 0, done.stderr[-3000:]

    done = run([sys.executable, str(HERE / "kill_during_training.py"), "1", *overrides,
                f"hydra.run.dir={killed}"])
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert not (killed / "metrics.json").exists()
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    started_with = (killed / ".hydra" / "overrides.yaml").read_text()

    done = run(python_command("train.py", *overrides, f"resume={killed}"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (killed / "resume-1.json").is_file()
    # Hydra's record of the first command (what report.py groups by) is kept; the resuming
    # command's goes beside it
    assert (killed / ".hydra" / "overrides.yaml").read_text() == started_with
    [continued] = (killed / ".hydra").glob("continued-*")
    assert f"resume={killed}" in (continued / "overrides.yaml").read_text()

    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["resumed"] == 1 and a["epochs"] == b["epochs"] == 3
    assert a["test"] == b["test"]
    assert per_image(straight) == per_image(killed)
    assert a["final"] == b["final"]
    for name in ("last.ckpt", "best.ckpt"):
        wa, wb = weights(straight / "checkpoints" / name), weights(killed / "checkpoints" / name)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    done = run([sys.executable, str(HERE / "kill_during_training.py"), "0", *TINY,
                f"hydra.run.dir={folder}"])
    assert done.returncode == -signal.SIGKILL
    done = run(python_command("train.py", *TINY, "optimizer.lr=0.5", f"resume={folder}"))
    assert done.returncode == 2
    assert "optimizer.lr: 0.01 -> 0.5" in done.stderr


@pytest.mark.parametrize("killed_in", ["evaluate_split", "_report"])
def test_a_run_killed_during_its_test_resumes_with_its_training_values(
        tmp_path: Path, monkeypatch, killed_in: str) -> None:
    """Killed after its last epoch, during the test (before it scored, or after it wrote
    test_per_image.csv but before metrics.json): the resumed fit has no epoch to run and logs
    nothing, so metrics.json's train/val values come from fit.json, as written when the first
    attempt's fit ended; a partial test file is kept aside, not refused or overwritten; every
    number equals an uninterrupted run's."""
    import mitoseg.training.train as training
    from tests.conftest import compose_config

    overrides = [*TINY, "trainer.max_epochs=2", "logger=csv"]
    training.train(compose_config("train", overrides, tmp_path / "straight"))
    original = getattr(training, killed_in)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the test")

    monkeypatch.setattr(training, killed_in, killed)
    folder = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        training.train(compose_config("train", overrides, folder))
    assert (folder / "fit.json").is_file() and not (folder / "metrics.json").exists()
    partial = (folder / "test_per_image.csv").exists()
    assert partial == (killed_in == "_report")
    monkeypatch.setattr(training, killed_in, original)
    training.train(compose_config("train", overrides, folder))
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((folder / "metrics.json").read_text())
    assert b["resumed"] == 1 and {"train/loss", "val/loss", "val/as"} <= set(b["final"])
    assert a["final"] == b["final"] and a["test"] == b["test"] and a["best"] == b["best"]
    set_aside = json.loads((folder / "resume-1.json").read_text())["set_aside"]
    assert set_aside == (["test_per_image.csv.interrupted-1"] if partial else [])
    assert per_image(folder) == per_image(tmp_path / "straight")
