"""LightningDataModule for EM volumes (paper 002): patches for training, whole slices for test."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from mitoseg.data.augment import is_mask_transform
from mitoseg.data.base import SplitDataModule
from mitoseg.data.em_overlap import MAX_SHIFT_PX, NEAR_COPY_CORRELATION, slice_copies
from mitoseg.data.device_volumes import DeviceVolumes
from mitoseg.data.em_augment import in_range_units, in_voxel_units, relative_spacing
from mitoseg.data.em_patches import ConcatPatches, RandomPatchDataset, TiledPatchDataset
from mitoseg.data.em_split import slice_ranges, validation_split
from mitoseg.data.held_volumes import hold_fitting
from mitoseg.data.normalization import EM_MODES, Normalization, fit_normalization_over
from mitoseg.data.volume_set import (
    LabelledVolume,
    Recording,
    VolumeSet,
    from_em_volumes,
    slice_counts,
)
from mitoseg.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class EMVolumes:
    """Image and label volumes (D, H, W) of a data set; array-likes, typically memory maps."""

    train_image: Any
    train_labels: Any
    test_image: Any
    test_labels: Any
    voxel_size_nm: tuple[float, float, float]  # (z, y, x)
    description: str
    notes: dict[str, Any] = field(default_factory=dict)
    # Slice numbers in the source data of each slice of the volumes (None: 0, 1, 2, ...), so
    # that run records name the slices of the recording, e.g. a held-out test range.
    train_slice_numbers: list[int] | None = None
    test_slice_numbers: list[int] | None = None
    # True where a voxel counts nowhere (loss and metrics), e.g. Kasthuri++ outside the tissue;
    # None: every voxel counts
    train_ignored: Any | None = None
    test_ignored: Any | None = None
    # The files the slice numbers count in (``volume_set.Recording``; None: not from a file)
    train_recording: Recording | None = None
    test_recording: Recording | None = None

    def slice_numbers(self, split: str, indices: Sequence[int] | None = None) -> list[int]:
        """Source slice numbers of ``indices`` (all by default) of the 'train' or 'test' volume."""
        numbers = self.train_slice_numbers if split == "train" else self.test_slice_numbers
        depth = (self.train_image if split == "train" else self.test_image).shape[0]
        indices = range(depth) if indices is None else indices
        return [int(numbers[z]) if numbers is not None else int(z) for z in indices]


def check_no_overlap(volumes: EMVolumes | VolumeSet) -> None:
    """Refuse a test set that shares any slice with the training or validation volumes (a
    classic mistake: evaluating on the training volume, or on a z-range that overlaps it), and
    validation volumes that share slices with the training volumes (the best weights would be
    chosen on training data): exact copies, and near-copies shifted by up to ``MAX_SHIFT_PX``
    pixels or with their intensities changed linearly (``mitoseg.data.em_overlap``), every
    pair. Neighbouring slices are not copies; keeping the test set away from them is the test
    gap's job (``lucchi_volumes``)."""
    volumes = from_em_volumes(volumes)
    name_them = len(volumes.test) + len(volumes.train) + len(volumes.val) > 2
    pairs = [(seen, "training" if number < len(volumes.train) else "validation", test, "test")
             for number, seen in enumerate((*volumes.train, *volumes.val))
             for test in volumes.test]
    pairs += [(seen, "training", val, "validation") for seen in volumes.train
              for val in volumes.val]
    for seen, seen_kind, checked, kind in pairs:
        _check_pair_no_overlap(volumes.description, seen, seen_kind, checked, kind, name_them)


def _check_pair_no_overlap(description: str, seen: LabelledVolume, what: str,
                           checked: LabelledVolume, kind: str, name_them: bool) -> None:
    """``checked`` (a ``kind`` volume: "test" or "validation") shares no slice with ``seen``
    (a ``what`` volume: "training" or "validation")."""
    which = f" ({kind} volume '{checked.name}' against {what} volume '{seen.name}')" \
        if name_them else ""
    copies = slice_copies(seen.image, checked.image)
    if copies.exact:
        raise InputError(f"{description}{which}: {copies.exact} {kind} slice(s) also occur in "
                         f"the {what} volume; the {kind} set must not overlap the {what} set")
    near = copies.near
    if near:
        checked_numbers, seen_numbers = checked.numbers(), seen.numbers()
        listed = "; ".join(f"{kind} slice {checked_numbers[p.test]} ~ {what} slice "
                           f"{seen_numbers[p.train]} (r = {p.correlation:.4f}, shift {p.shift})"
                           for p in near[:5])
        raise InputError(f"{description}{which}: {len({p.test for p in near})} {kind} slice(s) "
                         f"are near-copies of slices of the {what} volume (correlation >= "
                         f"{NEAR_COPY_CORRELATION} up to a shift of {MAX_SHIFT_PX} px and a linear "
                         f"intensity change): {listed}{' ...' if len(near) > 5 else ''}; the "
                         f"{kind} set must not overlap the {what} set")


SAMPLINGS = ("loader", "device")


class EMDataModule(SplitDataModule):
    """Training patches from the training volumes, minus a random 10 % of each one's slices
    kept for validation (seeded by ``split_seed``) unless the data set names validation
    volumes; the test volumes are scored whole (paper 002's protocol matrix).

    Several training volumes give patches in proportion to their slices (2D) or tiles (3D).
    Volumes with ignored voxels (an ignore value in the label mapping) make every training
    batch carry ``valid`` (1 = the voxel counts), which the loss and every metric use.
    Validation batches always carry it: it also leaves out the part of a tile that an earlier
    tile covers, so each validation voxel counts once (``TiledPatchDataset``).

    2D (``patch_size`` of 2 values): random slices for validation, as paper 002. 3D (3
    values): validation is a contiguous block of slices at a seeded position, since
    subvolumes need consecutive slices; the slices on both sides of it train (see
    ``mitoseg.data.em_split``).

    Args:
        volumes: a callable returning ``EMVolumes`` (a named data set: one training and one
            test volume) or a ``VolumeSet`` (any number of training, validation and test
            volumes, e.g. ``dataset=em_volumes``), called in ``setup``.
        patch_size: (256, 256) in 2D or (80, 80, 80) in 3D by default (paper 002).
        patches_per_image: random patches per training slice per epoch (2D); in 3D, per
            window that tiles a training block (an epoch draws this many times as many
            subvolumes as tile the blocks).
        foreground_weight: weight of mitochondria voxels in the patch-centre probability map
            (1 = uniform).
        val_fraction: share of the training slices held out for validation; 0 trains on
            all of them, without validation (the last weights are then the model).
        normalize: network input scaling fitted on the training slices (see
            ``mitoseg.data.normalization``): "scale" (uint8 / 255), "training_zscore" or "none".
        placement: "centred" or "uniform" training windows (see ``RandomPatchDataset``).
        sampling: "loader" reads training patches in the DataLoader (CPU workers); "device"
            keeps the training volumes (and their ignore masks) on the training device and
            cuts the patches there, so the CPU only draws window corners (the GPU path: the
            same patches at the same corners, corners drawn a batch at a time).
        hold_in_memory_mib: with ``sampling=loader``, the training and validation volumes that
            are read lazily (Zarr, HDF5, compressed TIFF, slice folders) are read into memory
            once at setup, each while it fits in what is left of this many MiB, so that
            patches do not decompress their chunks again and again (``mitoseg.data.held_volumes``;
            the same patches either way). 0: every volume is read window by window.
    """

    evaluation = "volume_matrix"  # the test volume: paper 002's protocol matrix

    def __init__(self, volumes: Callable[[], EMVolumes], patch_size: Sequence[int],
                 split_seed: int, seed: int, patches_per_image: int = 1,
                 foreground_weight: float = 1.0, val_fraction: float = 0.1, batch_size: int = 6,
                 eval_batch_size: int | None = None, num_workers: int = 0,
                 augmentation: Any = None, normalize: str = "scale", placement: str = "centred",
                 sampling: str = "loader", hold_in_memory_mib: float = 0) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise InputError(f"dataset option 'val_fraction' must be in [0, 1), got {val_fraction}")
        if normalize not in EM_MODES:
            raise InputError(f"dataset option 'normalize' must be one of {list(EM_MODES)} for EM "
                             f"volumes, got {normalize!r}")
        if sampling not in SAMPLINGS:
            raise InputError(f"dataset option 'sampling' must be one of {list(SAMPLINGS)}, got "
                             f"{sampling!r}")
        self.volumes_factory, self.patch_size = volumes, tuple(int(p) for p in patch_size)
        self.split_seed, self.seed = int(split_seed), int(seed)
        self.patches_per_image, self.foreground_weight = int(patches_per_image), float(foreground_weight)
        self.val_fraction, self.batch_size = float(val_fraction), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        if is_mask_transform(augmentation):
            raise InputError("augmentation: this option transforms fluorescence masks before "
                             "synthesis; EM training takes augmentation=none, paper2d, paper3d "
                             "or strong")
        self.num_workers, self.augmentation, self.normalize = int(num_workers), augmentation, normalize
        self.placement, self.sampling = placement, sampling
        self.hold_in_memory_mib = float(hold_in_memory_mib)
        self.held: list[str] = []  # the volumes read into memory at setup
        self.normalization: Normalization | None = None
        self.training_augmentation: Any = None  # ``augmentation`` in input units (setup)
        self._device_volumes: DeviceVolumes | None = None
        self.volumes: VolumeSet | None = None
        self.with_valid = False
        self.slices: list[tuple[list[int], list[int]]] = []
        self.datasets: dict[str, Any] = {}
        self.train_z: list[int] = []
        self.patch_volumes: list[LabelledVolume] = []
        self.val_z: list[int] = []

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    @property
    def pixel_size_um(self) -> float:
        self.setup()
        return self.volumes.voxel_size_nm[-1] / 1000.0

    def _build(self) -> None:
        self.volumes = volumes = self._held(from_em_volumes(self.volumes_factory()))
        check_no_overlap(volumes)
        self.with_valid = volumes.has_ignore
        # per training volume: its training and validation slices (explicit validation volumes:
        # every slice of the training volumes trains)
        self.slices = [validation_split(v.depth, 0.0 if volumes.val else self.val_fraction,
                                        self.patch_size, _split_seed(self.split_seed, i))
                       for i, v in enumerate(volumes.train)]
        if self.spatial_dims == 2:  # a slice with nothing annotated teaches and measures nothing
            self.slices = [(_annotated(v, train_z), _annotated(v, val_z))
                           for v, (train_z, val_z) in zip(volumes.train, self.slices)]
        if not any(train_z for train_z, _ in self.slices):
            raise InputError(f"{volumes.description}: no training slice holds a voxel that is not "
                             "ignored; check the label mapping's ignore values")
        self.train_z, self.val_z = self.slices[0]
        self.normalization = fit_normalization_over(
            self.normalize, [(v.image, z) for v, (z, _) in zip(volumes.train, self.slices) if z],
            EM_MODES)
        # brightness and noise amounts are given per raw intensity range: in input units here;
        # elastic and blur lengths in the finest axis' pixels: the same physical size along z
        # of anisotropic voxels (Kasthuri++: 30 x 3 x 3 nm)
        self.training_augmentation = in_voxel_units(
            in_range_units(self.augmentation, self.normalization.range_unit()),
            volumes.voxel_size_nm[-self.spatial_dims:])
        for split, what in (("val", "validation volume"), ("test", "test volume")):
            for volume in volumes.volumes(split):
                self.normalization.check_input(volume.image.dtype,
                                               f"{volumes.description}: {what} '{volume.name}'")
        # the training volumes that give patches, numbered as sampling=device holds them
        given = [(v, z) for v, (z, _) in zip(volumes.train, self.slices) if z]
        self.patch_volumes = [v for v, _ in given]
        train = [RandomPatchDataset(v.image, v.labels, z, self.patch_size,
                                    self.patches_per_image, self.foreground_weight,
                                    self.normalization, self.placement,
                                    origins_only=self.sampling == "device", ignored=v.ignored,
                                    with_valid=self.with_valid, volume_number=number)
                 for number, (v, z) in enumerate(given)]
        validation = [self._tiles(v, val_z) for v, (_, val_z) in zip(volumes.train, self.slices)
                      if val_z]
        for volume in volumes.val:
            every = list(range(volume.depth))
            val_z = _annotated(volume, every) if self.spatial_dims == 2 else every
            if val_z:
                validation.append(self._tiles(volume, val_z))
        self.datasets = {"train": _one_or_concat(train)}
        if validation:
            self.datasets["val"] = _one_or_concat(validation)
        for volume, (train_z, val_z) in zip(volumes.train, self.slices):
            log.info("%s: '%s' training slices %s, validation slices %s (%s)",
                     volumes.description, volume.name, _numbered(volume, train_z),
                     _numbered(volume, val_z),
                     "random" if self.spatial_dims == 2 else "contiguous")
        log.info("%s: validation volumes %s, test volumes %s, input %s", volumes.description,
                 [v.name for v in volumes.val],
                 {v.name: _numbered(v, range(v.depth)) for v in volumes.test},
                 self.normalization.to_dict())

    def _held(self, volumes: VolumeSet) -> VolumeSet:
        """``volumes`` with the training and validation volumes that fit
        ``hold_in_memory_mib`` read into memory (``sampling=device`` copies them to the device
        instead)."""
        if self.sampling == "device":
            return volumes
        patched = hold_fitting([*volumes.train, *volumes.val], self.hold_in_memory_mib,
                               "dataset option 'hold_in_memory_mib'")
        self.held = [new.name for old, new in zip([*volumes.train, *volumes.val], patched)
                     if new is not old]
        return replace(volumes, train=patched[:len(volumes.train)],
                       val=patched[len(volumes.train):])

    def _tiles(self, volume: LabelledVolume, z: list[int]) -> TiledPatchDataset:
        patch = self.patch_size if self.spatial_dims == 2 else (
            min(self.patch_size[0], len(z)), *self.patch_size[1:])
        return TiledPatchDataset(volume.image, volume.labels, z, patch, self.normalization,
                                 ignored=volume.ignored)

    def _ranges(self, split: str) -> list[list[int]]:
        """[[first, last], ...] source slice numbers of 'train', 'val' or 'test' (one volume)."""
        if split == "test":
            return slice_ranges(self.volumes.slice_numbers("test"))
        indices = self.train_z if split == "train" else self.val_z
        return slice_ranges(self.volumes.slice_numbers("train", indices))

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Batch augmentation runs where the batch is (on the GPU when training there); with
        ``sampling=device`` the training patches are first cut out there. A ``valid`` mask
        (data with ignored voxels) travels through the augmentation as a second mask channel,
        so it moves exactly as the labels do; area a transform pads is ignored."""
        if "origin" in batch:
            batch["image"], batch["mask"], valid = self.device_patches(batch["origin"],
                                                                       batch["volume"])
            if valid is not None:
                batch["valid"] = valid
        augmentation = self.training_augmentation
        if augmentation is not None and self.trainer is not None and self.trainer.training:
            generator = torch.Generator(device=batch["image"].device)
            generator.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            if "valid" in batch:
                stacked = torch.cat([batch["mask"], batch["valid"]], 1)
                batch["image"], stacked = augmentation(batch["image"], stacked, generator)
                batch["mask"], batch["valid"] = stacked[:, :1], stacked[:, 1:]
            else:
                batch["image"], batch["mask"] = augmentation(batch["image"], batch["mask"],
                                                             generator)
        return batch

    def device_patches(self, origins: torch.Tensor, volume_numbers: torch.Tensor,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Normalized image, mask and ``valid`` (None without ignored voxels) patches
        (B, 1, *patch) at window corners (B, 3) (z, y, x) of training volumes
        ``volume_numbers`` (B,), cut from the copy of the volumes held on ``origins``' device:
        what the DataLoader's ``RandomPatchDataset`` would have returned for the same corners."""
        device = origins.device
        if self._device_volumes is None or self._device_volumes.device != device:
            self.setup()
            self._device_volumes = None  # the old copy goes before the new one is made
            self._device_volumes = DeviceVolumes(
                [(v.image, v.labels, v.ignored) for v in self.patch_volumes],
                self.normalization, self.with_valid, device)
        return self._device_volumes.cut(origins, volume_numbers.to(device), self.patch_size)

    def teardown(self, stage: str) -> None:
        """After training, the device copy of the training volumes is let go: with
        ``sampling=device`` it may hold up to half the GPU's memory, which the test needs."""
        if stage == "fit":
            self._device_volumes = None

    def describe(self) -> dict[str, Any]:
        self.setup()
        volumes = self.volumes
        single = len(volumes.train) == 1 and len(volumes.test) == 1 and not volumes.val
        described = {
            "volumes": volumes.description, "notes": volumes.notes,
            "voxel_size_nm": list(volumes.voxel_size_nm),
            # elastic and blur lengths are in the finest axis' pixels; per axis, voxels are this
            # many of them (in_voxel_units)
            "augmentation_spacing": list(relative_spacing(
                volumes.voxel_size_nm[-self.spatial_dims:])),
            "validation": ("random slices" if self.spatial_dims == 2 else "contiguous block")
            if not volumes.val else "validation volumes",
            "test_gap_slices": volumes.notes.get("test_gap_slices"),
            "normalization": self.normalization.to_dict(), "placement": self.placement,
            "sampling": self.sampling, "ignore_label": self.with_valid,
            "held_in_memory": self.held,
            "patch_size": list(self.patch_size), "patches_per_image": self.patches_per_image,
            "foreground_weight": self.foreground_weight, "split_seed": self.split_seed,
            "sizes": {k: len(v) for k, v in self.datasets.items()}}
        if single:
            return described | {
                "train_shape": list(volumes.train_image.shape),
                "test_shape": list(volumes.test_image.shape),
                "train_slices": self._ranges("train"), "train_slice_count": len(self.train_z),
                "val_slices": volumes.slice_numbers("train", self.val_z),
                "test_slices": self._ranges("test")}
        return described | {"volume_list": [
            {"split": split, "name": v.name, "shape": list(v.shape), **(
                {"train_slices": _numbered(v, z), "val_slices": _numbered(v, val_z)}
                if split == "train" else {"slices": _numbered(v, range(v.depth))})}
            for split in ("train", "val", "test") for v, (z, val_z) in zip(
                volumes.volumes(split),
                self.slices if split == "train" else [((), ())] * len(volumes.volumes(split)))]}


def _split_seed(split_seed: int, volume_number: int) -> int:
    """The validation-split seed of training volume ``volume_number`` (the first one: the data
    set's own ``split_seed``, so a one-volume data set splits as it always has)."""
    return split_seed if volume_number == 0 else split_seed + 7919 * volume_number


def _annotated(volume: LabelledVolume, z_indices: list[int]) -> list[int]:
    """The slices of ``z_indices`` with at least one voxel that is not ignored (2D training and
    validation skip the others: sparse annotation leaves whole slices unknown)."""
    if volume.ignored is None:
        return list(z_indices)
    ignored = slice_counts(volume.ignored)  # counted at setup where the labels are mapped
    area = volume.shape[1] * volume.shape[2]
    kept = [z for z in z_indices if not np.asarray(volume.ignored[z]).all()] if ignored is None \
        else [z for z in z_indices if ignored[z] < area]
    if len(kept) < len(z_indices):
        log.info("'%s': %d of %d slices hold no annotated voxel and are left out", volume.name,
                 len(z_indices) - len(kept), len(z_indices))
    return kept


def _one_or_concat(datasets: list[Any]) -> Any:
    """One dataset as it is (so its batch sampling and random draws are unchanged), several as
    a ``ConcatPatches`` (each volume then gives samples in proportion to its length)."""
    return datasets[0] if len(datasets) == 1 else ConcatPatches(datasets)


def _numbered(volume: LabelledVolume, indices: Sequence[int]) -> list[list[int]]:
    return slice_ranges(volume.numbers(list(indices)))
