"""Command-line conveniences that Hydra's own override grammar lacks."""

from __future__ import annotations

import re

# key=a..b (inclusive integers), e.g. seed=0..9; keys may carry Hydra's +/++ prefixes
_RANGE = re.compile(r"^(?P<key>\+{0,2}[A-Za-z_][\w.\-/@]*)=(?P<start>-?\d+)\.\.(?P<stop>-?\d+)$")


def expand_range_overrides(argv: list[str]) -> list[str]:
    """Rewrite ``key=a..b`` into Hydra's ``key=range(a,b+1)``: the inclusive range a..b.

    ``python train.py -m seed=0..9`` then launches exactly 10 jobs (seeds 0 to 9), and Hydra's
    own ``seed=range(0,10)`` keeps working. A descending range (9..0) counts down.
    """
    expanded = []
    for argument in argv:
        match = _RANGE.match(argument)
        if match is None:
            expanded.append(argument)
            continue
        start, stop = int(match["start"]), int(match["stop"])
        step = 1 if stop >= start else -1
        expanded.append(f"{match['key']}=range({start},{stop + step},{step})")
    return expanded
