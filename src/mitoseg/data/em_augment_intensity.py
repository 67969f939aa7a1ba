"""Intensity batch augmentation of EM patches in torch: brightness, contrast, gamma, noise, blur.

These change the image only; the mask (every channel of it) passes through untouched.
Parameters are drawn per sample from the generator; statistics (mean, min, max) are taken per
sample and channel. Brightness and noise add absolute amounts, given in units of the raw
intensity range (0.1: a tenth of 0-255 for uint8 data); ``in_range_units`` turns them into the
network's input units, so they mean the same under every normalization. Contrast, gamma and
blur are relative and need no unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mitoseg.data.em_augment_geometric import (
    Batch,
    BatchTransform,
    check_batch,
    check_spacing,
    gaussian_kernels,
    separable_blur,
    spacing_for,
    value_range,
)


def _per_sample(values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return values.to(image.dtype).view(-1, *[1] * (image.ndim - 1))


def _spatial(image: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, image.ndim))


class RandomBrightness(BatchTransform):
    """Add a value drawn uniformly in ``shift`` (v for (-v, v), or (lo, hi); in units of the
    raw intensity range) to each sample."""

    def __init__(self, shift: float | Sequence[float] = 0.1, p: float = 0.5) -> None:
        super().__init__(p)
        self.shift = value_range(shift, "shift")

    def scaled(self, unit: float) -> "RandomBrightness":
        """The same transform with its shift in network-input units (``unit`` per range)."""
        return RandomBrightness(tuple(v * unit for v in self.shift), self.p)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomBrightness", image, mask, generator)
        chosen = self.chosen(generator, image)
        shift = self.uniform(generator, (image.shape[0],), *self.shift, image.device)
        return torch.where(chosen, image + _per_sample(shift, image), image), mask


class RandomContrast(BatchTransform):
    """Scale each sample about its mean by a factor drawn uniformly in ``factor`` (lo, hi) >= 0,
    so the mean stays and the standard deviation is multiplied by the factor."""

    def __init__(self, factor: float | Sequence[float] = (0.75, 1.25), p: float = 0.5) -> None:
        super().__init__(p)
        self.factor = value_range(factor, "factor", symmetric=False, low=0.0)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomContrast", image, mask, generator)
        chosen = self.chosen(generator, image)
        factor = _per_sample(self.uniform(generator, (image.shape[0],), *self.factor,
                                          image.device), image)
        mean = image.mean(dim=_spatial(image), keepdim=True)
        return torch.where(chosen, mean + factor * (image - mean), image), mask


class RandomGamma(BatchTransform):
    """Raise min-max normalized intensities to a power drawn log-uniformly in ``gamma`` (lo, hi),
    then restore the sample's original min and max. Gamma 1 is the identity; constant samples
    stay as they are."""

    def __init__(self, gamma: float | Sequence[float] = (0.7, 1.5), p: float = 0.5) -> None:
        super().__init__(p)
        self.gamma = value_range(gamma, "gamma", symmetric=False, low=1e-6)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomGamma", image, mask, generator)
        chosen = self.chosen(generator, image)
        log_gamma = self.uniform(generator, (image.shape[0],), math.log(self.gamma[0]),
                                 math.log(self.gamma[1]), image.device)
        gamma = _per_sample(log_gamma.exp(), image)
        low = image.amin(dim=_spatial(image), keepdim=True)
        span = image.amax(dim=_spatial(image), keepdim=True) - low
        unit = ((image - low) / span.clamp_min(1e-12)).clamp(0.0, 1.0)
        return torch.where(chosen, low + span * unit.pow(gamma), image), mask


class RandomGaussianNoise(BatchTransform):
    """Add zero-mean Gaussian noise whose std is drawn uniformly in ``std`` (v for (0, v), or
    (lo, hi)), per sample, in units of the raw intensity range."""

    def __init__(self, std: float | Sequence[float] = 0.05, p: float = 0.5) -> None:
        super().__init__(p)
        self.std = value_range(std if not isinstance(std, (int, float)) else (0.0, std),
                               "std", low=0.0)

    def scaled(self, unit: float) -> "RandomGaussianNoise":
        """The same transform with its std in network-input units (``unit`` per range)."""
        return RandomGaussianNoise(tuple(v * unit for v in self.std), self.p)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomGaussianNoise", image, mask, generator)
        chosen = self.chosen(generator, image)
        std = _per_sample(self.uniform(generator, (image.shape[0],), *self.std, image.device),
                          image)
        noise = torch.randn(image.shape, generator=generator, device=image.device,
                            dtype=image.dtype)
        return torch.where(chosen, image + std * noise, image), mask


class RandomGaussianBlur(BatchTransform):
    """Blur each sample over its spatial axes with a Gaussian whose std (pixels) is drawn
    uniformly in ``sigma`` (lo, hi); separable convolution, edges replicated. Isotropic in
    physical units: with ``spacing`` (voxel size per axis relative to the finest, set by the
    data module from the data set's voxel size) the std along an axis whose voxels are s times
    larger is sigma / s voxels."""

    def __init__(self, sigma: float | Sequence[float] = (0.5, 1.5), p: float = 0.5,
                 spacing: Sequence[float] | None = None) -> None:
        super().__init__(p)
        self.sigma = value_range(sigma, "sigma", symmetric=False, low=0.0)
        self.spacing = check_spacing("RandomGaussianBlur", spacing)

    def with_spacing(self, spacing: Sequence[float] | None) -> "RandomGaussianBlur":
        """The same transform for voxels of this relative size."""
        return RandomGaussianBlur(self.sigma, self.p, spacing)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        spatial = check_batch("RandomGaussianBlur", image, mask, generator)
        chosen = self.chosen(generator, image)
        sigma = self.uniform(generator, (image.shape[0],), *self.sigma, image.device)
        blurred = separable_blur(image, [
            gaussian_kernels(sigma.double() / s, max(1, math.ceil(3.0 * self.sigma[1] / s)))
            for s in spacing_for("RandomGaussianBlur", self.spacing, spatial)])
        return torch.where(chosen, blurred, image), mask
