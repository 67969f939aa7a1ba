"""End-to-end training through the real config, shrunk to seconds on a CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mitoseg.errors import InputError
from mitoseg.training.train import train
from tests.conftest import compose_config

RUN_FILES = ("run_info.json", "config.yaml", "data.json", "metrics.json", "test_per_image.csv")


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "test_per_image.csv") as stream:
        return list(csv.DictReader(stream))


def test_fast_dev_run_through_the_real_config(tmp_path: Path) -> None:
    cfg = compose_config("train", ["trainer=debug"], tmp_path)  # the default job, one batch
    metrics = train(cfg)
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["seed"] == 0 and info["environment"]["packages"]["torch"]
    assert "command" in info and info["git"].keys() == {"commit", "dirty"}
    assert 0.0 <= metrics["test"]["as"]["mean"] <= 1.0
    rows = read_rows(tmp_path)
    assert rows and {"mask_id", "unit", "snr", "as", "abd_px", "abd_um", "pred_empty"} <= rows[0].keys()


def test_full_tiny_run_writes_checkpoints_and_per_image_metrics(tmp_path: Path,
                                                                tiny_overrides: list[str]) -> None:
    metrics = train(compose_config("train", tiny_overrides, tmp_path))
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows = read_rows(tmp_path)
    assert len(rows) == metrics["test"]["as"]["n"] == 4
    assert metrics["test"]["as"]["units"] == 4  # procedural masks: each its own unit
    assert metrics["test"]["pred_empty"]["n"] == 4  # the share of empty predictions
    mean_as = sum(float(r["as"]) for r in rows) / len(rows)
    assert metrics["test"]["as"]["mean"] == pytest.approx(mean_as)
    data = json.loads((tmp_path / "data.json").read_text())
    assert data["sizes"] == {"train": 16, "val": 4, "test": 4}
    assert set(data["test_mask_ids"]) == {r["mask_id"] for r in rows}
    assert {r["unit"] for r in rows} == {f"group-{i.split('-')[-1]}" for i in data["test_mask_ids"]}
    assert {r["pred_empty"] for r in rows} <= {"0.0", "1.0"}


def test_same_seed_gives_identical_metrics(tmp_path: Path, tiny_overrides: list[str]) -> None:
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = compose_config("train", tiny_overrides + [f"seed={seed}"], tmp_path / name)
        train(cfg)
        runs[name] = [(r["mask_id"], r["as"], r["abd_px"]) for r in read_rows(tmp_path / name)]
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_seed_zero_is_a_seed_and_strings_are_refused(tmp_path: Path,
                                                     tiny_overrides: list[str]) -> None:
    cfg = compose_config("train", tiny_overrides + ["seed=0"], tmp_path / "zero")
    assert train(cfg)["seed"] == 0
    bad = compose_config("train", tiny_overrides + ["seed=0..9"], tmp_path / "bad")
    with pytest.raises(InputError, match="'seed' must be an int"):
        train(bad)
    assert not (tmp_path / "bad").exists()


def test_results_are_never_overwritten(tmp_path: Path, tiny_overrides: list[str]) -> None:
    train(compose_config("train", tiny_overrides, tmp_path))
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        train(compose_config("train", tiny_overrides + ["seed=5"], tmp_path))
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_bad_mask_folder_stops_before_any_result(tmp_path: Path, tiny_overrides: list[str]) -> None:
    missing = tmp_path / "no-such-folder"
    overrides = [o for o in tiny_overrides if not o.startswith("dataset.masks")]
    cfg = compose_config("train", overrides + [
        "dataset=fluo_masks", f"dataset.masks.path={missing}"], tmp_path / "run")
    with pytest.raises(InputError, match="no-such-folder"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_wandb_logger_runs_offline(tmp_path: Path, tiny_overrides: list[str]) -> None:
    overrides = [o for o in tiny_overrides if not o.startswith("logger=")] + ["logger=wandb"]
    train(compose_config("train", overrides, tmp_path))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    assert list(runs[0].glob("run-*.wandb")), "the offline run has no .wandb data file"
    assert (tmp_path / "csv" / "metrics.csv").is_file()  # the local log is kept too
