"""Paper 002 Table 5 presets: each row changes exactly what the paper says."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.conftest import CONF

ROWS = ["a0_baseline", "a1_augmentation", "a2_batch_norm", "a3_dropout", "a4_elu",
        "a5_he_normal", "a6_attention"]


def composed(row: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["experiment=lucchi_unet2d", f"ablation={row}"],
                       return_hydra_config=True)


def layer_types(row: str) -> set[str]:
    return {type(m).__name__ for m in instantiate(composed(row).model).modules()}


def test_the_presets_are_the_files_of_the_group() -> None:
    assert sorted(p.stem for p in (CONF / "ablation").glob("*.yaml")) == ROWS


@pytest.mark.parametrize("row, augmentation, activation, init, batch_norm, dropout, model", [
    ("a0_baseline", "none", "ReLU", "glorot_uniform", False, False, "unet2d_paper002"),
    ("a1_augmentation", "paper2d", "ReLU", "glorot_uniform", False, False, "unet2d_paper002"),
    ("a2_batch_norm", "paper2d", "ReLU", "glorot_uniform", True, False, "unet2d_paper002"),
    ("a3_dropout", "paper2d", "ReLU", "glorot_uniform", False, True, "unet2d_paper002"),
    ("a4_elu", "paper2d", "ELU", "glorot_uniform", False, True, "unet2d_paper002"),
    ("a5_he_normal", "paper2d", "ELU", "he_normal", False, True, "unet2d_paper002"),
    ("a6_attention", "paper2d", "ELU", "he_normal", False, True, "attention_unet"),
])
def test_each_row(row, augmentation, activation, init, batch_norm, dropout, model) -> None:
    cfg = composed(row)
    assert cfg.hydra.runtime.choices.augmentation == augmentation
    assert cfg.hydra.runtime.choices.model == model and cfg.model.init == init
    types = layer_types(row)
    assert activation in types and ({"ReLU", "ELU"} - {activation}).isdisjoint(types)
    assert ("BatchNorm2d" in types) == batch_norm
    assert ("Dropout" in types) == dropout
    assert ("AttentionGate" in types) == (model == "attention_unet")
    # the rest of the recipe is paper 002's (the experiment), untouched by the preset
    assert cfg.optimizer.lr == pytest.approx(0.002) and cfg.dataset.batch_size == 6


def test_he_normal_and_glorot_give_different_weight_scales() -> None:
    torch.manual_seed(0)
    glorot = instantiate(composed("a4_elu").model)
    torch.manual_seed(0)
    he = instantiate(composed("a5_he_normal").model)
    first = lambda net: net.encoders[0][0].weight.std().item()  # noqa: E731
    assert first(he) > 1.3 * first(glorot)  # first conv: He std sqrt(2/9) = 0.47, Glorot sqrt(2/(9+144)) = 0.11
