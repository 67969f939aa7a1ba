"""Finding run folders and reading them: identity without the seed, status, metric lookup."""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mitoseg.errors import InputError
from mitoseg.reporting import write_report
from mitoseg.runs.lock import machine_identity
from mitoseg.reporting.collect import (collect_runs, find_run_folders, metric_values,
                                       protocol_label, read_run)
from tests.reporting.conftest import AS, FCN_ERROR, SHARED, make_run

PROTOCOL_ROWS = [
    {"protocol": "full_image", "tta": "False", "zfilter": 0, "iou_fg": 0.88, "dice": 0.93},
    {"protocol": "full_image", "tta": "True", "zfilter": 5, "iou_fg": 0.89, "dice": 0.94},
]


def test_runs_group_by_configuration_without_the_seed(study: Path) -> None:
    runs = collect_runs([study]).runs
    assert len(runs) == 11
    by_config = Counter((r.config, r.status) for r in runs)
    shared = " ".join(SHARED)
    assert by_config == {
        (f"model=fcn_paper000 {shared}", "finished"): 3,
        (f"model=fcn_paper000 {shared}", "failed"): 1,
        (f"model=unet_paper000 {shared}", "finished"): 3,
        (f"model=unet_paper000 {shared}", "unfinished"): 1,
        (f"model=unet_paper000 optimizer=adam {shared}", "finished"): 3}
    assert sorted(r.seed for r in runs if r.model == "fcn_paper000") == [0, 1, 2, 3]
    failed = next(r for r in runs if r.status == "failed")
    assert failed.error == FCN_ERROR and failed.seed == 3
    unfinished = next(r for r in runs if r.status == "unfinished")
    assert "no metrics.json" in unfinished.error


def test_model_name_from_hydra_choices_override_or_class(tmp_path: Path) -> None:
    chosen = make_run(tmp_path / "a", [], 0, choices={"model": "unet_paper000",
                                                       "dataset": "fluo_procedural"})
    overridden = make_run(tmp_path / "b", ["model=fcn_paper000"], 0, model="fcn_paper000")
    bare = make_run(tmp_path / "c", [], 0, model="fcn_paper000")
    assert (read_run(chosen).model, read_run(chosen).dataset) == ("unet_paper000",
                                                                 "fluo_procedural")
    assert read_run(overridden).model == "fcn_paper000"
    assert read_run(bare).model == "FCNPaper000"  # the config's _target_ class
    assert read_run(bare).dataset == "FluorescenceDataModule"
    assert read_run(bare).config == "(defaults)"


def test_folders_are_found_once_and_other_jobs_are_skipped(study: Path, tmp_path: Path) -> None:
    sweep = next((study / "multirun" / "default").iterdir())
    run = next(sweep.iterdir())
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "run_info.json").write_text("{}")  # inside a run: not searched
    assert len(find_run_folders([study, sweep, run])) == 11
    evaluation = tmp_path / "outputs" / "evaluations" / "2026-01-02_00-00-00"
    evaluation.mkdir(parents=True)
    (evaluation / "run_info.json").write_text("{}")
    (evaluation / "summary.json").write_text("{}")
    collection = collect_runs([study])
    assert len(collection.runs) == 11
    assert [f for f, _ in collection.skipped] == [evaluation.resolve()]


def test_bad_roots_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'.*nowhere' is not a folder"):
        collect_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no run folders .* under .*empty"):
        collect_runs([tmp_path / "empty"])


def test_a_job_stopped_on_bad_input_is_failed_with_its_logged_error(tmp_path: Path) -> None:
    log = "[INFO] start\n[ERROR] - mitoseg: error: mask folder not found: /data/x\n"
    run = read_run(make_run(tmp_path / "r", ["model=fcn_paper000"], 1, model="fcn_paper000",
                            log=log))
    assert run.status == "failed" and run.error == "mask folder not found: /data/x"


def test_unreadable_metrics_make_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "r", [], 0)
    (folder / "metrics.json").write_text("{not json")
    run = read_run(folder)
    assert run.status == "failed" and "metrics.json unreadable" in run.error


def test_metric_lookup(tmp_path: Path) -> None:
    run = read_run(make_run(tmp_path / "r", [], 0, metrics={"as": 0.9, "abd_px": 1.5}))
    assert metric_values(run, "test/as") == [("-", 0.9)]
    assert metric_values(run, "test/abd_px") == [("-", 1.5)]
    assert metric_values(run, "final/val/loss") == [("-", 0.3)]
    assert metric_values(run, "test/iou_fg") == [] and metric_values(run, "iou_fg") == []
    em = read_run(make_run(tmp_path / "em", [], 0, metrics={"iou_fg": 0.88},
                           protocols=PROTOCOL_ROWS))
    assert metric_values(em, "iou_fg") == [("full_image", 0.88), ("full_image +TTA +Z5", 0.89)]
    assert metric_values(em, "dice")[1] == ("full_image +TTA +Z5", 0.94)
    assert protocol_label({"protocol": "overlap", "tta": True, "zfilter": 0}) == "overlap +TTA"


def test_study_values_are_read_back(study: Path) -> None:
    runs = [r for r in collect_runs([study]).runs if r.status == "finished"]
    got = sorted(metric_values(r, "test/as")[0][1] for r in runs)
    assert got == sorted(v for _, values in AS.values() for v in values)
    assert all(not math.isnan(v) for v in got)


def test_symlinked_run_folders_and_sweeps_are_followed_once(tmp_path: Path) -> None:
    """Runs gathered by `ln -s` (one seed linked in, a whole sweep linked in) are read, each
    resolved folder once, and a link back up the tree does not loop."""
    gathered, store = tmp_path / "gathered", tmp_path / "scratch"
    for seed in range(3):
        make_run(gathered / f"a{seed}", ["model=unet_paper000"], seed, metrics={"as": 0.9})
        make_run(store / f"b{seed}", ["model=fcn_paper000"], seed, model="fcn_paper000",
                 metrics={"as": 0.8})
    (gathered / "b0").symlink_to(store / "b0")  # one seed linked in
    (gathered / "fcn_sweep").symlink_to(store)  # the whole sweep linked in (b0 again)
    (store / "loop").symlink_to(tmp_path)  # a link to an ancestor: no endless walk
    folders = find_run_folders([gathered])
    assert folders == sorted([(gathered / f"a{s}").resolve() for s in range(3)]
                             + [(store / f"b{s}").resolve() for s in range(3)])


def test_a_study_folder_is_searched_for_its_training_runs(tmp_path: Path) -> None:
    """study.py's folder has run_info.json and .hydra (a 'study' job) and its training
    multirun under train/: the study folder is skipped, its runs are read."""
    study = tmp_path / "study_x"
    (study / ".hydra").mkdir(parents=True)
    (study / "run_info.json").write_text(json.dumps({"command": "study.py", "seed": 0}))
    (study / ".hydra" / "config.yaml").write_text("name: x\n")
    (study / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"job": {"name": "study"}}}))
    for seed in range(3):
        make_run(study / "train" / f"{seed}_model-unet", ["model=unet_paper000"], seed,
                 metrics={"as": 0.9})
    for root in (study, tmp_path):
        collection = collect_runs([root])
        assert len(collection.runs) == 3, root
        assert [f for f, _ in collection.skipped] == [study.resolve()]


def test_a_report_without_any_training_run_is_refused(tmp_path: Path) -> None:
    evaluation = tmp_path / "evaluations" / "2026-01-02_00-00-00"
    evaluation.mkdir(parents=True)
    (evaluation / "run_info.json").write_text("{}")
    (evaluation / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="no training run .*1 folder.* skipped.*2026-01-02"):
        write_report([tmp_path], tmp_path / "out", ["test/as"])
    assert not (tmp_path / "out").exists()


def test_a_failure_before_the_latest_resumption_is_history(tmp_path: Path) -> None:
    """failed.json, then resume-1.json: the failure is an earlier attempt's. With a live
    run.lock the run is running; without one, unfinished; a failure after the resumption is
    the run's status again."""
    folder = make_run(tmp_path / "r", [], 2, failed=FCN_ERROR)
    (folder / "resume-1.json").write_text(json.dumps({"seed": 2}))
    os.utime(folder / "failed.json", (1e9, 1e9))  # before the resumption
    lock = {"token": "t", **machine_identity(), "pid": os.getpid(), "heartbeat": time.time()}
    (folder / "run.lock").write_text(json.dumps(lock))
    run = read_run(folder)
    assert run.status == "running" and FCN_ERROR not in run.error
    (folder / "run.lock").unlink()
    assert read_run(folder).status == "unfinished"
    (folder / "failed-2.json").write_text(json.dumps({"error": "again", "seed": 2}))
    assert (read_run(folder).status, read_run(folder).error) == ("failed", "again")
