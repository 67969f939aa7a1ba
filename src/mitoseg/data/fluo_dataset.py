"""Synthetic fluorescence images made on the fly from masks, reproducible sample by sample."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitoseg.data.augment import MaskTransform
from mitoseg.data.mask_sources import MaskSet
from mitoseg.data.mixture import condition_of_sample, mixture_length
from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.synth.fluorescence import FluorescenceParams, synthesize

RECORD_KEYS = ("snr", "gamma_shape", "gamma_scale", "background_mean", "blur", "blur_sigma",
               "blur_max_sigma", "smooth_inside_sigma", "snr_reference", "background_sigma",
               "foreground_fraction")


FLUO_MODES = ("zscore", "none")


def normalize_image(image: np.ndarray, mode: str) -> np.ndarray:
    """Network input scaling of a fluorescence image: 'zscore' per image or 'none'
    (``mitoseg.data.normalization`` owns the arithmetic)."""
    return fluorescence_normalization(mode)(image)


def fluorescence_normalization(mode: str) -> Normalization:
    if mode not in FLUO_MODES:
        raise InputError(f"dataset option 'normalize' must be one of {list(FLUO_MODES)} for "
                         f"fluorescence images, got {mode!r}")
    return Normalization(mode)


class SyntheticFluorescenceDataset(Dataset):
    """Sample i is made from mask i % n with a generator seeded by (seed, stream, i).

    So a sample depends only on its index, never on worker count, order or epoch: the same
    seed gives the same images. ``repeats`` > 1 makes several noise realizations of each mask.
    With k > 1 conditions (an equal mixture, paper 000's scheme 2) every condition gets the same
    number of samples, whatever n and ``repeats`` (``mitoseg.data.mixture``): the data set then
    holds n * repeats samples rounded up to a multiple of k.
    """

    def __init__(self, masks: MaskSet, conditions: Sequence[FluorescenceParams], seed: int,
                 stream: str, repeats: int = 1, augment: MaskTransform | None = None,
                 normalize: str = "zscore") -> None:
        if not conditions:
            raise InputError("dataset: at least one image condition is required")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"dataset: seed must be an int >= 0, got {seed!r}")
        normalize_image(np.zeros((2, 2), np.float32), normalize)  # validate the mode early
        self.masks, self.conditions = masks, list(conditions)
        self.seed, self.stream, self.repeats = int(seed), stream, int(repeats)
        self.stream_code = zlib.crc32(stream.encode())
        self.augment, self.normalize = augment, normalize
        self.length = mixture_length(len(masks), self.repeats, len(self.conditions))

    def __len__(self) -> int:
        return self.length

    def condition_of(self, index: int) -> int:
        """The index of the image condition of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return condition_of_sample(index, len(self.masks), len(self.conditions))

    def unit_of(self, index: int) -> str:
        """The independent unit of sample ``index``: the group of its mask, which the split
        keeps on one side (a crop with its flips/rotations, or a cluster of overlapping crops;
        each procedural mask alone). Statistics over images test unit means."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return f"group-{int(self.masks.groups[index % len(self.masks)])}"

    def cluster_of(self, index: int) -> str:
        """The cluster of sample ``index``'s mask: its group joined with every group it shares a
        region with (the split keeps a cluster on one side); the group where no split set one.
        Crops of one cluster overlap, so the cluster is the strictly independent unit."""
        if self.masks.clusters is None:
            return self.unit_of(index)
        return f"cluster-{int(self.masks.clusters[index % len(self.masks)])}"

    def sample_mask(self, index: int) -> tuple[np.ndarray, int, np.random.Generator]:
        """The augmented mask of sample ``index``, its condition index, and the sample's
        generator after the augmentation (the image is drawn from it next)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        count = len(self.masks)
        rng = np.random.default_rng([self.seed, self.stream_code, index])
        mask = self.masks.masks[index % count]
        if self.augment is not None:
            mask = self.augment(mask, rng)
        return mask, self.condition_of(index), rng

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The raw (image, mask, record) of sample ``index``, before normalization."""
        mask, condition, rng = self.sample_mask(index)
        image, record = synthesize(mask, self.conditions[condition], rng)
        record = record | {"index": index, "mask_id": self.masks.ids[index % len(self.masks)],
                           "unit": self.unit_of(index), "cluster": self.cluster_of(index),
                           "stream": self.stream, "seed": self.seed}
        return image, mask, record

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask, record = self.generate(index)
        image = normalize_image(image, self.normalize)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            "index": index,
            "mask_id": record["mask_id"],
            "unit": record["unit"],
            "record": {key: record[key] for key in RECORD_KEYS},
        }


class FluorescenceMaskDataset(Dataset):
    """The masks of ``SyntheticFluorescenceDataset`` without the images, for ``synthesis: device``.

    Sample i is mask i % n, augmented with the same generator as there, and the index of its
    condition; the data module synthesizes the images after the batch reaches its device
    (``mitoseg.synth.fluorescence_torch``), so the CPU only moves masks.
    """

    def __init__(self, masks: MaskSet, conditions: Sequence[FluorescenceParams], seed: int,
                 stream: str, repeats: int = 1, augment: MaskTransform | None = None) -> None:
        self.source = SyntheticFluorescenceDataset(masks, conditions, seed, stream, repeats,
                                                   augment, "none")

    def __len__(self) -> int:
        return len(self.source)

    def condition_of(self, index: int) -> int:
        return self.source.condition_of(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        mask, condition, _ = self.source.sample_mask(index)
        return {
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            "index": index,
            "condition": condition,
            "mask_id": self.source.masks.ids[index % len(self.source.masks)],
        }
