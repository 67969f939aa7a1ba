"""Statistics on independent units, not on images.

The study's test images are not independent samples: each manual crop comes with its five
flips/rotations (6 images of one crop), and neighbouring crops share a strip of pixels. A
t-test over images counts one crop up to six times and its p-values are far too small. So
every image carries the id of its *unit* (``per_image.csv`` column ``unit``: the group of
masks the train/val/test split keeps together -- a crop with its flips/rotations, or a
cluster of overlapping crops; for procedural masks each mask), and:

- a unit's value is the mean of its finite values (over its images, and over the training
  seeds when the rows of several seeds are pooled: the seeds are replicates within a unit);
- tests compare unit values, so their sample size is the number of units (``units``);
- per-image mean, SEM and n stay as a description of the images, labelled as such;
  ``unit_sem`` is the standard error over unit values, the one that goes with the tests.

Values are given as (value, unit) pairs; nan values are dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from mitoseg.metrics import segmentation
from mitoseg.reporting.stats import two_sample_test

Pairs = Iterable[tuple[float, str]]


def unit_values(pairs: Pairs) -> dict[str, float]:
    """unit -> mean of its finite values; units without a finite value are left out."""
    sums: dict[str, list[float]] = {}
    for value, unit in pairs:
        if math.isfinite(value):
            sums.setdefault(unit, []).append(value)
    return {unit: float(np.mean(values)) for unit, values in sums.items()}


def describe_with_units(pairs: Pairs) -> dict[str, Any]:
    """Per image: mean, sem, std (ddof=1), n (finite values) and dropped (nan values); per unit:
    units (how many have a finite value) and unit_sem (std of the unit values / sqrt(units),
    nan below 2 units)."""
    pairs = list(pairs)
    array = np.asarray([value for value, _ in pairs], dtype=float)
    image = segmentation.mean_sem(array)
    per_unit = segmentation.mean_sem(list(unit_values(pairs).values()))
    return {"mean": image["mean"], "sem": image["sem"], "std": image["std"], "n": image["n"],
            "dropped": int(array.size - image["n"]), "units": per_unit["n"],
            "unit_sem": per_unit["sem"]}


def unit_t_test(a: Pairs, b: Pairs, equal_var: bool = True) -> dict[str, Any]:
    """Two-sample t-test (Student, or Welch with equal_var=False) between the unit values of
    ``a`` and those of ``b``: t, p, and units_1 / units_2, the sample sizes. Fewer than 2 units
    on a side -> t and p nan."""
    x, y = list(unit_values(a).values()), list(unit_values(b).values())
    tested = two_sample_test(x, y, "student" if equal_var else "welch")
    return {"t": tested["t"], "p": tested["p"], "units_1": len(x), "units_2": len(y)}
