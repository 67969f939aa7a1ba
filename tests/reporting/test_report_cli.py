"""``python report.py`` as a user runs it, on fake runs and (slow) on a real tiny multirun."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY, python_command
from tests.reporting.conftest import AS, FCN_ERROR


def run(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = os.environ | {"HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline", "MPLBACKEND": "Agg"}
    return subprocess.run(python_command(script, *args), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_cli_writes_the_report_and_refuses_to_overwrite(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "seeds"
    args = [str(study), "--metric", "test/as", "--metric", "test/abd_px", "--baseline",
            "model=unet_paper000", "--test", "mannwhitney", "--unstable-std", "0.01",
            "--unstable-std-for", "test/abd_px=0.2", "--out", str(out)]
    done = run("report.py", *args)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["boxplot_test-abd_px.png", "boxplot_test-as.png", "report.md", "runs.csv",
                     "summary.csv"]
    text = (out / "report.md").read_text()
    assert "Mann-Whitney U" in text and FCN_ERROR in text and "unfinished" in text
    assert "test/abd_px: std > 0.2" in text
    with open(out / "summary.csv") as stream:
        rows = {(r["metric"], r["configuration"]): r for r in csv.DictReader(stream)}
    assert rows[("test/as", "model=fcn_paper000")]["unstable"] == "True"
    assert rows[("test/abd_px", "model=fcn_paper000")]["unstable"] == "True"  # std 0.25
    assert rows[("test/abd_px", "model=unet_paper000")]["unstable"] == "False"  # std 0.1
    assert float(rows[("test/as", "model=unet_paper000 optimizer=adam")]["mean"]) == \
        pytest.approx(sum(AS["model=unet_paper000 optimizer=adam"][1]) / 3)

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run("report.py", *args)
    assert again.returncode == 2
    assert "mitoseg: error:" in again.stderr and "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_names_bad_options_in_one_line(study: Path, tmp_path: Path) -> None:
    done = run("report.py", str(study), "--metric", "test/as", "--baseline", "model=mnet",
               "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "'--baseline'" in done.stderr and "model=mnet" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
    done = run("report.py", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "nowhere' is not a folder" in done.stderr
    done = run("report.py", str(study), "--unstable-std-for", "test/as", "--out",
               str(tmp_path / "r"))
    assert done.returncode == 2 and "METRIC=STD" in done.stderr


@pytest.mark.slow
def test_report_on_a_real_tiny_multirun(tmp_path: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("dataset.")]  # short folder names
    tiny += ["dataset.masks.count=24", "dataset.split={val:4,test:4}"]
    done = run("train.py", "-m", "seed=0,1", "model=unet_paper000,fcn_paper000", *tiny,
               f"paths.output_root={tmp_path}", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "report"
    done = run("report.py", str(tmp_path / "multirun"), "--metric", "test/as",
               "--baseline", "model=unet_paper000", "--out", str(out))
    assert done.returncode == 0, done.stderr
    with open(out / "runs.csv") as stream:
        runs = list(csv.DictReader(stream))
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    with open(out / "summary.csv") as stream:
        summary = {r["configuration"]: r for r in csv.DictReader(stream)}
    assert set(summary) == {"model=unet_paper000", "model=fcn_paper000"}
    for label, row in summary.items():
        values = [float(r["test/as"]) for r in runs if r["configuration"] == label]
        assert row["n"] == "2" and float(row["mean"]) == pytest.approx(sum(values) / 2)
        assert row["model"] == label.split("=")[1] and row["dataset"] == "fluo_procedural"
    assert summary["model=fcn_paper000"]["p_value"] != ""
    assert (out / "boxplot_test-as.png").read_bytes()[:4] == b"\x89PNG"
