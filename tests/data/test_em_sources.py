"""EM data sets as configured: Casser et al.'s folder layout and anisotropic voxel sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import io as skio

from mitoseg.data.em_sources import casser_volumes, synthetic_volumes
from mitoseg.errors import InputError
from mitoseg.evaluation.em_protocols import protocol_matrix


def write_kasthuri(root: Path, depth: int = 4) -> Path:
    rng = np.random.default_rng(0)
    base = root / "Kasthuri++"
    for split, offset in (("Train", 0), ("Test", 100)):
        (base / f"{split}_In").mkdir(parents=True)
        (base / f"{split}_Out").mkdir(parents=True)
        for z in range(depth):
            image = rng.integers(0, 256, (24, 32), dtype=np.uint8)
            label = np.zeros((24, 32), np.uint8)
            label[4:10, 5 + z + offset % 7: 15 + z] = 255
            label[:, -2:] = 2  # Kasthuri++ marks the area outside the tissue with 2
            skio.imsave(base / f"{split}_In" / f"mask{z:04d}.png", image, check_contrast=False)
            skio.imsave(base / f"{split}_Out" / f"{z}.png", label, check_contrast=False)
    return base


def test_kasthuri_layout_and_anisotropic_voxels_reach_the_metrics(tmp_path: Path) -> None:
    write_kasthuri(tmp_path)
    volumes = casser_volumes(str(tmp_path), "kasthuri++")
    assert volumes.voxel_size_nm == (30.0, 3.0, 3.0)
    assert volumes.train_image.shape == volumes.train_labels.shape == (4, 24, 32)
    assert not volumes.train_labels[:, :, -2:].any()  # the "outside" value reads as background
    rows = protocol_matrix(lambda b: b, volumes.test_image, volumes.test_labels, 2, (16, 16),
                           lambda p: p > 0.5, protocols=["full_image"], tta=[False], zfilter=[0],
                           voxel_size_nm=volumes.voxel_size_nm)
    assert rows[0]["voxel_size_z_nm"] == 30.0 and rows[0]["voxel_size_x_nm"] == 3.0
    voxel_um3 = 30 * 3 * 3 * 1e-9
    assert rows[0]["gt_volume_um3"] == pytest.approx(volumes.test_labels.sum() * voxel_um3)


def test_configured_voxel_size_wins_and_is_checked(tmp_path: Path) -> None:
    write_kasthuri(tmp_path)
    assert casser_volumes(str(tmp_path), "kasthuri++", [40, 4, 4]).voxel_size_nm == (40.0, 4.0, 4.0)
    with pytest.raises(InputError, match="voxel_size_nm"):
        synthetic_volumes((4, 32, 32), (2, 32, 32), voxel_size_nm=[5, 5])


def test_missing_folders_are_listed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"Test_Out"):
        casser_volumes(str(tmp_path), "lucchi++")
