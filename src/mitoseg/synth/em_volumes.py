"""Procedural EM-like volumes with mitochondria labels, for tests and demos (paper 002's task).

What a FIB-SEM/ssEM volume of neuropil looks like, as drawn here (contrast as in the Lucchi
volume, where membranes and mitochondria are darker than cytoplasm; measured on
``shared/data/lucchi``: mitochondria mean 96, the rest 142 +- 44):

- cells: a 3D Voronoi tessellation; each cell has its own brightness, its boundary is a thin
  dark membrane sheet;
- cytoplasm: smoothed noise at two scales, plus small dark vesicles (rings and dots);
- mitochondria: capsules (a segment thickened by a radius) with random orientation, darker than
  cytoplasm, with a dark double membrane and cristae-like stripes across the long axis; the
  labels are exactly the capsule bodies (membrane included);
- the whole volume is blurred slightly and has Gaussian noise.

Vesicles, membranes and dark cells share the mitochondria's grey levels, so a global threshold
cannot reproduce the labels; texture and shape (what a network learns) can. For orientation
(48 x 128 x 128, seeds 0-3): the best global threshold reaches a foreground IoU of 0.31-0.37 and
a threshold of the image smoothed with sigma 2 reaches 0.41-0.52 (on the real Lucchi training
volume: 0.16 and 0.27; networks reach about 0.89 there).

Geometry is drawn in physical units of one xy pixel: z index k sits at ``k * anisotropy``.
``anisotropy`` is the z voxel size over the xy voxel size (1 for Lucchi, 10 for Kasthuri++'s
30 x 3 x 3 nm), so the same object spans about ``anisotropy`` times fewer slices.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from scipy import ndimage

from mitoseg.errors import InputError

_CYTOPLASM = 150.0        # mean grey level of cytoplasm
_CELL_SPREAD = 10.0       # std of the per-cell brightness offset
_MEMBRANE_DARK = 75.0     # depth of a cell membrane at its centre
_MEMBRANE_HALF_PX = 0.9   # Gaussian half-width of a cell membrane
_MITO_DARK = 50.0         # mitochondrial matrix below the surrounding cytoplasm
_CRISTAE_DARK = 40.0
_MITO_MEMBRANES = ((-0.8, 0.55), (-2.3, 0.55))  # (signed distance, width) of the two membranes
_MITO_MEMBRANE_DARK = 55.0
_VESICLE_DARK = 60.0


def synthetic_em_volume(
    shape: tuple[int, int, int] = (32, 128, 128),
    seed: int = 0,
    anisotropy: float = 1.0,
    mito_density: float = 0.08,
    mito_radius_px: tuple[float, float] = (6.0, 14.0),
    mito_aspect: tuple[float, float] = (1.5, 4.0),
    cell_diameter_px: float = 48.0,
    vesicles_per_megavoxel: float = 400.0,
    cristae_period_px: float = 6.0,
    blur_px: float = 0.8,
    noise_sigma: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """An EM-like (D, H, W) uint8 image and its bool mitochondria labels, deterministic per seed.

    Args:
        shape: (D, H, W) in voxels.
        seed: any int (0 included); the same seed and arguments give the same volume.
        anisotropy: z voxel size / xy voxel size (>= 1 for serial-section data).
        mito_density: target fraction of voxels inside mitochondria (objects are added until it
            is reached, so the result lands at or slightly above it; lower when the volume is
            too small to fit them).
        mito_radius_px: (low, high) radius of the capsules, in xy pixels.
        mito_aspect: (low, high) total length / diameter of the capsules (1 = a sphere).
        cell_diameter_px: typical cell (Voronoi region) diameter, in xy pixels.
        vesicles_per_megavoxel: density of small dark vesicles (distractors).
        cristae_period_px: spacing of the cristae stripes.
        blur_px: Gaussian blur in xy pixels (z scaled by the anisotropy).
        noise_sigma: std of the additive Gaussian noise, in grey levels.

    Example:
        >>> image, labels = synthetic_em_volume((16, 64, 64), seed=0)
        >>> image.dtype, labels.dtype, image.shape == labels.shape
        (dtype('uint8'), dtype('bool'), True)
    """
    shape = _check_args(shape, seed, anisotropy, mito_density, mito_radius_px, mito_aspect,
                        cell_diameter_px, vesicles_per_megavoxel, cristae_period_px, blur_px,
                        noise_sigma)
    rng = np.random.default_rng(int(seed))
    a = float(anisotropy)
    sigma3 = lambda s: (s / a, s, s)  # noqa: E731 - an isotropic physical sigma in voxels

    cell_index, membrane = _voronoi_cells(shape, a, cell_diameter_px, rng)
    offsets = rng.normal(0.0, _CELL_SPREAD, size=cell_index.max() + 1).astype(np.float32)
    image = _CYTOPLASM + offsets[cell_index]
    image += 9.0 * _unit_noise(rng, shape, sigma3(6.0)) + 6.0 * _unit_noise(rng, shape, sigma3(1.5))

    labels, mito_dark = _mitochondria(shape, a, mito_density, mito_radius_px, mito_aspect,
                                      cristae_period_px, rng)
    membrane[labels] = 0.0  # cell membranes do not cross mitochondria
    image -= _MEMBRANE_DARK * membrane + mito_dark
    image -= _vesicles(shape, a, vesicles_per_megavoxel, labels, rng)

    if blur_px > 0:
        image = ndimage.gaussian_filter(image, sigma3(blur_px), mode="nearest")
    image += rng.normal(0.0, noise_sigma, size=shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


def _check_args(shape, seed, anisotropy, density, radius, aspect, cell, vesicles, period, blur,
                noise) -> tuple[int, int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1
                       for s in shape)):
        raise InputError(f"synthetic_em_volume shape: expected three positive ints (D, H, W), "
                         f"got {shape!r}")
    if not isinstance(seed, Integral) or isinstance(seed, bool):
        raise InputError(f"synthetic_em_volume seed: expected an int, got {seed!r}")

    def positive(name, value, upper=math.inf, allow_zero=False):
        ok = (isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
              and (value >= 0 if allow_zero else value > 0) and value <= upper)
        if not ok:
            bound = f"in {'[' if allow_zero else '('}0, {upper}]" if upper < math.inf else (
                ">= 0" if allow_zero else "> 0")
            raise InputError(f"synthetic_em_volume {name}: expected a finite number {bound}, "
                             f"got {value!r}")

    positive("anisotropy", anisotropy)
    positive("mito_density", density, upper=0.3)
    positive("cell_diameter_px", cell)
    positive("vesicles_per_megavoxel", vesicles, allow_zero=True)
    positive("cristae_period_px", period)
    positive("blur_px", blur, allow_zero=True)
    positive("noise_sigma", noise, allow_zero=True)
    for name, pair, low in (("mito_radius_px", radius, 0.0), ("mito_aspect", aspect, 1.0)):
        valid = (isinstance(pair, (tuple, list)) and len(pair) == 2
                 and all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
                         for v in pair)
                 and low <= pair[0] <= pair[1] and pair[0] > 0)
        if not valid:
            raise InputError(f"synthetic_em_volume {name}: expected (low, high) with "
                             f"{low} {'<' if low == 0 else '<='} low <= high, got {pair!r}")
    return tuple(int(s) for s in shape)


def _unit_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma,
                                    mode="wrap")
    return noise / max(float(noise.std()), 1e-6)


def _voronoi_cells(shape, a, diameter, rng) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-seed index and a membrane profile (1 on a cell boundary, ~0 inside)."""
    depth, height, width = shape
    extent = np.array([depth * a, height, width], dtype=np.float64)
    margin = diameter / 2
    box = np.prod(extent + 2 * margin)
    count = max(2, int(round(box / (math.pi / 6 * diameter**3))))
    seeds = rng.uniform(-margin, extent + margin, size=(count, 3))
    zz = (np.arange(depth) * a).astype(np.float32)[:, None, None]
    yy = np.arange(height, dtype=np.float32)[None, :, None]
    xx = np.arange(width, dtype=np.float32)[None, None, :]
    d1 = np.full(shape, np.inf, dtype=np.float32)
    d2 = np.full(shape, np.inf, dtype=np.float32)
    index = np.zeros(shape, dtype=np.int32)
    # A seed farther than 2 cell diameters is never among the two nearest in practice (the
    # chance that a ball of that radius holds fewer than two seeds is ~e^-60), so each seed
    # only updates the slices within that reach: much faster for anisotropic volumes.
    reach = 2.0 * diameter
    for i, (sz, sy, sx) in enumerate(seeds.astype(np.float32)):
        z0 = max(0, math.ceil((sz - reach) / a))
        z1 = min(depth, math.floor((sz + reach) / a) + 1)
        if z1 <= z0:
            continue
        slab = slice(z0, z1)
        dist = (zz[slab] - sz) ** 2 + (yy - sy) ** 2 + (xx - sx) ** 2
        closer = dist < d1[slab]
        np.minimum(d2[slab], np.where(closer, d1[slab], dist), out=d2[slab])
        np.minimum(d1[slab], dist, out=d1[slab])
        index[slab][closer] = i
    # Half the difference of the distances to the two nearest seeds: ~ distance to the boundary.
    half_gap = np.nan_to_num((np.sqrt(d2) - np.sqrt(d1)) / 2, nan=np.inf, posinf=np.inf)
    return index, np.exp(-0.5 * (half_gap / _MEMBRANE_HALF_PX) ** 2)


def _mitochondria(shape, a, density, radius, aspect, period, rng):
    """Labels and the darkening (matrix, cristae, double membrane) of non-touching capsules."""
    depth, height, width = shape
    labels = np.zeros(shape, dtype=bool)
    dark = np.zeros(shape, dtype=np.float32)
    target = density * labels.size
    filled, tries = 0, 0
    while filled < target and tries < 400:
        tries += 1
        r = rng.uniform(*radius)
        half = r * (rng.uniform(*aspect) - 1.0)  # half-length of the axis segment
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        centre = rng.uniform([0, 0, 0], [depth * a, height, width])
        reach = np.abs(axis) * half + r + 3.0  # + 3: room for the outer membrane and blur
        lo = np.floor((centre - reach) / [a, 1, 1]).astype(int).clip(0)
        hi = (np.ceil((centre + reach) / [a, 1, 1]).astype(int) + 1).clip(None, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(l, h) for l, h in zip(lo, hi))
        grid = np.meshgrid(np.arange(lo[0], hi[0]) * a - centre[0],
                           np.arange(lo[1], hi[1]) - centre[1],
                           np.arange(lo[2], hi[2]) - centre[2], indexing="ij", sparse=True)
        along = grid[0] * axis[0] + grid[1] * axis[1] + grid[2] * axis[2]
        t = np.clip(along, -half, half)
        sdf = np.sqrt((grid[0] - t * axis[0]) ** 2 + (grid[1] - t * axis[1]) ** 2
                      + (grid[2] - t * axis[2]) ** 2) - r
        body = sdf < 0
        if not body.any() or labels[box][sdf < 3.0].any():  # keep a gap to the neighbours
            continue
        phase = 2 * np.pi * along / period + rng.uniform(0, 2 * np.pi)
        cristae = np.clip((np.cos(phase) - 0.3) / 0.7, 0, None) * (sdf < -3.0)
        membranes = sum(np.exp(-0.5 * ((sdf - at) / width) ** 2) for at, width in _MITO_MEMBRANES)
        local = (_MITO_DARK + _CRISTAE_DARK * cristae) * body + _MITO_MEMBRANE_DARK * membranes
        dark[box] = np.maximum(dark[box], local.astype(np.float32))
        labels[box] |= body
        filled += int(body.sum())
    return labels, dark


def _vesicles(shape, a, per_megavoxel, labels, rng) -> np.ndarray:
    """Small dark rings (membrane-bound vesicles) and dots outside mitochondria."""
    dark = np.zeros(shape, dtype=np.float32)
    count = rng.poisson(per_megavoxel * labels.size / 1e6)
    for _ in range(count):
        r = rng.uniform(1.5, 4.0)
        centre = rng.uniform([0, 0, 0], np.array(shape) * [a, 1, 1])
        lo = np.floor((centre - r - 2) / [a, 1, 1]).astype(int).clip(0)
        hi = (np.ceil((centre + r + 2) / [a, 1, 1]).astype(int) + 1).clip(None, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(l, h) for l, h in zip(lo, hi))
        z, y, x = np.meshgrid(np.arange(lo[0], hi[0]) * a - centre[0],
                              np.arange(lo[1], hi[1]) - centre[1],
                              np.arange(lo[2], hi[2]) - centre[2], indexing="ij", sparse=True)
        d = np.sqrt(z**2 + y**2 + x**2)
        if rng.random() < 0.7:  # a membrane-bound vesicle: a dark ring
            profile = np.exp(-0.5 * ((d - r) / 0.7) ** 2)
        else:  # a dense granule: a dark dot
            profile = np.exp(-0.5 * (d / (0.6 * r)) ** 2)
        profile *= ~labels[box]
        dark[box] = np.maximum(dark[box], _VESICLE_DARK * profile)
    return dark
