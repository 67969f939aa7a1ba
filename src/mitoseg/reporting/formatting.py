"""How numbers and tables are written in every markdown report (``report.py`` and the study).

One style for both: a number that is missing or nan prints as ``n/a``; p-values print with
three decimals, or in scientific notation below 0.001 (``0.043``, ``1.20e-04``); a markdown
cell never breaks its row (a ``|`` is escaped, line breaks and runs of spaces become one
space).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "n/a"


def number_text(value: Any, digits: int = 4) -> str:
    """``0.91234567`` -> ``0.9123``; an int stays an int; None or nan -> ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    """``0.0432`` -> ``0.043``; ``0.00012`` -> ``1.20e-04``; None or nan -> ``n/a``."""
    if value is None or math.isnan(value):
        return MISSING
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def cell(value: Any) -> str:
    """Markdown-safe: a '|' or a line break in a value (a command line, an error) would split
    the row."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[str], body: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table (and a blank line after it); cells pass through ``cell``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return lines + [""]
