"""Which image condition each training sample gets in a mixture (paper 000 scheme 2).

Paper 000 trains its mixture networks on equal numbers of images of each condition (SNR 1, 4
and 8; or blur 2, 3 and 4). Sample i is made from mask i % n; these functions say under which
of the k conditions, so that every condition gets the same number of samples for any number of
masks n and ``repeats`` (noise realizations per mask):

- the data set has ``mixture_length`` samples: n * repeats rounded up to a multiple of k (at
  most k - 1 extra samples, which re-use the first masks with fresh noise);
- conditions are dealt out in turn along the sample index, 0, 1, ..., k - 1, 0, 1, ..., so any
  k consecutive samples hold each condition once. The turn moves on by one every lcm(n, k)
  samples, so a mask does not keep landing on the same condition when n is a multiple of k.

Hence every condition gets exactly length / k samples; with ``repeats`` a multiple of k every
mask appears under every condition equally often, and otherwise a mask's counts under the k
conditions differ by at most one.
"""

from __future__ import annotations

import math

from mitoseg.errors import InputError


def _check(masks: int, conditions: int) -> None:
    if masks < 1:
        raise InputError(f"mixture: at least one mask is required, got {masks}")
    if conditions < 1:
        raise InputError(f"mixture: at least one image condition is required, got {conditions} "
                         "conditions")


def mixture_length(masks: int, repeats: int, conditions: int) -> int:
    """Samples in the data set: masks * repeats, rounded up to a multiple of ``conditions``."""
    _check(masks, conditions)
    if repeats < 1:
        raise InputError(f"dataset: 'repeats' (train_repeats) must be >= 1, got {repeats}")
    return -(-masks * repeats // conditions) * conditions


def condition_of_sample(index: int, masks: int, conditions: int) -> int:
    """The condition (0 .. conditions - 1) of sample ``index`` (see the module docstring)."""
    _check(masks, conditions)
    if index < 0:
        raise IndexError(index)
    return (index + index // math.lcm(masks, conditions)) % conditions

