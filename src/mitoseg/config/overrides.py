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


MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Move ``-m``/``--multirun`` in front of the overrides.

    Hydra's argument parser takes the overrides as one positional list, so
    ``python train.py model=attention_unet -m seed=0..9`` (overrides on both sides of the
    flag) would be refused as "unrecognized arguments". The flag takes no value, so its
    position does not change the meaning; ``argv[0]`` (the script) stays first.
    """
    if len(argv) < 2 or not any(a in MULTIRUN_FLAGS for a in argv[1:]):
        return list(argv)
    flags = [a for a in argv[1:] if a in MULTIRUN_FLAGS][:1]
    return [argv[0], *flags, *(a for a in argv[1:] if a not in MULTIRUN_FLAGS)]


def normalize_argv(argv: list[str]) -> list[str]:
    """What every entry point does to its command line: the flag first, ranges expanded."""
    return multirun_flag_first(expand_range_overrides(argv))
