"""Procedural binary masks of mitochondria: the framework's embedded default data.

Real fluorescence masks (COS-7 cells, DsRed-mito, 100x objective, 64.5 nm/pixel, 200x200 crops)
show tubules, branched networks, rings (donuts) and small fragments, 4 to 10 px wide, covering
about 3 to 25 % of a crop. This module draws masks with those properties from a seed, so the
main training job runs without any data file; synthetic images are made from them elsewhere.

Every object is built inside its own bounding box (a centerline thickened with a small distance
transform, or an analytic ellipse), so one 200x200 mask takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import ndimage
from scipy.signal import lfilter

from mitoseg.errors import InputError

KINDS = ("tubule", "network", "ring", "fragment")
_STEP_PX = 0.5  # centerline sampling step: fine enough that rounded points leave no gaps
_CURVATURE_MEMORY = 0.95  # AR(1) coefficient per px of curvature: makes the heading walk smooth
_MAX_CAP_REJECTIONS = 25  # stop early once objects keep overshooting the upper fraction bound


def _default_kind_weights() -> dict[str, float]:
    return {"tubule": 0.45, "network": 0.25, "ring": 0.1, "fragment": 0.2}


@dataclass(frozen=True)
class ProceduralMaskConfig:
    """What a procedural mask looks like; ranges are (low, high) and drawn uniformly.

    Defaults follow the real 200x200 crops: widths 4-10 px, foreground 3-25 %. Lengths are in
    pixels of 64.5 nm (15-80 px is about 1-5 um, typical of tubular mitochondria). The config
    is validated on construction, so a bad value fails where it is written, not mid-training.
    """

    shape: tuple[int, int] = (200, 200)
    foreground_fraction: tuple[float, float] = (0.03, 0.25)  # target drawn uniformly per mask
    width_px: tuple[float, float] = (4.0, 10.0)  # object width (diameter), one draw per object
    kind_weights: dict[str, float] = field(default_factory=_default_kind_weights)
    tubule_length_px: tuple[float, float] = (15.0, 80.0)  # centerline length of a tubule
    curvature_per_px: float = 0.03  # typical |d heading / d length| in rad/px (radius ~30 px)
    network_branches: tuple[int, int] = (3, 5)  # branches leaving the main junction
    network_branch_scale: float = 0.6  # branch length = scale * a tubule length
    ring_diameter_px: tuple[float, float] = (12.0, 30.0)  # outer diameter of a donut
    fragment_aspect: tuple[float, float] = (1.0, 2.5)  # major / minor axis of a fragment
    max_overlap: float = 0.2  # reject an object if more than this share of it is already set
    max_attempts: int = 300  # object placements tried per mask before giving up

    def __post_init__(self) -> None:
        for name in ("shape", "foreground_fraction", "width_px", "tubule_length_px",
                     "network_branches", "ring_diameter_px", "fragment_aspect"):
            value = getattr(self, name)
            _require(isinstance(value, (tuple, list)) and len(value) == 2, name,
                     "a (low, high) pair", value)
            object.__setattr__(self, name, tuple(value))  # lists from YAML become tuples
        _require(all(isinstance(v, (int, np.integer)) and v >= 8 for v in self.shape), "shape",
                 "two integers >= 8", self.shape)
        _ordered(self, "foreground_fraction", 0.0, "> 0", strict_low=True)
        _require(self.foreground_fraction[1] < 1.0, "foreground_fraction", "below 1", self.foreground_fraction)
        _ordered(self, "width_px", 1.0, ">= 1")
        _ordered(self, "tubule_length_px", 1.0, ">= 1")
        _ordered(self, "network_branches", 3, ">= 3 (a junction needs three branches)")
        _require(all(float(v).is_integer() for v in self.network_branches), "network_branches",
                 "integers", self.network_branches)
        _ordered(self, "ring_diameter_px", 6.0, ">= 6")
        _ordered(self, "fragment_aspect", 1.0, ">= 1")
        _require(self.curvature_per_px >= 0, "curvature_per_px", ">= 0", self.curvature_per_px)
        _require(self.network_branch_scale > 0, "network_branch_scale", "> 0",
                 self.network_branch_scale)
        _require(0.0 <= self.max_overlap <= 1.0, "max_overlap", "in [0, 1]", self.max_overlap)
        _require(isinstance(self.max_attempts, (int, np.integer)) and self.max_attempts >= 1,
                 "max_attempts", "an integer >= 1", self.max_attempts)
        weights = self.kind_weights
        _require(isinstance(weights, dict) and len(weights) > 0, "kind_weights",
                 f"a non-empty mapping from {KINDS} to weights", weights)
        unknown = sorted(set(weights) - set(KINDS))
        _require(not unknown, "kind_weights", f"only the kinds {KINDS}", unknown)
        _require(all(float(v) >= 0 for v in weights.values()), "kind_weights",
                 "weights >= 0", weights)
        _require(sum(float(v) for v in weights.values()) > 0, "kind_weights",
                 "at least one positive weight", weights)


def _require(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise InputError(f"procedural mask config '{name}' must be {expected}, got {got!r}")


def _ordered(cfg: ProceduralMaskConfig, name: str, low: float, what: str,
             strict_low: bool = False) -> None:
    lo, hi = getattr(cfg, name)
    ok_low = lo > low if strict_low else lo >= low
    _require(ok_low and lo <= hi, name, f"an ordered (low, high) pair with low {what}",
             getattr(cfg, name))


# ---------------------------------------------------------------------------------------------
# Objects: each builder returns (top, left, patch) in image coordinates, or None when empty.

Patch = tuple[int, int, np.ndarray]


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
          curvature: float) -> np.ndarray:
    """A smooth random curve: the curvature is an AR(1) process, so the heading turns gently."""
    n = max(2, int(round(length / _STEP_PX)) + 1)
    a = _CURVATURE_MEMORY ** _STEP_PX
    noise = rng.normal(0.0, curvature * np.sqrt(1.0 - a * a), n - 1)
    kappa = lfilter([1.0], [1.0, -a], noise) + rng.normal(0.0, curvature)
    angles = heading + np.concatenate([[0.0], np.cumsum(kappa * _STEP_PX)])
    steps = _STEP_PX * np.stack([np.sin(angles[:-1]), np.cos(angles[:-1])], axis=1)
    return start + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def _thicken(points: np.ndarray, width: float, shape: tuple[int, int]) -> Patch | None:
    """Pixels within width/2 of a sampled centerline, computed in the centerline's bounding box."""
    radius = width / 2.0
    pad = int(np.ceil(radius)) + 1
    idx = np.rint(points).astype(int)
    inside = ((idx[:, 0] >= -pad) & (idx[:, 0] < shape[0] + pad)
              & (idx[:, 1] >= -pad) & (idx[:, 1] < shape[1] + pad))
    idx = idx[inside]  # points farther outside cannot reach the image
    if len(idx) == 0:
        return None
    top, left = idx.min(axis=0) - pad
    size = idx.max(axis=0) - (top, left) + pad + 1
    line = np.ones(tuple(size), dtype=bool)
    line[idx[:, 0] - top, idx[:, 1] - left] = False
    return int(top), int(left), ndimage.distance_transform_edt(line) <= radius


def _tubule(rng: np.random.Generator, cfg: ProceduralMaskConfig, width: float) -> Patch | None:
    start = rng.uniform((0, 0), cfg.shape)
    length = rng.uniform(*cfg.tubule_length_px)
    line = _walk(rng, start, rng.uniform(0, 2 * np.pi), length, cfg.curvature_per_px)
    return _thicken(line, width, cfg.shape)


def _network(rng: np.random.Generator, cfg: ProceduralMaskConfig, width: float) -> Patch | None:
    """Branches leaving a shared junction; one branch end may split again (a second junction)."""
    lo, hi = cfg.network_branches
    k = int(rng.integers(int(lo), int(hi) + 1))
    junction = rng.uniform((0, 0), cfg.shape)
    headings = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(k) / k
    headings += rng.normal(0.0, 0.5 * np.pi / k, k)  # uneven angles, still spread around
    lines = []
    for heading in headings:
        length = cfg.network_branch_scale * rng.uniform(*cfg.tubule_length_px)
        lines.append(_walk(rng, junction, heading, length, cfg.curvature_per_px))
    if rng.random() < 0.5:  # a second junction at the end of one branch
        end = lines[0]
        heading = np.arctan2(*(end[-1] - end[-2]))
        for turn in (-1.0, 1.0):
            length = cfg.network_branch_scale * rng.uniform(*cfg.tubule_length_px)
            lines.append(_walk(rng, end[-1], heading + turn * rng.uniform(0.6, 1.2), length,
                               cfg.curvature_per_px))
    return _thicken(np.concatenate(lines), width, cfg.shape)


def _ring(rng: np.random.Generator, cfg: ProceduralMaskConfig, width: float) -> Patch | None:
    """A slightly elliptical donut; the tube is narrowed if needed so a hole of >= 3 px stays."""
    diameter = rng.uniform(*cfg.ring_diameter_px)
    width = min(width, max(1.0, (diameter - 3.0) / 2.0))
    radius = (diameter - width) / 2.0  # of the centerline
    stretch, tilt = rng.uniform(1.0, 1.3), rng.uniform(0, np.pi)
    t = np.linspace(0, 2 * np.pi, max(16, int(2 * np.pi * radius * stretch / _STEP_PX)))
    u, v = radius * stretch * np.cos(t), radius * np.sin(t)
    center = rng.uniform((0, 0), cfg.shape)
    points = center + np.stack([u * np.sin(tilt) + v * np.cos(tilt),
                                u * np.cos(tilt) - v * np.sin(tilt)], axis=1)
    return _thicken(points, width, cfg.shape)


def _fragment(rng: np.random.Generator, cfg: ProceduralMaskConfig, width: float) -> Patch:
    """A small ellipse: minor axis = the object width, major axis = aspect * width."""
    a, b = width * rng.uniform(*cfg.fragment_aspect) / 2.0, width / 2.0
    tilt = rng.uniform(0, np.pi)
    half = int(np.ceil(a)) + 1
    center = np.rint(rng.uniform((0, 0), cfg.shape)).astype(int)
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(float)
    u, v = x * np.cos(tilt) + y * np.sin(tilt), -x * np.sin(tilt) + y * np.cos(tilt)
    return int(center[0] - half), int(center[1] - half), (u / a) ** 2 + (v / b) ** 2 <= 1.0


_BUILDERS: dict[str, Callable[..., Patch | None]] = {
    "tubule": _tubule, "network": _network, "ring": _ring, "fragment": _fragment}


# ---------------------------------------------------------------------------------------------

def generate_mask(rng: np.random.Generator,
                  config: ProceduralMaskConfig = ProceduralMaskConfig()) -> np.ndarray:
    """One bool (H, W) mask whose foreground fraction lies in config.foreground_fraction.

    A target fraction is drawn, then objects (kind drawn per object from kind_weights, width per
    object from width_px) are placed at uniform positions -- cut by the border like real crops --
    until the target is reached. An object is rejected if more than max_overlap of it is already
    foreground (keeps object counts realistic while allowing touching and crossing) or if it would
    push the mask above the upper fraction bound, which is therefore never exceeded. The mask
    falls short of its target only when max_attempts run out or the last objects keep
    overshooting the upper bound (possible for very narrow fraction ranges).
    """
    h, w = config.shape
    kinds = [k for k in KINDS if float(config.kind_weights.get(k, 0.0)) > 0]
    probs = np.array([float(config.kind_weights[k]) for k in kinds])
    probs /= probs.sum()
    total = h * w
    target = rng.uniform(*config.foreground_fraction) * total
    cap = int(np.floor(config.foreground_fraction[1] * total))
    mask = np.zeros((h, w), dtype=bool)
    count, cap_rejections = 0, 0
    for _ in range(config.max_attempts):
        if count >= target or cap_rejections >= _MAX_CAP_REJECTIONS:
            break
        kind = kinds[rng.choice(len(kinds), p=probs)]
        placed = _BUILDERS[kind](rng, config, rng.uniform(*config.width_px))
        if placed is None:
            continue
        top, left, patch = placed
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + patch.shape[0], h), min(left + patch.shape[1], w)
        if y1 <= y0 or x1 <= x0:
            continue
        patch = patch[y0 - top:y1 - top, x0 - left:x1 - left]
        region = mask[y0:y1, x0:x1]
        size = int(patch.sum())
        new = int(np.count_nonzero(patch & ~region))
        if size == 0 or new < (1.0 - config.max_overlap) * size:
            continue
        if count + new > cap:
            cap_rejections += 1
            continue
        region |= patch
        count += new
    return mask


def generate_masks(seed: int, count: int,
                   config: ProceduralMaskConfig = ProceduralMaskConfig()) -> np.ndarray:
    """count masks as bool (count, H, W); mask i depends only on (seed, i), never on count."""
    if int(count) < 0:
        raise InputError(f"generate_masks: 'count' must be >= 0, got {count!r}")
    out = np.zeros((int(count), *config.shape), dtype=bool)
    for i in range(int(count)):
        out[i] = generate_mask(np.random.default_rng([int(seed), i]), config)
    return out
