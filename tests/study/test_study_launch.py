"""How the study reaches training and its configs: through the library, never the repository."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mitoseg.config.paths import config_dir
from mitoseg.errors import InputError
from mitoseg.study.plan import condition_params
from mitoseg.study.run import classical_methods, training_command
from tests.conftest import compose_config


def test_study_trains_through_the_library_not_a_repository_script(tmp_path: Path) -> None:
    command = training_command(compose_config("study", ["study_preset=smoke"]), tmp_path)
    assert command == [
        sys.executable, "-m", "mitoseg.commands.train", "-m", "dataset=fluo_procedural",
        "condition=snr8,snr4,snr1,sib2,sib3,sib4,mix_snr", "model=unet_paper000,fcn_paper000",
        "seed=0", "experiment_name=study_paper000", "logger=csv",
        f"hydra.sweep.dir={tmp_path / 'train'}", "dataset.masks.count=36",
        "dataset.masks.shape=[64,64]", "dataset.split={val:6,test:6}", "dataset.batch_size=6",
        "model.base_channels=4", "debug=tiny", "trainer.limit_train_batches=2"]


def test_study_command_line_with_a_launcher(tmp_path: Path) -> None:
    cfg = compose_config("study", ["study_preset=smoke", "launcher=slurm"])
    assert training_command(cfg, tmp_path)[-1] == "hydra/launcher=slurm"


def test_unknown_classical_method_and_condition_name_the_config_folder() -> None:
    expected = str(config_dir() / "classical" / "nonesuch.yaml")
    with pytest.raises(InputError, match="unknown classical method 'nonesuch'") as error:
        classical_methods(["otsu", "nonesuch"])
    assert expected in str(error.value)
    with pytest.raises(InputError, match="no condition 'snr99'") as error:
        condition_params("snr99")
    assert str(config_dir() / "condition" / "snr99.yaml") in str(error.value)
