"""One configuration identity: resume, the report, W&B groups and run-folder names agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mitoseg.errors import InputError
from mitoseg.runs.identity import (RESULT_NEUTRAL_KEYS, identity_overrides, is_result_neutral,
                                   override_key)
from mitoseg.runs.resume import check_same_config
from tests.conftest import REPO

BASE = {"seed": 0, "data_seed": 0, "model": {"depth": 4}, "optimizer": {"lr": 0.01},
        "trainer": {"max_epochs": 3, "enable_progress_bar": True, "precision": "32-true"},
        "speed": {"channels_last": False, "compile": False}, "paths": {"output_dir": "/a"},
        "logger": {"csv": {"save_dir": "/a"}}, "experiment_name": "default", "resume": "auto",
        "torch_threads": None}
# (override, config change): each changes the config the same way the override does
CHANGES = [("seed=1", {"seed": 1}), ("data_seed=2", {"data_seed": 2}),
           ("model.depth=5", {"model": {"depth": 5}}),
           ("optimizer.lr=0.02", {"optimizer": {"lr": 0.02}}),
           ("trainer.max_epochs=4", {"trainer": BASE["trainer"] | {"max_epochs": 4}}),
           ("trainer.precision=bf16-mixed", {"trainer": BASE["trainer"] | {"precision": "bf16-mixed"}}),
           ("trainer.enable_progress_bar=false",
            {"trainer": BASE["trainer"] | {"enable_progress_bar": False}}),
           ("speed.compile=true", {"speed": {"channels_last": False, "compile": True}}),
           ("speed.channels_last=true", {"speed": {"channels_last": True, "compile": False}}),
           ("paths.output_dir=/b", {"paths": {"output_dir": "/b"}}),
           ("logger.csv.save_dir=/b", {"logger": {"csv": {"save_dir": "/b"}}}),
           ("experiment_name=other", {"experiment_name": "other"}),
           ("resume=/a", {"resume": "/a"}), ("torch_threads=2", {"torch_threads": 2})]


def resumable(tmp_path: Path, change: dict) -> bool:
    stored = tmp_path / "config.yaml"
    stored.write_text(yaml.safe_dump(BASE))
    try:
        check_same_config(stored, BASE | change)
    except InputError:
        return False
    return True


@pytest.mark.parametrize("override, change", CHANGES, ids=[c[0] for c in CHANGES])
def test_resume_and_report_agree_on_every_key(tmp_path: Path, override: str, change: dict) -> None:
    """A key resume tolerates is a key the report (and W&B) leave out of the configuration,
    and the other way round -- except the seed: the report pools seeds, resume never mixes
    them."""
    in_identity = identity_overrides([override]) == (override,)
    if override_key(override) == "seed":
        assert not in_identity and not resumable(tmp_path, change)
    else:
        assert resumable(tmp_path, change) == (not in_identity)


def test_identity_drops_seed_paths_logger_and_asked_keys() -> None:
    overrides = ["seed=3", "paths.output_root=/x", "+paths.cache_dir=/y", "logger=wandb",
                 "logger.wandb.offline=false", "model=fcn_paper000", "+trainer.limit_train_batches=3",
                 "data_seed=1", "torch_threads=2"]
    assert identity_overrides(overrides) == ("+trainer.limit_train_batches=3", "data_seed=1",
                                             "model=fcn_paper000")
    assert identity_overrides(overrides, ignore=["trainer"]) == ("data_seed=1",
                                                                 "model=fcn_paper000")


def test_the_one_list() -> None:
    overrides = ["seed=3", "paths.output_root=/x", "+paths.cache_dir=/y", "logger=wandb",
                 "logger.wandb.offline=false", "model=fcn_paper000", "hydra/launcher=parallel",
                 "hydra.launcher.n_jobs=2", "speed.compile=true", "resume=/r",
                 "experiment_name=e", "~trainer.enable_model_summary", "trainer.max_epochs=2"]
    assert identity_overrides(overrides) == ("model=fcn_paper000", "trainer.max_epochs=2")
    assert is_result_neutral("speed.channels_last") and not is_result_neutral("speedup")
    assert not is_result_neutral("seed") and not is_result_neutral("trainer.precision")


def test_run_folder_names_leave_out_only_result_neutral_keys() -> None:
    config = yaml.safe_load((REPO / "conf" / "train.yaml").read_text())
    excluded = config["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    assert excluded and all(is_result_neutral(key) for key in excluded)
    assert set(RESULT_NEUTRAL_KEYS) >= {"paths", "logger", "speed", "resume"}


def test_training_takes_the_identity_from_runs_not_reporting() -> None:
    source = (REPO / "src" / "mitoseg" / "training" / "loggers.py").read_text()
    assert "from mitoseg.runs.identity import identity_overrides" in source
    assert "mitoseg.reporting" not in source


def test_every_listed_key_is_a_key_of_the_training_config() -> None:
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    configs = [compose_config("train", []), compose_config("train", ["dataset=em_volumes_example"])]
    for key in RESULT_NEUTRAL_KEYS:
        if key != "hydra":  # composed apart from the job's config
            # the default job (fluorescence) or an EM one (the EM data module's options)
            assert any(OmegaConf.select(cfg, key, default="<absent>") != "<absent>"
                       for cfg in configs), key


@pytest.mark.parametrize("change, warned", [
    ({"torch_threads": 2}, "torch_threads: None -> 2"),
    ({"speed": {"channels_last": True, "compile": False}}, "speed.channels_last: False -> True"),
    ({"dataset": {"num_workers": 2}}, None),
    ({"paths": {"output_dir": "/b"}}, None)])
def test_resume_warns_where_the_result_is_equal_only_to_rounding(
        tmp_path: Path, change: dict, warned: str | None, caplog) -> None:
    """torch_threads and speed.* change the order of sums (weights differ in their last bits):
    a resumption under them says it is not bit for bit; other neutral keys (paths, and the
    loader's workers: they draw nothing of their own) pass silently."""
    stored = tmp_path / "config.yaml"
    base = BASE | {"dataset": {"num_workers": 0}}
    stored.write_text(yaml.safe_dump(base))
    with caplog.at_level("WARNING", logger="mitoseg.runs.resume"):
        check_same_config(stored, base | change)
    messages = [r.getMessage() for r in caplog.records]
    if warned is None:
        assert not messages
    else:
        assert len(messages) == 1 and warned in messages[0]
