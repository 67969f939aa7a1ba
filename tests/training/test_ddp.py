"""trainer=ddp: two CPU processes on the gloo backend train one run; rank 0 writes it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, TINY, python_command


def test_ddp_with_two_cpu_processes_on_gloo(tmp_path: Path) -> None:
    overrides = [o for o in TINY if not o.startswith(("trainer=", "trainer.max_epochs"))]
    overrides += ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                  "trainer.precision=32-true", "trainer.max_epochs=2",
                  "trainer.strategy.process_group_backend=gloo", "logger=csv"]
    run_dir = tmp_path / "run"
    env = os.environ | {"WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(python_command("train.py", *overrides, f"hydra.run.dir={run_dir}"),
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "distributed_backend=gloo" in output and "MEMBER: 2/2" in output, output[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test"]["as"]["n"] == 4  # tested once, whole set
    assert len(list(run_dir.glob("run_info.json"))) == 1
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert not (run_dir / "failed.json").exists()
