"""Shared behaviour of the command-line entry points."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from mitoseg.errors import InputError

log = logging.getLogger("mitoseg")
T = TypeVar("T")


def run_guarded(function: Callable[..., T], *args: Any) -> T | None:
    """Run an entry point's job; bad input ends it with one clear line, not a traceback.

    In a single run the process exits with status 2. In a multirun the job is reported as
    failed and the sweep goes on with the next job.
    """
    try:
        return function(*args)
    except (InputError, FileExistsError) as error:
        log.error("mitoseg: error: %s", error)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if not multirun:
            print(f"mitoseg: error: {error}", file=sys.stderr)
            sys.exit(2)
        return None
