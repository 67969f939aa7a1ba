"""What paper 000's study trains and tests: condition families, levels and their configs.

A *condition* is a YAML file of the ``condition`` config group (conf/condition/<name>.yaml),
e.g. ``snr4`` or ``svb3_corr``. A *family* is a series of conditions along one axis:

- ``snr``: SNR 8, 4, 1 with the microscope PSF only;
- ``sib``: space-invariant blur sigma 2, 3, 4 px at SNR 4;
- ``svb``: space-variant blur 1~2, 1~3, 1~4 at SNR 4;
- ``sib_corr`` / ``svb_corr``: the same blur series on images smoothed inside mitochondria
  (sigma 1 px), the paper's spatially correlated variant (Supplementary Figure S5).

Mixtures (scheme 2) train on equal parts of a family's conditions: ``mix_snr`` (SNR 1/4/8)
and ``mix_blur`` (space-invariant blur 2/3/4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from mitoseg.config.options import load_option
from mitoseg.config.paths import config_dir, config_file
from mitoseg.errors import InputError

FAMILIES: dict[str, tuple[tuple[float, str], ...]] = {
    "snr": ((8.0, "snr8"), (4.0, "snr4"), (1.0, "snr1")),
    "sib": ((2.0, "sib2"), (3.0, "sib3"), (4.0, "sib4")),
    "svb": ((2.0, "svb2"), (3.0, "svb3"), (4.0, "svb4")),
    "sib_corr": ((2.0, "sib2_corr"), (3.0, "sib3_corr"), (4.0, "sib4_corr")),
    "svb_corr": ((2.0, "svb2_corr"), (3.0, "svb3_corr"), (4.0, "svb4_corr")),
}
MIXTURES: dict[str, str] = {"mix_snr": "snr", "mix_blur": "sib"}  # mixture -> tested family
SENSITIVITY_CONDITION = "snr4"  # networks trained on undeformed images at SNR 4, PSF only
METHOD_OF_MODEL = {"unet_paper000": "unet", "fcn_paper000": "fcn"}


@dataclass(frozen=True)
class Condition:
    name: str
    family: str
    level: float


def conditions_of(families: list[str]) -> list[Condition]:
    """The conditions of the given families, in the paper's order."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise InputError(f"study: unknown condition family {unknown}; known: {sorted(FAMILIES)}")
    return [Condition(name, family, level) for family in families
            for level, name in FAMILIES[family]]


def condition_of_name(name: str) -> Condition | None:
    for family, levels in FAMILIES.items():
        for level, condition in levels:
            if condition == name:
                return Condition(name, family, level)
    return None


def condition_params(name: str) -> dict[str, Any]:
    """The image-condition fields a condition file sets (FluorescenceParams keyword args)."""
    path = config_file("condition", name)
    if not path.is_file():
        raise InputError(f"study: no condition '{name}' (expected {path})")
    # a *_corr file is a variant of its base (defaults: [sib3]): read it as Hydra composes it
    return dict(OmegaConf.to_container(load_option(config_dir() / "condition", name)).get("condition", {}))


def training_conditions(families: list[str], mixtures: list[str], sensitivity: bool) -> list[str]:
    """Every condition a network must be trained at (each once, in a stable order)."""
    names = [c.name for c in conditions_of(families)]
    for mixture in mixtures:
        if mixture not in MIXTURES:
            raise InputError(f"study: unknown mixture '{mixture}'; known: {sorted(MIXTURES)}")
        names.append(mixture)
    if sensitivity:
        names.append(SENSITIVITY_CONDITION)
    return list(dict.fromkeys(names))


def method_of_model(model: str) -> str:
    return METHOD_OF_MODEL.get(model, model)
