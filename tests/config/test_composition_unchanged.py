"""The config refactor (issue 15: bases and variants, one hydra layout, one debug group, modality
defaults) composes every option of every group to exactly what it composed to before.

The reference is the conf/ folder of commit e0bbd3b (before the refactor), read from git into a
temporary folder; both are composed with Hydra's compose API, unresolved, and compared key for
key. The differences the issue asked for are listed in ``INTENDED`` and checked to be exactly
those. Skipped when the repository's history is not at hand (a shallow clone, an sdist).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from tests.conftest import CONF, REPO

BEFORE = "e0bbd3b"
SKIP_DIRS = {"hydra", "study_preset", "classical"}  # hydra: see test_output_layout;
# classical: files read without Hydra (study/run.py), not changed here


@lru_cache(maxsize=1)
def old_conf() -> Path | None:
    try:
        archive = subprocess.run(["git", "archive", BEFORE, "conf"], cwd=REPO,
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="conf-before-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target)
    return target / "conf"


def composed(conf: Path, name: str, overrides: list[str]) -> dict[str, Any]:
    """The composed config, unresolved, except the EM patch size: it now follows the model
    (``${mitoseg.for_dims:...}``, a 3D model gets 3D patches), so its value is compared."""
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    plain = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(cfg.get("dataset"), DictConfig) and "patch_size" in cfg.dataset:
        plain["dataset"]["patch_size"] = OmegaConf.to_container(cfg.dataset, resolve=True)[
            "patch_size"]
    return plain  # type: ignore[return-value]


def group_cases() -> list[tuple[str, list[str]]]:
    """train.yaml with every option of every group (as tests/config/test_instantiate_all.py
    enumerates them), the scheduler's and condition's empty choice, and the other entry points."""
    cases: list[tuple[str, list[str]]] = [("train", [])]
    for group in sorted(path.name for path in CONF.iterdir() if path.is_dir()):
        if group in SKIP_DIRS:
            continue
        # the options that existed before (one removed by the refactor fails here); new groups
        # and options have nothing to compare with
        old = old_conf()
        names = {p.stem for p in ((old or CONF) / group).glob("*.yaml")}
        cases += [("train", [f"{group}={option}"]) for option in sorted(names)]
    cases += [("evaluate", ["ckpt_path=x.ckpt"]),
              ("evaluate", ["ckpt_path=x.ckpt", "dataset=lucchi"]),
              ("evaluate", ["ckpt_path=x.ckpt", "dataset=synthetic_em"]),
              ("evaluate", ["ckpt_path=x.ckpt", "dataset=fluo_masks"]),
              ("segment", ["ckpt_path=x.ckpt", "input=y"]),
              ("study", [])]
    cases += [("study", [f"study_preset={p.stem}"])
              for p in sorted((CONF / "study_preset").glob("*.yaml"))]
    cases += [("train", ["experiment=lucchi_unet2d", "optimizer=adamw"]),
              ("train", ["experiment=lucchi_fast", "augmentation=none"]),
              ("train", ["dataset=lucchi", "augmentation=strong"]),
              ("train", ["dataset=fluo_masks", "condition=mix_snr"]),
              ("train", ["experiment=lucchi_unet2d", "ablation=a1_augmentation"])]
    return cases


PAPER2D_EM = {"augmentation": "paper2d", "postproc": "em_default"}
# What the refactor changes on purpose, as {case: {group: the option it now holds}} (the whole
# node is that option's file) or {group: {key: value}} (keys the node gains). Every other case
# composes unchanged.
INTENDED: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {
    # a data set brings its modality's augmentation and post-processing (issue 15, item 4):
    # before, dataset=<EM data set> kept the fluorescence dihedral mask augmentation (refused
    # by the EM pipeline) and Binarize
    ("train", ("dataset=kasthuri_pp",)): PAPER2D_EM,
    ("train", ("dataset=lucchi",)): PAPER2D_EM,
    ("train", ("dataset=lucchi_pp",)): PAPER2D_EM,
    ("train", ("dataset=synthetic_em",)): PAPER2D_EM,
    ("train", ("dataset=lucchi", "augmentation=strong")): {"postproc": "em_default"},
    # inference=em_quick is derived from em_matrix: it regains precision and channels_last
    # (the values the code fell back to, so no run changes)
    ("train", ("inference=em_quick",)): {"inference": {"precision": "32-true",
                                                       "channels_last": False}},
}
NEW_KEYS = {"task_folder"}  # where the task's run folders go (conf/hydra/default.yaml)
# options added to one entry point by issues 15 and 16, each with a null/off default: the
# device of evaluate.py and segment.py; segment.py's block-wise prediction of volumes and
# (issue 17) its compile switch
TASK_NEW_KEYS = {"evaluate": {"device"},
                 "segment": {"device", "level", "voxel_size_nm", "blockwise", "compile"}}
# every EM data set's volumes read the debug option's test-slice limit (null without debug=...)
TEST_SLICE_LIMIT = "${oc.select:debug.max_test_slices,null}"
# classes a config builds that were replaced later, old -> new: loss=bce (and the base of
# loss=deep_supervision) builds mitoseg's BCELoss, the same value, which also takes the ignore
# mask ``valid`` that torch's BCEWithLogitsLoss cannot
RENAMED_TARGETS = {"torch.nn.BCEWithLogitsLoss": "mitoseg.training.losses.BCELoss"}


def rename_targets(node: Any) -> Any:
    """``node`` with every ``_target_`` of ``RENAMED_TARGETS`` replaced by its new name."""
    if isinstance(node, dict):
        return {key: RENAMED_TARGETS.get(value, value) if key == "_target_" else
                rename_targets(value) for key, value in node.items()}
    if isinstance(node, list):
        return [rename_targets(value) for value in node]
    return node


def drop_new_keys(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Remove from ``after`` the keys the refactor adds to every config that has them."""
    for key in NEW_KEYS:
        after.pop(key, None)
    trainer = after.get("trainer")
    if isinstance(trainer, dict) and trainer.get("accelerator") == "gpu" and \
            before["trainer"].get("log_every_n_steps") == 10:
        # issue 17: on a GPU the logged step values are read back every 50 steps, not 10
        assert trainer["log_every_n_steps"] == 50
        trainer["log_every_n_steps"] = 10
    callbacks = after.get("callbacks")
    if isinstance(callbacks, dict) and "last_checkpoint" in callbacks and \
            "last_checkpoint" not in (before.get("callbacks") or {}):
        # last.ckpt comes from a callback of its own, after every epoch (Lightning's save_last
        # stayed at the best epoch once the monitored metric stopped improving)
        assert callbacks.pop("last_checkpoint")["_target_"].endswith(".LastCheckpoint")
        assert callbacks["model_checkpoint"]["save_last"] is False
        callbacks["model_checkpoint"]["save_last"] = True
    inference = after.get("inference")
    if isinstance(inference, dict) and "compile" in inference and \
            "compile" not in (before.get("inference") or {}):
        # issue 17: inference.compile, off by default (torch.compile of the network)
        assert inference.pop("compile") is False
    dataset = after.get("dataset")
    if isinstance(dataset, dict) and "hold_in_memory_mib" in dataset and \
            "hold_in_memory_mib" not in before["dataset"]:
        # lazy EM training volumes read into memory when they fit: the same patches
        assert dataset.pop("hold_in_memory_mib") == 2048
    volumes = dataset.get("volumes") if isinstance(dataset, dict) else None
    if volumes is not None and "max_test_slices" not in before["dataset"]["volumes"]:
        assert volumes.pop("max_test_slices") == TEST_SLICE_LIMIT
    if volumes is not None and volumes.get("dataset") == "kasthuri++":
        # issue 16: label 2 (outside the tissue) is ignored by the loss and the metrics,
        # instead of read as background
        assert volumes.pop("ignore_unlabelled") is True
    if volumes is not None and volumes.get("voxel_size_nm", 0) is None:
        # the real data sets' voxel sizes live in their modules (mitoseg.data.em_datasets); the
        # configs say null (the data set's own) instead of repeating them
        from mitoseg.data.em_datasets import BY_KEY

        key = volumes.get("dataset", "lucchi")
        assert list(BY_KEY[key].VOXEL_SIZE_NM) == before["dataset"]["volumes"]["voxel_size_nm"]
        volumes["voxel_size_nm"] = before["dataset"]["volumes"]["voxel_size_nm"]


def option_node(group: str, option: str) -> Any:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}"])
    return OmegaConf.to_container(cfg[group], resolve=False)


@pytest.mark.parametrize("name, overrides", group_cases(),
                         ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_every_option_composes_as_before(name: str, overrides: list[str]) -> None:
    old = old_conf()
    if old is None:
        pytest.skip(f"commit {BEFORE} is not in this repository's history")
    before = rename_targets(composed(old, name, overrides))
    after = composed(CONF, name, overrides)
    drop_new_keys(before, after)
    for key in TASK_NEW_KEYS.get(name, ()):
        assert key not in before, key
        after.pop(key, None)
    if name == "study" and after["train_overrides"] != before["train_overrides"]:
        # the presets select a debug option instead of trainer keys: their training runs are
        # compared in test_the_debug_group_composes_the_runs_it_replaces
        assert any(o.startswith("debug=") for o in after["train_overrides"])
        before["train_overrides"] = after["train_overrides"]
    if name == "study" and before.get("statistics_unit") == "crop":
        # the study's tests count clusters by default: crops of one cluster share pixels
        assert after["statistics_unit"] == "cluster"
        before["statistics_unit"] = "cluster"
    intended = INTENDED.get((name, tuple(overrides)), {})
    for key, change in intended.items():
        assert after[key] != before[key], f"{key}: expected a change for {overrides}"
        if isinstance(change, str):
            assert after[key] == option_node(key, change), key
            before[key] = after[key]
        else:
            before[key] = {**before[key], **change}
    assert after == before


# The tiny-run override list of tests/conftest.py before the debug group replaced its run part.
TINY_BEFORE = [
    "dataset.masks.count=24", "dataset.masks.shape=[64,64]", "dataset.split={val:4,test:4}",
    "dataset.batch_size=4", "dataset.eval_batch_size=4", "model.base_channels=4",
    "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none",
]


def preset_runs() -> list[tuple[str, list[str], list[str]]]:
    """(preset, its training overrides before, after) for every study preset."""
    import yaml

    old = old_conf()
    runs = []
    for path in sorted((CONF / "study_preset").glob("*.yaml")):
        after = yaml.safe_load(path.read_text())
        before = yaml.safe_load((old / "study_preset" / path.name).read_text()) if old else after
        data = [f"dataset={after.get('dataset', 'fluo_procedural')}"]
        runs.append((path.stem, data + before["train_overrides"], data + after["train_overrides"]))
    return runs


@pytest.mark.parametrize("name, before, after",
                         [("tests TINY", TINY_BEFORE, None), *preset_runs()],
                         ids=lambda value: value if isinstance(value, str) else "")
def test_the_debug_group_composes_the_runs_it_replaces(name: str, before: list[str],
                                                       after: list[str] | None) -> None:
    """tests/conftest.py's TINY and the study presets select debug=tiny or debug=quiet_cpu
    instead of repeating trainer keys: their training runs compose as before, plus the debug
    node (max_test_slices, for EM data) and, with debug=tiny, the cheap EM inference matrix
    (unused by these fluorescence runs)."""
    from tests.conftest import TINY

    old = old_conf()
    if old is None:
        pytest.skip(f"commit {BEFORE} is not in this repository's history")
    after = TINY if after is None else after
    was = rename_targets(composed(old, "train", before))
    now = composed(CONF, "train", after)
    if "debug=tiny" in after:
        assert now.pop("debug") == {"max_test_slices": 8}
        assert now["inference"] == option_node("inference", "em_quick")
        now["inference"] = was["inference"]
    drop_new_keys(was, now)
    assert now == was
