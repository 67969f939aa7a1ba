"""A user's own EM volumes as a ``VolumeSet`` (``dataset=em_volumes``): any number of training,
validation and test volumes, each an image and a label source, read lazily.

A source is anything ``mitoseg.data.volume_sources.open_volume`` opens: a TIFF stack, a folder
of slices, ``file.h5:/dataset``, a Zarr array, or a level of an OME-Zarr image. Labels pass
through a ``LabelMapping`` (which values are mitochondria, background, ignored). A volume entry
in the config::

    {image: cells.ome.zarr, labels: cells_labels.h5:/mito, name: cell1,    # name: optional
     level: 0, label_mapping: null, voxel_size_nm: null,                      # per-volume overrides
     z_range: [0, 400]}                          # only slices 0-399 (null: all)

``z_range`` lets one recording give training and test volumes (e.g. train [0, 122], test
[132, 165] of Lucchi's training.tif, 10 slices apart: neighbouring slices are near-copies, so
leave a gap; ``python -m mitoseg.data.em_overlap <image> <labels>`` measures how far apart
slices stop looking alike). Slice numbers in run records are those of the recording.

Every check runs before training starts and stops with one message naming the volume: a
missing file or dataset inside it, image and labels of different shapes, a label value outside
the mapping (every label is scanned, a few slices at a time, unless ``scan_labels`` is false:
then a stray value stops training when a patch first reads it), and voxel sizes that disagree
with the file's metadata or between volumes (a network is trained at one scale).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mitoseg.data.label_mapping import LabelMapping
from mitoseg.data.volume_set import (
    LabelledVolume,
    VolumeSet,
    mapped_views,
    recording_of,
    slice_counts,
)
from mitoseg.data.volume_sources import (
    Volume,
    check_pair,
    check_voxel_size,
    open_volume,
    resolve_source,
)
from mitoseg.errors import InputError
from mitoseg.runs.paths import display_path

log = logging.getLogger(__name__)

ENTRY_KEYS = {"image", "labels", "name", "level", "label_mapping", "voxel_size_nm", "z_range"}


def em_volume_files(train: Sequence[Mapping[str, Any]] | None = None,
                    test: Sequence[Mapping[str, Any]] | None = None,
                    val: Sequence[Mapping[str, Any]] | None = None,
                    label_mapping: Mapping[str, Any] | None = None,
                    voxel_size_nm: Sequence[float] | None = None, level: int | None = None,
                    root: str | None = None, description: str | None = None,
                    scan_labels: bool = True, max_test_slices: int | None = None) -> VolumeSet:
    """Open every volume of the three splits (see the module docstring).

    ``root``: relative sources are read from there (default: the working directory).
    ``label_mapping``, ``voxel_size_nm`` and ``level`` apply to every volume that does not
    set its own. ``max_test_slices``: only the first slices of each test volume (quick runs).
    """
    for split, given in (("train", train), ("test", test)):
        if not given:
            raise InputError(f"dataset.volumes.{split}: no {split} volumes given; list them as "
                             f"[{{image: <source>, labels: <source>}}, ...] in your dataset "
                             "config (see conf/dataset/em_volumes.yaml and em_volumes_example.yaml)")
    mapping = LabelMapping.from_config(label_mapping)
    splits = {"train": list(train or []), "val": list(val or []), "test": list(test or [])}
    opened: dict[str, list[LabelledVolume]] = {}
    sizes: dict[str, tuple[float, float, float] | None] = {}
    for split, entries in splits.items():
        opened[split] = []
        for number, entry in enumerate(entries):
            volume, size = _open_entry(entry, split, number, mapping, voxel_size_nm, level,
                                       root, scan_labels)
            opened[split].append(_limit(volume, max_test_slices) if split == "test" else volume)
            sizes[volume.name] = size
    voxel_size = _one_voxel_size(sizes)
    text = description or (f"EM volumes ({len(opened['train'])} train, {len(opened['val'])} "
                           f"val, {len(opened['test'])} test)")
    notes = {"test": "separate volumes", "test_gap_slices": None,
             "label_mapping": {"foreground": list(mapping.foreground),
                               "background": None if mapping.background is None
                               else list(mapping.background), "ignore": list(mapping.ignore)},
             "sources": {split: [_source_note(v, splits[split][i]) for i, v in enumerate(vols)]
                         for split, vols in opened.items()}}
    if max_test_slices is not None:
        notes["max_test_slices"] = int(max_test_slices)
    return VolumeSet(train=opened["train"], val=opened["val"], test=opened["test"],
                     voxel_size_nm=voxel_size, description=text, notes=notes)


def _open_entry(entry: Mapping[str, Any], split: str, number: int, mapping: LabelMapping,
                voxel_size_nm: Sequence[float] | None, level: int | None, root: str | None,
                scan_labels: bool) -> tuple[LabelledVolume, tuple[float, float, float] | None]:
    where = f"dataset.volumes.{split}[{number}]"
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: expected {{image: <source>, labels: <source>}}, got {entry!r}")
    unknown = set(entry) - ENTRY_KEYS
    missing = {"image", "labels"} - set(entry)
    if unknown or missing:
        raise InputError(f"{where}: {'unknown key(s) ' + str(sorted(unknown)) if unknown else ''}"
                         f"{'; ' if unknown and missing else ''}"
                         f"{'missing ' + str(sorted(missing)) if missing else ''}; "
                         f"a volume takes {sorted(ENTRY_KEYS)}")
    name = str(entry.get("name") or f"{split}{number}")
    chosen_level = entry["level"] if entry.get("level") is not None else level
    image = open_volume(resolve_source(entry["image"], root), chosen_level)
    raw_labels = open_volume(resolve_source(entry["labels"], root), chosen_level)
    check_pair(image, raw_labels)
    own_mapping = (LabelMapping.from_config(entry["label_mapping"])
                   if entry.get("label_mapping") is not None else mapping)
    described = f"{where} ('{name}', labels '{raw_labels.source}')"
    labels, ignored = mapped_views(raw_labels.array, own_mapping, described)
    if scan_labels and own_mapping.background is not None:
        labels.slice_counts()  # checks every value; the counts are kept for the setup's needs
    given = entry["voxel_size_nm"] if entry.get("voxel_size_nm") is not None else voxel_size_nm
    size = _voxel_size(image, raw_labels, given)
    log.info("%s: '%s' image %s %s, labels %s", where, name, image.source, image.shape,
             raw_labels.source)
    volume = LabelledVolume(name, image.array, labels, ignored,
                            recording=recording_of(image.source, image.shape))
    if entry.get("z_range") is not None:
        volume = _z_range(volume, entry["z_range"], where)
    return volume, size


def _z_range(volume: LabelledVolume, z_range: Any, where: str) -> LabelledVolume:
    try:
        start, stop = (int(v) for v in z_range)
    except (TypeError, ValueError) as error:
        raise InputError(f"{where}: z_range must be [start, stop] (slices start .. stop - 1), "
                         f"got {z_range!r}") from error
    if not 0 <= start < stop <= volume.depth:
        raise InputError(f"{where}: z_range [{start}, {stop}] must lie within the volume's "
                         f"{volume.depth} slices and hold at least one")
    return _slices(volume, start, stop)


def _voxel_size(image: Volume, labels: Volume, given: Sequence[float] | None
                ) -> tuple[float, float, float] | None:
    """The file's voxel size (image and labels must agree with it and each other) or the given."""
    size = check_voxel_size(image, given)
    label_size = check_voxel_size(labels, size)
    return label_size if size is None else size


def _one_voxel_size(sizes: Mapping[str, tuple[float, float, float] | None]
                    ) -> tuple[float, float, float]:
    known = {name: tuple(float(v) for v in size) for name, size in sizes.items() if size}
    unknown = [name for name, size in sizes.items() if not size]
    if unknown:
        raise InputError(f"volume(s) {unknown}: no voxel size in the files' metadata; give "
                         "dataset.volumes.voxel_size_nm: [z, y, x] in nm (or per volume)")
    distinct = sorted(set(known.values()))
    if len(distinct) > 1:
        listed = "; ".join(f"{name}: {list(size)}" for name, size in known.items())
        raise InputError(f"the volumes have different voxel sizes ({listed} nm); a network is "
                         "trained and tested at one scale: resample them, or choose an OME-Zarr "
                         "level per volume (level:) that matches")
    return distinct[0]


def _limit(volume: LabelledVolume, max_test_slices: int | None) -> LabelledVolume:
    if max_test_slices is None or max_test_slices >= volume.depth:
        return volume
    if isinstance(max_test_slices, bool) or int(max_test_slices) < 1:
        raise InputError("dataset option 'volumes.max_test_slices' must be null or an int >= 1, "
                         f"got {max_test_slices!r}")
    return _slices(volume, 0, int(max_test_slices))


def _slices(volume: LabelledVolume, start: int, stop: int) -> LabelledVolume:
    """Slices start .. stop - 1 of ``volume``, still lazy, with their source slice numbers."""
    def cut(array: Any) -> Any:
        return None if array is None else ZRange(array, start, stop)

    return LabelledVolume(volume.name, cut(volume.image), cut(volume.labels), cut(volume.ignored),
                          volume.numbers(range(start, stop)), volume.recording)


class ZRange:
    """Slices ``start`` .. ``stop`` - 1 of a lazy (D, H, W) array, still lazy: reading a block
    reads only that block of the underlying array."""

    def __init__(self, array: Any, start: int, stop: int) -> None:
        self.array, self.start = array, int(start)
        self.shape = (int(stop) - int(start), *tuple(array.shape)[1:])
        self.dtype, self.ndim = array.dtype, len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        index = index if isinstance(index, tuple) else (index,)
        z = index[0]
        if isinstance(z, slice):
            first, last, step = z.indices(self.shape[0])
            z = slice(self.start + first, self.start + last, step)
        elif isinstance(z, (list, tuple, np.ndarray)):
            z = [self.start + self._inside(v) for v in z]
        else:
            z = self.start + self._inside(z)
        return self.array[(z, *index[1:])]

    def slice_counts(self) -> np.ndarray | None:
        """The underlying view's per-slice counts (``volume_set.slice_counts``) for this range."""
        counts = slice_counts(self.array)
        return None if counts is None else counts[self.start:self.start + self.shape[0]]

    def _inside(self, z: Any) -> int:
        z = int(z)
        if not -self.shape[0] <= z < self.shape[0]:
            raise IndexError(f"slice {z} outside the {self.shape[0]} slices of this range")
        return z % self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        whole = np.asarray(self[:])
        return whole if dtype is None else whole.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def _source_note(volume: LabelledVolume, entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": volume.name, "image": display_path(str(entry["image"])),
            "labels": display_path(str(entry["labels"])), "shape": list(volume.shape)}
