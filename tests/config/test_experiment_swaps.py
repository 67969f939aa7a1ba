"""Swapping any group option into an experiment composes and builds.

An experiment selects whole option files (``override /optimizer: sgd_paper002``) instead of
patching keys of the option it selects (``optimizer.momentum: 0.99``): a patched key stays
behind when a user swaps the option (``experiment=lucchi_unet2d optimizer=adamw`` would give
AdamW a ``momentum``). Each experiment is composed with every option of the groups a user
swaps, and what it composes is built: the network's optimizer with its real parameters, the
scheduler with that optimizer, one training step with the loss, the augmentation on a sample of
the experiment's data, the callbacks and the trainer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mitoseg.data.normalization import Normalization
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.errors import InputError
from mitoseg.training.train import build_module
from tests.conftest import CONF, compose_config, cpu_stand_in

EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
# The groups a user swaps into an experiment (dataset and model define it): the four of a
# training recipe by default, the others in the slow suite (each compose takes about 0.5 s).
RECIPE = ["optimizer", "scheduler", "loss", "augmentation"]
OTHERS = ["callbacks", "postproc", "inference", "trainer"]
# What a preset may patch: an experiment its data set's own keys and the trainer's run length
# (keys no trainer option sets); an ablation row the model it selects; a search nothing.
PATCHABLE = {"experiment": {"dataset", "trainer"}, "ablation": {"model"}, "search": set()}
GROUPS = sorted(path.name for path in CONF.iterdir() if path.is_dir())
NO_OPTION = "~"  # the scheduler group's empty choice (train.yaml: scheduler: null)


def options(group: str) -> list[str]:
    names = sorted(path.stem for path in (CONF / group).glob("*.yaml")
                  if not path.stem.startswith("_"))  # _name: a base other options extend
    return names + [NO_OPTION] if group == "scheduler" else names


def choose(group: str, option: str) -> str:
    return f"~{group}" if option == NO_OPTION else f"{group}={option}"


def pipeline_refuses(cfg: DictConfig) -> bool:
    """Whether the data pipeline of ``cfg`` refuses its augmentation, as the pipeline decides.

    An EM data module refuses mask augmentations when it is built; an EM (batch) augmentation
    refuses the fluorescence pipeline's numpy masks and a batch it cannot transform when it is
    called. Each refusal is an InputError that names the option; anything else is a failure.
    """
    try:
        datamodule = instantiate(cfg.dataset)
    except InstantiationException as error:
        if isinstance(error.__cause__, InputError):
            return True
        raise
    augment = instantiate(cfg.augmentation)
    try:
        if isinstance(datamodule, EMDataModule):
            image = torch.rand(2, 1, *datamodule.patch_size,
                               generator=torch.Generator().manual_seed(0))
            out = augment(image, (image > 0.5).float(), torch.Generator().manual_seed(1))
            assert out[0].shape == image.shape and out[1].shape == image.shape
        else:
            mask = np.zeros((32, 32), bool)
            mask[2:9, 3:20] = True
            assert augment(mask, np.random.default_rng(0)).sum() == mask.sum()
    except InputError:
        return True
    return False


def training_step(cfg: DictConfig) -> None:
    """Build the module as train.py does and take one optimizer (and scheduler) step."""
    data = SimpleNamespace(pixel_size_um=0.005, normalization=Normalization("none"))
    module = build_module(cfg, data)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)  # for step-wise schedules
    configured = module.configure_optimizers()
    if isinstance(configured, torch.optim.Optimizer):
        optimizer, scheduler = configured, None
    else:
        optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    spatial = int(cfg.model.get("spatial_dims", 2))
    image = torch.rand(2, 1, *[32] * spatial, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in module.net.parameters()]
    loss = module.loss(module(image), (image > 0.5).float())
    loss.backward()
    optimizer.step()
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(float(loss))
    elif scheduler is not None:
        scheduler.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, module.net.parameters()))


def build(cfg: DictConfig, group: str, tmp_path: Path) -> None:
    """Build what the swapped option makes, as the training code builds it."""
    if group in ("optimizer", "scheduler"):
        training_step(cfg)
    elif group == "loss":
        logits = torch.randn(2, 1, 8, 8, requires_grad=True)
        value = instantiate(cfg.loss)(logits, (torch.rand(2, 1, 8, 8) > 0.5).float())
        value.backward()
        assert torch.isfinite(value) and logits.grad is not None
    elif group == "augmentation":
        assert not pipeline_refuses(cfg)  # (a refused option was skipped before)
    elif group == "postproc":
        assert instantiate(cfg.postproc).threshold > 0
    elif group == "callbacks":
        assert all(isinstance(instantiate(node), pl.Callback) for node in cfg.callbacks.values())
    elif group == "trainer":
        trainer = instantiate(cpu_stand_in(cfg.trainer), logger=False,
                              default_root_dir=str(tmp_path))
        assert isinstance(trainer, pl.Trainer)
    # inference has no object: the comparison with the option file is the whole check


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node


@lru_cache(maxsize=None)
def option_alone(group: str, option: str) -> Any:
    """The option as its file makes it, plain: the file itself, or composed without an
    experiment where it has a defaults list."""
    if option == NO_OPTION:
        return None
    node = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    if "defaults" not in node:
        return node
    return plain(compose_config("train", [choose(group, option)]).get(group))


def check_swaps(experiment: str, group: str, tmp_path: Path) -> None:
    swapped, machine = 0, trainer_option_keys()
    for option in options(group):
        where = f"experiment={experiment} {choose(group, option)}"
        cfg = compose_config("train", [f"experiment={experiment}", choose(group, option)], tmp_path)
        composed, alone = plain(cfg.get(group)), option_alone(group, option)
        if group == "trainer":  # the option's machine as it is, the experiment's run length
            assert ({k: v for k, v in composed.items() if k in machine}
                    == {k: v for k, v in alone.items() if k in machine}), where
        else:  # the option file as it is: the experiment left nothing in it
            assert composed == alone, where
        if group == "augmentation" and pipeline_refuses(cfg):
            continue  # an option of the other modality
        build(cfg, group, tmp_path)
        swapped += 1
    assert swapped >= 2


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("group", RECIPE)
def test_every_recipe_option_swaps_into_every_experiment(experiment: str, group: str,
                                                         tmp_path: Path) -> None:
    check_swaps(experiment, group, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("group", OTHERS)
def test_every_other_option_swaps_into_every_experiment(experiment: str, group: str,
                                                        tmp_path: Path) -> None:
    check_swaps(experiment, group, tmp_path)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_takes_its_own_augmentation(experiment: str, tmp_path: Path) -> None:
    assert not pipeline_refuses(compose_config("train", [f"experiment={experiment}"], tmp_path))


@pytest.mark.parametrize("data, taken", [
    (["dataset=fluo_procedural"], ["dihedral", "none"]),
    (["dataset=synthetic_em"], ["none", "paper2d", "paper3d", "rot90_flips", "strong"]),
    (["dataset=synthetic_em", "dataset.patch_size=[16,32,32]"],
     ["none", "paper2d", "paper3d", "rot90_flips", "strong"]),
])
def test_the_pipelines_refuse_the_other_modality(data: list[str], taken: list[str],
                                                 tmp_path: Path) -> None:
    """The rule the swap test skips by: each pipeline takes its own modality's options."""
    cfg = compose_config("train", data, tmp_path)
    accepted = []
    for option in options("augmentation"):  # no defaults lists: the file is the option
        cfg.augmentation = OmegaConf.load(CONF / "augmentation" / f"{option}.yaml")
        accepted += [] if pipeline_refuses(cfg) else [option]
    assert accepted == taken


def preset_files() -> list[Path]:
    return sorted(path for kind in PATCHABLE for path in (CONF / kind).glob("*.yaml"))


def trainer_option_keys() -> set[str]:
    """Keys a trainer option sets (the machine: accelerator, precision, devices, ...)."""
    return {key for path in (CONF / "trainer").glob("*.yaml") if path.stem != "default"
            for key in yaml.safe_load(path.read_text()) if key != "defaults"}


@pytest.mark.parametrize("path", preset_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_presets_patch_only_what_they_own(path: Path) -> None:
    preset = yaml.safe_load(path.read_text()) or {}
    patched = {key for key in preset if key in GROUPS}
    assert patched <= PATCHABLE[path.parent.name], (
        f"{path.relative_to(CONF)} patches keys of {sorted(patched - PATCHABLE[path.parent.name])}"
        ": select a whole option file instead (- override /<group>: <option>)")
    machine = set(preset.get("trainer") or {}) & trainer_option_keys()
    assert not machine, (f"{path.relative_to(CONF)} sets trainer keys {sorted(machine)} that a "
                         "trainer option sets; select that option (override /trainer: ...)")


@pytest.mark.parametrize("path", sorted((CONF / "study_preset").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_study_presets_select_before_they_patch(path: Path) -> None:
    selected: set[str] = set()
    for override in yaml.safe_load(path.read_text()).get("train_overrides", []):
        name = override.lstrip("+").split("=", 1)[0]
        group = name.split(".", 1)[0]
        if "." not in name:
            selected.add(group)
        elif group in RECIPE + OTHERS and group != "trainer":
            assert group in selected, (f"{path.name}: '{override}' patches a {group} option "
                                       "it does not select")


def test_the_ablation_of_the_issue_builds(tmp_path: Path) -> None:
    """python train.py experiment=lucchi_unet2d optimizer=adamw (issue 14, item 10)."""
    cfg = compose_config("train", ["experiment=lucchi_unet2d", "optimizer=adamw"], tmp_path)
    training_step(cfg)
    assert cfg.optimizer == OmegaConf.load(CONF / "optimizer" / "adamw.yaml")
