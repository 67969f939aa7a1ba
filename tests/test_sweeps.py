"""Sweep files only name parameters that exist in the config, with values it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, compose_config

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_sweep_parameters_compose(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train.py" and (REPO / sweep["program"]).is_file()
    assert "${args_no_hyphens}" in sweep["command"]  # Hydra overrides take no leading dashes
    for name, spec in sweep["parameters"].items():
        for value in spec.get("values", []):
            compose_config("train", [f"{name}={value}"])  # raises on unknown keys/options
