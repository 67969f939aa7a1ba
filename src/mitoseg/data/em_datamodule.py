"""LightningDataModule for EM volumes (paper 002): patches for training, whole slices for test."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mitoseg.data.augment import is_mask_transform
from mitoseg.data.base import SplitDataModule
from mitoseg.data.em_overlap import MAX_SHIFT_PX, NEAR_COPY_CORRELATION, slice_copies
from mitoseg.data.em_patches import RandomPatchDataset, TiledPatchDataset
from mitoseg.data.em_split import slice_ranges, validation_split
from mitoseg.data.normalization import EM_MODES, Normalization, fit_normalization
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

    def slice_numbers(self, split: str, indices: Sequence[int] | None = None) -> list[int]:
        """Source slice numbers of ``indices`` (all by default) of the 'train' or 'test' volume."""
        numbers = self.train_slice_numbers if split == "train" else self.test_slice_numbers
        depth = (self.train_image if split == "train" else self.test_image).shape[0]
        indices = range(depth) if indices is None else indices
        return [int(numbers[z]) if numbers is not None else int(z) for z in indices]


def check_no_overlap(volumes: EMVolumes) -> None:
    """Refuse a test set that shares any slice with the training set (a classic mistake:
    evaluating on the training volume, or on a z-range that overlaps it): exact copies, and
    near-copies shifted by up to ``MAX_SHIFT_PX`` pixels or with their intensities changed
    linearly (``mitoseg.data.em_overlap``). Neighbouring slices are not copies; keeping the
    test set away from them is the test gap's job (``lucchi_volumes``)."""
    for name in ("train_image", "train_labels", "test_image", "test_labels"):
        if getattr(volumes, name).ndim != 3:
            raise InputError(f"{volumes.description}: {name} must be a (D, H, W) volume, got "
                             f"shape {getattr(volumes, name).shape}")
    for image, labels, split in ((volumes.train_image, volumes.train_labels, "training"),
                                 (volumes.test_image, volumes.test_labels, "test")):
        if image.shape != labels.shape:
            raise InputError(f"{volumes.description}: {split} image shape {image.shape} differs "
                             f"from its labels' shape {labels.shape}")
    copies = slice_copies(volumes.train_image, volumes.test_image)
    if copies.exact:
        raise InputError(f"{volumes.description}: {copies.exact} test slice(s) also occur in the "
                         "training volume; the test set must not overlap the training set")
    near = copies.near
    if near:
        test_numbers, train_numbers = volumes.slice_numbers("test"), volumes.slice_numbers("train")
        listed = "; ".join(f"test slice {test_numbers[p.test]} ~ training slice "
                           f"{train_numbers[p.train]} (r = {p.correlation:.4f}, shift {p.shift})"
                           for p in near[:5])
        raise InputError(f"{volumes.description}: {len({p.test for p in near})} test slice(s) are "
                         f"near-copies of training slices (correlation >= "
                         f"{NEAR_COPY_CORRELATION} up to a shift of {MAX_SHIFT_PX} px and a linear "
                         f"intensity change): {listed}{' ...' if len(near) > 5 else ''}; the test "
                         "set must not overlap the training set")


SAMPLINGS = ("loader", "device")


class EMDataModule(SplitDataModule):
    """Training patches from the training volume, minus a random 10 % of its slices kept for
    validation (seeded by ``split_seed``); the test volume is served as whole slices.

    2D (``patch_size`` of 2 values): random slices for validation, as paper 002. 3D (3
    values): validation is a contiguous block of slices at a seeded position, since
    subvolumes need consecutive slices; the slices on both sides of it train (see
    ``mitoseg.data.em_split``).

    Args:
        volumes: a callable returning ``EMVolumes`` (called in ``setup``).
        patch_size: (256, 256) in 2D or (80, 80, 80) in 3D by default (paper 002).
        patches_per_image: random patches per training slice per epoch (2D), or per epoch (3D).
        foreground_weight: weight of mitochondria voxels in the patch-centre probability map
            (1 = uniform).
        val_fraction: share of the training slices held out for validation; 0 trains on
            all of them, without validation (the last weights are then the model).
        normalize: network input scaling fitted on the training slices (see
            ``mitoseg.data.normalization``): "scale" (uint8 / 255), "training_zscore" or "none".
        placement: "centred" or "uniform" training windows (see ``RandomPatchDataset``).
        sampling: "loader" reads training patches in the DataLoader (CPU workers); "device"
            keeps the training volume on the training device and cuts the patches there, so
            the CPU only draws window corners (the GPU path; the same windows either way).
    """

    evaluation = "volume_matrix"  # the test volume: paper 002's protocol matrix

    def __init__(self, volumes: Callable[[], EMVolumes], patch_size: Sequence[int],
                 split_seed: int, seed: int, patches_per_image: int = 1,
                 foreground_weight: float = 1.0, val_fraction: float = 0.1, batch_size: int = 6,
                 eval_batch_size: int | None = None, num_workers: int = 0,
                 augmentation: Any = None, normalize: str = "scale", placement: str = "centred",
                 sampling: str = "loader") -> None:
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
        self.normalization: Normalization | None = None
        self._device_volume: tuple[torch.device, torch.Tensor, torch.Tensor] | None = None
        self.volumes: EMVolumes | None = None
        self.datasets: dict[str, Any] = {}
        self.train_z: list[int] = []
        self.val_z: list[int] = []

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    @property
    def pixel_size_um(self) -> float:
        self.setup()
        return self.volumes.voxel_size_nm[-1] / 1000.0

    def _build(self) -> None:
        self.volumes = volumes = self.volumes_factory()
        check_no_overlap(volumes)
        self.train_z, self.val_z = validation_split(volumes.train_image.shape[0], self.val_fraction,
                                                    self.patch_size, self.split_seed)
        image, labels = volumes.train_image, volumes.train_labels
        self.normalization = fit_normalization(self.normalize, image, self.train_z, EM_MODES)
        self.datasets = {
            "train": RandomPatchDataset(image, labels, self.train_z, self.patch_size,
                                        self.patches_per_image, self.foreground_weight,
                                        self.normalization, self.placement,
                                        origins_only=self.sampling == "device"),
        }
        if self.val_z:
            val_patch = self.patch_size if self.spatial_dims == 2 else (
                min(self.patch_size[0], len(self.val_z)), *self.patch_size[1:])
            self.datasets["val"] = TiledPatchDataset(image, labels, self.val_z, val_patch,
                                                     self.normalization)
        log.info("%s: training slices %s, validation slices %s (%s), test slices %s, input %s",
                 volumes.description, *(self._ranges(s) for s in ("train", "val")),
                 "random" if self.spatial_dims == 2 else "contiguous", self._ranges("test"),
                 self.normalization.to_dict())

    def _ranges(self, split: str) -> list[list[int]]:
        """[[first, last], ...] source slice numbers of 'train', 'val' or 'test'."""
        if split == "test":
            return slice_ranges(self.volumes.slice_numbers("test"))
        indices = self.train_z if split == "train" else self.val_z
        return slice_ranges(self.volumes.slice_numbers("train", indices))

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Batch augmentation runs where the batch is (on the GPU when training there); with
        ``sampling=device`` the training patches are first cut out there."""
        if "origin" in batch:
            batch["image"], batch["mask"] = self.device_patches(batch["origin"])
        if self.augmentation is not None and self.trainer is not None and self.trainer.training:
            generator = torch.Generator(device=batch["image"].device)
            generator.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            batch["image"], batch["mask"] = self.augmentation(batch["image"], batch["mask"], generator)
        return batch

    def device_patches(self, origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized image and mask patches (B, 1, *patch) at window corners (B, 3) (z, y, x),
        cut from the training volume held on ``origins``' device: what the DataLoader's
        ``RandomPatchDataset`` would have returned for the same corners."""
        device = origins.device
        if self._device_volume is None or self._device_volume[0] != device:
            self.setup()
            image = torch.from_numpy(np.array(self.volumes.train_image))  # a writable copy
            labels = torch.from_numpy(np.array(self.volumes.train_labels) > 0)
            self._device_volume = (device, image.to(device), labels.to(device))
        _, image, labels = self._device_volume
        origins = origins.long()
        steps = [torch.arange(size, device=device) for size in self.patch_size]
        if self.spatial_dims == 2:
            index = (origins[:, 0, None, None], (origins[:, 1, None] + steps[0])[:, :, None],
                     (origins[:, 2, None] + steps[1])[:, None, :])
        else:
            index = ((origins[:, 0, None] + steps[0])[:, :, None, None],
                     (origins[:, 1, None] + steps[1])[:, None, :, None],
                     (origins[:, 2, None] + steps[2])[:, None, None, :])
        return (self.normalization(image[index])[:, None],
                labels[index].to(torch.float32)[:, None])

    def describe(self) -> dict[str, Any]:
        self.setup()
        return {"volumes": self.volumes.description, "notes": self.volumes.notes,
                "voxel_size_nm": list(self.volumes.voxel_size_nm),
                "train_shape": list(self.volumes.train_image.shape),
                "test_shape": list(self.volumes.test_image.shape),
                "train_slices": self._ranges("train"), "train_slice_count": len(self.train_z),
                "val_slices": self.volumes.slice_numbers("train", self.val_z),
                "validation": "random slices" if self.spatial_dims == 2 else "contiguous block",
                "test_slices": self._ranges("test"),
                "test_gap_slices": self.volumes.notes.get("test_gap_slices"),
                "normalization": self.normalization.to_dict(), "placement": self.placement,
                "sampling": self.sampling,
                "patch_size": list(self.patch_size), "patches_per_image": self.patches_per_image,
                "foreground_weight": self.foreground_weight, "split_seed": self.split_seed,
                "sizes": {k: len(v) for k, v in self.datasets.items()}}
