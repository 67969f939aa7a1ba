"""Labelled EM volumes grouped into training, validation and test sets: what the EM data module
trains and tests on, whether they come from a named data set's reader (Lucchi, Lucchi++,
Kasthuri++, synthetic: one volume per split) or from a user's own files (``dataset=em_volumes``:
any number of TIFF / slice-folder / HDF5 / Zarr / OME-Zarr volumes, ``mitoseg.data.em_volume_files``).

Every array here is lazy: a volume is only sliced, so a patch reads what it touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.data.label_mapping import CHECK_VOXELS, LabelMapping
from mitoseg.data.slabs import slab_ranges
from mitoseg.data.volume_sources import split_inner
from mitoseg.errors import InputError

SPLITS = ("train", "val", "test")


# Blocks up to this many voxels are kept after mapping, so the foreground and ignore views of a
# training patch read and map the raw labels once; whole volumes are not kept.
CACHE_VOXELS = 1 << 26


class MappedBlocks:
    """Raw labels read through a ``LabelMapping`` block by block: (foreground, ignored) bool
    masks of a block. The last block is kept (up to ``CACHE_VOXELS``), because a patch asks
    for its labels and then for its ignore mask at the same index."""

    def __init__(self, raw: Any, mapping: LabelMapping, where: str) -> None:
        self.raw, self.mapping, self.where = raw, mapping, where
        self.shape = tuple(int(n) for n in raw.shape)
        self._last: tuple[str, np.ndarray, np.ndarray] | None = None
        self._counts: tuple[np.ndarray, np.ndarray] | None = None

    def slice_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per slice, the foreground and the ignored voxels: one pass over the raw labels, read
        in slabs of whole storage chunks (``mitoseg.data.slabs``) and mapped a block of slices
        at a time (up to 16, fewer where 16 hold more than ``CHECK_VOXELS``), which also checks
        every value against the mapping; computed once. The label check, the search for slices
        without an annotated voxel and the foreground sampler all use it, so a large volume's
        labels are read once at setup instead of once for each."""
        if self._counts is None:
            depth, area = self.shape[0], max(1, int(np.prod(self.shape[1:])))
            step = min(16, max(1, CHECK_VOXELS // area))
            foreground, ignored = np.zeros(depth, np.int64), np.zeros(depth, np.int64)
            for slab_start, slab_stop in slab_ranges(self.raw):
                slab = np.asarray(self.raw[slab_start:slab_stop])
                for start in range(slab_start, slab_stop, step):
                    block = slice(start, min(start + step, slab_stop))
                    foreground[block], ignored[block] = self.mapping.slice_counts(
                        slab[start - slab_start:block.stop - slab_start],
                        f"{self.where}, slices {start}-{block.stop - 1}")
            self._counts = (foreground, ignored)
        return self._counts

    def masks(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        key = repr(index)
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        raw = np.asarray(self.raw[index])
        where = f"{self.where}, block {_describe(index)}"
        if raw.ndim == 3 and raw.size > CHECK_VOXELS:  # a slab: mapped a few slices at a time,
            # since apply's float32 target and its masks cost several bytes a voxel at once
            foreground, ignored = np.empty(raw.shape, bool), np.empty(raw.shape, bool)
            step = max(1, CHECK_VOXELS // max(1, raw[0].size))
            for start in range(0, len(raw), step):
                target, valid = self.mapping.apply(raw[start:start + step], where)
                foreground[start:start + step], ignored[start:start + step] = target > 0, ~valid
        else:
            target, valid = self.mapping.apply(raw, where)
            foreground, ignored = target.astype(bool), ~valid
        self._last = (key, foreground, ignored) if foreground.size <= CACHE_VOXELS else None
        return foreground, ignored


class MappedLabels:
    """A lazy (D, H, W) bool view of raw labels through a ``LabelMapping``: ``part`` is
    "foreground" (True = mitochondrion) or "ignored" (True = the voxel counts nowhere).
    Reading a block applies the mapping to that block only; a value outside the mapping stops
    with the values found, the volume and the slices. Views made by ``mapped_views`` share
    their ``MappedBlocks``."""

    def __init__(self, blocks: MappedBlocks, part: str) -> None:
        if part not in ("foreground", "ignored"):
            raise ValueError(f"MappedLabels: part must be 'foreground' or 'ignored', got {part!r}")
        self.blocks, self.part = blocks, part
        self.shape = blocks.shape
        self.dtype = np.dtype(bool)
        self.ndim = len(self.shape)

    @property
    def chunks(self) -> Any:
        """The raw labels' storage chunks (None without), so scans read whole chunks."""
        return getattr(self.blocks.raw, "chunks", None)

    def __getitem__(self, index: Any) -> np.ndarray:
        foreground, ignored = self.blocks.masks(index)
        return foreground if self.part == "foreground" else ignored

    def slice_counts(self) -> np.ndarray:
        """(D,) the True voxels of each slice of this view (``MappedBlocks.slice_counts``)."""
        foreground, ignored = self.blocks.slice_counts()
        return foreground if self.part == "foreground" else ignored

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def slice_counts(labels: Any) -> np.ndarray | None:
    """(D,) the True voxels of each slice of a lazy label view that keeps them (a
    ``MappedLabels`` or a z range of one), else None: the caller then reads the slices."""
    counts = getattr(labels, "slice_counts", None)
    return None if counts is None else counts()


def mapped_views(raw: Any, mapping: LabelMapping, where: str
                 ) -> tuple[MappedLabels, MappedLabels | None]:
    """The foreground view of raw labels, and their ignore view (None when the mapping ignores
    no value), sharing one block reader."""
    blocks = MappedBlocks(raw, mapping, where)
    return (MappedLabels(blocks, "foreground"),
            MappedLabels(blocks, "ignored") if mapping.ignore else None)


def _describe(index: Any) -> str:
    index = index if isinstance(index, tuple) else (index,)
    parts = []
    for item in index:
        if isinstance(item, slice):
            parts.append(f"{'' if item.start is None else item.start}:"
                         f"{'' if item.stop is None else item.stop}")
        elif isinstance(item, (int, np.integer)):
            parts.append(str(int(item)))
        else:
            parts.append("[...]")
    return "[" + ", ".join(parts) + "]"


@dataclass(frozen=True)
class Recording:
    """The file a volume's slices are read from: its resolved path (with the dataset inside an
    HDF5 / Zarr file) and the shape of the whole array there. Volumes of one recording number
    their slices alike (``LabelledVolume.numbers``), so how many slices lie between them is
    known; the shape keeps another array at the same path (a rewritten file, an OME-Zarr level)
    from passing for the same recording."""

    source: str
    shape: tuple[int, int, int]

    def __str__(self) -> str:
        return f"'{self.source}' ({' x '.join(str(n) for n in self.shape)})"


def recording_of(source: str | Path, shape: Sequence[int]) -> Recording:
    """The ``Recording`` of an array of ``shape`` read from ``source``: a path, or
    'file.h5:/dataset' / 'file.zarr:/array' (the file part resolved: links, '..', relative to
    the working directory)."""
    path, separator, inner = split_inner(str(source))
    resolved = Path(path).expanduser().resolve()
    return Recording(f"{resolved}{separator}{inner}", tuple(int(n) for n in shape))


@dataclass(frozen=True)
class LabelledVolume:
    """One (D, H, W) image with its labels.

    ``labels``: True = mitochondrion (bool, or {0, 1}-like: read as ``> 0``); ``ignored``: True
    = the voxel counts in neither the loss nor any metric (None: nothing is ignored).
    ``slice_numbers``: the source slice number of each slice (None: 0, 1, 2, ...), so run records
    name the slices of the recording. ``recording``: the file those numbers count in (None:
    not from a file, e.g. procedural volumes); evaluate.py keeps test slices away from the
    slices a checkpoint saw in the same recording (``evaluation.training_overlap``).
    """

    name: str
    image: Any
    labels: Any
    ignored: Any | None = None
    slice_numbers: list[int] | None = None
    recording: Recording | None = None

    def __post_init__(self) -> None:
        if len(self.image.shape) != 3:
            raise InputError(f"volume '{self.name}': the image must be a (D, H, W) volume, got "
                             f"shape {tuple(self.image.shape)}")
        for what, array in (("labels", self.labels), ("ignore mask", self.ignored)):
            if array is not None and tuple(array.shape) != tuple(self.image.shape):
                raise InputError(f"volume '{self.name}': image shape {tuple(self.image.shape)} "
                                 f"differs from its {what}' shape {tuple(array.shape)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.image.shape)  # type: ignore[return-value]

    @property
    def depth(self) -> int:
        return self.shape[0]

    def numbers(self, indices: Sequence[int] | None = None) -> list[int]:
        """Source slice numbers of ``indices`` (all slices by default)."""
        indices = range(self.depth) if indices is None else indices
        return [int(self.slice_numbers[z]) if self.slice_numbers is not None else int(z)
                for z in indices]

    def valid(self, index: Any = slice(None)) -> np.ndarray | None:
        """The voxels of ``index`` that count (bool), or None when nothing is ignored."""
        return None if self.ignored is None else ~np.asarray(self.ignored[index], bool)


@dataclass
class VolumeSet:
    """Training, validation and test volumes of one data set, at one voxel size.

    ``val`` empty: validation slices are drawn from the training volumes
    (``dataset.val_fraction``, see ``EMDataModule``).
    """

    train: list[LabelledVolume]
    test: list[LabelledVolume]
    voxel_size_nm: tuple[float, float, float]  # (z, y, x)
    description: str
    val: list[LabelledVolume] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            if not getattr(self, split):
                raise InputError(f"{self.description}: no {split} volume; give at least one")
        names = [v.name for split in SPLITS for v in getattr(self, split)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"{self.description}: volume name(s) {repeated} are used twice; "
                             "every volume needs its own name")

    def volumes(self, split: str) -> list[LabelledVolume]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    @property
    def has_ignore(self) -> bool:
        """Does any volume mark voxels to ignore (then every batch carries a ``valid`` mask)?"""
        return any(v.ignored is not None for split in SPLITS for v in getattr(self, split))

    # The single-volume view: what a named data set (one training and one test volume) offers.
    def only(self, split: str) -> LabelledVolume:
        """The one volume of ``split``; a clear error when the set holds several."""
        volumes = self.volumes(split)
        if len(volumes) != 1:
            raise InputError(f"{self.description}: {len(volumes)} {split} volumes "
                             f"({[v.name for v in volumes]}); this step handles one")
        return volumes[0]

    @property
    def train_image(self) -> Any:
        return self.only("train").image

    @property
    def train_labels(self) -> Any:
        return self.only("train").labels

    @property
    def test_image(self) -> Any:
        return self.only("test").image

    @property
    def test_labels(self) -> Any:
        return self.only("test").labels

    def slice_numbers(self, split: str, indices: Sequence[int] | None = None) -> list[int]:
        """Source slice numbers of ``indices`` of the one 'train' or 'test' volume."""
        return self.only(split).numbers(indices)


def from_em_volumes(found: Any) -> VolumeSet:
    """A named data set's ``EMVolumes`` (one training and one test volume) as a ``VolumeSet``;
    a ``VolumeSet`` is returned as it is."""
    if isinstance(found, VolumeSet):
        return found
    for name in ("train_image", "train_labels", "test_image", "test_labels"):
        if getattr(found, name).ndim != 3:
            raise InputError(f"{found.description}: {name} must be a (D, H, W) volume, got "
                             f"shape {getattr(found, name).shape}")
    return VolumeSet(
        train=[LabelledVolume("train", found.train_image, found.train_labels,
                              found.train_ignored, found.train_slice_numbers,
                              found.train_recording)],
        test=[LabelledVolume("test", found.test_image, found.test_labels,
                             found.test_ignored, found.test_slice_numbers,
                             found.test_recording)],
        voxel_size_nm=tuple(found.voxel_size_nm), description=found.description,
        notes=dict(found.notes))
