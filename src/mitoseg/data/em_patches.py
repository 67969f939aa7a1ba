"""Patch datasets over EM volumes: random (optionally foreground-weighted) training patches in
2D (slices) or 3D (subvolumes), and fixed tilings for validation.

Volumes are any (D, H, W) array-likes -- typically read-only memory maps -- and are only
sliced, never copied whole, so every worker shares the same pages of the file.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from mitoseg.data.em_split import contiguous_runs
from mitoseg.data.label_mapping import CHECK_VOXELS
from mitoseg.data.loaders import (
    SampleKey,
    batch_key,
    item_index,
    keyed_draws,
    member_key,
    sample_key,
)
from mitoseg.data.normalization import Normalization, dtype_range
from mitoseg.data.slabs import slices_in_slabs
from mitoseg.data.volume_set import slice_counts
from mitoseg.errors import InputError

PLACEMENTS = ("centred", "uniform")


# Foreground voxels held at most, as one flat in-slice index each (4 bytes: 64 MB); a larger
# foreground is found slice by slice when drawn, so memory stays bounded for any volume size.
COORDS_LIMIT = 16_000_000
# Most voxels of a label view read at once for the positions: a mapped view maps its whole
# read at several bytes a voxel, so at most the label check's own block (CHECK_VOXELS)
LABEL_SLAB_BYTES = CHECK_VOXELS


class ForegroundSampler:
    """Chooses patch centres: a foreground voxel with probability ``q``, else any voxel.

    Sampling a centre from the probability map w(v) = fg_weight for foreground voxels and 1
    for background is exactly this two-step draw with q = fg_weight * n_fg / (fg_weight * n_fg
    + n_bg), so no dense map (or its cumulative sum) is ever held in memory. The foreground is
    scanned once, lazily, a slice at a time: its count per slice, and the voxels' positions
    while there are at most ``coords_limit`` of them (per slice, its flat y * width + x indices,
    4 bytes a voxel, never joined into one array). Beyond that (a large volume), the k-th
    foreground voxel is found by reading its one slice when drawn: the same voxel either way,
    so the draws do not depend on the limit.
    """

    def __init__(self, labels: Any, z_indices: Sequence[int], fg_weight: float,
                 coords_limit: int = COORDS_LIMIT) -> None:
        if fg_weight < 1.0:
            raise InputError(f"dataset option 'foreground_weight' must be >= 1 (1 = uniform), "
                             f"got {fg_weight}")
        self.labels, self.z_indices, self.fg_weight = labels, list(z_indices), float(fg_weight)
        self.coords_limit = int(coords_limit)
        self.width = int(labels.shape[-1])
        area = int(labels.shape[-2]) * self.width
        self._index_dtype = np.uint32 if area <= 2**32 else np.int64
        self._held: list[np.ndarray] | None = None  # per slice of z_indices: flat indices
        self._ends: np.ndarray | None = None  # cumulative foreground count per slice

    def _foreground(self, z: int) -> np.ndarray:
        """Flat (y * width + x) indices of slice z's foreground voxels, row-major."""
        return np.flatnonzero(np.asarray(self.labels[z])).astype(self._index_dtype, copy=False)

    def _scan(self) -> None:
        if self._ends is not None:
            return
        known = slice_counts(self.labels)  # a mapped view counts its slices once, at setup
        if known is not None:  # read only slices with foreground, and only to hold positions
            chosen = known[self.z_indices]
            self._ends = np.cumsum(chosen)
            if int(chosen.sum()) > self.coords_limit:
                self._held = None
                return
            wanted = sorted({z for z, n in zip(self.z_indices, chosen) if n})
            # a few slices at a time (LABEL_SLAB_BYTES), each read once
            found = {z: np.flatnonzero(image).astype(self._index_dtype, copy=False)
                     for z, image in slices_in_slabs(self.labels, wanted, LABEL_SLAB_BYTES)}
            empty = np.empty(0, self._index_dtype)
            self._held = [found.get(z, empty) if n else empty
                          for z, n in zip(self.z_indices, chosen)]
            return
        counts: list[int] = []
        held: list[np.ndarray] | None = []
        total = 0
        for z in self.z_indices:
            flat = self._foreground(z)
            counts.append(len(flat))
            total += len(flat)
            if held is not None and total <= self.coords_limit:
                held.append(flat)
            else:
                held = None  # too many to hold: found per slice when drawn
        self._ends = np.cumsum(np.asarray(counts, np.int64))
        self._held = held

    @property
    def holds_coordinates(self) -> bool:
        """Whether the foreground's positions are held (else read slice by slice when drawn)."""
        self._scan()
        return self._held is not None

    def foreground_count(self) -> int:
        self._scan()
        return int(self._ends[-1]) if len(self._ends) else 0

    def coords(self) -> np.ndarray:
        """(N, 3) int32 (z, y, x) of foreground voxels within ``z_indices`` (slice order, then
        row-major), when they fit under ``coords_limit``; built on each call."""
        if not self.holds_coordinates:
            raise InputError(f"{self.foreground_count()} foreground voxels exceed the "
                             f"coordinate limit ({self.coords_limit}); use pick()")
        return self.pick(np.arange(self.foreground_count())).astype(np.int32)

    def pick(self, k: np.ndarray) -> np.ndarray:
        """(len(k), 3) (z, y, x) of the k-th foreground voxels (the order of ``coords``)."""
        self._scan()
        k = np.asarray(k, np.int64)
        out = np.empty((len(k), 3), np.int64)
        slots = np.searchsorted(self._ends, k, side="right")
        for slot in np.unique(slots):
            chosen = slots == slot
            z = self.z_indices[int(slot)]
            flat = self._held[slot] if self._held is not None else self._foreground(z)
            offset = k[chosen] - (self._ends[slot - 1] if slot else 0)
            ys, xs = np.divmod(flat[offset].astype(np.int64), self.width)
            out[chosen] = np.stack([np.full(len(offset), z), ys, xs], 1)
        return out

    def _q(self, shape_hw: tuple[int, int]) -> tuple[int, float]:
        n_fg = self.foreground_count()
        n_all = len(self.z_indices) * shape_hw[0] * shape_hw[1]
        q = self.fg_weight * n_fg / (self.fg_weight * n_fg + (n_all - n_fg)) if n_all else 0
        return n_fg, q

    def centre(self, rng: np.random.Generator, shape_hw: tuple[int, int]) -> tuple[int, int, int]:
        return self.draw(rng, shape_hw)[:3]

    def draw(self, rng: np.random.Generator, shape_hw: tuple[int, int]
             ) -> tuple[int, int, int, bool]:
        """(z, y, x, from_foreground): a voxel, and whether it was drawn from the foreground."""
        if self.fg_weight > 1.0:
            n_fg, q = self._q(shape_hw)
            if n_fg and rng.random() < q:
                z, y, x = self.pick(np.array([rng.integers(n_fg)]))[0]
                return int(z), int(y), int(x), True
        z = self.z_indices[int(rng.integers(len(self.z_indices)))]
        return z, int(rng.integers(shape_hw[0])), int(rng.integers(shape_hw[1])), False

    def draw_many(self, rng: np.random.Generator, count: int, shape_hw: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``count`` independent draws of ``draw`` at once: arrays z, y, x, from_foreground."""
        z = np.asarray(self.z_indices)[rng.integers(len(self.z_indices), size=count)]
        y, x = rng.integers(shape_hw[0], size=count), rng.integers(shape_hw[1], size=count)
        from_foreground = np.zeros(count, bool)
        if self.fg_weight > 1.0:
            n_fg, q = self._q(shape_hw)
            if n_fg:
                from_foreground = rng.random(count) < q
                chosen = rng.integers(n_fg, size=count)
                picked = np.zeros((count, 3), np.int64)  # only drawn voxels are looked up
                picked[from_foreground] = self.pick(chosen[from_foreground])
                z, y, x = (np.where(from_foreground, picked[:, k], v) for k, v in
                           enumerate((z, y, x)))
        return z.astype(np.int64), y.astype(np.int64), x.astype(np.int64), from_foreground


def _start(centre: int, size: int, length: int) -> int:
    """Top-left of a window of ``size`` around ``centre``, kept inside [0, length)."""
    return int(np.clip(centre - size // 2, 0, max(length - size, 0)))


def _check_patch(patch: Sequence[int], shape: Sequence[int], where: str) -> tuple[int, ...]:
    patch = tuple(int(p) for p in patch)
    if any(p < 1 for p in patch) or any(p > s for p, s in zip(patch, shape)):
        raise InputError(f"{where}: patch size {patch} must be >= 1 and fit in the volume "
                         f"{tuple(shape)}")
    return patch


class RandomPatchDataset(Dataset):
    """``patches_per_image`` random patches per training slice (2D), or per tile of the
    training blocks (3D) in each epoch.

    2D: patch (h, w) from one slice z of ``z_indices``; 3D: patch (d, h, w) whose z-range
    lies inside one run of consecutive slices of ``z_indices`` (a block), so a patch never
    crosses a gap such as the validation block. Every block must hold a patch: a shorter one
    is refused rather than left out. Randomness is keyed (``keyed_draws``): an item of the
    training loader is a ``SampleKey`` (index, the epoch's draw made by the sampler in the main
    process), so patches change every epoch, repeat exactly for the same seed, and do not
    depend on the loader's worker processes; a plain index draws from torch's generator.

    ``placement``: "centred" puts the patch around a drawn voxel, moved inside the volume (so
    windows touching a border are drawn more often than others); "uniform" draws the window's
    corner uniformly over all positions where it fits (every window equally likely). A centre
    drawn from the foreground (``foreground_weight`` > 1) is always centred.
    ``origins_only``: items hold only the window's corner ("origin", (z, y, x)) and
    ``volume_number`` ("volume": which of the data module's training volumes); the data module
    then cuts the patches from a copy of the volumes on the training device (``sampling=device``).
    ``ignored``: a (D, H, W) bool array-like, True where a voxel counts nowhere; ``with_valid``:
    items carry "valid" (float32, 1 = counts; all ones without ``ignored``), for the loss and
    the metrics to skip ignored voxels.
    """

    keyed_draws = True  # the training loader hands out SampleKeys (mitoseg.data.loaders)

    def __init__(self, image: Any, labels: Any, z_indices: Sequence[int], patch: Sequence[int],
                 patches_per_image: int = 1, foreground_weight: float = 1.0,
                 normalization: Normalization | None = None, placement: str = "centred",
                 origins_only: bool = False, ignored: Any | None = None,
                 with_valid: bool = False, volume_number: int = 0) -> None:
        self.image, self.labels = image, labels
        self.ignored, self.with_valid = ignored, bool(with_valid or ignored is not None)
        self.z_indices = list(z_indices)
        if not self.z_indices:
            raise InputError("patch dataset: no slices to sample from")
        self.spatial_dims = len(patch)
        if self.spatial_dims not in (2, 3):
            raise InputError(f"patch size must have 2 or 3 values, got {tuple(patch)}")
        self.blocks = [range(run[0], run[-1] + 1) for run in contiguous_runs(self.z_indices)]
        depth = max(len(block) for block in self.blocks)
        shape = image.shape[1:] if self.spatial_dims == 2 else (depth, *image.shape[1:])
        self.patch = _check_patch(patch, shape, "training patches")
        if self.spatial_dims == 3:
            short = [b for b in self.blocks if len(b) < self.patch[0]]
            if short:
                listed = ", ".join(f"slices {b[0]}-{b[-1]} ({len(b)} slices)" for b in short)
                raise InputError(f"3D patches of {self.patch[0]} slices need contiguous blocks "
                                 f"at least that deep; {listed} would be left out")
        self._block_of = {z: block for block in self.blocks for z in block}
        if patches_per_image < 1:
            raise InputError(f"'patches_per_image' must be >= 1, got {patches_per_image}")
        if placement not in PLACEMENTS:
            raise InputError(f"dataset option 'placement' must be one of {list(PLACEMENTS)}, "
                             f"got {placement!r}")
        self.patches_per_image = int(patches_per_image)
        self.sampler = ForegroundSampler(labels, self.z_indices, foreground_weight)
        self.normalization = normalization or default_normalization(image)
        self.placement, self.origins_only = placement, bool(origins_only)
        self.volume_number = int(volume_number)

    def __len__(self) -> int:
        if self.spatial_dims == 2:
            return len(self.z_indices) * self.patches_per_image
        # 3D: one "image" is a block; an epoch draws as many subvolumes as tile the blocks,
        # times patches_per_image, so that an epoch explores about all the training data
        # (paper 002)
        tiles = sum(int(np.prod([-(-length // size) for length, size in
                                 zip((len(block), *self.image.shape[1:]), self.patch)]))
                    for block in self.blocks)
        return tiles * self.patches_per_image

    def origin(self, item: int | SampleKey) -> tuple[int, int, int]:
        """The corner (z, y, x) of sample ``item``'s window (z: its slice in 2D)."""
        index, draw = sample_key(item)
        rng = np.random.default_rng([draw, index])
        height, width = self.image.shape[1:]
        z, y, x, from_foreground = self.sampler.draw(rng, (height, width))
        block = self._block_of[z]  # 3D: the window stays inside the block of the drawn slice
        if self.placement == "uniform" and not from_foreground:
            y0 = int(rng.integers(height - self.patch[-2] + 1))
            x0 = int(rng.integers(width - self.patch[-1] + 1))
            if self.spatial_dims == 3:
                z = block.start + int(rng.integers(len(block) - self.patch[0] + 1))
            return z, y0, x0
        y0, x0 = _start(y, self.patch[-2], height), _start(x, self.patch[-1], width)
        if self.spatial_dims == 3:
            z = block.start + _start(z - block.start, self.patch[0], len(block))
        return z, y0, x0

    def origins(self, items: Sequence[int | SampleKey]) -> np.ndarray:
        """The corners (N, 3) (z, y, x) of a whole batch of windows, drawn at once.

        The same distribution as ``origin`` (placement, foreground weighting, 3D windows inside
        their block) from one generator per batch instead of one per sample: a batch of 64
        windows costs about 0.1 ms instead of 3 ms of the CPU, which bounds a GPU training step
        when the windows are cut on the GPU (``sampling=device``). Keyed like ``origin`` (by
        the epoch's draw, the batch's first index and its size), so a run's windows repeat for
        the same seed.
        """
        count = len(items)
        indices, draw = batch_key(items)
        rng = np.random.default_rng([draw, indices[0] if count else 0, count])
        height, width = self.image.shape[1:]
        z, y, x, from_foreground = self.sampler.draw_many(rng, count, (height, width))
        patch_h, patch_w = self.patch[-2], self.patch[-1]
        y0 = np.clip(y - patch_h // 2, 0, max(height - patch_h, 0))
        x0 = np.clip(x - patch_w // 2, 0, max(width - patch_w, 0))
        if self.spatial_dims == 3:
            start = np.array([self._block_of[int(v)].start for v in z])
            length = np.array([len(self._block_of[int(v)]) for v in z])
            z = start + np.clip(z - start - self.patch[0] // 2, 0, np.maximum(length - self.patch[0], 0))
        if self.placement == "uniform":
            uniform = ~from_foreground
            y0 = np.where(uniform, rng.integers(height - patch_h + 1, size=count), y0)
            x0 = np.where(uniform, rng.integers(width - patch_w + 1, size=count), x0)
            if self.spatial_dims == 3:
                room = length - self.patch[0] + 1
                z = np.where(uniform, start + (rng.random(count) * room).astype(np.int64), z)
        return np.stack([z, y0, x0], 1).astype(np.int64)

    def __getitems__(self, items: Sequence[int | SampleKey]) -> list[dict[str, Any]]:
        """A DataLoader batch: window corners drawn at once (``origins_only``), else item by item."""
        if not self.origins_only:
            return [self[item] for item in items]
        corners = torch.from_numpy(self.origins(items))
        return [{"origin": corner, "volume": self.volume_number, "index": item_index(item)}
                for corner, item in zip(corners, items)]

    def __getitem__(self, item: int | SampleKey) -> dict[str, Any]:
        index = item_index(item)
        z, y0, x0 = self.origin(item)
        if self.origins_only:
            return {"origin": torch.tensor([z, y0, x0]), "volume": self.volume_number,
                    "index": index}
        ys, xs = slice(y0, y0 + self.patch[-2]), slice(x0, x0 + self.patch[-1])
        window = (z, ys, xs) if self.spatial_dims == 2 else (slice(z, z + self.patch[0]), ys, xs)
        return _sample(self.image[window], self.labels[window], index, f"z{z}-y{y0}-x{x0}",
                       self.normalization, _valid(self.ignored, window, self.with_valid))


def default_normalization(image: Any) -> Normalization:
    """Integer EM intensities to [0, 1] by their dtype's range; other dtypes as they are."""
    if np.dtype(image.dtype).kind in "ui":
        return Normalization("scale", scale=dtype_range(image.dtype))
    return Normalization("none")


class TiledPatchDataset(Dataset):
    """Fixed patches covering the given slices, each voxel scored by one of them (validation: a
    stable loss).

    The last patch of an axis whose length is not a multiple of the patch is shifted back to
    end at the border, so the whole area is seen; it overlaps the patch before it. Every sample
    carries ``valid``: the voxels it scores, those of its window that no earlier patch covers,
    less the ``ignored`` ones. The validation loss and metrics score ``valid`` voxels only, so
    each voxel counts once; the network still sees the whole window.
    """

    def __init__(self, image: Any, labels: Any, z_indices: Sequence[int],
                 patch: Sequence[int], normalization: Normalization | None = None,
                 ignored: Any | None = None) -> None:
        self.image, self.labels, self.z_indices = image, labels, list(z_indices)
        self.ignored = ignored
        self.normalization = normalization or default_normalization(image)
        self.spatial_dims = len(patch)
        shape = image.shape[1:] if self.spatial_dims == 2 else (len(self.z_indices), *image.shape[1:])
        self.patch = _check_patch(patch, shape, "validation patches")
        starts = [_grid(length, size) for length, size in zip(shape, self.patch)]
        if self.spatial_dims == 2:
            self.origins = [(z, y, x) for z in self.z_indices for y in starts[0] for x in starts[1]]
        else:
            first = self.z_indices[0]
            self.origins = [(first + z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> dict[str, Any]:
        z, y, x = self.origins[index]
        ys, xs = slice(y, y + self.patch[-2]), slice(x, x + self.patch[-1])
        window = (z, ys, xs) if self.spatial_dims == 2 else (slice(z, z + self.patch[0]), ys, xs)
        corner = (y, x) if self.spatial_dims == 2 else (z - self.z_indices[0], y, x)
        valid = _first_covered(corner, self.patch) * _valid(self.ignored, window, True)
        return _sample(self.image[window], self.labels[window], index, f"z{z}-y{y}-x{x}",
                       self.normalization, valid)


def _grid(length: int, size: int) -> list[int]:
    """Tile starts along an axis: every multiple of ``size`` that fits, and, where the length
    is not a multiple, a last one shifted back to end at ``length``."""
    starts = list(range(0, max(length - size, 0) + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _first_covered(corner: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """(``patch``) float32: 1 on the voxels of the ``_grid`` tile at ``corner`` that no earlier
    tile covers, 0 elsewhere. Along each axis, an earlier tile covers a tile's positions up to
    the next multiple of the tile size: none for a tile on the grid, and the overlap with the
    tile before for the shifted last one."""
    scored = np.zeros(tuple(patch), np.float32)
    scored[tuple(slice(-start % size, None) for start, size in zip(corner, patch))] = 1.0
    return scored


def _valid(ignored: Any | None, window: tuple, wanted: bool) -> np.ndarray | None:
    """The voxels of ``window`` that count (float32 1/0), or None when not ``wanted``."""
    if not wanted:
        return None
    if ignored is None:
        return np.ones((), np.float32)  # nothing ignored in this volume: every voxel counts
    return (~np.asarray(ignored[window], bool)).astype(np.float32)


def _sample(image: np.ndarray, labels: np.ndarray, index: int, where: str,
            normalization: Normalization, valid: np.ndarray | None = None) -> dict[str, Any]:
    mask = np.ascontiguousarray(np.asarray(labels) > 0, np.float32)
    sample = {"image": torch.from_numpy(np.ascontiguousarray(normalization(image)))[None],
              "mask": torch.from_numpy(mask)[None], "index": index, "mask_id": where}
    if valid is not None:
        sample["valid"] = torch.from_numpy(np.array(np.broadcast_to(valid, mask.shape),
                                                    np.float32))[None]
    return sample


class ConcatPatches(ConcatDataset):
    """Patches (or, with ``origins_only``, window corners) of several volumes' data sets, each
    giving samples in proportion to its length. A DataLoader batch is asked of each member at
    once for its share (so ``RandomPatchDataset`` draws the corners of its share in one call,
    as it would alone) and comes back in the batch's order. A ``SampleKey`` reaches a member
    with a draw of its own (``member_key``), so two volumes' samples never draw alike."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(datasets)
        self.keyed_draws = any(keyed_draws(d) for d in self.datasets)

    def _locate(self, item: int | SampleKey) -> tuple[int, int | SampleKey]:
        index = item_index(item)
        if not 0 <= index < len(self):
            raise IndexError(index)
        member = bisect.bisect_right(self.cumulative_sizes, index)
        local = index - (self.cumulative_sizes[member - 1] if member else 0)
        return member, (member_key(SampleKey(*item), member, local)
                        if isinstance(item, tuple) else local)

    def __getitem__(self, item: int | SampleKey) -> dict[str, Any]:
        member, local = self._locate(item)
        return self.datasets[member][local]

    def __getitems__(self, items: Sequence[int | SampleKey]) -> list[dict[str, Any]]:
        members: dict[int, list[tuple[int, int | SampleKey]]] = {}
        for position, item in enumerate(items):
            member, local = self._locate(item)
            members.setdefault(member, []).append((position, local))
        out: list[dict[str, Any]] = [{}] * len(items)
        for member, placed in members.items():
            dataset = self.datasets[member]
            locals_ = [local for _, local in placed]
            drawn = (dataset.__getitems__(locals_) if hasattr(dataset, "__getitems__")
                     else [dataset[local] for local in locals_])
            for (position, _), sample in zip(placed, drawn):
                out[position] = sample
        return out
