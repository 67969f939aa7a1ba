"""Block-wise segmentation of a volume into OME-Zarr with a checkpoint's Predictor: equal to one
pass in memory (2D and 3D networks), resumable to the identical output, voxel size kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mitoseg.data.em_sources import synthetic_volumes
from mitoseg.data.ome_zarr_output import OmeZarrOutput
from mitoseg.data.volume_sources import open_volume
from mitoseg.errors import InputError
from mitoseg.evaluation import chunked
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.segment_volume import segment_volume
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.evaluation.test_em_end_to_end import EM_2D

pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
PAPER = ["inference=em_paper"]  # full image + 8-fold TTA + z-median 5


def _checkpoint(tmp_path_factory, name: str, overrides: list[str], base=EM_2D) -> Path:
    run_dir = tmp_path_factory.mktemp(name)
    train(compose_config("train", list(base) + overrides, run_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def checkpoint_2d(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory, "em2d", PAPER)


@pytest.fixture(scope="module")
def volume_source(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A uint8 OME-Zarr volume (voxel 30 x 6 x 6 nm) and its array."""
    image = np.asarray(synthetic_volumes((9, 64, 80), (2, 64, 80), seed=3).train_image)
    path = tmp_path_factory.mktemp("src") / "cells.ome.zarr"
    out = OmeZarrOutput.create(path, image.shape, image.dtype, (3, 64, 80), (30, 6, 6),
                               {"source": 1}, levels=1)
    out.write((slice(None),) * 3, image)
    out.finish()
    return str(path), image


def test_blockwise_equals_in_memory_and_keeps_the_voxel_size(checkpoint_2d, volume_source,
                                                            tmp_path) -> None:
    source, image = volume_source
    record = segment_volume(checkpoint_2d, source, tmp_path, block_depth=2, progress=False)
    predictor = Predictor.from_checkpoint(checkpoint_2d, device="cpu")
    assert predictor.settings.tta and predictor.settings.zfilter == 5
    whole = predictor.probabilities(image)
    probabilities = open_volume(tmp_path / "cells_prob.ome.zarr")
    np.testing.assert_allclose(probabilities[:], whole, rtol=0, atol=1e-6)  # float32 rounding
    masks = open_volume(tmp_path / "cells_mask.ome.zarr")[:]
    np.testing.assert_array_equal(masks, predictor.masks(whole).astype(np.uint8) * 255)
    assert probabilities.voxel_size_nm == pytest.approx((30, 6, 6))
    assert record["halo_slices"] == 2 and record["blocks"] == 5
    saved = json.loads((tmp_path / "cells_segmentation.json").read_text())
    assert saved["reconstruction"]["tta"] == 8 and saved["voxel_size_nm"] == [30.0, 6.0, 6.0]
    with pytest.raises(InputError, match="never replaced unless asked"):
        segment_volume(checkpoint_2d, source, tmp_path, block_depth=2, progress=False)


def test_an_input_without_a_voxel_size_gets_the_checkpoints(checkpoint_2d, volume_source,
                                                            tmp_path) -> None:
    """An HDF5 volume states no voxel size: the outputs state the checkpoint's training voxel
    size (synthetic_em: 5 nm), as the in-memory path does, and the record says so (they said
    1 nm, marked unknown)."""
    source, image = volume_source
    with h5py.File(tmp_path / "bare.h5", "w") as handle:
        handle.create_dataset("raw", data=image)
    record = segment_volume(checkpoint_2d, f"{tmp_path}/bare.h5:/raw", tmp_path / "out",
                            block_depth=3, progress=False)
    assert record["voxel_size_nm"] == [5.0, 5.0, 5.0] and record["voxel_size_from"] == "checkpoint"
    assert open_volume(tmp_path / "out" / "bare_prob.ome.zarr").voxel_size_nm == pytest.approx(
        (5, 5, 5))
    kept = segment_volume(checkpoint_2d, source, tmp_path / "kept", block_depth=3, progress=False)
    assert kept["voxel_size_from"] == "input" and kept["voxel_size_nm"] == [30.0, 6.0, 6.0]


def test_a_stopped_run_resumes_to_the_identical_output(checkpoint_2d, volume_source, tmp_path,
                                                       monkeypatch) -> None:
    source, image = volume_source
    with h5py.File(tmp_path / "cells.h5", "w") as handle:
        handle.create_dataset("raw", data=image)
    spec = f"{tmp_path}/cells.h5:/raw"
    clean = tmp_path / "clean"
    segment_volume(checkpoint_2d, spec, clean, block_depth=2, voxel_size_nm=[30, 6, 6],
                   progress=False)
    real = chunked.predict_function
    calls = []

    def stopping(factory):
        predict = real(factory)

        def stop_after_two(block):
            if len(calls) == 2:
                raise KeyboardInterrupt  # the run is killed here
            calls.append(1)
            return predict(block)
        return stop_after_two

    monkeypatch.setattr(chunked, "predict_function", stopping)
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        segment_volume(checkpoint_2d, spec, stopped, block_depth=2, voxel_size_nm=[30, 6, 6],
                       progress=False)
    monkeypatch.setattr(chunked, "predict_function", real)
    record = segment_volume(checkpoint_2d, spec, stopped, block_depth=2,
                            voxel_size_nm=[30, 6, 6], resume=True, progress=False)
    assert record["blocks_predicted_now"] == record["blocks"] - 2
    for name in ("cells_prob.ome.zarr", "cells_mask.ome.zarr"):
        for level in (0, 1):
            np.testing.assert_array_equal(open_volume(stopped / name, level)[:],
                                          open_volume(clean / name, level)[:])
    with pytest.raises(InputError, match=r"metadata says|another job"):
        segment_volume(checkpoint_2d, spec, stopped, block_depth=4, resume=True, progress=False)


FULL_IMAGE = {"reconstruction": "full_image",
              "headline": {"protocol": "full_image", "tta": False, "zfilter": 0}}


def _3d_case(tmp_path_factory, tmp_path, name: str, model: list[str],
             depth: int) -> tuple[Path, str, np.ndarray]:
    """A tiny 3D checkpoint (``model`` overrides) and a ``depth``-slice HDF5 volume:
    (checkpoint, volume spec, the volume)."""
    base = [o for o in EM_2D if not o.startswith(("model", "dataset.patch", "augmentation"))]
    checkpoint = _checkpoint(tmp_path_factory, name, [
        *model, "augmentation=paper3d", "dataset.patch_size=[8,32,32]",
        "dataset.volumes.train_shape=[24,48,48]"], base)
    image = np.asarray(synthetic_volumes((depth, 32, 32), (2, 32, 32), seed=5).train_image)
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle.create_dataset("raw", data=image)
    return checkpoint, f"{tmp_path}/v.h5:/raw", image


def test_a_3d_network_goes_blockwise_with_its_receptive_field_as_halo(tmp_path_factory,
                                                                      tmp_path) -> None:
    checkpoint, spec, image = _3d_case(tmp_path_factory, tmp_path, "em3d", [
        "model=unet3d_paper002", "+model.filters=[4,8,8,16]"], 40)
    with pytest.raises(InputError, match="needs inference reconstruction 'full_image'"):
        segment_volume(checkpoint, spec, tmp_path / "tiled", voxel_size_nm=[5, 5, 5],
                       progress=False)
    record = segment_volume(checkpoint, spec, tmp_path / "out", inference=FULL_IMAGE,
                            block_depth=16, voxel_size_nm=[5, 5, 5], progress=False)
    # slabs and halo on the full-image divisor (16): pooling lines up as in one pass
    assert record["halo_slices"] % 16 == 0 and record["halo_slices"] >= 16
    assert record["blocks"] == 3 and record["block_depth"] == 16
    whole = Predictor.from_checkpoint(checkpoint, FULL_IMAGE, device="cpu").probabilities(image)
    np.testing.assert_allclose(open_volume(tmp_path / "out" / "v_prob.ome.zarr")[:], whole,
                               rtol=0, atol=2e-6)


def test_a_3d_network_that_does_not_pool_z_needs_only_its_z_reach_as_halo(tmp_path_factory,
                                                                        tmp_path) -> None:
    """Its halo is its measured reach along z (14 slices, rounded up to the divisor: 16), not
    its reach in y, x (46, which made a halo of 48); the same result as one pass."""
    checkpoint, spec, image = _3d_case(tmp_path_factory, tmp_path, "em3d-flat", [
        "model=unet3d_anisotropic", "model.filters=[4,8,8,16]"], 37)
    record = segment_volume(checkpoint, spec, tmp_path / "out", inference=FULL_IMAGE,
                            block_depth=16, voxel_size_nm=[30, 3, 3], progress=False)
    # reach 14 = 7 blocks (4 down, 3 up) of two 3x3x3 convolutions
    assert record["halo_slices"] == 16
    assert record["blocks"] == 3 and record["block_depth"] == 16
    whole = Predictor.from_checkpoint(checkpoint, FULL_IMAGE, device="cpu").probabilities(image)
    np.testing.assert_allclose(open_volume(tmp_path / "out" / "v_prob.ome.zarr")[:], whole,
                               rtol=0, atol=2e-6)


def test_segment_py_takes_zarr_and_hdf5_volumes_block_by_block(checkpoint_2d, volume_source,
                                                                tmp_path) -> None:
    from mitoseg.evaluation.segment import segment

    source, image = volume_source
    out = tmp_path / "out"
    record = segment(compose_config("segment", [f"ckpt_path={checkpoint_2d}", f"input={source}",
                                                f"output_dir={out}", "blockwise.block_depth=4",
                                                "device=cpu"]))
    assert record["blocks"] == 3 and record["voxel_size_nm"] == [30.0, 6.0, 6.0]
    whole = Predictor.from_checkpoint(checkpoint_2d, device="cpu").probabilities(image)
    np.testing.assert_allclose(open_volume(out / "cells_prob.ome.zarr")[:], whole, rtol=0,
                               atol=1e-6)
    with pytest.raises(InputError, match="block by block"):
        segment(compose_config("segment", [f"ckpt_path={checkpoint_2d}", f"input={source}",
                                           f"output_dir={tmp_path / 'x'}",
                                           "blockwise.enabled=false"]))


def test_small_outputs_also_as_hdf5_and_tiff(checkpoint_2d, volume_source, tmp_path) -> None:
    """also_write copies the finished OME-Zarr into HDF5 and ImageJ TIFF, voxel for voxel and
    with the voxel size; an existing copy is refused before any prediction."""
    import tifffile

    source, _ = volume_source
    record = segment_volume(checkpoint_2d, source, tmp_path, block_depth=3, progress=False,
                            also_write=["hdf5", "tiff"])
    assert record["also_written"] == ["cells_segmentation.h5", "cells_prob.tif", "cells_mask.tif"]
    probabilities = open_volume(tmp_path / "cells_prob.ome.zarr")[:]
    masks = open_volume(tmp_path / "cells_mask.ome.zarr")[:]
    with h5py.File(tmp_path / "cells_segmentation.h5") as handle:
        np.testing.assert_array_equal(handle["probabilities"][:], probabilities)
        np.testing.assert_array_equal(handle["mask"][:], masks)
        assert list(handle["mask"].attrs["voxel_size_nm"]) == [30.0, 6.0, 6.0]
    with tifffile.TiffFile(tmp_path / "cells_prob.tif") as tiff:
        np.testing.assert_array_equal(tiff.asarray(), probabilities)
        assert tiff.imagej_metadata["spacing"] == pytest.approx(0.03)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells_mask.tif"), masks)
    assert not list(tmp_path.glob(".*.partial"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "cells_mask.tif").write_bytes(b"someone's file")
    with pytest.raises(InputError, match=r"cells_mask.tif'\] exist; an output is never replaced"):
        segment_volume(checkpoint_2d, source, other, block_depth=3, progress=False,
                       also_write=["tiff"])
    assert not (other / "cells_prob.ome.zarr").exists()  # refused before predicting
    with pytest.raises(InputError, match=r"unknown format 'png'"):
        segment_volume(checkpoint_2d, source, other, progress=False, also_write=["png"])


class _FakeCluster:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def close(self) -> None:
        self.events.append("cluster closed")


class _FakeClient:
    def __init__(self, events: list[str]) -> None:
        self.events, self.cluster = events, _FakeCluster(events)

    def close(self) -> None:
        self.events.append("client closed")


@pytest.mark.parametrize("fails", [False, True])
def test_a_dask_engine_closes_the_client_and_the_cluster_it_started(
        checkpoint_2d, volume_source, tmp_path, monkeypatch, fails: bool) -> None:
    """After the blocks are done, and when they fail: no worker process is left behind."""
    import mitoseg.evaluation.segment_volume as module

    events: list[str] = []
    monkeypatch.setattr(module, "dask_client", lambda *args: _FakeClient(events))

    def run_dask(task, blocks, probabilities, client, progress):  # noqa: ANN001, ANN202
        events.append("blocks")
        if fails:
            raise RuntimeError("a worker died")
        return module.run_local(task, blocks, probabilities, progress)

    monkeypatch.setattr(module, "run_dask", run_dask)
    source, _ = volume_source
    if fails:
        with pytest.raises(RuntimeError, match="a worker died"):
            segment_volume(checkpoint_2d, source, tmp_path, block_depth=4, engine="local",
                           progress=False)
    else:
        segment_volume(checkpoint_2d, source, tmp_path, block_depth=4, engine="local",
                       progress=False)
        assert (tmp_path / "cells_mask.ome.zarr").is_dir()
    assert events == ["blocks", "client closed", "cluster closed"]
