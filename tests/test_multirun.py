"""Multiruns as users launch them: the seed sweep with W&B groups, and crash isolation."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, TINY, python_command

# the exact command of the README, shrunk by overrides that only make it small and fast
SMALL_ATTENTION_UNET = ["model.filters=[4,8,16]", "model.dropout=0"]
SMALL = [o for o in TINY if not o.startswith(("model.", "logger="))]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = os.environ | {"WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(python_command(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)


def test_seed_sweep_logs_each_seed_to_wandb_offline_in_one_group(tmp_path: Path) -> None:
    done = run("train.py", "model=attention_unet", "-m", "seed=0..2", *SMALL,
               *SMALL_ATTENTION_UNET, f"paths.output_root={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "multirun").glob("*/*/*/metrics.json"))
    assert [json.loads((j / "metrics.json").read_text())["seed"] for j in jobs] == [0, 1, 2]
    groups = set()
    for job in jobs:
        assert (job / "wandb_id.txt").is_file()
        offline = list((job / "wandb").glob("offline-run-*"))
        assert len(offline) == 1, list((job / "wandb").iterdir())
        config = yaml_config(job)
        groups.add(config["group"])
    sweep = jobs[0].parent.name
    assert len(groups) == 1  # the three seeds of one configuration; the seed is not in it
    (group,) = groups
    assert group.startswith(f"default/{sweep}/") and "seed" not in group.split("~")[0]
    # report.py: one configuration of three seeds. Its config check once compared config.yaml,
    # where ${seed} and the run folder are resolved, and refused every seed sweep
    out = tmp_path / "report"
    done = run("report.py", str(jobs[0].parent), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["n"] for row in rows} == {"3"} and {row["configuration"] for row in rows} == \
        {rows[0]["configuration"]}
    assert {row["unfinished"] for row in rows} == {"0"}
    # a job that never started (a SLURM job cancelled while it waited) leaves no folder; the
    # sweep's multirun.yaml still names it, so the report counts it instead of a quiet n of 2
    shutil.rmtree(jobs[1])
    done = run("report.py", str(jobs[0].parent), "--out", str(tmp_path / "report_2"))
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "report_2" / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {(row["n"], row["unfinished"]) for row in rows} == {("2", "1")}
    report = (tmp_path / "report_2" / "report.md").read_text()
    assert "(1 of them a sweep job that never started)" in report
    (line,) = [line for line in report.splitlines() if "never started: job 1 of the sweep" in line]
    assert "seed=1 " in line


def yaml_config(job: Path) -> dict:
    """The group W&B was given, read back from our own record of the W&B run."""
    from mitoseg.reporting.wandb_offline import read_offline_run

    log = next((job / "wandb").glob("offline-run-*/run-*.wandb"))
    run = read_offline_run(log)
    assert run.exit_code == 0 and "mitoseg/metrics_json" in run.summary, run.problems
    return {"group": run.group}


def test_a_crashing_job_does_not_stop_the_others_and_the_report_lists_it(tmp_path: Path) -> None:
    # lr=-1 makes the optimizer raise inside Trainer.fit: a crash, not a config error
    done = run("train.py", "-m", "optimizer.lr=0.01,-1,0.02", *SMALL, "model.base_channels=4",
               "logger=csv", f"paths.output_root={tmp_path}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1 of 3 jobs failed" in done.stdout + done.stderr
    sweep = next((tmp_path / "multirun" / "default").iterdir())
    finished = sorted(p.parent.name[0] for p in sweep.glob("*/metrics.json"))
    assert finished == ["0", "2"]
    failure = json.loads(next(sweep.glob("1_*/failed.json")).read_text())
    assert failure["type"] == "ValueError" and "learning rate" in failure["error"]
    assert "Traceback" in failure["traceback"]

    out = tmp_path / "report"
    done = run("report.py", str(sweep), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "failed" in report and "learning rate" in report


def _test_metrics(root: Path) -> dict[int, dict]:
    jobs = sorted(p.parent for p in (root / "multirun").glob("*/*/*/metrics.json"))
    results = {}
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        results[metrics["seed"]] = metrics["test"]
    return results


def test_the_parallel_launcher_gives_the_results_of_jobs_run_in_turn(tmp_path: Path) -> None:
    """hydra/launcher=parallel (what trainer=gpu selects): jobs at once, same numbers."""
    common = ["-m", "seed=0..2", *SMALL, "model.base_channels=4", "logger=csv"]
    in_turn = run("train.py", *common, f"paths.output_root={tmp_path / 'turn'}")
    at_once = run("train.py", *common, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                  f"paths.output_root={tmp_path / 'parallel'}")
    assert in_turn.returncode == 0, in_turn.stderr[-3000:]
    assert at_once.returncode == 0, at_once.stderr[-3000:]
    assert "Joblib" in at_once.stdout + at_once.stderr  # the launcher did run the jobs
    expected = _test_metrics(tmp_path / "turn")
    assert sorted(expected) == [0, 1, 2]
    assert _test_metrics(tmp_path / "parallel") == expected


def test_a_crashing_job_under_the_parallel_launcher_is_listed_too(tmp_path: Path) -> None:
    done = run("train.py", "-m", "optimizer.lr=0.01,-1", *SMALL, "model.base_channels=4",
               "logger=csv", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
               f"paths.output_root={tmp_path}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "1 of 2 jobs failed" in done.stdout + done.stderr
