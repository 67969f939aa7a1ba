"""The EM data sets as ``EMVolumes``: Lucchi, Lucchi++, Kasthuri++ and procedural volumes.

Each function is what a dataset config's ``volumes`` node calls (``_partial_: true``), so
configuring a data set reads nothing; ``EMDataModule.setup`` calls it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mitoseg.data import em_datasets
from mitoseg.data.em_datamodule import EMVolumes
from mitoseg.data.em_split import slice_ranges
from mitoseg.data.em_volumes import (
    CASSER_IGNORE_VALUES,
    CASSER_LAYOUT,
    VOXEL_SIZE_NM,
    binary_labels,
    casser_files,
    label_ignore_mask,
    lucchi_files,
    open_tif_volume,
    paired_slice_volumes,
)
from mitoseg.data.volume_set import recording_of
from mitoseg.errors import InputError
from mitoseg.runs.paths import display_path
from mitoseg.synth.em_volumes import synthetic_em_volume

log = logging.getLogger(__name__)


# The data set whose voxel size each source function gives when its voxel_size_nm is null
# (casser_volumes: the one it reads, its ``dataset`` option).
OWN_VOXEL_SIZE = {"lucchi_volumes": em_datasets.lucchi.KEY,
                  "synthetic_volumes": em_datasets.lucchi.KEY}


def configured_voxel_size_nm(volumes: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """The voxel size (z, y, x nm) that a dataset config's ``volumes`` node gives its volumes,
    from the config alone (nothing is read): its ``voxel_size_nm``, else the named data set's
    own (``mitoseg.data.em_datasets``); None where only the files know it (``em_volume_files``
    takes it from OME-Zarr metadata)."""
    function = str(volumes.get("_target_", "")).rsplit(".", 1)[-1]
    key = (str(volumes.get("dataset", "")).lower() if function == "casser_volumes"
           else OWN_VOXEL_SIZE.get(function))
    given = volumes.get("voxel_size_nm")
    if given is None and function == "synthetic_volumes":
        return synthetic_voxel_size_nm(float(volumes.get("anisotropy", 1.0)))
    if given is None and key is None:
        return None
    return _voxel_size(given, key)


def synthetic_voxel_size_nm(anisotropy: float) -> tuple[float, float, float]:
    """Procedural volumes' voxel size: Lucchi's 5 nm in y and x, ``anisotropy`` times that in
    z (what ``synthetic_em_volume`` draws), so the metrics and the physical augmentation
    lengths see the anisotropy too."""
    y, x = VOXEL_SIZE_NM[em_datasets.lucchi.KEY][1:]
    return _voxel_size((float(anisotropy) * y, y, x), em_datasets.lucchi.KEY)


def _voxel_size(given: Sequence[float] | None, dataset: str) -> tuple[float, float, float]:
    size = tuple(float(v) for v in (given if given is not None else VOXEL_SIZE_NM[dataset]))
    if len(size) != 3 or min(size) <= 0:
        raise InputError(f"dataset option 'voxel_size_nm' must be three sizes > 0 (z, y, x), "
                         f"got {list(size)}")
    return size


def limit_test_slices(volumes: EMVolumes, max_test_slices: int | None) -> EMVolumes:
    """``volumes`` with only the first ``max_test_slices`` test slices (None: all of them).

    For quick runs (``debug=tiny``): every consumer of the data set -- the test after
    training, ``evaluate.py`` -- then sees the same smaller test volume, and the run records
    name the slices kept.
    """
    if max_test_slices is None:
        return volumes
    if isinstance(max_test_slices, bool) or not isinstance(max_test_slices, int) \
            or max_test_slices < 1:
        raise InputError("dataset option 'volumes.max_test_slices' must be null or an int >= 1, "
                         f"got {max_test_slices!r}")
    depth = volumes.test_image.shape[0]
    if max_test_slices >= depth:
        return volumes
    numbers = volumes.slice_numbers("test", range(max_test_slices))
    notes = {**volumes.notes, "max_test_slices": max_test_slices,
             "test_slices": slice_ranges(numbers)}
    return dataclasses.replace(
        volumes, test_image=volumes.test_image[:max_test_slices],
        test_labels=volumes.test_labels[:max_test_slices], notes=notes,
        test_ignored=None if volumes.test_ignored is None
        else volumes.test_ignored[:max_test_slices],
        description=f"{volumes.description}; test cut to its first {max_test_slices} of "
                    f"{depth} slices (max_test_slices)",
        test_slice_numbers=None if volumes.test_slice_numbers is None else numbers)


def lucchi_volumes(root: str, test: str = "holdout", holdout_slices: int = 33,
                   test_gap_slices: int = 10, cache_dir: str | None = None,
                   voxel_size_nm: Sequence[float] | None = None,
                   max_test_slices: int | None = None) -> EMVolumes:
    """The EPFL Lucchi volumes. ``test``: 'official' (testing.tif, the published protocol),
    'holdout' (the last ``holdout_slices`` slices of training.tif, for copies without the test
    volume; training then uses the slices before them, less ``test_gap_slices`` slices next to
    the test range, which are used for nothing) or 'tuning' (the same cut made again inside the
    holdout's training slices: with the defaults test 89-121, gap 79-88, training 0-78; the
    holdout's test slices and gap are never read, so recipes chosen on 'tuning' leave the
    'holdout' score unbiased by the choice).

    Why the gap: at 5 nm per slice, neighbouring slices are near-copies (image correlation
    0.89, label IoU 0.92 for slices 1 apart on the real volume; 0.39 and 0.61 for 10 apart,
    see ``python -m mitoseg.data.em_overlap``), so a test slice next to a training slice
    measures memory more than generalization. ``max_test_slices``: see ``limit_test_slices``.
    """
    if test not in LUCCHI_TESTS:
        raise InputError(f"dataset option 'test' must be one of {list(LUCCHI_TESTS)}, got "
                         f"{test!r}")
    files = lucchi_files(root, ("train", "test") if test == "official" else ("train",))
    image = open_tif_volume(files["train"][0], cache_dir)
    labels = binary_labels(open_tif_volume(files["train"][1], cache_dir), files["train"][1])
    voxel = _voxel_size(voxel_size_nm, OWN_VOXEL_SIZE["lucchi_volumes"])
    recording = recording_of(files["train"][0], image.shape)
    if test == "official":
        test_image = open_tif_volume(files["test"][0], cache_dir)
        test_labels = binary_labels(open_tif_volume(files["test"][1], cache_dir), files["test"][1])
        return limit_test_slices(EMVolumes(
            image, labels, test_image, test_labels, voxel,
            f"Lucchi '{display_path(root)}' (official train/test volumes)",
            {"test": "official", "test_gap_slices": None,
             "test_source": "testing.tif, a separate volume"}, train_recording=recording,
            test_recording=recording_of(files["test"][0], test_image.shape)), max_test_slices)
    gap = int(test_gap_slices)
    end, cut, stop = held_out_ranges(image.shape[0], int(holdout_slices), gap,
                                     tuning=test == "tuning", where=str(files["train"][0]))
    notes = {"test": test, "train_slices": [[0, end - 1]],
             "gap_slices": [[end, cut - 1]] if gap else [], "test_slices": [[cut, stop - 1]],
             "test_gap_slices": gap,
             "test_source": "training.tif, held-out slices" if test == "holdout" else
             "training.tif, slices before the holdout's gap (a tuning split)"}
    unread = (f", slices {stop}-{image.shape[0] - 1} (the holdout and its gap) never read"
              if stop < image.shape[0] else "")
    return limit_test_slices(EMVolumes(
        image[:end], labels[:end], image[cut:stop], labels[cut:stop], voxel,
        f"Lucchi '{display_path(root)}' (slices {cut}-{stop - 1} held out as test, {gap} slices "
        f"before them unused{unread})", notes, test_slice_numbers=list(range(cut, stop)),
        train_recording=recording, test_recording=recording), max_test_slices)


LUCCHI_TESTS = ("official", "holdout", "tuning")


def held_out_ranges(depth: int, holdout_slices: int, gap: int, tuning: bool, where: str
                    ) -> tuple[int, int, int]:
    """(end, cut, stop): training slices 0 .. end - 1, test slices cut .. stop - 1, the ``gap``
    slices between them unused. The holdout tests the last ``holdout_slices`` of ``depth``; the
    tuning split makes the same cut again within the holdout's training slices."""
    if gap < 0:
        raise InputError(f"dataset option 'test_gap_slices' must be >= 0, got {gap}")
    ranges = _cut_at_end(depth, holdout_slices, gap, where, "")
    if tuning:  # the tuning split lies within the holdout's training slices 0 .. end - 1
        ranges = _cut_at_end(ranges[0], holdout_slices, gap, where,
                             " before the holdout's gap (test=tuning)")
    return ranges


def _cut_at_end(depth: int, holdout_slices: int, gap: int, where: str, context: str
                ) -> tuple[int, int, int]:
    """(end, cut, depth): the last ``holdout_slices`` of slices 0 .. depth - 1 tested, the
    ``gap`` before them unused, slices 0 .. end - 1 trained on."""
    if not 0 < holdout_slices or holdout_slices + gap >= depth:
        raise InputError(f"dataset options 'holdout_slices' ({holdout_slices}, >= 1) and "
                         f"'test_gap_slices' ({gap}) must leave training slices in the {depth} "
                         f"slices of '{where}'{context}")
    cut = depth - holdout_slices
    return cut - gap, cut, depth


def casser_volumes(root: str, dataset: str, voxel_size_nm: Sequence[float] | None = None,
                   layout: Mapping[str, Sequence[str]] | None = None,
                   split_note: str | None = None,
                   max_test_slices: int | None = None,
                   ignore_unlabelled: bool = True) -> EMVolumes:
    """Lucchi++ or Kasthuri++ in the layout Casser et al. (2020) distribute (PNG slices).

    ``layout``: ``{"train": [image folder, label folder], "test": [...]}``, by default
    Train_In/Train_Out and Test_In/Test_Out. Images and labels pair by the slice number in their
    names; the numbers are kept, so run records name the slices of the recording.
    ``split_note`` says in the run record what the two folders are (e.g. which EPFL volume).
    ``max_test_slices``: see ``limit_test_slices``. ``ignore_unlabelled``: the voxels the data
    set marks as unlabelled (Kasthuri++: 2, outside the tissue) count in neither the loss nor any
    metric; false reads them as background (what the labels say if taken as plain masks).
    """
    key = dataset.lower()
    folders = casser_files(root, key, _layout(layout))
    volumes, numbers, ignored, recordings = {}, {}, {}, {}
    for split, (image_folder, label_folder) in folders.items():
        image, raw_labels, numbers[split] = paired_slice_volumes(image_folder, label_folder)
        recordings[split] = recording_of(image_folder, image.shape)
        volumes[split] = (image, binary_labels(raw_labels, label_folder, CASSER_IGNORE_VALUES[key]))
        mask = label_ignore_mask(raw_labels, CASSER_IGNORE_VALUES[key])
        ignored[split] = mask if ignore_unlabelled and CASSER_IGNORE_VALUES[key] and mask.any() \
            else None
    names = {split: [pair[0].name, pair[1].name] for split, pair in folders.items()}
    notes = {"test": "separate volume", "test_gap_slices": None,
             "ignored_values": list(CASSER_IGNORE_VALUES[key]) if ignore_unlabelled else [],
             "ignored_voxels": {split: 0 if mask is None else int(mask.sum())
                                for split, mask in ignored.items()},
             "train_folders": names["train"], "test_folders": names["test"],
             "train_slices": slice_ranges(numbers["train"]),
             "test_slices": slice_ranges(numbers["test"]), "split": split_note}
    described = "; ".join(f"{split}: {'/'.join(names[split])}, slices "
                          f"{', '.join(f'{a}-{b}' for a, b in notes[f'{split}_slices'])}"
                          for split in ("train", "test"))
    return limit_test_slices(EMVolumes(
        *volumes["train"], *volumes["test"], _voxel_size(voxel_size_nm, key),
        f"{key} '{display_path(root)}' ({described})", notes,
        train_slice_numbers=numbers["train"], test_slice_numbers=numbers["test"],
        train_ignored=ignored["train"], test_ignored=ignored["test"],
        train_recording=recordings["train"], test_recording=recordings["test"]), max_test_slices)


def _layout(layout: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, str]]:
    if layout is None:
        return dict(CASSER_LAYOUT)
    if set(layout) != {"train", "test"} or any(
            isinstance(pair, str) or len(pair) != 2 for pair in layout.values()):
        raise InputError("dataset option 'volumes.layout' must map 'train' and 'test' each to "
                         f"[image folder, label folder], got {dict(layout)}")
    return {str(split): (str(pair[0]), str(pair[1])) for split, pair in layout.items()}


def synthetic_volumes(train_shape: tuple[int, int, int] = (48, 192, 192),
                      test_shape: tuple[int, int, int] = (16, 192, 192), seed: int = 0,
                      anisotropy: float = 1.0,
                      voxel_size_nm: tuple[float, float, float] | None = None,
                      mito_density: float = 0.08,
                      max_test_slices: int | None = None) -> EMVolumes:
    """Procedural EM-like volumes: train and test are made from different seeds.
    ``voxel_size_nm`` None: 5 nm in y and x, 5 x ``anisotropy`` in z.
    ``max_test_slices``: see ``limit_test_slices`` (the test volume is made whole, then cut,
    so its first slices do not depend on the limit)."""
    train = synthetic_em_volume(tuple(train_shape), seed=seed, anisotropy=anisotropy,
                                mito_density=mito_density)
    test = synthetic_em_volume(tuple(test_shape), seed=seed + 1_000_003, anisotropy=anisotropy,
                               mito_density=mito_density)
    return limit_test_slices(EMVolumes(
        *train, *test, (synthetic_voxel_size_nm(anisotropy) if voxel_size_nm is None
                        else _voxel_size(voxel_size_nm, OWN_VOXEL_SIZE["synthetic_volumes"])),
        f"synthetic EM (seed {seed}, anisotropy {anisotropy})",
        {"train_shape": list(train_shape), "test_shape": list(test_shape)}), max_test_slices)
