"""Sweep files pass W&B's own validation, and every run they generate composes in Hydra.

W&B's validator is the `sweeps` package (what `wandb sweep` runs for a local controller and
what W&B's server runs); its run generator gives the parameter sets an agent would get, and
wandb's own command builder turns them into the `${args_no_hyphens}` a run receives.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sweeps
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def generated_runs(config: dict, limit: int = 200) -> list[dict]:
    """The parameter sets W&B's controller would hand out (all of a grid; a few of a search)."""
    runs: list = []
    while len(runs) < limit:
        run = sweeps.next_run(config, runs, validate=True)
        if run is None:
            break
        run.state = sweeps.RunState.finished
        run.summary_metrics = {config["metric"]["name"]: 0.5}
        runs.append(run)
        if config["method"] != "grid" and len(runs) >= 5:
            break
    return [run.config for run in runs]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_sweep_file_passes_wandb_validation(path: Path) -> None:
    config = load(path)
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert config["program"] == "train.py" and (REPO / config["program"]).is_file()
    assert "${args_no_hyphens}" in config["command"]  # Hydra overrides take no leading dashes


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_generated_run_composes_as_hydra_overrides(path: Path) -> None:
    config = load(path)
    runs = generated_runs(config)
    assert runs
    if config["method"] == "grid":
        sizes = [len(spec.get("values", [None])) for spec in config["parameters"].values()]
        assert len(runs) == int(__import__("math").prod(sizes))
    seen: set[tuple[str, ...]] = set()
    for run in runs:
        overrides = create_sweep_command_args({"args": run})["args_no_hyphens"]
        key = tuple(sorted(o for o in overrides if not o.startswith("seed=")))
        if key in seen and config["method"] == "grid":
            continue  # same configuration with another seed: composed already
        seen.add(key)
        cfg = compose_config("train", overrides)  # raises on unknown keys or options
        for override in overrides:
            name, value = override.split("=", 1)
            if "." in name and not name.startswith("logger"):
                assert OmegaConf.select(cfg, name) == yaml.safe_load(value), override


def test_search_optimizes_validation_not_test() -> None:
    for path in SWEEPS:
        config = load(path)
        if config["method"] != "grid":
            assert not config["metric"]["name"].startswith("test/"), path.name
