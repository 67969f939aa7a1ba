"""The study reads its training jobs with report.py's run reader (one reader of run folders)."""

from __future__ import annotations

import json
from pathlib import Path

from mitoseg.reporting.collect import read_run
from mitoseg.study.analysis import find_trained_runs
from tests.reporting.conftest import make_run


def test_trained_runs_are_the_finished_records_of_read_run(tmp_path: Path) -> None:
    train = tmp_path / "train"
    for number, (condition, model, seed) in enumerate([("snr4", "unet_paper000", 0),
                                                       ("snr1", "fcn_paper000", 1)]):
        folder = make_run(train / f"{number}_job", [f"condition={condition}", f"model={model}"],
                          seed, model=model, metrics={"as": 0.9},
                          choices={"condition": condition, "model": model})
        body = json.loads((folder / "metrics.json").read_text())
        body["checkpoint"] = f"outputs/elsewhere/{number}/checkpoints/epoch=3.ckpt"
        (folder / "metrics.json").write_text(json.dumps(body))
    failed = make_run(train / "2_job", ["condition=snr8"], 2, failed="first attempt",
                      choices={"condition": "snr8", "model": "unet_paper000"})
    (failed / "failed-2.json").write_text(json.dumps({"error": "second attempt"}))
    make_run(train / "3_job", ["condition=snr8"], 3, choices={"condition": "snr8"})

    runs, problems = find_trained_runs(train)
    assert [(r.condition, r.model, r.seed, r.method) for r in runs] == [
        ("snr4", "unet_paper000", 0, "unet"), ("snr1", "fcn_paper000", 1, "fcn")]
    assert runs[0].checkpoint == train / "0_job" / "checkpoints" / "epoch=3.ckpt"
    assert runs[1].config == read_run(train / "1_job").settings
    assert runs[1].config["optimized_metric"] == "test/as"
    assert [(p.name, why) for p, why in problems] == [
        ("2_job", "second attempt"),  # the latest failed attempt
        ("3_job", "no metrics.json (still running, killed, or crashed before the end)")]
