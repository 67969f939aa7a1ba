"""study.py end to end on the smoke preset, and the study plan."""

from __future__ import annotations

import csv
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from mitoseg.study.plan import FAMILIES, MIXTURES, condition_params, training_conditions
from mitoseg.synth.fluorescence import FluorescenceParams
from tests.conftest import REPO, compose_config, python_command


def test_every_condition_is_a_config_with_valid_image_parameters() -> None:
    names = [name for levels in FAMILIES.values() for _, name in levels] + list(MIXTURES)
    for name in names:
        cfg = compose_config("train", [f"condition={name}"])
        FluorescenceParams(**cfg.dataset.condition)
        for condition in cfg.dataset.train_conditions or []:
            FluorescenceParams(**condition)
    assert condition_params("svb3_corr") == {"snr": 4.0, "blur": "variant",
                                             "blur_max_sigma": 3.0, "smooth_inside_sigma": 1.0}
    assert condition_params("sib2")["blur_sigma"] == 2.0


def test_training_conditions_cover_every_part_once() -> None:
    assert training_conditions(["snr", "sib"], ["mix_snr"], True) == [
        "snr8", "snr4", "snr1", "sib2", "sib3", "sib4", "mix_snr"]
    assert training_conditions(["svb"], [], True)[-1] == "snr4"  # sensitivity needs SNR 4


def test_study_refuses_an_unknown_empty_abd_convention() -> None:
    from mitoseg.errors import InputError
    from mitoseg.study.run import _check

    _check(compose_config("study", ["empty_abd=exclude"]))
    with pytest.raises(InputError, match="'empty_abd' must be one of \\['diagonal', 'exclude'\\].*'zero'"):
        _check(compose_config("study", ["empty_abd=zero"]))


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "offline"}
    done = subprocess.run(python_command("study.py", "study_preset=smoke", f"paths.output_root={root}"),
                          cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (study,) = (root / "studies" / "paper000").iterdir()
    return study


def test_smoke_study_has_every_part_on_paired_images(smoke_study: Path) -> None:
    rows = read_rows(smoke_study / "report" / "per_image.csv")
    parts = Counter(r["part"] for r in rows)
    assert set(parts) == {"robustness", "cross", "mixture", "sensitivity"}
    robustness = [r for r in rows if r["part"] == "robustness"]
    methods = {r["method"] for r in robustness}
    assert methods == {"unet", "fcn", "aam", "otsu"}
    for family in ("snr", "sib"):
        for level in {r["level"] for r in robustness if r["family"] == family}:
            images = {m: sorted(r["image"] for r in robustness if r["family"] == family
                                and r["level"] == level and r["method"] == m) for m in methods}
            assert len({tuple(v) for v in images.values()}) == 1  # every method, same images
            assert len(images["aam"]) == 6
    cross = {(r["train_level"], r["level"]) for r in rows if r["part"] == "cross"}
    assert len(cross) == 9  # trained at SNR 8/4/1 x tested at 8/4/1
    sensitivity = [r for r in rows if r["part"] == "sensitivity"]
    assert {r["level"] for r in sensitivity} == {"-1.0", "2.0"}
    assert all(0.0 <= float(r["das"]) <= 1.0 for r in sensitivity)
    for r in rows:
        assert 0.0 <= float(r["as"]) <= 1.0 and float(r["abd_px"]) >= 0.0
        assert r["unit"].startswith("group-") and r["pred_empty"] in ("0", "1")
        assert r["empty_abd"] == "diagonal"
    # procedural masks: each test image is its own unit, the same for every method
    units = {(r["image"], r["unit"]) for r in rows}
    assert len(units) == len({r["image"] for r in rows}) == len({r["unit"] for r in rows})


def test_smoke_study_writes_report_tables_and_figures(smoke_study: Path) -> None:
    report = smoke_study / "report"
    text = (report / "report.md").read_text()
    assert "0.0112" in text and "0.3987" in text  # published figures next to the measured ones
    assert "(n=6 images, 6 units)" in text and "## Empty predictions" in text
    mixture = text.split("| mixture training images per condition |")[1].split("\n")[0]
    for model in ("unet_paper000", "fcn_paper000"):  # 24 masks x 1 repeat: 8 images per SNR
        assert f"mix_snr {model} seed 0: snr 1: 8, 4: 8, 8: 8" in mixture
    assert (report / "empty_predictions.csv").is_file()
    for name in ("robustness.csv", "sensitivity.csv", "cross_condition.csv", "mixture.csv"):
        assert (report / name).is_file(), name
    assert list(report.glob("*.png")) and list(report.glob("*.svg"))
    assert list(report.glob("example_snr4*.png"))


def test_reanalysis_gives_the_same_numbers_in_a_new_folder(smoke_study: Path) -> None:
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(python_command("study.py", "study_preset=smoke",
                                         f"analyze_only={smoke_study}"),
                          cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    first = read_rows(smoke_study / "report" / "per_image.csv")
    second = read_rows(smoke_study / "report-2" / "per_image.csv")
    assert first == second


def test_report_tables_and_figures_go_to_wandb_offline(tmp_path: Path, monkeypatch) -> None:
    import time

    from omegaconf import OmegaConf

    from mitoseg.reporting.wandb_offline import read_offline_run
    from mitoseg.study.run import _log_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "robustness.csv").write_text("family,method,slope\nsnr,unet,0.02\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.plot([0, 1]); plt.savefig(tmp_path / "figure2.png"); plt.close()
    _log_to_wandb(OmegaConf.create({"name": "t", "families": ["snr"]}), tmp_path)
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    for _ in range(50):  # the W&B service may finish writing just after finish() returns
        run = read_offline_run(log)
        if run.exit_code is not None:
            break
        time.sleep(0.2)
    assert run.exit_code == 0 and run.group == "study/t"
    assert any(key.startswith("table/robustness") for key in run.summary)
    assert any(key.startswith("figure/figure2") for key in run.summary)
