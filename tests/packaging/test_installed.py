"""An installed (non-editable) mitoseg works from any folder: no repository needed.

The project is installed into a fresh virtual environment that sees the system's packages
(torch & co. are not downloaded again), then its console scripts run in an empty folder
outside the repository, without PYTHONPATH.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY
from tests.packaging.source import copy_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    source = copy_source(root / "source")
    # the wheel is built by this Python (its setuptools; a new venv brings an older one)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(root / "dist"), str(source)], root)
    (wheel,) = (root / "dist").glob("mitoseg-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], root)
    _run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q",
          str(wheel)], root)
    return root / "venv" / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | {"WANDB_MODE": "offline", "MPLBACKEND": "Agg", "HYDRA_FULL_ERROR": "1",
                  "PYTHONUNBUFFERED": "1"}


def _run(command: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_env())
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert REPO not in folder.parents
    return folder


def test_the_installed_package_is_the_one_imported(venv: Path, elsewhere: Path) -> None:
    done = _run([str(venv / "python"), "-c", "import mitoseg, mitoseg.config.paths as p; "
                 "print(mitoseg.__file__); print(p.config_dir())"], elsewhere)
    package, configs = done.stdout.split()
    site = venv.parent / "lib"
    assert Path(package).is_relative_to(site), package
    assert Path(configs).is_relative_to(site) and not Path(configs).is_symlink()
    assert (Path(configs) / "model" / "unet_paper000.yaml").is_file()


def test_train_command_runs_a_tiny_job(venv: Path, elsewhere: Path) -> None:
    _run([str(venv / "mitoseg-train"), *TINY, "paths.output_root=out"], elsewhere)
    (metrics,) = (elsewhere / "out" / "runs").glob("*/*/metrics.json")
    assert 0.0 <= json.loads(metrics.read_text())["final"]["test/as"] <= 1.0


def test_model_table_command_prints_the_table(venv: Path, elsewhere: Path) -> None:
    done = _run([str(venv / "mitoseg-models"), "unet2d_paper002", "fcn8"], elsewhere)
    assert "| unet2d_paper002 | UNetPaper002 | 2D | 1,940,817 |" in done.stdout
    assert "50.38 M" in done.stdout


def test_study_command_runs_a_tiny_study(venv: Path, elsewhere: Path) -> None:
    done = _run([str(venv / "mitoseg-study"), "study_preset=smoke", "families=[snr]",
                 "mixtures=[]", "deformations=[]", "models=[unet_paper000]",
                 "paths.output_root=out"], elsewhere, timeout=1500)
    (study,) = (elsewhere / "out" / "studies" / "paper000").iterdir()
    assert "Training 3 networks (3 conditions x 1 models x 1 seeds)" in done.stdout
    assert (study / "train_command.txt").read_text().startswith(
        "python -m mitoseg.commands.train -m dataset=fluo_procedural condition=snr8,snr4,snr1 ")
    assert len(list((study / "train").glob("*/metrics.json"))) == 3
    with open(study / "report" / "per_image.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {r["method"] for r in rows} == {"unet", "aam", "otsu"}
    assert {r["level"] for r in rows if r["part"] == "robustness"} == {"8.0", "4.0", "1.0"}
    assert (study / "report" / "report.md").is_file()
