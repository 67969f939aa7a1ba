"""Protocol cards: numbers measured under different test protocols are not one comparison.

Each run's metrics.json carries ``protocol_card``: how its test numbers were made
(reconstruction, window, overlap, blending, tta, zfilter {size, axis}, divisor, precision,
average, threshold, threshold_source, test_set {fingerprint, units, description}). A table of
``report.py`` puts runs side by side, so all its runs must hold the same card; a run without
one (written before cards existed) has "no card", which is a card of its own unless every run
lacks one; a card written before divisor, precision or average were on it differs from a
newer card in those fields (``--mixed-protocols`` compares them anyway).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mitoseg.reporting.collect import RunRecord, protocol_label, protocol_rows
from mitoseg.runs.protocol_columns import CARD_PREFIX
from mitoseg.runs.paths import display_runs

CARD_KEY = "protocol_card"  # the metrics.json key
NO_CARD = "no card"


def card_of(run: RunRecord) -> Mapping[str, Any] | None:
    """The run's protocol card, or None when its metrics.json has none."""
    card = run.metrics.get(CARD_KEY)
    return card if isinstance(card, Mapping) else None


def card_average(run: RunRecord) -> str | None:
    """What the run's headline figures are averaged over (its card's ``average``: "images",
    "patches" or "volumes"), or None when its card does not say (no card, or an older one)."""
    average = (card_of(run) or {}).get("average")
    return str(average) if average else None


def card_text(run: RunRecord) -> str:
    """The card as one line of sorted JSON (runs.csv), or ``no card``."""
    card = card_of(run)
    return NO_CARD if card is None else json.dumps(card, sort_keys=True, default=str)


def row_card_text(run: RunRecord, protocol: str) -> str:
    """The card of the run's protocols.csv rows under ``protocol`` (their ``card_*`` columns:
    a protocols.csv metric was measured under its row's card, which for a row other than the
    headline is not metrics.json's), as one line of sorted JSON, or ``no card``. Values are
    compared as protocols.csv writes them: a run read from its folder has text ("8", "0.5"),
    the same run from W&B (``mitoseg/protocols_json``) numbers (8, 0.5), and they are one card."""
    cards = {json.dumps({k[len(CARD_PREFIX):]: _as_csv_text(v) for k, v in row.items()
                         if k.startswith(CARD_PREFIX)}, sort_keys=True)
             for row in protocol_rows(run) if protocol_label(row) == protocol}
    cards.discard("{}")
    return cards.pop() if len(cards) == 1 else NO_CARD


def _as_csv_text(value: Any) -> str:
    """A card column's value as the csv module writes it (None: empty)."""
    return "" if value is None else str(value)


def card_fields(card: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"zfilter": {"size": 5}}`` -> ``{"zfilter.size": 5}``."""
    fields: dict[str, Any] = {}
    for key, value in card.items():
        name = f"{prefix}{key}"
        fields |= card_fields(value, name + ".") if isinstance(value, Mapping) else {name: value}
    return fields


def card_conflict(runs: Sequence[RunRecord],
                  text: Callable[[RunRecord], str] = card_text) -> str | None:
    """None when ``runs`` hold one card (or all have none); else which card fields differ,
    and the value each group of runs holds, naming the runs. ``text``: a run's card as text
    (metrics.json's by default; ``row_card_text`` for a protocols.csv metric)."""
    by_card: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_card.setdefault(text(run), []).append(run)
    if len(by_card) < 2:
        return None
    fields = {text: card_fields(json.loads(text)) for text in by_card if text != NO_CARD}
    names = sorted({name for card in fields.values() for name in card})
    differing = [name for name in names
                 if len({json.dumps(card.get(name, "<absent>"), sort_keys=True, default=str)
                         for card in fields.values()}) > 1]
    groups = []
    for text, found in by_card.items():
        if text == NO_CARD:
            held = NO_CARD
        else:
            held = ", ".join(f"{name}={fields[text].get(name, '<absent>')}"
                             for name in differing) or "a card"
        groups.append(f"{held} in {display_runs([run.folder for run in found])}")
    what = (f"card fields {', '.join(differing)} differ" if differing else "cards differ")
    if NO_CARD in by_card:
        what += " (runs without a card count as another card)"
    return f"{what}: " + "; ".join(groups)
