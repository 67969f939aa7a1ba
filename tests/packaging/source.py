"""A clean copy of what a source distribution holds, so that building never writes into the
repository (build/, *.egg-info) and sees only tracked-looking files."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO

PARTS = ("pyproject.toml", "README.md", "conf", "src")


def copy_source(destination: Path) -> Path:
    destination.mkdir(parents=True)
    for part in PARTS:
        source = REPO / part
        if source.is_dir():  # src/mitoseg/conf stays a link to ../../conf
            shutil.copytree(source, destination / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, destination / part)
    return destination
