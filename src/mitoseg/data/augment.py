"""Geometric augmentation of masks before synthesis, driven by a per-sample generator.

Augmenting the mask (not the finished image) keeps the image model exact: a flipped crop is
synthesized with fresh noise, and the space-variant blur bands stay horizontal, top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MaskTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class RandomDihedral:
    """One of the 8 flips/rotations of the square, uniformly (paper 000 adds five of them)."""

    def __init__(self, p: float = 1.0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomDihedral: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Transform the last two axes (a mask, or an image and its mask stacked)."""
        if rng.random() >= self.p:
            return array
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        square = array.shape[-1] == array.shape[-2]
        array = np.rot90(array, turns if square else 2 * (turns % 2), axes=(-2, -1))
        return np.ascontiguousarray(array[..., ::-1] if flip else array)


class Compose:
    """Apply mask transforms in order; an empty list is the identity."""

    def __init__(self, transforms: Sequence[MaskTransform] = ()) -> None:
        self.transforms = list(transforms)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            mask = transform(mask, rng)
        return mask


class NoAugmentation:
    """The ``augmentation=none`` option of both pipelines: returns its inputs unchanged.

    Called as ``(mask, rng)`` by the fluorescence synthesis, or as ``(image, mask, generator)``
    by the EM batch pipeline.
    """

    def __call__(self, *arguments):
        return arguments[0] if len(arguments) == 2 else (arguments[0], arguments[1])


def is_mask_transform(augmentation: object) -> bool:
    """A fluorescence mask transform (``Compose``), which EM data modules refuse."""
    return isinstance(augmentation, Compose)
