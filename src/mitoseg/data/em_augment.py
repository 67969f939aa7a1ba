"""Batch augmentation of EM training patches in torch, run where the batch is (GPU or CPU).

Each transform is called as ``transform(image, mask, generator) -> (image, mask)`` with
``image`` (B, C, H, W) or (B, C, D, H, W), ``mask`` (B, K, ...) in {0, 1} (K >= 1: channel 0 is
the label; further channels, such as the ``valid`` ignore mask, move exactly like it) and a
``torch.Generator`` on the batch's device, so a seed reproduces the batch exactly. Parameters are
drawn per sample; ``p`` is the per-sample probability. Geometric transforms live in
``em_augment_geometric`` and intensity transforms (image only) in ``em_augment_intensity``.
Presets: ``conf/augmentation/paper2d.yaml``, ``paper3d.yaml``, ``strong.yaml``.

These are not the fluorescence mask transforms of ``mitoseg.data.augment`` (numpy masks and a
numpy generator); given numpy input they stop with an InputError that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mitoseg.data.em_augment_geometric import (
    Batch,
    RandomElastic,
    RandomFlip,
    RandomRot90,
    RandomRotation,
    RandomShear,
    check_batch,
)
from mitoseg.data.em_augment_intensity import (
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
)
from mitoseg.errors import InputError

__all__ = [
    "EMCompose", "RandomBrightness", "RandomContrast", "RandomElastic", "RandomFlip",
    "RandomGamma", "RandomGaussianBlur", "RandomGaussianNoise", "RandomRot90", "RandomRotation",
    "RandomShear", "in_range_units", "in_voxel_units",
]


class EMCompose:
    """Apply batch-tensor (EM) transforms in order, sharing one generator; [] is the identity.

    Example:
        >>> augment = EMCompose([RandomFlip(), RandomRot90(), RandomGaussianNoise(0.05)])
        >>> generator = torch.Generator(device=image.device).manual_seed(0)
        >>> image, mask = augment(image, mask, generator)
    """

    def __init__(self, transforms: Sequence[object] = ()) -> None:
        for transform in transforms:
            if not callable(transform):
                raise InputError("EMCompose: every transform must be callable as "
                                 f"transform(image, mask, generator), got {transform!r}")
        self.transforms = list(transforms)

    def __repr__(self) -> str:
        return f"EMCompose({self.transforms!r})"

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("EMCompose", image, mask, generator)
        for transform in self.transforms:
            image, mask = transform(image, mask, generator)
        return image, mask


def in_range_units(augmentation: Any, unit: float) -> Any:
    """``augmentation`` with its absolute intensity amounts (brightness, noise: the transforms
    with ``scaled``) in network-input units, ``unit`` of them per raw intensity range
    (``Normalization.range_unit``); the others as they are. ``unit`` 1 returns it unchanged."""
    if unit == 1.0:
        return augmentation

    def convert(transform: Any) -> Any:
        scaled = getattr(transform, "scaled", None)
        return scaled(unit) if callable(scaled) else transform
    return each_transform(augmentation, convert)


def each_transform(augmentation: Any, convert: Any) -> Any:
    """``augmentation`` (one transform, an ``EMCompose`` of them, or None) with ``convert``
    applied to every transform."""
    if augmentation is None:
        return None
    if isinstance(augmentation, EMCompose):
        return EMCompose([each_transform(t, convert) for t in augmentation.transforms])
    return convert(augmentation)


def relative_spacing(voxel_size: Sequence[float]) -> tuple[float, ...]:
    """Voxel size per axis relative to the finest axis (Kasthuri++'s (30, 3, 3) nm: (10, 1, 1))."""
    sizes = [float(v) for v in voxel_size]
    if not sizes or min(sizes) <= 0:
        raise InputError(f"voxel size must be > 0 along every axis, got {list(voxel_size)}")
    return tuple(v / min(sizes) for v in sizes)


def in_voxel_units(augmentation: Any, voxel_size: Sequence[float]) -> Any:
    """``augmentation`` with its lengths (elastic deformation, blur: the transforms with
    ``with_spacing``) in physical units for voxels of ``voxel_size`` (one value per spatial
    axis of the patches: (z, y, x) in 3D, (y, x) in 2D); isotropic voxels return it unchanged.
    A transform given its own ``spacing`` in the config keeps it."""
    spacing = relative_spacing(voxel_size)
    if all(s == 1.0 for s in spacing):
        return augmentation

    def convert(transform: Any) -> Any:
        with_spacing = getattr(transform, "with_spacing", None)
        if callable(with_spacing) and getattr(transform, "spacing", None) is None:
            return with_spacing(spacing)
        return transform
    return each_transform(augmentation, convert)
