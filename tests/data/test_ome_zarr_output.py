"""Predictions written as OME-Zarr block by block: readable by the volume reader (so by
OME-Zarr viewers' rules) with the voxel size and a pyramid; resumable; never overwritten."""

from __future__ import annotations

import numpy as np
import pytest

from mitoseg.data.ome_zarr_output import OmeZarrOutput
from mitoseg.data.volume_sources import open_volume
from mitoseg.errors import InputError
from mitoseg.inference.blocks import block_grid

pytest.importorskip("zarr")
JOB = {"checkpoint": "abc", "protocol": "full_image", "tta": True, "zfilter": 5}


def test_blocks_written_in_any_order_make_the_volume_and_its_pyramid(tmp_path) -> None:
    truth = np.random.default_rng(0).random((5, 37, 50)).astype(np.float32)
    out = OmeZarrOutput.create(tmp_path / "p.ome.zarr", truth.shape, "float32", (2, 16, 16),
                               (30.0, 6.0, 6.0), JOB)
    blocks = block_grid(truth.shape, (2, 16, 32), (0, 0, 0))
    for block in reversed(blocks):
        out.write(block.core, truth[block.core])
        out.mark_done(block.key)
    assert out.done() == {b.key for b in blocks}
    out.finish()
    level0 = open_volume(tmp_path / "p.ome.zarr")
    np.testing.assert_array_equal(level0[:], truth)
    assert level0.voxel_size_nm == pytest.approx((30.0, 6.0, 6.0))
    level1 = open_volume(tmp_path / "p.ome.zarr", level=1)
    assert level1.shape == (5, 19, 25) and level1.voxel_size_nm == pytest.approx((30, 12, 12))
    np.testing.assert_allclose(level1[:, :18, :25], truth[:, :36].reshape(5, 18, 2, 25, 2)
                               .mean(axis=(2, 4)), rtol=1e-6)
    np.testing.assert_allclose(level1[:, 18, 3], truth[:, 36, 6:8].mean(axis=1), rtol=1e-6)
    assert open_volume(tmp_path / "p.ome.zarr", level=2).shape == (5, 10, 13)
    assert not (tmp_path / "p.ome.zarr" / ".mitoseg").exists()


def test_masks_keep_their_values_down_the_pyramid(tmp_path) -> None:
    mask = (np.random.default_rng(1).random((2, 20, 20)) > 0.5).astype(np.uint8) * 255
    out = OmeZarrOutput.create(tmp_path / "m.ome.zarr", mask.shape, "uint8", (2, 20, 20), None, JOB)
    out.write((slice(0, 2), slice(0, 20), slice(0, 20)), mask)
    out.finish()
    assert set(np.unique(open_volume(tmp_path / "m.ome.zarr", level=1)[:])) <= {0, 255}


def test_an_unfinished_output_resumes_only_for_the_same_job_and_nothing_is_overwritten(
        tmp_path) -> None:
    path = tmp_path / "p.ome.zarr"
    out = OmeZarrOutput.create(path, (4, 16, 16), "float32", (1, 16, 16), (5, 5, 5), JOB)
    out.write((slice(0, 1), slice(None), slice(None)), np.ones((1, 16, 16), np.float32))
    out.mark_done("0-0-0")
    with pytest.raises(InputError, match="never replaced unless asked"):
        OmeZarrOutput.create(path, (4, 16, 16), "float32", (1, 16, 16), (5, 5, 5), JOB)
    with pytest.raises(InputError, match=r"another job \(differs in \['tta'\]\)"):
        OmeZarrOutput.resume(path, {**JOB, "tta": False})
    again = OmeZarrOutput.resume(path, JOB)
    assert again.done() == {"0-0-0"}
    assert float(open_volume(path)[0].min()) == 1.0
    again.finish()
    with pytest.raises(InputError, match="already complete"):
        OmeZarrOutput.resume(path, JOB)
    fresh = OmeZarrOutput.create(path, (4, 16, 16), "float32", (1, 16, 16), (5, 5, 5), JOB,
                                 overwrite=True)
    assert fresh.done() == set() and float(open_volume(path)[:].max()) == 0.0


def test_completeness_is_told_only_for_the_same_job(tmp_path) -> None:
    path = tmp_path / "p.ome.zarr"
    assert OmeZarrOutput.is_complete(path, JOB) is False  # nothing there yet
    out = OmeZarrOutput.create(path, (2, 8, 8), "float32", (1, 8, 8), None, JOB)
    assert OmeZarrOutput.is_complete(path, JOB) is False
    out.finish()
    assert OmeZarrOutput.is_complete(path, JOB) is True
    with pytest.raises(InputError, match="another job"):
        OmeZarrOutput.is_complete(path, {**JOB, "zfilter": 3})
