"""Result files name paths relative to the project root or the data root, never the machine's."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.runs.paths import display_argument, display_command, display_path
from tests.conftest import REPO, compose_config

ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(`|=])(/[\w.+-]+/[^\s'\"`|)]*)")


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A project (the working directory) and a data root beside it, as on a cluster."""
    project, data = tmp_path / "project", tmp_path / "disk" / "data"
    project.mkdir()
    data.mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MITOSEG_SHARED_DATA", str(data))
    return project, data


@pytest.mark.parametrize("where, shown", [
    ("project/outputs/runs/a/checkpoints/best.ckpt", "outputs/runs/a/checkpoints/best.ckpt"),
    ("project", "."),
    ("disk/data/lucchi/training.tif", "${paths.shared_data}/lucchi/training.tif"),
    ("disk/data", "${paths.shared_data}"),
])
def test_paths_inside_a_root_are_named_from_it(roots, tmp_path: Path, where: str,
                                               shown: str) -> None:
    assert display_path(tmp_path / where) == shown
    assert display_path(str(tmp_path / where)) == shown


def test_relative_paths_are_read_from_the_working_directory(roots) -> None:
    assert display_path("outputs/x/../y") == "outputs/y"
    assert display_path("../disk/data/fluo-masks") == "${paths.shared_data}/fluo-masks"
    assert display_path("../elsewhere/x") == "../elsewhere/x"  # as given: no root holds it


def test_paths_outside_both_roots_stay_absolute(roots, tmp_path: Path) -> None:
    assert display_path(tmp_path / "other" / "x.tif") == str(tmp_path / "other" / "x.tif")
    assert display_path("/") == "/"


def test_the_data_root_of_the_run_wins_over_the_default(roots, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    assert display_path(moved / "lucchi", data_root=moved) == "${paths.shared_data}/lucchi"
    assert display_path(moved / "lucchi", data_root=str(moved)) == "${paths.shared_data}/lucchi"


def test_the_deeper_root_names_a_data_root_inside_the_project(roots, tmp_path: Path) -> None:
    data = tmp_path / "project" / "data"
    assert display_path(data / "lucchi", data_root=data) == "${paths.shared_data}/lucchi"
    assert display_path(tmp_path / "project" / "outputs", data_root=data) == "outputs"


def test_a_symlinked_folder_in_the_project_stays_in_the_project(roots, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    os.symlink(scratch, tmp_path / "project" / "outputs")
    assert display_path(tmp_path / "project" / "outputs" / "run") == "outputs/run"
    assert display_path(scratch / "run") == str(scratch / "run")  # the real path: no root
    os.symlink(tmp_path / "project", tmp_path / "link")  # a project reached by a link
    assert display_path(tmp_path / "link" / "notes" / "a.md") == "notes/a.md"


def test_commands_name_the_script_and_path_values_from_the_roots(roots, tmp_path: Path) -> None:
    project = tmp_path / "project"
    assert display_argument(str(project / "train.py")) == "train.py"
    assert display_argument(f"ckpt_path={project}/outputs/a/best.ckpt") == \
        "ckpt_path=outputs/a/best.ckpt"
    assert display_argument(f"+dataset.masks.path={tmp_path}/disk/data/m") == \
        "+dataset.masks.path=${paths.shared_data}/m"
    for unchanged in ("seed=3", "-m", "model=unet_paper000", "dataset.split={val:2,test:2}",
                      "x=a=b", "paths.output_root=outputs"):
        assert display_argument(unchanged) == unchanged
    assert display_command([str(project / "train.py"), "-m", "seed=0,1"]) == [
        "train.py", "-m", "seed=0,1"]


def test_committed_reports_name_no_absolute_path() -> None:
    reports = [p for p in (REPO / "reports").rglob("*") if p.suffix in (".md", ".csv")]
    assert reports
    for report in reports:
        found = ABSOLUTE_PATH.findall(report.read_text())
        assert not found, f"{report.relative_to(REPO)} names {found}"


def write_masks(folder: Path, count: int = 24, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(1, count + 1):
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(8, size - 24, 2)
        mask[y:y + 14, x:x + 6] = 255
        tifffile.imwrite(folder / f"{index}.tif", mask)


def record_files(folder: Path) -> list[Path]:
    """What a run records for people: everything but the resolved config and the weights."""
    return [p for p in folder.rglob("*") if p.is_file() and p.name != "config.yaml"
            and p.suffix not in (".ckpt", ".tif")]


def test_a_run_evaluation_and_segmentation_name_no_path_of_the_machine(
        roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mitoseg.evaluation.evaluate import evaluate
    from mitoseg.evaluation.segment import segment
    from mitoseg.training.train import train

    project, data = roots
    write_masks(data / "fluo-masks")
    outputs = project / "outputs"
    monkeypatch.setattr(sys, "argv", [str(project / "train.py"), "dataset=fluo_masks",
                                      f"paths.output_root={outputs}"])
    train(compose_config("train", [
        "dataset=fluo_masks", "dataset.masks.polarity=auto", "dataset.split={val:6,test:6}",
        "dataset.batch_size=4", "dataset.eval_batch_size=6", "model.base_channels=4",
        "trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "logger=csv"], outputs / "run"))
    checkpoint = json.loads((outputs / "run" / "metrics.json").read_text())["checkpoint"]
    assert checkpoint == "outputs/run/checkpoints/best.ckpt" and Path(checkpoint).is_file()
    masks = json.loads((outputs / "run" / "data.json").read_text())["masks"]
    assert masks == "mask folder '${paths.shared_data}/fluo-masks'"

    evaluate(compose_config("evaluate", [f"ckpt_path={project / checkpoint}"], outputs / "eval"))
    image = data / "images" / "cell.tif"
    image.parent.mkdir()
    tifffile.imwrite(image, np.random.default_rng(1).normal(100, 5, (64, 64)).astype(np.float32))
    segment(compose_config("segment", [f"ckpt_path={project / checkpoint}", f"input={image}"],
                           outputs / "segmented"))
    record = json.loads((outputs / "segmented" / "segmentation.json").read_text())
    assert record["images"][0]["input"] == "${paths.shared_data}/images/cell.tif"

    machine = {str(tmp_path), os.path.realpath(tmp_path), "/work/"}
    files = record_files(outputs)
    assert {"run_info.json", "data.json", "metrics.json", "summary.json", "segmentation.json",
            "hparams.yaml"} <= {p.name for p in files}
    for path in files:
        text = path.read_text(errors="replace")
        assert not [m for m in machine if m in text], f"{path.relative_to(project)}: {text[:2000]}"


def write_lucchi(folder: Path) -> None:
    """A tiny volume in the official Lucchi file layout."""
    folder.mkdir()
    labels = np.zeros((12, 64, 64), np.uint8)
    labels[:, 20:36, 10:30] = 255
    noise = np.random.default_rng(0).normal(120, 10, labels.shape)
    tifffile.imwrite(folder / "training.tif",
                     (noise - (labels > 0) * 40).clip(0, 255).astype(np.uint8))
    tifffile.imwrite(folder / "training_groundtruth.tif", labels)


def test_em_volumes_are_described_from_the_data_root(roots) -> None:
    from mitoseg.data.em_sources import lucchi_volumes

    project, data = roots
    write_lucchi(data / "lucchi")
    for root in (data / "lucchi", "../disk/data/lucchi"):
        volumes = lucchi_volumes(str(root), holdout_slices=3, test_gap_slices=2,
                                 cache_dir=str(project / "cache"))
        assert volumes.description == ("Lucchi '${paths.shared_data}/lucchi' (slices 9-11 held "
                                       "out as test, 2 slices before them unused)")


@pytest.mark.slow
def test_an_em_run_names_its_volumes_from_the_data_root(roots, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mitoseg.training.train import train

    project, data = roots
    write_lucchi(data / "lucchi")
    outputs = project / "outputs"
    monkeypatch.setattr(sys, "argv", [str(project / "train.py"), "dataset=lucchi"])
    train(compose_config("train", [
        "dataset=lucchi", "dataset.volumes.holdout_slices=3", "dataset.volumes.test_gap_slices=2",
        "dataset.patch_size=[32,32]",
        "dataset.num_workers=0", "dataset.batch_size=4", "model=unet2d_paper002",
        "model.filters=[2,4,4,8,8]", "augmentation=none", "postproc=em_default",
        "inference=em_quick", "trainer=cpu", "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "logger=none", f"paths.output_root={outputs}"], outputs / "run"))
    description = json.loads((outputs / "run" / "data.json").read_text())["volumes"]
    assert description.startswith("Lucchi '${paths.shared_data}/lucchi' (slices 9-11 held out")
    machine = {str(tmp_path), os.path.realpath(tmp_path), "/work/"}
    for path in record_files(outputs / "run"):
        text = path.read_text(errors="replace")
        assert not [m for m in machine if m in text], f"{path.relative_to(project)}: {text[:2000]}"
