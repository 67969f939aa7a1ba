"""Real images with manual masks: two folders whose files pair up by name."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitoseg.data.augment import MaskTransform
from mitoseg.data.base import SplitDataModule
from mitoseg.data.fluo_dataset import fluorescence_normalization, normalize_image
from mitoseg.data.image_io import list_image_files, read_image, read_mask
from mitoseg.data.leak_free_split import overlap_rule, split_without_leaks
from mitoseg.data.loaders import SampleKey, item_index, sample_key
from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.runs.paths import display_path

log = logging.getLogger(__name__)


def read_pairs(images_dir: str | Path, masks_dir: str | Path, polarity: str = "auto"
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Images and masks matched by file stem; every image needs a mask of its exact shape."""
    images = {p.stem: p for p in list_image_files(images_dir, what="image")}
    masks = {p.stem: p for p in list_image_files(masks_dir, what="mask")}
    missing = sorted(set(images) - set(masks))
    if missing:
        raise InputError(f"no mask in '{masks_dir}' for image(s) {missing[:5]} of '{images_dir}' "
                         "(masks pair with images by file name, e.g. cell1.tif <-> cell1.png)")
    image_arrays, mask_arrays, ids = [], [], []
    for stem, image_path in images.items():
        image = read_image(image_path)
        mask, _ = read_mask(masks[stem], polarity)
        if image.shape != mask.shape:
            raise InputError(f"image '{image_path}' has shape {image.shape} but its mask "
                             f"'{masks[stem]}' has shape {mask.shape}; expected equal shapes")
        image_arrays.append(image)
        mask_arrays.append(mask)
        ids.append(stem)
    return image_arrays, mask_arrays, ids


class PairedImageDataset(Dataset):
    """(image, mask) pairs; training augmentation transforms both together."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], ids: list[str],
                 seed: int, augment: MaskTransform | None = None,
                 normalize: str = "zscore") -> None:
        self.images, self.masks, self.ids = images, masks, ids
        self.seed, self.augment, self.normalize = seed, augment, normalize
        # augmented (training): its loader hands out SampleKeys (mitoseg.data.loaders)
        self.keyed_draws = augment is not None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | SampleKey) -> dict[str, Any]:
        index = item_index(item)
        pair = np.stack([self.images[index], self.masks[index].astype(np.float32)])
        if self.augment is not None:
            # keyed by the epoch's draw: augmentation differs between epochs, yet repeats for
            # the same seed whatever the loader's workers
            draw = sample_key(item).draw
            pair = self.augment(pair, np.random.default_rng([self.seed, index, draw]))
        image = normalize_image(pair[0], self.normalize)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
                "mask": torch.from_numpy(np.ascontiguousarray(pair[1] > 0.5, np.float32))[None],
                "index": index, "mask_id": self.ids[index]}


class PairedFolderDataModule(SplitDataModule):
    """Train or evaluate on real annotated images (``images_dir`` + ``masks_dir``).

    Split like the synthetic data: images whose masks share a region (tiles of one larger
    image, flipped copies; ``overlap`` says what counts) stay on one side. With
    ``split: {val: 0, test: all}``-style needs, use evaluate.py's ``split`` instead: here every
    split gets at least one image.
    """

    evaluation = "image_set"

    def __init__(self, images_dir: str, masks_dir: str, split: dict[str, int], split_seed: int,
                 seed: int, polarity: str = "auto", batch_size: int = 4,
                 eval_batch_size: int | None = None, num_workers: int = 0,
                 augmentation: MaskTransform | None = None, normalize: str = "zscore",
                 pixel_size_um: float = 0.0645,
                 overlap: dict[str, Any] | None = None) -> None:
        super().__init__()
        if pixel_size_um <= 0:
            raise InputError(f"dataset option 'pixel_size_um' must be > 0, got {pixel_size_um}")
        self.images_dir, self.masks_dir, self.polarity = images_dir, masks_dir, polarity
        self.split_sizes, self.split_seed, self.seed = dict(split), int(split_seed), int(seed)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.augmentation = int(num_workers), augmentation
        self.normalize, self.pixel_size_um = normalize, float(pixel_size_um)
        self.overlap = overlap_rule(overlap, "dataset.overlap")
        self.leakage: dict[str, Any] = {}
        self.datasets: dict[str, PairedImageDataset] = {}

    def _build(self) -> None:
        images, masks, ids = read_pairs(self.images_dir, self.masks_dir, self.polarity)
        if max(self.batch_size, self.eval_batch_size) > 1 and len({i.shape for i in images}) > 1:
            raise InputError(f"images in '{self.images_dir}' differ in shape "
                             f"{sorted({i.shape for i in images})[:4]}; batches need one shape: "
                             "set dataset.batch_size=1 and dataset.eval_batch_size=1")
        split = split_without_leaks(masks, ids, np.arange(len(ids)), self.split_sizes,
                                    self.split_seed, self.overlap)
        self.leakage = split.record
        for name, chosen in split.indices.items():
            self.datasets[name] = PairedImageDataset(
                [images[i] for i in chosen], [masks[i] for i in chosen], [ids[i] for i in chosen],
                self.seed, self.augmentation if name == "train" else None, self.normalize)
        log.info("paired folders %s + %s: %s", self.images_dir, self.masks_dir,
                 {k: len(v) for k, v in self.datasets.items()})

    @property
    def normalization(self) -> Normalization:
        """The network input scaling (stored in checkpoints; see mitoseg.data.normalization)."""
        return fluorescence_normalization(self.normalize)

    def describe(self) -> dict[str, Any]:
        self.setup()
        return {"images_dir": display_path(self.images_dir),
                "masks_dir": display_path(self.masks_dir),
                "polarity": self.polarity, "split_seed": self.split_seed,
                "sizes": {k: len(v) for k, v in self.datasets.items()},
                "test_mask_ids": list(self.datasets["test"].ids),
                "pixel_size_um": self.pixel_size_um, "leakage": self.leakage}
