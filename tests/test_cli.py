"""The entry points as a user runs them: multiruns over seeds, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, TINY, python_command


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(python_command(script, *args), cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def test_multirun_over_two_seeds_with_the_inclusive_range(tmp_path: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("dataset.")]  # short folder names
    tiny += ["dataset.masks.count=24", "dataset.split={val:4,test:4}"]
    done = run("train.py", "-m", "seed=0..1", *tiny, f"paths.output_root={tmp_path}", cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted((tmp_path / "multirun" / "default").glob("*/*/metrics.json"))
    assert len(runs) == 2, done.stdout[-2000:]
    names = [p.parent.name for p in runs]
    for job, name in enumerate(names):  # "<job>_<overrides>"; a cut name puts the seed first
        number, overrides = name.split("_", 1)
        assert number == str(job) and f"seed-{job}" in overrides.split("+"), names
    assert [json.loads(p.read_text())["seed"] for p in runs] == [0, 1]


def test_bad_input_stops_with_one_clear_line(tmp_path: Path) -> None:
    done = run("train.py", "dataset=fluo_masks", f"dataset.masks.path={tmp_path / 'nowhere'}",
               f"paths.output_root={tmp_path}", cwd=REPO)
    assert done.returncode == 2
    assert "mitoseg: error: mask folder not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("runs/*/*/metrics.json"))


def test_unknown_options_are_named(tmp_path: Path) -> None:
    done = run("train.py", "model.base_chanels=3", f"paths.output_root={tmp_path}", cwd=REPO)
    assert done.returncode != 0 and "base_chanels" in done.stderr
    done = run("train.py", "model=no_such_net", f"paths.output_root={tmp_path}", cwd=REPO)
    assert done.returncode != 0 and "no_such_net" in done.stderr
    assert "unet_paper000" in done.stderr  # Hydra lists the available options


def test_evaluate_names_a_missing_checkpoint(tmp_path: Path) -> None:
    done = run("evaluate.py", f"ckpt_path={tmp_path / 'gone.ckpt'}",
               f"paths.output_root={tmp_path}", cwd=REPO)
    assert done.returncode == 2 and "checkpoint not found" in done.stderr
