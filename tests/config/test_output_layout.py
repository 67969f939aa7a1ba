"""One output layout (conf/hydra/default.yaml) for the four entry points: each run folder lands
where it landed when each top-level config carried its own ``hydra:`` block."""

from __future__ import annotations

import re

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from tests.conftest import CONF

STAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")


def folders(name: str, overrides: list[str]) -> tuple[str, str, str]:
    """(run folder, sweep folder, sweep subfolder of job 0) with the date and time as DATE."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return (STAMP.sub("DATE", cfg.hydra.run.dir), STAMP.sub("DATE", cfg.hydra.sweep.dir),
            cfg.hydra.sweep.subdir)


@pytest.mark.parametrize("name, overrides, run, sweep, subdir", [
    ("train", [], "outputs/runs/default/DATE", "outputs/multirun/default/DATE", "0"),
    ("train", ["model=fcn_paper000", "seed=3", "paths.output_root=/o"],
     "/o/runs/default/DATE_model-fcn_paper000+seed-3", "/o/multirun/default/DATE",
     "0_model-fcn_paper000+seed-3"),
    ("train", ["experiment_name=x", "resume=auto"], "outputs/runs/x/DATE",
     "outputs/multirun/x/DATE", "0"),
    ("train", ["resume=/runs/a"], "/runs/a", "outputs/multirun/default/DATE", "0"),
    ("train", ["experiment=lucchi_fast"], "outputs/runs/lucchi_fast/DATE_experiment-lucchi_fast",
     "outputs/multirun/lucchi_fast/DATE", "0_experiment-lucchi_fast"),
    ("evaluate", ["ckpt_path=a/b.ckpt", "postproc=threshold_0.9"],
     "outputs/evaluations/DATE_postproc-threshold_0.9", "outputs/multirun/evaluate/DATE",
     "0_postproc-threshold_0.9"),
    ("segment", ["ckpt_path=a/b.ckpt", "input=c", "output_dir=null"],
     "outputs/segmentations/DATE", "outputs/multirun/segmentations/DATE", "0"),
    ("study", [], "outputs/studies/paper000/DATE", "outputs/multirun/studies/paper000/DATE",
     "0"),
    ("study", ["name=x", "paths.output_root=/o"], "/o/studies/x/DATE",
     "/o/multirun/studies/x/DATE", "0"),
    ("study", ["analyze_only=/o/studies/x/1"], "/o/studies/x/1",
     "outputs/multirun/studies/paper000/DATE", "0"),
])
def test_run_folders_land_where_they_did(name: str, overrides: list[str], run: str, sweep: str,
                                         subdir: str) -> None:
    assert folders(name, overrides) == (run, sweep, subdir)


@pytest.mark.parametrize("name, overrides, run", [
    # new: segment.py and study.py folders are named after their options as train.py's are
    ("segment", ["ckpt_path=a/b.ckpt", "input=c", "postproc=threshold_0.9"],
     "outputs/segmentations/DATE_postproc-threshold_0.9"),
    ("study", ["study_preset=smoke"], "outputs/studies/paper000/DATE_study_preset-smoke"),
])
def test_every_task_names_its_folder_after_its_options(name: str, overrides: list[str],
                                                       run: str) -> None:
    assert folders(name, overrides)[0] == run


@pytest.mark.parametrize("name", ["train", "evaluate", "segment", "study"])
def test_one_layout_for_every_entry_point(name: str) -> None:
    overrides = {"evaluate": ["ckpt_path=x"], "segment": ["ckpt_path=x", "input=y"]}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides.get(name, []), return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra"] == "default"
    assert cfg.hydra.job.chdir is False
    assert "failures" in cfg.hydra.callbacks
    own = yaml.safe_load((CONF / f"{name}.yaml").read_text())["hydra"]
    assert own == {"job": {"config": {"override_dirname": {"exclude_keys": own["job"]["config"][
        "override_dirname"]["exclude_keys"]}}}}  # the layout has one home; a task names
    # only the options its folder names leave out
