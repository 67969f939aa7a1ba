"""One option file of a config group as Hydra composes it, for code that reads it without Hydra."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mitoseg.errors import InputError


def load_option(group_dir: str | Path, name: str) -> DictConfig:
    """``<group_dir>/<name>.yaml`` merged over the options of the same group its ``defaults``
    list names (a variant such as ``condition/sib3_corr.yaml``: ``defaults: [sib3, _self_]``
    plus the one key that differs), in the list's order; ``_self_`` is placed last when absent.
    Entries that Hydra alone can compose (another group, ``override``) are refused."""
    path = Path(group_dir) / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"config option '{name}' not found (expected {path})")
    loaded = OmegaConf.load(path)
    defaults = list(loaded.pop("defaults", None) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, loaded)
        elif isinstance(entry, str) and "/" not in entry and ":" not in entry:
            merged = OmegaConf.merge(merged, load_option(group_dir, entry))
        else:
            raise InputError(f"{path}: defaults entry {entry!r} needs Hydra; only options of "
                             "the same group can be read on their own")
    return merged  # type: ignore[return-value]
