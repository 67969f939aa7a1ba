"""Where the Hydra configs live: the one answer every entry point and library module uses."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_dir() -> Path:
    """The folder of mitoseg's Hydra configs (``train.yaml``, ``model/``, ``condition/`` ...).

    They ship inside the package as ``mitoseg/conf`` (package data), so an installed mitoseg
    finds them wherever it runs; in the source tree ``src/mitoseg/conf`` links to the
    repository's ``conf/`` folder.
    """
    folder = Path(str(resources.files("mitoseg") / "conf"))
    if not (folder / "train.yaml").is_file():
        raise FileNotFoundError(f"mitoseg's configs are missing: no '{folder / 'train.yaml'}' "
                                "(a broken installation? reinstall mitoseg)")
    return folder


def config_file(group: str, name: str) -> Path:
    """``<config_dir>/<group>/<name>.yaml`` (not checked: callers name what is missing)."""
    return config_dir() / group / f"{name}.yaml"
