"""Which label values are mitochondria, which are background and which are ignored.

Real annotations are not always 0/1: Kasthuri++ marks unlabelled voxels, sparse annotation
leaves most of a volume unknown, and label files often use 255 for foreground. A
``LabelMapping`` turns a block of raw labels into a binary target and a mask of the voxels that
count (the loss and every metric skip the others), and refuses values it was not told about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitoseg.errors import InputError

# label voxels checked and counted at once before training (4 slices of 1024 x 1024)
CHECK_VOXELS = 1 << 22


@dataclass(frozen=True)
class LabelMapping:
    """``foreground``: values that are mitochondria; ``background``: values that are not (None:
    every value that is neither foreground nor ignored); ``ignore``: values that count nowhere."""

    foreground: tuple[int, ...] = (1,)
    background: tuple[int, ...] | None = (0,)
    ignore: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.foreground:
            raise InputError("label mapping: 'foreground' must name at least one label value")
        named = [*self.foreground, *(self.background or ()), *self.ignore]
        if len(set(named)) != len(named):
            raise InputError(f"label mapping: a value is named twice among foreground "
                             f"{list(self.foreground)}, background {self.background} and ignore "
                             f"{list(self.ignore)}")

    @classmethod
    def from_config(cls, node: Any) -> LabelMapping:
        """From a config mapping {foreground: [..], background: [..] | null, ignore: [..]}."""
        node = dict(node or {})
        unknown = set(node) - {"foreground", "background", "ignore"}
        if unknown:
            raise InputError(f"label mapping: unknown key(s) {sorted(unknown)}; expected "
                             "foreground, background, ignore")
        background = node.get("background", [0])
        return cls(_values(node.get("foreground", [1]), "foreground"),
                   None if background is None else _values(background, "background"),
                   _values(node.get("ignore", []), "ignore"))

    def apply(self, labels: np.ndarray, where: str = "labels") -> tuple[np.ndarray, np.ndarray]:
        """(target float32 in {0, 1}, valid bool) for a block of raw labels; a value outside
        the mapping stops with the values found and where."""
        labels = np.asarray(labels)
        target = np.isin(labels, self.foreground)
        ignored = np.isin(labels, self.ignore) if self.ignore else np.zeros(labels.shape, bool)
        if self.background is not None:
            known = target | ignored | np.isin(labels, self.background)
            if not known.all():
                stray = np.unique(labels[~known])
                raise InputError(f"{where}: label value(s) {stray[:8].tolist()} are not in the "
                                 f"mapping (foreground {list(self.foreground)}, background "
                                 f"{list(self.background)}, ignore {list(self.ignore)}); add them "
                                 "to one of these, or set background: null to treat every other "
                                 "value as background")
        return target.astype(np.float32), ~ignored

    def slice_counts(self, block: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Per slice of a (S, H, W) block of raw labels: (foreground voxels, ignored voxels),
        with every value checked against the mapping (a value outside it stops with the values
        found and ``where``). Value by value, so a block costs its own bytes and two or three
        bools a voxel, not ``apply``'s float32 target and masks."""
        block = np.asarray(block)
        per_slice = (len(block), -1)
        known = _equal_any(block, self.foreground)
        foreground = known.reshape(per_slice).sum(1, dtype=np.int64)
        ignored = np.zeros(len(block), np.int64)
        if self.ignore:
            mask = _equal_any(block, self.ignore)
            ignored = mask.reshape(per_slice).sum(1, dtype=np.int64)
            known |= mask
            del mask
        if self.background is not None:
            scratch = np.empty_like(known)
            for value in self.background:
                known |= np.equal(block, value, out=scratch)
            if not known.all():
                self.apply(block, where)  # names the stray values
        return foreground, ignored


def _equal_any(block: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """block == values[0] | block == values[1] | ...; np.isin would take 4 bytes a voxel."""
    out = np.equal(block, values[0])
    if len(values) > 1:
        scratch = np.empty_like(out)
        for value in values[1:]:
            out |= np.equal(block, value, out=scratch)
    return out


def _values(values: Iterable[Any] | int, name: str) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)):
        values = [values]
    try:
        out = tuple(int(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError) as error:
        raise InputError(f"label mapping: '{name}' must be a list of integers, got "
                         f"{values!r}") from error
    return out

