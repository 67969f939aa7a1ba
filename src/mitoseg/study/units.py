"""Statistics on independent units, not on images.

The study's test images are not independent samples: each manual crop comes with its five
flips/rotations (6 images of one crop), and neighbouring crops share a strip of pixels. A
t-test over images counts one crop up to six times and its p-values are far too small. So
every image carries the id of its *unit* (``per_image.csv`` column ``unit``: the group of
masks the train/val/test split keeps together -- a crop with its flips/rotations, or a
cluster of overlapping crops; for procedural masks each mask), and:

- a unit's value is the mean of its images' values, each image's value the mean of its
  finite values over the training seeds (the seeds are replicates of an image): every image
  of a unit weighs the same, however many of its seeds gave a finite value;
- tests compare unit values, so their sample size is the number of units (``units``);
- per-image mean, SEM and n stay as a description of the images, labelled as such (paper 000:
  mean ± SEM over its n = 30 test images). A network trained with several seeds has one row
  per image and seed; the seeds are replicates of one image, so an image's value is the mean
  of its finite values over the seeds (``image_values``), n counts images and the SEM is over
  those image values. An image missing some seeds (a failed run, a nan value) is the mean of
  the seeds it has, with the same weight as every other image;
- ``unit_sem`` is the standard error over unit values, the one that goes with the tests.

Values are given as (value, unit) pairs, or (value, unit, image) triples where rows of
several seeds share an image; nan values are dropped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from mitoseg.metrics import segmentation
from mitoseg.reporting.stats import two_sample_test

Triples = Iterable[tuple[float, str, Hashable]]  # value, unit, image


def unit_values(values: Iterable[tuple]) -> dict[str, float]:
    """unit -> the mean of its images' values (``image_values``: each image's mean over its
    finite values); units without a finite value are left out. ``values``: (value, unit,
    image) triples, or (value, unit) pairs where every value is an image of its own."""
    triples = _triples(values)
    unit_of: dict[Hashable, str] = {}
    for _, unit, image in triples:
        if unit_of.setdefault(image, unit) != unit:
            raise ValueError(f"image {image!r} is in two units, {unit_of[image]!r} and {unit!r}")
    per_unit: dict[str, list[float]] = {}
    for image, found in image_values(triples).items():
        per_unit.setdefault(unit_of[image], []).append(float(np.mean(found)))
    return {unit: float(np.mean(means)) for unit, means in per_unit.items()}


def image_values(triples: Triples) -> dict[Hashable, list[float]]:
    """image -> its finite values (one per seed); images without a finite value are left out."""
    found: dict[Hashable, list[float]] = {}
    for value, _, image in triples:
        if math.isfinite(value):
            found.setdefault(image, []).append(value)
    return found


def _triples(values: Iterable[tuple]) -> list[tuple[float, str, Hashable]]:
    """(value, unit, image) triples; a pair's image is its position (an image of its own)."""
    return [(float(v[0]), v[1], v[2] if len(v) > 2 else ("#", index))
            for index, v in enumerate(values)]


def describe_with_units(values: Iterable[tuple]) -> dict[str, Any]:
    """Per image (an image's value: the mean of its finite values over the seeds): mean, sem,
    std (ddof=1), n (images with a finite value), images (all images) and dropped (nan values,
    one per image and seed); per unit: units (how many have a finite value) and unit_sem (std
    of the unit values / sqrt(units), nan below 2 units). ``values``: (value, unit, image)
    triples, or (value, unit) pairs where every value is an image of its own."""
    triples = _triples(values)
    per_image = image_values(triples)
    image = segmentation.mean_sem([float(np.mean(v)) for v in per_image.values()])
    per_unit = segmentation.mean_sem(list(unit_values(triples).values()))
    finite = sum(len(v) for v in per_image.values())
    return {"mean": image["mean"], "sem": image["sem"], "std": image["std"], "n": image["n"],
            "images": len({image_id for _, _, image_id in triples}), "dropped": len(triples) - finite,
            "units": per_unit["n"], "unit_sem": per_unit["sem"]}


def unit_t_test(a: Iterable[tuple], b: Iterable[tuple], equal_var: bool = True
                ) -> dict[str, Any]:
    """Two-sample t-test (Student, or Welch with equal_var=False) between the unit values of
    ``a`` and those of ``b`` (pairs or triples, as ``unit_values``): t, p, and units_1 / units_2, the sample sizes. Fewer than 2 units
    on a side -> t and p nan."""
    x, y = list(unit_values(a).values()), list(unit_values(b).values())
    tested = two_sample_test(x, y, "student" if equal_var else "welch")
    return {"t": tested["t"], "p": tested["p"], "units_1": len(x), "units_2": len(y)}
