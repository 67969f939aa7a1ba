"""One configuration, one composed config: ``report.py`` groups runs by their command-line
overrides, so two sweeps with the same overrides started from other defaults (another commit,
an edited conf/ file) would pool as one configuration, and their runs of one seed would be
averaged (``config_conflicts`` finds them); and one config written two ways (``model`` left at
its default, or given as that default) would be two configurations (``merge_equivalent``
joins them). Both read each run's composed config, Hydra's ``.hydra/config.yaml``
(``RunRecord.composed``: without the result-neutral keys, the seed and the keys of
``--ignore``). Not ``config.yaml``: there the interpolations are resolved, so values that
follow the seed (``dataset.seed: ${seed}``) or the run folder (checkpoint paths) differ
between the seeds of every sweep; the composed config keeps them as written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from mitoseg.reporting.collect import RunRecord
from mitoseg.runs.paths import display_path

SHOWN_KEYS = 6  # differing keys named in a message; the rest are counted


def config_conflicts(runs: Iterable[RunRecord], key: Callable[[RunRecord], Hashable]
                     ) -> dict[Hashable, str]:
    """{configuration key: what differs} for each configuration (runs grouped by ``key``)
    whose runs hold more than one composed config. Runs without a readable .hydra/config.yaml (W&B
    offline runs) are not compared."""
    by_config: dict[Hashable, list[RunRecord]] = defaultdict(list)
    for run in runs:
        if run.composed:
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
    keys = sorted({k for run in runs for k in run.composed})
    differing = []
    for name in keys:
        by_value: dict[str, list[RunRecord]] = defaultdict(list)
        for run in runs:
            by_value[_text(run.composed.get(name, "<absent>"))].append(run)
        if len(by_value) > 1:
            differing.append(f"{name}: " + " vs ".join(
                f"{value} ({len(found)} runs, e.g. {display_path(found[0].folder)})"
                for value, found in by_value.items()))
    more = len(differing) - SHOWN_KEYS
    return "; ".join(differing[:SHOWN_KEYS]) + (f"; ... ({len(differing)} keys in all)"
                                                if more > 0 else "")


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def merge_equivalent(runs: Sequence[RunRecord]) -> tuple[list[RunRecord], list[tuple[str, str]]]:
    """The runs, those of override lists that resolve to one config relabelled with one of
    them (the longest list, the most explicit spelling; then the first in sorted order), and
    (kept label, other label) for each relabelled list. An override list is merged only when
    every run of it has a known composed config and they all agree."""
    members: dict[tuple[str, ...], list[RunRecord]] = defaultdict(list)
    for run in runs:
        members[run.overrides].append(run)
    by_settings: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for overrides, found in members.items():
        settings = {_fingerprint(run) for run in found}
        if len(settings) == 1 and all(run.composed for run in found):
            by_settings[settings.pop()].append(overrides)
    kept: dict[tuple[str, ...], RunRecord] = {}
    merged = []
    for spellings in by_settings.values():
        first, *others = sorted(spellings, key=lambda o: (-len(o), o))
        for other in others:
            kept[other] = members[first][0]
            merged.append((members[first][0].config, members[other][0].config))
    relabelled = [replace(run, overrides=kept[run.overrides].overrides,
                          model=kept[run.overrides].model, dataset=kept[run.overrides].dataset)
                  if run.overrides in kept else run for run in runs]
    return relabelled, merged


def _fingerprint(run: RunRecord) -> str:
    return repr(sorted((key, _text(value)) for key, value in run.composed.items()))
