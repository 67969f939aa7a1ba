"""The real Lucchi and Lucchi++ volumes (../shared/data) converted to OME-Zarr read back voxel
for voxel with their voxel size. Slow; skipped cleanly where the data are absent."""

from __future__ import annotations

import numpy as np
import pytest

from mitoseg.data.em_datasets import BY_KEY
from mitoseg.data.em_volumes import paired_slice_volumes
from mitoseg.data.ome_zarr_output import convert_to_ome_zarr
from mitoseg.data.volume_sources import open_volume
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow
pytest.importorskip("zarr")


def _check(volume, path, voxel) -> None:
    convert_to_ome_zarr(volume, path, voxel)
    back = open_volume(path)
    assert back.shape == tuple(volume.shape) and back.voxel_size_nm == pytest.approx(voxel)
    for start in range(0, back.shape[0], 40):
        np.testing.assert_array_equal(back[start:start + 40], np.asarray(volume[start:start + 40]))
    coarse = open_volume(path, level=1)
    assert coarse.shape == (back.shape[0], -(-back.shape[1] // 2), -(-back.shape[2] // 2))


def test_lucchi_training_volume_as_ome_zarr(tmp_path) -> None:
    image = SHARED_DATA / "lucchi" / "training.tif"
    if not image.is_file():
        pytest.skip(f"no Lucchi volume at {image}")
    volume = open_volume(image)
    assert volume.shape == (165, 768, 1024)
    _check(volume, tmp_path / "lucchi_train.ome.zarr", tuple(BY_KEY["lucchi"].VOXEL_SIZE_NM))


def test_lucchi_pp_volume_as_ome_zarr(tmp_path) -> None:
    root = SHARED_DATA / "lucchi_pp"
    if not (root / "Train_In").is_dir():
        pytest.skip(f"no Lucchi++ copy at {root}")
    image, _, _ = paired_slice_volumes(root / "Train_In", root / "Train_Out")
    _check(image, tmp_path / "lucchi_pp.ome.zarr", tuple(BY_KEY["lucchi++"].VOXEL_SIZE_NM))
