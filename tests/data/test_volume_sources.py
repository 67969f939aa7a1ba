"""Volumes from TIFF stacks, slice folders, HDF5 and (OME-)Zarr read lazily and exactly, with
their voxel size; label mappings with an ignore value. Fixtures come from the synthetic EM
generator, written by the tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.data.em_sources import synthetic_volumes
from mitoseg.data.label_mapping import LabelMapping
from mitoseg.data.volume_set import MappedBlocks
from mitoseg.data.volume_sources import (
    Volume,
    check_pair,
    check_voxel_size,
    open_volume,
    tiff_voxel_size_nm,
)
from mitoseg.errors import InputError

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    volumes = synthetic_volumes((10, 40, 36), (2, 40, 36))
    return np.asarray(volumes.train_image), np.asarray(volumes.train_labels).astype(np.uint8)


def write_ome_zarr(path: Path, levels: list[np.ndarray], scale_um: tuple[float, float, float],
                   version: str = "0.5") -> None:
    """A minimal OME-Zarr multiscale image (each level 2x coarser in y and x)."""
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for number, level in enumerate(levels):
        array = group.create_array(str(number), shape=level.shape, dtype=level.dtype,
                                   chunks=(2, 16, 16))
        array[:] = level
        factor = 2 ** number
        datasets.append({"path": str(number), "coordinateTransformations": [
            {"type": "scale", "scale": [scale_um[0], scale_um[1] * factor, scale_um[2] * factor]}]})
    multiscale = {"axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
                  "datasets": datasets, "version": version}
    if version == "0.5":
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    else:
        group.attrs["multiscales"] = [multiscale]


def test_every_kind_of_source_reads_the_same_voxels_lazily(tmp_path, volume) -> None:
    image, _ = volume
    tifffile.imwrite(tmp_path / "plain.tif", image)
    tifffile.imwrite(tmp_path / "zlib.tif", image, compression="zlib")
    (tmp_path / "slices").mkdir()
    for z, plane in enumerate(image):  # natural order: 2 before 10
        tifffile.imwrite(tmp_path / "slices" / f"s{z}.tif", plane)
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle.create_dataset("volumes/raw", data=image, chunks=(2, 20, 18))
    zarr.save_array(str(tmp_path / "v.zarr"), image)
    write_ome_zarr(tmp_path / "v.ome.zarr", [image, image[:, ::2, ::2]], (0.005, 0.005, 0.005))
    specs = ["plain.tif", "zlib.tif", "slices", "v.h5:/volumes/raw", "v.zarr", "v.ome.zarr",
             "v.ome.zarr:/0"]
    block = (slice(3, 7), slice(5, 29), slice(2, 33))
    for spec in specs:
        source = open_volume(tmp_path / spec if ":" not in spec else f"{tmp_path}/{spec}")
        assert source.shape == image.shape and source.dtype == image.dtype, spec
        assert not isinstance(source.array, np.ndarray) or isinstance(source.array, np.memmap)
        np.testing.assert_array_equal(source[block], image[block], err_msg=spec)
        np.testing.assert_array_equal(source[4], image[4], err_msg=spec)
    coarse = open_volume(tmp_path / "v.ome.zarr", level=1)
    np.testing.assert_array_equal(coarse[:], image[:, ::2, ::2])


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_voxel_size_comes_from_the_metadata_in_nm(tmp_path, volume, version) -> None:
    image, _ = volume
    write_ome_zarr(tmp_path / "v.ome.zarr", [image, image[:, ::2, ::2]], (0.01, 0.005, 0.005),
                   version)
    assert open_volume(tmp_path / "v.ome.zarr").voxel_size_nm == pytest.approx((10, 5, 5))
    assert open_volume(tmp_path / "v.ome.zarr", level=1).voxel_size_nm == pytest.approx((10, 10, 10))
    assert open_volume(f"{tmp_path}/v.ome.zarr:/1").voxel_size_nm == pytest.approx((10, 10, 10))
    full = open_volume(tmp_path / "v.ome.zarr")
    assert check_voxel_size(full, None) == pytest.approx((10, 5, 5))
    assert check_voxel_size(full, [10, 5, 5]) == (10.0, 5.0, 5.0)
    with pytest.raises(InputError, match=r"metadata says \[10.0, 5.0, 5.0\]"):
        check_voxel_size(full, [5, 5, 5])
    tifffile.imwrite(tmp_path / "plain.tif", image)
    assert check_voxel_size(open_volume(tmp_path / "plain.tif"), [8, 4, 4]) == (8.0, 4.0, 4.0)


def test_an_imagej_tiff_states_its_voxel_size_and_other_tiffs_none(tmp_path, volume) -> None:
    """ImageJ's unit, x/y resolution and z spacing are a calibration; the resolution tags of
    other TIFFs are mostly writers' defaults (72 dpi, 1 per unit) and are not read as one."""
    image, _ = volume
    tifffile.imwrite(tmp_path / "cal.tif", image, imagej=True, resolution=(1 / 0.006, 1 / 0.004),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 0.03})
    assert tiff_voxel_size_nm(tmp_path / "cal.tif") == pytest.approx((30, 4, 6))
    tifffile.imwrite(tmp_path / "flat.tif", image[0], imagej=True, resolution=(0.2, 0.2),
                     metadata={"unit": "nm"})
    assert tiff_voxel_size_nm(tmp_path / "flat.tif") == pytest.approx((None, 5, 5))
    tifffile.imwrite(tmp_path / "micron.tif", image[0], imagej=True, resolution=(100, 100),
                     metadata={"unit": "\\u00B5m"})  # as ImageJ writes µm
    assert tiff_voxel_size_nm(tmp_path / "micron.tif") == pytest.approx((None, 10, 10))
    tifffile.imwrite(tmp_path / "plain.tif", image, resolution=(72, 72), resolutionunit="INCH")
    assert tiff_voxel_size_nm(tmp_path / "plain.tif") is None
    tifffile.imwrite(tmp_path / "pixels.tif", image, imagej=True, metadata={"axes": "ZYX"})
    assert tiff_voxel_size_nm(tmp_path / "pixels.tif") is None  # no unit: not calibrated


def test_a_colour_tiff_is_no_volume(tmp_path, volume) -> None:
    """A single-page RGB TIFF (H, W, 3) is not a volume of H slices of W x 3 pixels: a TIFF
    stack, or a slice of a slice folder, with more than one sample per pixel is refused."""
    image, _ = volume
    colour = np.stack([image[0]] * 3, axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    tifffile.imwrite(tmp_path / "rgb_zlib.tif", colour, photometric="rgb", compression="zlib")
    tifffile.imwrite(tmp_path / "rgb_pages.tif", np.stack([colour] * 2), photometric="rgb")
    for name in ("rgb.tif", "rgb_zlib.tif", "rgb_pages.tif"):
        with pytest.raises(InputError, match=rf"{name}.*3 samples per pixel"):
            open_volume(tmp_path / name)
    (tmp_path / "slices").mkdir()
    tifffile.imwrite(tmp_path / "slices" / "0.tif", image[0])
    tifffile.imwrite(tmp_path / "slices" / "1.tif", colour, photometric="rgb")
    with pytest.raises(InputError, match=r"1\.tif.*3 samples per pixel"):
        open_volume(tmp_path / "slices")[:]


def test_bad_sources_stop_with_one_clear_message(tmp_path, volume) -> None:
    image, labels = volume
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle.create_dataset("raw", data=image)
        handle.create_dataset("labels/mito", data=labels)
    with pytest.raises(InputError, match=r"no dataset '/missing'.*\['/labels/mito', '/raw'\]"):
        open_volume(f"{tmp_path}/v.h5:/missing")
    with pytest.raises(InputError, match="name the dataset inside the HDF5 file"):
        open_volume(tmp_path / "v.h5")
    with pytest.raises(InputError, match="volume not found"):
        open_volume(tmp_path / "nowhere.tif")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unknown kind"):
        open_volume(tmp_path / "notes.txt")
    write_ome_zarr(tmp_path / "v.ome.zarr", [image], (0.005, 0.005, 0.005))
    with pytest.raises(InputError, match="levels 0-0"):
        open_volume(tmp_path / "v.ome.zarr", level=2)
    tifffile.imwrite(tmp_path / "flat.tif", image[0])
    with pytest.raises(InputError, match="expected 3 axes"):
        open_volume(tmp_path / "flat.tif")
    with pytest.raises(InputError, match="must match voxel for voxel"):
        check_pair(open_volume(f"{tmp_path}/v.h5:/raw"), Volume(labels[:, :20], "cropped labels"))
    (tmp_path / "mixed").mkdir()
    tifffile.imwrite(tmp_path / "mixed" / "1.tif", image[0])
    tifffile.imwrite(tmp_path / "mixed" / "2.tif", image[1, :20])
    with pytest.raises(InputError, match="'2.tif' has shape"):
        open_volume(tmp_path / "mixed")[:]


def test_label_mapping_turns_raw_values_into_target_and_valid_voxels() -> None:
    raw = np.array([[0, 255, 2], [255, 0, 2]], np.uint8)
    mapping = LabelMapping.from_config({"foreground": [255], "background": [0], "ignore": [2]})
    target, valid = mapping.apply(raw)
    np.testing.assert_array_equal(target, [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(valid, [[True, True, False], [True, True, False]])
    assert target.dtype == np.float32
    with pytest.raises(InputError, match=r"label value\(s\) \[2\] are not in the mapping"):
        LabelMapping.from_config({"foreground": [255]}).apply(raw, "labels 'x.tif'")
    loose = LabelMapping.from_config({"foreground": [255], "background": None})
    np.testing.assert_array_equal(loose.apply(raw)[0], [[0, 1, 0], [1, 0, 0]])
    with pytest.raises(InputError, match="named twice"):
        LabelMapping.from_config({"foreground": [1], "ignore": [1]})
    with pytest.raises(InputError, match="unknown key"):
        LabelMapping.from_config({"foregound": [1]})


def test_a_volume_check_names_the_slices_holding_a_stray_value(volume) -> None:
    _, labels = volume
    labels = labels.copy()
    labels[7, 3, 3] = 9
    with pytest.raises(InputError, match=r"labels 'v', slices 0-9: label value\(s\) \[9\]"):
        MappedBlocks(labels, LabelMapping(), "labels 'v'").slice_counts()
    foreground, ignored = MappedBlocks(labels, LabelMapping(ignore=(9,)), "v").slice_counts()
    np.testing.assert_array_equal(foreground, (labels == 1).sum((1, 2)))
    np.testing.assert_array_equal(ignored, np.eye(10, dtype=int)[7])


def test_slice_counts_match_the_mapped_views_in_blocks_of_slices() -> None:
    """Blocks of 16 slices (fewer for large slices), counted as apply() maps them."""
    from mitoseg.data.label_mapping import CHECK_VOXELS

    raw = np.random.default_rng(3).integers(0, 5, (37, 24, 20)).astype(np.uint8)
    mapping = LabelMapping(foreground=(1, 4), background=(0, 3), ignore=(2,))
    blocks = MappedBlocks(raw, mapping, "raw")
    foreground, ignored = blocks.slice_counts()
    target, valid = mapping.apply(raw)
    np.testing.assert_array_equal(foreground, target.sum((1, 2)))
    np.testing.assert_array_equal(ignored, (~valid).sum((1, 2)))
    assert blocks.slice_counts()[0] is foreground  # computed once
    big = np.zeros((3, 1024, 2048), np.uint8)
    big[2, 0, 0] = 7
    with pytest.raises(InputError, match="slices 2-2: label value"):  # 2 slices hold CHECK_VOXELS
        MappedBlocks(big, LabelMapping(), "big").slice_counts()
    assert CHECK_VOXELS // (1024 * 2048) == 2


def test_the_volume_check_holds_two_bools_a_voxel_of_a_block() -> None:
    """benchmarks/bench_patch_sampling.py: the check built the full target (float32) and
    four bool masks of 16 slices at a time, 146 MiB above the rest for 1024 x 1024 slices."""
    import tracemalloc

    from mitoseg.data.label_mapping import CHECK_VOXELS

    labels = (np.random.default_rng(0).random((64, 512, 512)) < 0.1).astype(np.uint8)
    tracemalloc.start()
    MappedBlocks(labels, LabelMapping(), "labels 'v'").slice_counts()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * CHECK_VOXELS, f"{peak / 2**20:.1f} MiB"  # was 8 bytes a voxel
