"""Geometric batch augmentation of EM patches in torch: flips, rot90, rotation, shear, elastic.

Every transform takes a batch ``image`` (B, C, H, W) or (B, C, D, H, W), its ``mask`` (B, K, ...)
and a ``torch.Generator`` on the batch's device, draws its parameters per sample, and moves image
and mask together. Flips and rot90 are exact. Interpolating transforms resample image and mask
in one bilinear (trilinear in 3D) ``grid_sample`` call with reflection at the borders (no black
corners) and re-threshold the mask at 0.5, so the mask stays binary, keeps its dtype and equals an
identically transformed copy of itself thresholded the same way. Rotations, shear and rot90 act in
the (H, W) plane; in 3D every slice along D turns alike.

The mask may have K >= 1 channels, all {0, 1}: channel 0 is the label, later channels ride along
(the EM data module stacks its ``valid`` ignore mask as channel 1). The random draws depend on
the batch size and the image only, and every mask channel is moved exactly as channel 0 is, with
the same 0.5 threshold, so adding channels changes neither the image nor channel 0, and channel k
comes out as it would alone. No transform pads with a constant: borders are reflected in image
and mask alike, so a reflected corner carries the reflected labels and the reflected validity of
the voxels it copies (it is not marked ignored, and need not be: its image is real content).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mitoseg.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor]


def check_batch(name: str, image: object, mask: object, generator: object) -> int:
    """Validate a batch and return its number of spatial dims (2 or 3)."""
    if any(isinstance(arg, (np.ndarray, np.random.Generator)) for arg in (image, mask, generator)):
        raise InputError(f"{name}: got numpy input; this is a batch-tensor (EM) augmentation that "
                         "expects torch tensors image (B, C, [D,] H, W), mask (B, K, ...) and a "
                         "torch.Generator (numpy mask transforms live in mitoseg.data.augment)")
    if not isinstance(image, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: image and mask must be torch tensors, got "
                         f"{type(image).__name__} and {type(mask).__name__}")
    if image.ndim not in (4, 5) or not image.is_floating_point():
        raise InputError(f"{name}: image must be a float tensor (B, C, H, W) or (B, C, D, H, W), "
                         f"got {image.dtype} of shape {tuple(image.shape)}")
    if mask.ndim != image.ndim or mask.shape[0] != image.shape[0] or mask.shape[1] < 1 \
            or mask.shape[2:] != image.shape[2:] or not (
            mask.is_floating_point() or mask.dtype == torch.bool):
        expected = (image.shape[0], "K", *image.shape[2:])
        raise InputError(f"{name}: mask must be a float or bool tensor of shape "
                         f"({', '.join(map(str, expected))}) with K >= 1 channels (0: the label, "
                         f"then e.g. 'valid') and values in {{0, 1}}, got {mask.dtype} of shape "
                         f"{tuple(mask.shape)}")
    if mask.device != image.device:
        raise InputError(f"{name}: image on {image.device} but mask on {mask.device}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InputError(f"{name}: generator must be a torch.Generator or None, "
                             f"got {type(generator).__name__}")
        device = generator.device
        if device.type != image.device.type or (
                device.index is not None and image.device.index is not None
                and device.index != image.device.index):
            raise InputError(f"{name}: generator on {device} but batch on {image.device}; "
                             "create it with torch.Generator(device=image.device)")
    return image.ndim - 2


def value_range(value: float | Sequence[float], name: str, symmetric: bool = True,
                low: float = -math.inf) -> tuple[float, float]:
    """A number v means (-v, v) if symmetric else (v, v); a pair means (lo, hi)."""
    if isinstance(value, (int, float)):
        pair = (-float(value), float(value)) if symmetric else (float(value), float(value))
    else:
        pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not low <= pair[0] <= pair[1]:
        raise InputError(f"augmentation option '{name}' must be a number or a pair lo <= hi "
                         f"with lo >= {low}, got {value!r}")
    return pair  # type: ignore[return-value]


class BatchTransform:
    """Base: probability ``p`` per sample, uniform draws from the generator, a readable repr."""

    def __init__(self, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise InputError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"

    @staticmethod
    def uniform(generator: torch.Generator | None, shape: tuple[int, ...], lo: float, hi: float,
                device: torch.device) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)

    def chosen(self, generator: torch.Generator | None, image: torch.Tensor) -> torch.Tensor:
        """Which samples to transform, as a bool tensor shaped to broadcast over the batch."""
        draw = torch.rand(image.shape[0], generator=generator, device=image.device) < self.p
        return draw.view(-1, *[1] * (image.ndim - 1))


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalized 1-D Gaussian kernels (N, 2 * radius + 1); sigma 0 gives a delta."""
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    logits = -0.5 * (taps / sigma.clamp_min(1e-6)[:, None]) ** 2
    return torch.softmax(logits, dim=1)


def separable_blur(x: torch.Tensor,
                   kernels: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Blur each spatial axis of x (B, C, ...) with per-sample kernels (B, K), the same along
    every axis, or one (B, K_axis) per spatial axis (anisotropic voxels); edges replicate."""
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    per_axis = [kernels] * len(spatial) if isinstance(kernels, torch.Tensor) else list(kernels)
    if len(per_axis) != len(spatial):
        raise ValueError(f"separable_blur: {len(per_axis)} kernels for {len(spatial)} axes")
    out = x.reshape(1, batch * channels, *spatial)
    conv = F.conv2d if len(spatial) == 2 else F.conv3d
    for axis, axis_kernels in enumerate(per_axis):
        radius = (axis_kernels.shape[1] - 1) // 2
        weight = axis_kernels.repeat_interleave(channels, dim=0).to(x.dtype)
        shape = [batch * channels, 1] + [1] * len(spatial)
        shape[2 + axis] = axis_kernels.shape[1]
        pad = [0, 0] * len(spatial)
        pad[2 * (len(spatial) - 1 - axis)] = pad[2 * (len(spatial) - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="replicate"), weight.view(shape), groups=batch * channels)
    return out.reshape(x.shape)


def check_spacing(name: str, spacing: Sequence[float] | None) -> tuple[float, ...] | None:
    """``spacing`` (voxel size per spatial axis relative to the finest, each >= 1) as floats."""
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) not in (2, 3) or min(values) < 1.0 or min(values) != 1.0:
        raise InputError(f"{name}: spacing is the voxel size per spatial axis relative to the "
                         f"finest one (2 or 3 values, the smallest 1), got {spacing!r}")
    return values


def spacing_for(name: str, spacing: tuple[float, ...] | None, spatial: int) -> tuple[float, ...]:
    """The relative voxel size per axis of a ``spatial``-D batch (isotropic without spacing)."""
    if spacing is None:
        return (1.0,) * spatial
    if len(spacing) != spatial:
        raise InputError(f"{name}: spacing {spacing} has {len(spacing)} values for a "
                         f"{spatial}D batch")
    return spacing


def resample(image: torch.Tensor, mask: torch.Tensor, grid: torch.Tensor,
             chosen: torch.Tensor) -> Batch:
    """Sample image and mask at ``grid`` together; every mask channel is re-thresholded at 0.5."""
    dtype = torch.promote_types(image.dtype, torch.float32)  # half-precision grids drift
    stacked = torch.cat([image.to(dtype), mask.to(dtype)], dim=1)
    warped = F.grid_sample(stacked, grid.to(dtype), mode="bilinear",
                           padding_mode="reflection", align_corners=False)
    channels = image.shape[1]
    new_image = warped[:, :channels].to(image.dtype)
    new_mask = (warped[:, channels:] > 0.5).to(mask.dtype)
    return torch.where(chosen, new_image, image), torch.where(chosen, new_mask, mask)


def inverse_2x2(matrices: torch.Tensor) -> torch.Tensor:
    """The inverses of (B, 2, 2) matrices in closed form. ``torch.linalg.inv`` checks for
    singular input on the host, which makes the CPU wait for the GPU every training step."""
    a, b = matrices[:, 0, 0], matrices[:, 0, 1]
    c, d = matrices[:, 1, 0], matrices[:, 1, 1]
    adjugate = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return adjugate / (a * d - b * c)[:, None, None]


def plane_affine(image: torch.Tensor, mask: torch.Tensor, forward: torch.Tensor,
                 chosen: torch.Tensor) -> Batch:
    """Apply per-sample 2x2 maps ``forward`` (B, 2, 2), in pixel units on (x=W, y=H) about the
    patch centre, to the (H, W) plane: content at p moves to forward @ p."""
    height, width = image.shape[-2:]
    inverse = inverse_2x2(forward.double())  # the grid looks up where each pixel came from
    # normalized coordinates scale x by 2/W and y by 2/H; undo that so the map stays rigid
    # (by Python numbers: a tensor made of them on the GPU is a copy that waits for the GPU)
    theta2 = torch.stack([
        torch.stack([inverse[:, 0, 0], inverse[:, 0, 1] * (height / width)], -1),
        torch.stack([inverse[:, 1, 0] * (width / height), inverse[:, 1, 1]], -1)], -2)
    spatial = image.ndim - 2
    theta = torch.zeros(image.shape[0], spatial, spatial + 1, dtype=torch.float64,
                        device=image.device)
    theta[:, :2, :2] = theta2
    if spatial == 3:
        theta[:, 2, 2] = 1.0
    grid = F.affine_grid(theta.to(image.dtype), list(image.shape), align_corners=False)
    return resample(image, mask, grid, chosen)


class RandomFlip(BatchTransform):
    """Flip each sample along each of ``axes`` independently with probability ``p``.

    Args:
        axes: spatial axes counted from the end (-1 = W, -2 = H, -3 = D in 3D); None = all.
        p: probability of a flip, per sample and axis.
    """

    def __init__(self, axes: Sequence[int] | None = None, p: float = 0.5) -> None:
        super().__init__(p)
        if axes is not None and (not axes or any(int(a) not in (-1, -2, -3) for a in axes)):
            raise InputError(f"RandomFlip: axes must be a non-empty list of -1 (W), -2 (H) or "
                             f"-3 (D), got {axes!r}")
        self.axes = None if axes is None else [int(a) for a in axes]

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        spatial = check_batch("RandomFlip", image, mask, generator)
        axes = self.axes if self.axes is not None else list(range(-spatial, 0))
        if min(axes) < -spatial:
            raise InputError(f"RandomFlip: axis {min(axes)} needs a 3D batch, got {spatial}D")
        for axis in axes:
            chosen = self.chosen(generator, image)
            image = torch.where(chosen, image.flip(axis), image)
            mask = torch.where(chosen, mask.flip(axis), mask)
        return image, mask


class RandomRot90(BatchTransform):
    """Turn each sample by k * 90 degrees (k uniform in 0..3) in the (H, W) plane, exactly.

    Args:
        p: probability of drawing a turn (k = 0 still leaves the sample as it is).
        non_square: what to do when H != W: "error" (default) stops with an InputError;
            "half_turns" only draws 0 or 180 degrees, which keep the shape.
    """

    def __init__(self, p: float = 1.0, non_square: str = "error") -> None:
        super().__init__(p)
        if non_square not in ("error", "half_turns"):
            raise InputError(f"RandomRot90: non_square must be 'error' or 'half_turns', "
                             f"got {non_square!r}")
        self.non_square = non_square

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomRot90", image, mask, generator)
        square = image.shape[-1] == image.shape[-2]
        if not square and self.non_square == "error":
            raise InputError(f"RandomRot90: patch {tuple(image.shape[-2:])} is not square; use "
                             "square patches or non_square='half_turns' (0/180 degrees only)")
        chosen = self.chosen(generator, image)
        turns = torch.randint(0, 4, chosen.shape, generator=generator, device=image.device)
        turns = torch.where(chosen, turns, 0)
        out_image, out_mask = image, mask
        for k in (1, 2, 3) if square else (2,):
            pick = turns == k if square else turns % 2 == 1  # odd draws become half turns
            out_image = torch.where(pick, image.rot90(k, dims=(-2, -1)), out_image)
            out_mask = torch.where(pick, mask.rot90(k, dims=(-2, -1)), out_mask)
        return out_image, out_mask


class RandomRotation(BatchTransform):
    """Rotate each sample about the patch centre by an angle drawn uniformly in ``degrees``.

    Positive angles turn the content counter-clockwise as displayed (row 0 on top), the same
    way as ``torch.rot90(x, 1, dims=(-2, -1))``. Borders are filled by reflection.

    Args:
        degrees: v for (-v, v), or a pair (lo, hi).
        p: probability per sample.
    """

    def __init__(self, degrees: float | Sequence[float] = 180.0, p: float = 0.5) -> None:
        super().__init__(p)
        self.degrees = value_range(degrees, "degrees")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomRotation", image, mask, generator)
        chosen = self.chosen(generator, image)
        angle = torch.deg2rad(self.uniform(generator, (image.shape[0],), *self.degrees,
                                           image.device).double())
        cos, sin = torch.cos(angle), torch.sin(angle)
        # with y pointing down, a counter-clockwise turn maps (x, y) to (cx + sy, -sx + cy)
        forward = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        return plane_affine(image, mask, forward, chosen)


class RandomShear(BatchTransform):
    """Shear each sample along W: the row at height y slides right by ``s * (y - centre)``.

    A true shear (determinant 1, rows stay rows), not a rotation. Combine with rot90 or flips
    for other directions.

    Args:
        factor: v for s in (-v, v), or a pair (lo, hi); s = tan of the slant angle.
        p: probability per sample.
    """

    def __init__(self, factor: float | Sequence[float] = 0.2, p: float = 0.5) -> None:
        super().__init__(p)
        self.factor = value_range(factor, "factor")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        check_batch("RandomShear", image, mask, generator)
        chosen = self.chosen(generator, image)
        shear = self.uniform(generator, (image.shape[0],), *self.factor, image.device).double()
        forward = torch.eye(2, dtype=torch.float64, device=image.device).repeat(len(shear), 1, 1)
        forward[:, 0, 1] = shear
        return plane_affine(image, mask, forward, chosen)


class RandomElastic(BatchTransform):
    """Smooth random deformation in 2D or 3D (all spatial axes move).

    The displacement field is N(0, 1) noise on a coarse grid of control points ``sigma`` pixels
    apart, upsampled (bi/trilinearly) to the patch, smoothed by a Gaussian of std sigma / 2 to
    remove the kinks, and rescaled so that its root-mean-square per axis is ``alpha`` pixels.

    With anisotropic voxels (``spacing``, e.g. (10, 1, 1) for Kasthuri++'s 30 x 3 x 3 nm),
    ``alpha`` and ``sigma`` are lengths in the finest axis' pixels, so the deformation is the
    same in physical units along every axis: along an axis whose voxels are s times larger,
    control points are sigma / s voxels apart and the RMS displacement is alpha / s voxels.
    The data module sets it from the data set's voxel size (``in_voxel_units``).

    Args:
        alpha: RMS displacement per axis in pixels: a number or a range (lo, hi) drawn per sample.
        sigma: spacing of the control points in pixels (larger = smoother), > 0.
        p: probability per sample.
        spacing: voxel size per spatial axis relative to the finest one; None: isotropic.
    """

    def __init__(self, alpha: float | Sequence[float] = 2.0, sigma: float = 16.0,
                 p: float = 0.5, spacing: Sequence[float] | None = None) -> None:
        super().__init__(p)
        self.alpha = value_range(alpha, "alpha", symmetric=False, low=0.0)
        if not sigma > 0:
            raise InputError(f"RandomElastic: sigma must be > 0 pixels, got {sigma}")
        self.sigma = float(sigma)
        self.spacing = check_spacing("RandomElastic", spacing)

    def with_spacing(self, spacing: Sequence[float] | None) -> "RandomElastic":
        """The same transform for voxels of this relative size (see the class docstring)."""
        return RandomElastic(self.alpha, self.sigma, self.p, spacing)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> Batch:
        spatial = check_batch("RandomElastic", image, mask, generator)
        batch, size, device = image.shape[0], image.shape[2:], image.device
        chosen = self.chosen(generator, image)
        alpha = self.uniform(generator, (batch,), *self.alpha, device)
        field = self.displacement(alpha, tuple(size), generator)
        # grid_sample wants (x, y[, z]) = (W, H[, D]) last, in units of half the patch size
        # (Python numbers: a tensor made of them on the GPU is a copy that waits for the GPU)
        scaled = torch.stack([field[:, axis] * (2.0 / n) for axis, n in enumerate(size)], 1)
        shift = scaled.flip(1).movedim(1, -1)
        identity = torch.eye(spatial, spatial + 1, device=device).expand(batch, -1, -1)
        grid = F.affine_grid(identity, list(image.shape), align_corners=False) + shift
        return resample(image, mask, grid, chosen)

    def displacement(self, alpha: torch.Tensor, size: tuple[int, ...],
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """The displacement field (B, axes D..W, *size) in voxels of each axis, for RMS
        displacements ``alpha`` (B,) in the finest axis' pixels."""
        batch, spatial, device = alpha.shape[0], len(size), alpha.device
        spacing = spacing_for("RandomElastic", self.spacing, spatial)
        sigmas = [self.sigma / s for s in spacing]  # control-point spacing per axis, voxels
        coarse = [max(2, math.ceil(n / sigma) + 1) for n, sigma in zip(size, sigmas)]
        noise = torch.randn((batch, spatial, *coarse), generator=generator, device=device)
        field = F.interpolate(noise, size=size, mode="bilinear" if spatial == 2
                              else "trilinear", align_corners=True)
        field = separable_blur(field, [
            gaussian_kernels(torch.full((batch,), sigma / 2, device=device),
                             math.ceil(1.5 * sigma)) for sigma in sigmas])
        rms = field.square().mean(dim=tuple(range(1, field.ndim))).sqrt().clamp_min(1e-12)
        field = field * (alpha / rms).view(-1, *[1] * (field.ndim - 1))  # finest-axis pixels
        return torch.stack([field[:, axis] / s for axis, s in enumerate(spacing)], 1)
