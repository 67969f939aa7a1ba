"""Shared behaviour of the command-line entry points."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mitoseg.console import on_stderr
from mitoseg.errors import InputError
from mitoseg.runs.failures import record_failure
from mitoseg.runs.lock import RunFolderBusy

log = logging.getLogger("mitoseg")
T = TypeVar("T")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_guarded(function: Callable[[DictConfig], T], cfg: DictConfig) -> T | None:
    """Run an entry point's job so that a failure stays inside it.

    - Bad input (``InputError``, refusing to overwrite) ends the job with one clear line.
    - In a multirun, *any* exception (bad input, a crash, running out of memory) is logged
      with its traceback and recorded in the job's ``failed.json``; the sweep goes on with
      the next job and reports the failures at its end (``MultirunFailureSummary``).
    - In a single run, bad input exits with status 2 and no traceback; any other exception
      is recorded in ``failed.json`` and raised (a traceback: it is a bug or a crash).
    - A run folder another live process trains in (``RunFolderBusy``) gets nothing written:
      one line (``mitoseg: not run:``), status 2 in a single run; so does a run whose lock
      another process took over (``RunLockLost``: ``mitoseg: stopped:``).
    """
    try:
        return function(cfg)
    except RunFolderBusy as error:
        # the folder is another live process's run: nothing goes into it (no failed.json;
        # not the 'mitoseg: error:' line, which report.py would read in that run's log)
        with on_stderr(log):
            log.error("mitoseg: %s: %s", error.label, error)
        if in_multirun():
            return None  # the sweep's summary lists the job as unfinished
        sys.exit(2)
    except Exception as error:
        bad_input = isinstance(error, (InputError, FileExistsError))
        output_dir = (cfg.get("paths") or {}).get("output_dir")
        if in_multirun():
            if bad_input:
                log.error("mitoseg: error: %s", error)
            else:
                log.exception("mitoseg: job failed: %s: %s", type(error).__name__, error)
            if output_dir:
                record_failure(output_dir, error)
            return None
        if bad_input:
            with on_stderr(log):  # the user's terminal, besides the run's log
                log.error("mitoseg: error: %s", error)
            sys.exit(2)
        if output_dir:
            record_failure(output_dir, error)
        raise
