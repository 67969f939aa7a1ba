"""The EM data sets as ``EMVolumes``: Lucchi, Lucchi++, Kasthuri++ and procedural volumes.

Each function is what a dataset config's ``volumes`` node calls (``_partial_: true``), so
configuring a data set reads nothing; ``EMDataModule.setup`` calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mitoseg.data.em_datamodule import EMVolumes
from mitoseg.data.em_volumes import (
    CASSER_IGNORE_VALUES,
    VOXEL_SIZE_NM,
    binary_labels,
    casser_files,
    lucchi_files,
    open_tif_volume,
    slice_folder_volume,
)
from mitoseg.errors import InputError
from mitoseg.runs.paths import display_path
from mitoseg.synth.em_volumes import synthetic_em_volume

log = logging.getLogger(__name__)


def _voxel_size(given: Sequence[float] | None, dataset: str) -> tuple[float, float, float]:
    size = tuple(float(v) for v in (given if given is not None else VOXEL_SIZE_NM[dataset]))
    if len(size) != 3 or min(size) <= 0:
        raise InputError(f"dataset option 'voxel_size_nm' must be three sizes > 0 (z, y, x), "
                         f"got {list(size)}")
    return size


def lucchi_volumes(root: str, test: str = "holdout", holdout_slices: int = 33,
                   cache_dir: str | None = None,
                   voxel_size_nm: Sequence[float] | None = None) -> EMVolumes:
    """The EPFL Lucchi volumes. ``test``: 'official' (testing.tif, the published protocol) or
    'holdout' (the last ``holdout_slices`` slices of training.tif, for copies without the test
    volume; training then uses the slices before them only).
    """
    if test not in ("official", "holdout"):
        raise InputError(f"dataset option 'test' must be 'official' or 'holdout', got {test!r}")
    files = lucchi_files(root, ("train", "test") if test == "official" else ("train",))
    image = open_tif_volume(files["train"][0], cache_dir)
    labels = binary_labels(open_tif_volume(files["train"][1], cache_dir), files["train"][1])
    voxel = _voxel_size(voxel_size_nm, "lucchi")
    if test == "official":
        test_image = open_tif_volume(files["test"][0], cache_dir)
        test_labels = binary_labels(open_tif_volume(files["test"][1], cache_dir), files["test"][1])
        return EMVolumes(image, labels, test_image, test_labels, voxel,
                         f"Lucchi '{display_path(root)}' (official train/test volumes)",
                         {"test": "official"})
    depth = image.shape[0]
    if not 0 < holdout_slices < depth:
        raise InputError(f"dataset option 'holdout_slices' must be in 1..{depth - 1}, got "
                         f"{holdout_slices}")
    cut = depth - holdout_slices
    notes = {"test": "holdout", "train_slices": [0, cut], "test_slices": [cut, depth]}
    return EMVolumes(image[:cut], labels[:cut], image[cut:], labels[cut:], voxel,
                     f"Lucchi '{display_path(root)}' (training slices {cut}-{depth - 1} held out "
                     "as test)", notes)


def casser_volumes(root: str, dataset: str,
                   voxel_size_nm: Sequence[float] | None = None) -> EMVolumes:
    """Lucchi++ or Kasthuri++ in the layout Casser et al. (2020) distribute (PNG slices)."""
    key = dataset.lower()
    folders = casser_files(root, key)
    volumes = {}
    for split, (image_folder, label_folder) in folders.items():
        volumes[split] = (slice_folder_volume(image_folder),
                          binary_labels(slice_folder_volume(label_folder), label_folder,
                                        CASSER_IGNORE_VALUES[key]))
    return EMVolumes(*volumes["train"], *volumes["test"], _voxel_size(voxel_size_nm, key),
                     f"{key} '{display_path(root)}'", {"test": "official"})


def synthetic_volumes(train_shape: tuple[int, int, int] = (48, 192, 192),
                      test_shape: tuple[int, int, int] = (16, 192, 192), seed: int = 0,
                      anisotropy: float = 1.0, voxel_size_nm: tuple[float, float, float] = (5, 5, 5),
                      mito_density: float = 0.08) -> EMVolumes:
    """Procedural EM-like volumes: train and test are made from different seeds."""
    train = synthetic_em_volume(tuple(train_shape), seed=seed, anisotropy=anisotropy,
                                mito_density=mito_density)
    test = synthetic_em_volume(tuple(test_shape), seed=seed + 1_000_003, anisotropy=anisotropy,
                               mito_density=mito_density)
    return EMVolumes(*train, *test, _voxel_size(voxel_size_nm, "lucchi"),
                     f"synthetic EM (seed {seed}, anisotropy {anisotropy})",
                     {"train_shape": list(train_shape), "test_shape": list(test_shape)})
