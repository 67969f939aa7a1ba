"""When a run folder may be continued, and when it must be refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mitoseg.errors import InputError
from mitoseg.runs.resume import LAST_CHECKPOINT, plan_resume

CONFIG = {"seed": 0, "optimizer": {"lr": 0.01}, "paths": {"output_dir": "/a"}, "resume": "auto"}


def started(folder: Path, checkpoint: bool = True, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run_info.json").write_text("{}")
    (folder / "config.yaml").write_text(yaml.safe_dump(config or CONFIG))
    if checkpoint:
        (folder / LAST_CHECKPOINT).parent.mkdir(exist_ok=True)
        (folder / LAST_CHECKPOINT).write_bytes(b"x")
    return folder


def test_a_new_folder_starts_fresh(tmp_path: Path) -> None:
    plan = plan_resume(tmp_path / "new", CONFIG, "auto")
    assert not plan.resuming and plan.checkpoint is None


def test_an_interrupted_run_continues_from_its_last_checkpoint(tmp_path: Path) -> None:
    folder = started(tmp_path / "run")
    plan = plan_resume(folder, CONFIG, "auto")
    assert plan.resuming and plan.checkpoint == folder / LAST_CHECKPOINT and plan.attempt == 1
    (folder / "resume-1.json").write_text("{}")
    assert plan_resume(folder, CONFIG, "auto").attempt == 2


def test_killed_before_the_first_checkpoint_restarts_in_place(tmp_path: Path) -> None:
    plan = plan_resume(started(tmp_path / "run", checkpoint=False), CONFIG, "auto")
    assert plan.resuming and plan.checkpoint is None


def test_a_finished_run_is_never_touched(tmp_path: Path) -> None:
    folder = started(tmp_path / "run")
    (folder / "metrics.json").write_text("{}")
    for mode in ("auto", str(folder)):
        with pytest.raises(FileExistsError, match="finished run"):
            plan_resume(folder, CONFIG, mode)


def test_never_refuses_an_interrupted_run(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="interrupted run"):
        plan_resume(started(tmp_path / "run"), CONFIG, "never")


def test_resume_path_must_be_this_run_and_hold_a_run(tmp_path: Path) -> None:
    folder = started(tmp_path / "run")
    assert plan_resume(folder, CONFIG, str(folder)).resuming
    with pytest.raises(InputError, match="this run writes to"):
        plan_resume(folder, CONFIG, str(tmp_path / "other"))
    with pytest.raises(InputError, match="nothing to resume"):
        plan_resume(tmp_path / "empty", CONFIG, str(tmp_path / "empty"))


def test_another_configuration_is_refused_with_the_differences(tmp_path: Path) -> None:
    folder = started(tmp_path / "run")
    changed = CONFIG | {"optimizer": {"lr": 0.02}}
    with pytest.raises(InputError, match=r"optimizer.lr: 0.01 -> 0.02"):
        plan_resume(folder, changed, "auto")
    # where results go and how they are logged do not change the result
    moved = CONFIG | {"paths": {"output_dir": "/b"}, "resume": str(folder), "logger": {}}
    assert plan_resume(folder, moved, str(folder)).resuming
