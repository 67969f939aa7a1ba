"""Continue an interrupted run in its own folder, from its last checkpoint.

A run folder is *new* (nothing of a run in it), *finished* (metrics.json) or *interrupted*
(started -- run_info.json or a checkpoint -- but no metrics.json: killed, preempted or
crashed). ``resume`` decides what an interrupted folder means:

- ``auto`` (default): continue it. This is what a requeued cluster job needs: it lands in
  its old folder and picks up from ``checkpoints/last.ckpt``.
- ``never``: refuse, as for a finished run.
- a run folder's path: run in that folder (the config's ``hydra.run.dir`` points there) and
  continue it; the folder must hold an interrupted run.

The configuration must be the one the run started with (its ``config.yaml``) except for the
keys that cannot change a result (``mitoseg.runs.identity.RESULT_NEUTRAL_KEYS``; the seed
is not one of them); otherwise the run stops and lists the differences. A finished run is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mitoseg.errors import InputError
from mitoseg.runs.identity import ROUNDING_KEYS, flatten_config, is_result_neutral, under

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class ResumePlan:
    """What to do in a run folder: start fresh, or continue (from ``checkpoint`` if any)."""

    resuming: bool
    checkpoint: Path | None = None
    attempt: int = 0  # 1 for the first resumption, 2 for the second, ...


def resume_target(resume: Any) -> str | None:
    """``resume`` -> the run folder it names, or None for ``auto``/``never``/null."""
    if resume is None or str(resume) in RESUME_MODES:
        return None
    return str(resume)


def plan_resume(run_dir: Path, config: Mapping[str, Any], resume: Any) -> ResumePlan:
    """Decide between a fresh start and a resumption in ``run_dir``; refuse what is unsafe.

    ``config`` is the resolved config of this attempt (plain containers).
    """
    run_dir = Path(run_dir)
    target = resume_target(resume)
    if target is not None and Path(target).resolve() != run_dir.resolve():
        raise InputError(f"resume='{target}' but this run writes to '{run_dir}'; pass the run "
                         "folder as resume=<folder> in a single run (not a multirun)")
    if (run_dir / "metrics.json").exists():
        raise FileExistsError(f"run folder '{run_dir}' holds a finished run (metrics.json); "
                              "refusing to overwrite it -- choose another paths.output_dir")
    started = (run_dir / "run_info.json").exists() or (run_dir / LAST_CHECKPOINT).exists()
    if not started:
        if target is not None:
            raise InputError(f"resume='{target}': nothing to resume there (no run_info.json "
                             f"and no {LAST_CHECKPOINT})")
        return ResumePlan(resuming=False)
    if str(resume) == "never":
        raise FileExistsError(f"run folder '{run_dir}' holds an interrupted run (no "
                              "metrics.json); continue it with resume=auto or choose another "
                              "paths.output_dir")
    check_same_config(run_dir / "config.yaml", config)
    checkpoint = run_dir / LAST_CHECKPOINT
    attempt = 1 + len(list(run_dir.glob("resume-*.json")))
    return ResumePlan(True, checkpoint if checkpoint.exists() else None, attempt)


def check_same_config(stored_path: Path, config: Mapping[str, Any]) -> None:
    """Refuse to continue a run under another configuration than the one it started with."""
    if not stored_path.is_file():
        raise InputError(f"cannot resume: '{stored_path}' is missing, so the run's original "
                         "configuration is unknown")
    try:
        stored = yaml.safe_load(stored_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot resume: '{stored_path}' is unreadable ({error})") from None
    before, after = flatten_config(stored), flatten_config(config)
    changed = _differences(before, after, lambda key: not is_result_neutral(key))
    if changed:
        shown = "; ".join(changed[:8]) + (f"; ... ({len(changed)} in all)" if len(changed) > 8 else "")
        raise InputError(f"cannot resume '{stored_path.parent}': the configuration differs "
                         f"from the one the run started with ({shown}); give the same "
                         "overrides as the original command")
    rounding = _differences(before, after, lambda key: under(key, ROUNDING_KEYS))
    if rounding:
        log.warning("resuming '%s' with %s: these change how the network runs, so the result "
                    "equals an uninterrupted run's only to floating-point rounding, not bit for "
                    "bit", stored_path.parent, "; ".join(rounding))


def _differences(before: Mapping[str, Any], after: Mapping[str, Any],
                 wanted: Callable[[str], bool]) -> list[str]:
    """"key: old -> new" for each flattened key of ``wanted`` whose value differs."""
    return [f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
            for key in sorted(set(before) | set(after))
            if wanted(key) and before.get(key, "<absent>") != after.get(key, "<absent>")]
