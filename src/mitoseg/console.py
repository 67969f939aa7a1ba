"""What a command shows on the terminal: logging for status and errors, ``emit`` for its result.

Library code logs through a module logger and never prints. Where the log goes is the command
line's business: the Hydra commands (train, evaluate, segment, study) use Hydra's job logging
(console and the run's log file); the argparse commands call ``console_logging()`` (stderr).
A command's *result* -- a table, JSON, file paths: what a user pipes into a file -- goes to
stdout through ``emit``, so status and result never mix.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a record comes (a redirected
    or captured stream included), never to a stream that was closed since."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property wins
        pass


def console_logging(level: int = logging.INFO) -> None:
    """Show log records from ``level`` up on stderr, as bare messages (once per process)."""
    root = logging.getLogger()
    if not any(isinstance(handler, StderrHandler) for handler in root.handlers):
        root.addHandler(StderrHandler())
    root.setLevel(level)


@contextmanager
def on_stderr(logger: logging.Logger) -> Iterator[None]:
    """Inside the block, ``logger``'s records also go to stderr (besides its usual handlers:
    Hydra's console on stdout and the run's log file), e.g. the one line of a bad input."""
    handler = StderrHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def emit(text: str) -> None:
    """Write a command's result (not its status) to stdout."""
    sys.stdout.write(f"{text}\n")
