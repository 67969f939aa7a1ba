"""One configuration, one resolved config: ``report.py`` groups runs by their command-line
overrides, so two sweeps with the same overrides started from other defaults (another commit,
an edited conf/ file) would pool as one configuration, and their runs of one seed would be
averaged. This compares what each run's config.yaml says (``RunRecord.resolved``: without the
result-neutral keys, the seed and the keys of ``--ignore``) within each configuration.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from mitoseg.reporting.collect import RunRecord
from mitoseg.runs.paths import display_path

SHOWN_KEYS = 6  # differing keys named in a message; the rest are counted


def config_conflicts(runs: Iterable[RunRecord], key: Callable[[RunRecord], Hashable]
                     ) -> dict[Hashable, str]:
    """{configuration key: what differs} for each configuration (runs grouped by ``key``)
    whose runs hold more than one resolved config. Runs without a readable config.yaml (W&B
    offline runs) are not compared."""
    by_config: dict[Hashable, list[RunRecord]] = defaultdict(list)
    for run in runs:
        if run.resolved:
            by_config[key(run)].append(run)
    found = {}
    for config, members in by_config.items():
        differs = resolved_differences(members)
        if differs:
            found[config] = differs
    return found


def resolved_differences(runs: Sequence[RunRecord]) -> str:
    """'optimizer.lr: 0.01 (3 runs, e.g. a/0) vs 0.1 (3 runs, e.g. b/0); ...' for each key
    whose value is not the same in every run; '' when they all agree."""
    keys = sorted({k for run in runs for k in run.resolved})
    differing = []
    for name in keys:
        by_value: dict[str, list[RunRecord]] = defaultdict(list)
        for run in runs:
            by_value[_text(run.resolved.get(name, "<absent>"))].append(run)
        if len(by_value) > 1:
            differing.append(f"{name}: " + " vs ".join(
                f"{value} ({len(found)} runs, e.g. {display_path(found[0].folder)})"
                for value, found in by_value.items()))
    more = len(differing) - SHOWN_KEYS
    return "; ".join(differing[:SHOWN_KEYS]) + (f"; ... ({len(differing)} keys in all)"
                                                if more > 0 else "")


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
