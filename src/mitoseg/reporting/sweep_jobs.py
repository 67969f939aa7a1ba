"""Jobs a sweep asked for that left no folder: a SLURM job cancelled while it waited, a launcher
that died. Each started job writes its folder (``<job number>_<overrides>``), so such a job is
otherwise invisible and its configuration's n is simply smaller. Hydra's ``multirun.yaml`` at
the sweep's root holds the sweep's overrides; expanded as Hydra's basic sweeper expands them
(same order, so job i is the i-th list), they name every job and its number.
"""

from __future__ import annotations

from pathlib import Path

import yaml

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def expected_jobs(sweep: Path) -> list[list[str]] | None:
    """The override list of every job of the sweep folder ``sweep``, by job number; None when
    that cannot be known: no readable multirun.yaml, another sweeper than Hydra's basic one
    (Optuna decides its jobs as it goes), or a sweep the parser cannot expand alone (a glob
    over a config group needs the config loader)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        config = yaml.safe_load((sweep / "multirun.yaml").read_text())
        hydra = config["hydra"]
        sweeper = hydra.get("sweeper") or {}
        if sweeper.get("_target_") != BASIC_SWEEPER:
            return None
        params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
        arguments = params + [str(o) for o in hydra["overrides"]["task"]]
        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, sweeper.get("max_batch_size"))
    except Exception:  # noqa: BLE001 - any unreadable or unexpandable record: unknown
        return None
    return [list(job) for batch in batches for job in batch]


def job_number(folder: Path) -> int | None:
    """The job number a sweep's job folder starts with (``3_seed-3+...`` -> 3)."""
    head = folder.name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def missing_jobs(sweep: Path, found: list[Path]) -> list[tuple[int, list[str]]]:
    """(job number, overrides) of each job of ``sweep`` whose folder is not among ``found``
    (the job folders of this sweep that exist); [] when the jobs cannot be known."""
    jobs = expected_jobs(sweep)
    if jobs is None:
        return []
    started = {job_number(folder) for folder in found}
    return [(number, job) for number, job in enumerate(jobs) if number not in started]
