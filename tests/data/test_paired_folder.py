"""Real images with masks: pairing by name, shape checks, and a training run on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.data.paired_folder import read_pairs
from mitoseg.errors import InputError
from mitoseg.training.train import train
from tests.config.test_instantiate_all import write_pairs
from tests.conftest import compose_config


def test_pairs_match_by_name_and_polarity(tmp_path: Path) -> None:
    write_pairs(tmp_path, count=3, shape=(40, 80))
    images, masks, ids = read_pairs(tmp_path / "images", tmp_path / "masks", "normal")
    assert ids == ["0", "1", "2"] and images[0].shape == masks[0].shape == (40, 80)
    assert masks[0].sum() == 20 * 50 and masks[0].dtype == bool


def test_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    write_pairs(tmp_path, count=2, shape=(40, 80))
    tifffile.imwrite(tmp_path / "masks" / "1.tif", np.zeros((40, 81), np.uint8))
    with pytest.raises(InputError, match=r"images/1\.tif.*\(40, 80\).*masks/1\.tif.*\(40, 81\)"):
        read_pairs(tmp_path / "images", tmp_path / "masks")


def test_missing_mask_is_named(tmp_path: Path) -> None:
    write_pairs(tmp_path, count=2, shape=(40, 80))
    (tmp_path / "masks" / "1.tif").unlink()
    with pytest.raises(InputError, match=r"no mask .* \['1'\]"):
        read_pairs(tmp_path / "images", tmp_path / "masks")


def test_non_binary_mask_is_refused(tmp_path: Path) -> None:
    write_pairs(tmp_path, count=2, shape=(40, 80))
    tifffile.imwrite(tmp_path / "masks" / "0.tif", np.arange(40 * 80, dtype=np.uint16).reshape(40, 80) % 3)
    with pytest.raises(InputError, match=r"masks/0\.tif.*two levels"):
        read_pairs(tmp_path / "images", tmp_path / "masks")


def test_training_on_paired_folders(tmp_path: Path, tiny_overrides: list[str]) -> None:
    overrides = [o for o in tiny_overrides if not o.startswith("dataset.")]
    overrides += ["dataset=fluo_pairs", *write_pairs(tmp_path, count=8, shape=(64, 64)),
                  "dataset.split={val:2,test:2}"]
    metrics = train(compose_config("train", overrides, tmp_path / "run"))
    assert metrics["test"]["as"]["n"] == 2


def test_tiles_of_one_image_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    """Overlapping tiles of one large annotated image share ground truth: they are split whole."""
    from scipy import ndimage

    from mitoseg.data.paired_folder import PairedFolderDataModule

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image_of = {}
    for image in range(4):
        rng = np.random.default_rng(image)
        mask = ndimage.gaussian_filter(rng.normal(size=(64, 160)), 2) > 0.1
        pixels = (rng.normal(100, 5, mask.shape) + 50 * mask).astype(np.float32)
        for x in range(0, 97, 48):  # three 64 x 64 tiles, 16-px shared strips
            name = f"image{image}_x{x}"
            tifffile.imwrite(tmp_path / "images" / f"{name}.tif", pixels[:, x:x + 64])
            tifffile.imwrite(tmp_path / "masks" / f"{name}.tif",
                             mask[:, x:x + 64].astype(np.uint8) * 255)
            image_of[name] = image
    for seed in range(4):
        module = PairedFolderDataModule(str(tmp_path / "images"), str(tmp_path / "masks"),
                                        {"val": 1, "test": 1}, seed, 0)
        module.setup()
        sides = {split: {image_of[i] for i in data.ids} for split, data in module.datasets.items()}
        assert all(len(images) == 1 for name, images in sides.items() if name != "train")
        assert len(sides["train"]) == 2 and not sides["train"] & (sides["val"] | sides["test"])
        assert module.describe()["leakage"]["clusters"]["count"] == 4
