"""Checks on a composed config that Hydra's schema-free YAML cannot make itself."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mitoseg.errors import InputError


def check_seeds(cfg: DictConfig) -> None:
    """``seed`` and ``data_seed`` must be explicit ints >= 0 (0 is a valid seed)."""
    for key in ("seed", "data_seed"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"config option '{key}' must be an int >= 0, got {value!r} "
                             "(for several seeds use a multirun: -m seed=0..9)")


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python types (safe to store in a checkpoint)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
