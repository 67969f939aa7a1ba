"""Failed jobs leave a record (failed.json) and a multirun reports them at its end."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mitoseg.runs.files import next_free_path, write_new_json

log = logging.getLogger("mitoseg")


def failure_record_path(run_dir: Path) -> Path:
    """failed.json, or failed-2.json, failed-3.json ... when earlier attempts failed too."""
    return next_free_path(run_dir / "failed.json")


def record_failure(run_dir: str | Path, error: BaseException) -> Path | None:
    """Write what went wrong into the run folder; None when it holds a finished run."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists():
        return None  # e.g. 'refusing to overwrite': the folder is someone else's result
    record = {
        "error": f"{type(error).__name__}: {error}",
        "type": type(error).__name__,
        "traceback": "".join(traceback.format_exception(error)),
        "time": dt.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        return write_new_json(failure_record_path(run_dir), record)
    except Exception:  # the record is a courtesy: never let it hide the original error
        log.exception("could not write the failure record into %s", run_dir)
        return None


def sweep_outcome(sweep_dir: Path) -> dict[str, list[Path]]:
    """The job folders of a multirun, by outcome: finished, failed, unfinished."""
    outcome: dict[str, list[Path]] = {"finished": [], "failed": [], "unfinished": []}
    for job in sorted(p.parent for p in Path(sweep_dir).glob("*/.hydra")):
        if (job / "metrics.json").exists():
            outcome["finished"].append(job)
        elif any(job.glob("failed*.json")):
            outcome["failed"].append(job)
        else:
            outcome["unfinished"].append(job)
    return outcome


class MultirunFailureSummary(Callback):
    """At the end of a multirun, list the jobs that failed; exit with status 1 if any did.

    Every job runs whatever the others do (``run_guarded`` keeps a crash inside its job);
    this makes the crash visible at the end, where a script or a person looks.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        outcome = sweep_outcome(sweep_dir)
        total = sum(len(jobs) for jobs in outcome.values())
        if not outcome["failed"] and not outcome["unfinished"]:
            log.info("multirun: all %d jobs finished (%s)", total, sweep_dir)
            return
        lines = [f"multirun: {len(outcome['failed'])} of {total} jobs failed, "
                 f"{len(outcome['unfinished'])} unfinished ({sweep_dir}):"]
        for job in outcome["failed"]:
            records = sorted(job.glob("failed*.json"), key=lambda p: p.stat().st_mtime)
            lines.append(f"  failed: {job.name}  (see {records[-1].name})")
        lines += [f"  unfinished: {job.name}" for job in outcome["unfinished"]]
        message = "\n".join(lines)
        log.error(message)
        if outcome["failed"]:
            raise SystemExit(1)
