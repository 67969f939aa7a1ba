"""LightningDataModule for synthetic fluorescence images (paper 000's protocol)."""

from __future__ import annotations

import logging
from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitoseg.data.augment import MaskTransform
from mitoseg.data.base import SplitDataModule
from mitoseg.data.fluo_dataset import (FluorescenceMaskDataset, SyntheticFluorescenceDataset,
                                       fluorescence_normalization)
from mitoseg.data.leak_free_split import overlap_rule, split_without_leaks
from mitoseg.data.mask_sources import MaskSet
from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.synth.fluorescence import FluorescenceParams
from mitoseg.synth.fluorescence_torch import synthesize_batch, zscore

SYNTHESIS = ("cpu", "device")

log = logging.getLogger(__name__)


def _params(condition: Mapping[str, Any], where: str) -> FluorescenceParams:
    known = set(FluorescenceParams.__dataclass_fields__)
    unknown = set(condition) - known
    if unknown:
        raise InputError(f"{where}: unknown image-condition option(s) {sorted(unknown)}; "
                         f"expected some of {sorted(known)}")
    return FluorescenceParams(**dict(condition))


class FluorescenceDataModule(SplitDataModule):
    """Masks -> split by clusters of files that share a region -> synthetic images per split.

    Seeds: the split and the validation/test images depend on ``split_seed`` only, so every
    training seed is scored on the very same test images; training images depend on ``seed``.

    Args:
        masks: a callable returning a ``MaskSet`` (called in ``setup``, so configuring is cheap).
        condition: image condition (``FluorescenceParams`` fields) for every split.
        train_conditions: optional list of conditions mixed in equal parts for training: each
            gets the same number of images (``mitoseg.data.mixture``; the training set is then
            masks x train_repeats rounded up to a multiple of the number of conditions).
        test_condition: optional condition for val/test (train at one SNR, test at another).
        split: number of masks in 'val' and 'test' (whole clusters: the mask source's groups
            joined with all masks that share a region, see ``leak_free_split``); the rest trains.
        overlap: ``OverlapRule`` options: what counts as a shared region, and the search
            ("regions", or "copies" for sources that cannot overlap otherwise).
        train_repeats: noise realizations per training mask (each a different image).
        pixel_size_um: physical pixel size, passed on to the distance metrics.
        synthesis: where training images are made. "cpu": in the data set (numpy/scipy, in
            the loader's workers). "device": the loader carries masks only and the images are
            made after the batch reaches the training device (torch; on the GPU when
            training there), for GPU training faster than CPU workers can synthesize.
            Validation and test images are always made on the CPU: the same images either way.
            The two give images of the same distribution, not the same pixels; in both a
            training sample's image depends on the seed and its index only, so it is the same
            in every epoch (``train_repeats`` images per mask, whatever the batches).
    """

    evaluation = "image_set"

    def __init__(self, masks: Callable[[], MaskSet], condition: Mapping[str, Any],
                 split: Mapping[str, int], split_seed: int, seed: int,
                 train_conditions: Sequence[Mapping[str, Any]] | None = None,
                 test_condition: Mapping[str, Any] | None = None, train_repeats: int = 1,
                 batch_size: int = 8, eval_batch_size: int | None = None, num_workers: int = 0,
                 augmentation: MaskTransform | None = None, normalize: str = "zscore",
                 pixel_size_um: float = 0.0645, synthesis: str = "cpu",
                 overlap: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if synthesis not in SYNTHESIS:
            raise InputError(f"dataset option 'synthesis' must be one of {list(SYNTHESIS)}, "
                             f"got {synthesis!r}")
        if synthesis == "device" and normalize not in ("zscore", "none"):
            raise InputError(f"dataset option 'normalize' must be 'zscore' or 'none', got {normalize!r}")
        if batch_size < 1:
            raise InputError(f"dataset option 'batch_size' must be >= 1, got {batch_size}")
        if pixel_size_um <= 0:
            raise InputError(f"dataset option 'pixel_size_um' must be > 0, got {pixel_size_um}")
        self.masks_factory = masks
        self.condition = _params(condition, "dataset.condition")
        self.train_conditions = [_params(c, "dataset.train_conditions") for c in
                                 train_conditions] if train_conditions else [self.condition]
        self.test_condition = (_params(test_condition, "dataset.test_condition")
                               if test_condition else self.condition)
        self.split_sizes, self.split_seed, self.seed = dict(split), int(split_seed), int(seed)
        self.train_repeats, self.batch_size = int(train_repeats), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.augmentation = int(num_workers), augmentation
        self.normalize, self.pixel_size_um = normalize, float(pixel_size_um)
        self.synthesis = synthesis
        self.overlap = overlap_rule(overlap, "dataset.overlap")
        self.leakage: dict[str, Any] = {}
        self.datasets: dict[str, Dataset] = {}
        self.mask_set: MaskSet | None = None
        self.split_masks: dict[str, MaskSet] = {}  # split name -> its masks, as dealt

    def _build(self) -> None:
        self.mask_set = self.masks_factory()
        split = split_without_leaks(self.mask_set.masks, self.mask_set.ids, self.mask_set.groups,
                                    self.split_sizes, self.split_seed, self.overlap)
        self.leakage = split.record
        self.mask_set = replace(self.mask_set, clusters=split.clusters)
        parts = {name: self.mask_set.subset(idx) for name, idx in split.indices.items()}
        self.split_masks = parts
        train_set = FluorescenceMaskDataset if self.synthesis == "device" else (
            lambda *args: SyntheticFluorescenceDataset(*args, self.normalize))
        self.datasets = {
            "train": train_set(parts["train"], self.train_conditions, self.seed, "train",
                               self.train_repeats, self.augmentation),
            "val": SyntheticFluorescenceDataset(parts["val"], [self.test_condition],
                                                self.split_seed, "val", 1, None, self.normalize),
            "test": SyntheticFluorescenceDataset(parts["test"], [self.test_condition],
                                                 self.split_seed, "test", 1, None, self.normalize),
        }
        log.info("%s: %s", self.mask_set.description,
                 ", ".join(f"{k} {len(v)} images ({len(parts[k])} masks)"
                           for k, v in self.datasets.items()))
        if len(self.train_conditions) > 1:
            log.info("training mixture of %d conditions: %s images each", len(self.train_conditions),
                     self.train_condition_counts())

    @property
    def normalization(self) -> Normalization:
        """The network input scaling (stored in checkpoints; see mitoseg.data.normalization)."""
        return fluorescence_normalization(self.normalize)

    def describe(self) -> dict[str, Any]:
        """What the run used, for the run folder: sources, split sizes, conditions."""
        self.setup()
        return {
            "masks": self.mask_set.description, "mask_notes": self.mask_set.notes,
            "split_seed": self.split_seed, "seed": self.seed,
            "sizes": {k: len(v) for k, v in self.datasets.items()},
            "test_mask_ids": list(self.datasets["test"].masks.ids),
            "train_conditions": [c.to_dict() for c in self.train_conditions],
            "train_repeats": self.train_repeats,
            "train_condition_counts": self.train_condition_counts(),
            "test_condition": self.test_condition.to_dict(),
            "pixel_size_um": self.pixel_size_um,
            "synthesis": self.synthesis,
            "leakage": self.leakage,
        }

    def train_condition_counts(self) -> list[int]:
        """Training samples per condition of ``train_conditions``, counted (equal in a mixture)."""
        self.setup()
        train = self.datasets["train"]
        counts = np.bincount([train.condition_of(i) for i in range(len(train))],
                             minlength=len(self.train_conditions))
        return [int(c) for c in counts]

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """A mask-only batch gets its synthesis plan here, on the CPU: one seed per sample, from
        the training seed and the sample's index only (so a sample's image is the same in
        whatever batch it comes, as the CPU data set makes it), and the batch positions of each
        image condition (knowing them on the device would make the CPU wait for it)."""
        if self.synthesis == "device" and "image" not in batch and "condition" in batch:
            seeds = [int(np.random.default_rng([self.seed, 0x5EED, int(i)]).integers(2**62))
                     for i in batch["index"]]
            conditions = torch.as_tensor(batch["condition"])
            groups = [(int(k), torch.nonzero(conditions == k).flatten().tolist())
                      for k in torch.unique(conditions).tolist()]
            batch["synthesis"] = {"seeds": seeds, "groups": groups}
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Make the images of a mask-only batch where the batch now is (see ``synthesis``)."""
        plan = batch.pop("synthesis", None)
        if plan is not None:
            masks = batch["mask"][:, 0] > 0.5
            generators = [torch.Generator(device=masks.device).manual_seed(seed)
                          for seed in plan["seeds"]]
            images = torch.empty(masks.shape, dtype=torch.float32, device=masks.device)
            for condition, positions in plan["groups"]:
                at = torch.tensor(positions, device=masks.device)
                images[at] = synthesize_batch(masks[at], self.train_conditions[condition],
                                              [generators[p] for p in positions])
            batch["image"] = (zscore(images) if self.normalize == "zscore" else images)[:, None]
        return batch
