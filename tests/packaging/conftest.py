from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mitoseg.console import StderrHandler


def _remove_console_handlers(root: logging.Logger) -> list[logging.Handler]:
    found = [h for h in root.handlers if isinstance(h, StderrHandler)]
    for handler in found:
        root.removeHandler(handler)
    return found


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Commands set up console logging on the root logger; keep that inside each test."""
    root = logging.getLogger()
    level, earlier = root.level, _remove_console_handlers(root)
    yield
    _remove_console_handlers(root)
    for handler in earlier:
        root.addHandler(handler)
    root.setLevel(level)
