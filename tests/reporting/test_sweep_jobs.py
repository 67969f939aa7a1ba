"""Jobs a sweep asked for that left no folder (cancelled while waiting, a launcher that died):
read from the sweep's multirun.yaml and counted as unfinished in their configuration. (The
end-to-end check on a real sweep is in tests/test_multirun.py.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from mitoseg.reporting import collect_runs, summarize_runs
from mitoseg.reporting.sweep_jobs import BASIC_SWEEPER, expected_jobs
from tests.reporting.conftest import make_run


def write_multirun(sweep: Path, task: list[str], params: dict | None = None,
                   sweeper: str = BASIC_SWEEPER) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    hydra = {"sweeper": {"_target_": sweeper, "max_batch_size": None, "params": params},
             "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": task}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra, "seed": 0}))


def test_jobs_are_the_basic_sweepers_product_in_its_order(tmp_path: Path) -> None:
    write_multirun(tmp_path, ["seed=range(0,3,1)", "model=unet_paper000,fcn_paper000", "x=1"],
                   params={"optimizer.lr": "0.1,0.01"})
    jobs = expected_jobs(tmp_path)
    assert len(jobs) == 12
    assert jobs[0] == ["optimizer.lr=0.1", "seed=0", "model=unet_paper000", "x=1"]
    assert jobs[1] == ["optimizer.lr=0.1", "seed=0", "model=fcn_paper000", "x=1"]
    assert jobs[-1] == ["optimizer.lr=0.01", "seed=2", "model=fcn_paper000", "x=1"]


def test_unknowable_jobs_are_none(tmp_path: Path) -> None:
    assert expected_jobs(tmp_path) is None  # no multirun.yaml
    write_multirun(tmp_path / "optuna", ["seed=0"], sweeper="hydra_plugins.hydra_optuna_"
                   "sweeper.optuna_sweeper.OptunaSweeper")
    assert expected_jobs(tmp_path / "optuna") is None  # decides its jobs as it goes
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "multirun.yaml").write_text("hydra: [")
    assert expected_jobs(tmp_path / "garbled") is None


def test_a_job_without_a_folder_counts_as_unfinished_in_its_configuration(
        tmp_path: Path) -> None:
    """Jobs 0-5: fcn and unet for seeds 0-2; fcn's seed 1 (job 2) and both of seed 2 (jobs 4
    and 5) never started. Seed 2's fcn joins the fcn row through its started twin; the unet
    row gets its own never-started job the same way."""
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=range(0,3,1)", "model=fcn_paper000,unet_paper000"])
    started = {0: ("fcn_paper000", 0, 0.80), 1: ("unet_paper000", 0, 0.90),
               3: ("unet_paper000", 1, 0.91)}
    for number, (model, seed, value) in started.items():
        make_run(sweep / f"{number}_seed-{seed}+model-{model}", [f"model={model}"], seed,
                 model=model, metrics={"as": value})
    report = summarize_runs(collect_runs([sweep]).runs, ["test/as"])
    rows = {row["model"]: row for row in report.rows}
    assert (rows["fcn_paper000"]["n"], rows["fcn_paper000"]["unfinished"]) == (1, 2)
    assert (rows["unet_paper000"]["n"], rows["unet_paper000"]["unfinished"]) == (2, 1)
    never = sorted((r.seed, r.model) for r in report.runs if r.error.startswith("never started"))
    assert never == [(1, "fcn_paper000"), (2, "fcn_paper000"), (2, "unet_paper000")]
