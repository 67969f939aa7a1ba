"""Reading EM volumes: memory-mapped TIFFs, slice folders in numeric order, label checks, the
Lucchi and Lucchi++/Kasthuri++ layouts, and the real Lucchi training volume when present."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitoseg.data.em_volumes import (
    CASSER_IGNORE_VALUES,
    LUCCHI_FILES,
    VOXEL_SIZE_NM,
    binary_labels,
    casser_files,
    label_ignore_mask,
    lucchi_files,
    open_tif_volume,
    read_labels,
    slice_folder_volume,
)
from mitoseg.errors import InputError
from tests.conftest import SHARED_DATA

LUCCHI = SHARED_DATA / "lucchi"


def _volume(shape=(5, 12, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _write_slices(folder: Path, volume: np.ndarray, name: str = "{}.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for z, image in enumerate(volume):
        Image.fromarray(image).save(folder / name.format(z))


def test_uncompressed_tif_is_memory_mapped(tmp_path: Path) -> None:
    volume = _volume()
    tifffile.imwrite(tmp_path / "v.tif", volume)
    opened = open_tif_volume(tmp_path / "v.tif")
    assert isinstance(opened, np.memmap) and not opened.flags.writeable
    np.testing.assert_array_equal(opened, volume)


def test_single_page_tif_becomes_depth_one(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "p.tif", _volume()[0])
    assert open_tif_volume(tmp_path / "p.tif").shape == (1, 12, 16)


def test_compressed_tif_falls_back_with_a_note_or_maps_a_cache(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    volume = _volume()
    tifffile.imwrite(tmp_path / "z.tif", volume, compression="zlib")
    with caplog.at_level(logging.INFO, logger="mitoseg.data.em_volumes"):
        opened = open_tif_volume(tmp_path / "z.tif")
    assert not isinstance(opened, np.memmap) and "cannot be memory-mapped" in caplog.text
    np.testing.assert_array_equal(opened, volume)
    cached = open_tif_volume(tmp_path / "z.tif", cache_dir=tmp_path / "cache")
    assert isinstance(cached, np.memmap)
    np.testing.assert_array_equal(cached, volume)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert not list((tmp_path / "cache").glob(".*part"))
    again = open_tif_volume(tmp_path / "z.tif", cache_dir=tmp_path / "cache")
    assert again.filename == cached.filename  # decoded once, reused


def test_bad_tifs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found.*nope.tif"):
        open_tif_volume(tmp_path / "nope.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="junk.tif"):
        open_tif_volume(tmp_path / "junk.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"rgb.tif.*3 samples per pixel"):
        open_tif_volume(tmp_path / "rgb.tif")


def test_slice_folder_sorts_numerically(tmp_path: Path) -> None:
    volume = _volume(shape=(12, 10, 14))
    _write_slices(tmp_path / "s", volume, "mask{:d}.png")  # mask2 must come before mask10
    np.testing.assert_array_equal(slice_folder_volume(tmp_path / "s"), volume)


def test_slice_folder_reads_tifs_and_collapses_equal_rgb(tmp_path: Path) -> None:
    volume = _volume(shape=(3, 6, 7))
    (tmp_path / "t").mkdir()
    for z, image in enumerate(volume):
        tifffile.imwrite(tmp_path / "t" / f"{z}.tif", image)
    np.testing.assert_array_equal(slice_folder_volume(tmp_path / "t"), volume)
    labels = (volume > 128).astype(np.uint8) * 255
    (tmp_path / "rgba").mkdir()
    for z, image in enumerate(labels):  # Lucchi++ labels may come as RGBA
        rgba = np.stack([image, image, image, np.full_like(image, 255)], axis=-1)
        Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba" / f"{z}.png")
    np.testing.assert_array_equal(slice_folder_volume(tmp_path / "rgba"), labels)


def test_slice_folder_refuses_mixed_shapes_colour_and_types(tmp_path: Path) -> None:
    _write_slices(tmp_path / "a", _volume(shape=(3, 10, 14)))
    Image.fromarray(np.zeros((10, 15), np.uint8)).save(tmp_path / "a" / "3.png")
    with pytest.raises(InputError, match=r"a/3\.png.*\(10, 15\).*0\.png.*\(10, 14\)"):
        slice_folder_volume(tmp_path / "a")
    _write_slices(tmp_path / "b", _volume(shape=(2, 4, 4)))
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "b" / "2.png")
    with pytest.raises(InputError, match=r"b/2\.png.*colour"):
        slice_folder_volume(tmp_path / "b")
    _write_slices(tmp_path / "c", _volume(shape=(2, 4, 4)))
    tifffile.imwrite(tmp_path / "c" / "2.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"one file type.*\.png.*\.tif"):
        slice_folder_volume(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        slice_folder_volume(tmp_path / "empty")


@pytest.mark.parametrize("high", [255, 1])
def test_labels_to_bool(high: int) -> None:
    raw = np.zeros((4, 5, 6), np.uint8)
    raw[1, 2:4, 1:5] = high
    labels = binary_labels(raw, "x.tif")
    assert labels.dtype == bool and labels.sum() == 8 and labels[1, 2, 1]


def test_labels_with_other_values_are_refused(tmp_path: Path) -> None:
    raw = np.zeros((2, 4, 4), np.uint8)
    raw[0, 0, 0], raw[1, 1, 1] = 255, 7
    with pytest.raises(InputError, match=r"bad\.tif.*\{0, 255\} or \{0, 1\}.*\[0, 7, 255\]"):
        binary_labels(raw, "bad.tif")
    raw[1, 1, 1] = 1  # both conventions at once is ambiguous
    with pytest.raises(InputError, match=r"\[0, 1, 255\]"):
        binary_labels(raw, "bad.tif")
    tifffile.imwrite(tmp_path / "g.tif", np.arange(64, dtype=np.uint16).reshape(4, 4, 4))
    with pytest.raises(InputError, match="g.tif"):
        read_labels(tmp_path / "g.tif")


def test_kasthuri_outside_value_is_background_only_when_asked() -> None:
    raw = np.zeros((2, 4, 4), np.uint8)
    raw[0, :2] = 2  # outside the imaged tissue, as in Kasthuri++
    raw[1, 3, 3] = 255
    with pytest.raises(InputError, match=r"\[0, 2, 255\]"):
        binary_labels(raw, "k.png")
    labels = binary_labels(raw, "k.png", ignore_values=CASSER_IGNORE_VALUES["kasthuri++"])
    assert labels.sum() == 1 and labels[1, 3, 3]
    assert label_ignore_mask(raw, (2,)).sum() == 8


def test_read_labels_from_tif_and_folder(tmp_path: Path) -> None:
    raw = (_volume(shape=(4, 6, 8)) > 200).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "l.tif", raw, photometric="minisblack")  # 4 pages, not RGBA
    _write_slices(tmp_path / "l", raw)
    for source in (tmp_path / "l.tif", tmp_path / "l"):
        np.testing.assert_array_equal(read_labels(source), raw == 255)


def test_missing_lucchi_files_are_all_listed(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "training.tif", _volume())
    with pytest.raises(InputError) as caught:
        lucchi_files(tmp_path)
    message = str(caught.value)
    for image, label in LUCCHI_FILES.values():
        assert str(tmp_path / image) in message and str(tmp_path / label) in message
    assert message.count("(missing)") == 3
    assert "epfl.ch/labs/cvlab/data/data-em" in message and "mitoseg.data.download" in message


def test_lucchi_files_layout_and_split_subset(tmp_path: Path) -> None:
    for image, label in LUCCHI_FILES.values():
        for name in (image, label):
            (tmp_path / name).touch()
    files = lucchi_files(tmp_path)
    assert files["train"] == (tmp_path / "training.tif", tmp_path / "training_groundtruth.tif")
    assert files["test"] == (tmp_path / "testing.tif", tmp_path / "testing_groundtruth.tif")
    (tmp_path / "testing.tif").unlink()
    assert set(lucchi_files(tmp_path, splits=["train"])) == {"train"}
    with pytest.raises(InputError, match="splits"):
        lucchi_files(tmp_path, splits=["validation"])


@pytest.mark.parametrize("dataset,top", [("lucchi++", "Lucchi++"), ("Kasthuri++", "Kasthuri++")])
def test_casser_layout(tmp_path: Path, dataset: str, top: str) -> None:
    for name in ("Train_In", "Train_Out", "Test_In", "Test_Out"):
        (tmp_path / top / name).mkdir(parents=True)
    expected = {"train": (tmp_path / top / "Train_In", tmp_path / top / "Train_Out"),
                "test": (tmp_path / top / "Test_In", tmp_path / top / "Test_Out")}
    assert casser_files(tmp_path, dataset) == expected  # the folder holding the unzipped one
    assert casser_files(tmp_path / top, dataset) == expected  # or the unzipped folder itself


def test_casser_layout_names_are_parameters_and_missing_ones_listed(tmp_path: Path) -> None:
    layout = {"train": ("train/images", "train/masks"), "test": ("test/images", "test/masks")}
    for pair in layout.values():
        for name in pair:
            (tmp_path / name).mkdir(parents=True)
    assert casser_files(tmp_path, "lucchi++", layout=layout)["test"][1] == tmp_path / "test/masks"
    (tmp_path / "Lucchi++" / "Train_In").mkdir(parents=True)
    with pytest.raises(InputError) as caught:
        casser_files(tmp_path, "lucchi++")
    message = str(caught.value)
    assert message.count("(missing)") == 3 and "Test_Out" in message
    assert "sites.google.com/view/connectomics" in message
    with pytest.raises(InputError, match="dataset.*'lucchi'"):
        casser_files(tmp_path, "lucchi")


def test_casser_style_volume_round_trip(tmp_path: Path) -> None:
    """Images named maskNNNN.png and labels N.png (unpadded), as in the Lucchi++ zip."""
    image = _volume(shape=(11, 8, 9))
    labels = (_volume(shape=(11, 8, 9), seed=1) > 230).astype(np.uint8) * 255
    _write_slices(tmp_path / "Lucchi++" / "Train_In", image, "mask{:04d}.png")
    _write_slices(tmp_path / "Lucchi++" / "Train_Out", labels, "{:d}.png")
    for name in ("Test_In", "Test_Out"):
        (tmp_path / "Lucchi++" / name).mkdir()
    image_folder, label_folder = casser_files(tmp_path, "lucchi++")["train"]
    np.testing.assert_array_equal(slice_folder_volume(image_folder), image)
    np.testing.assert_array_equal(read_labels(label_folder), labels == 255)


def test_voxel_sizes() -> None:
    assert VOXEL_SIZE_NM["lucchi"] == VOXEL_SIZE_NM["lucchi++"] == (5.0, 5.0, 5.0)
    assert VOXEL_SIZE_NM["kasthuri++"] == (30.0, 3.0, 3.0)  # (z, y, x)


@pytest.mark.skipif(not (LUCCHI / "training.tif").is_file(),
                    reason=f"real Lucchi data not found at {LUCCHI} (set MITOSEG_SHARED_DATA)")
def test_real_lucchi_training_volume(tmp_path: Path) -> None:
    files = lucchi_files(LUCCHI, splits=["train"])
    image_path, label_path = files["train"]
    # The shared copy is deflate-compressed, so mapping needs the decode-once cache.
    image = open_tif_volume(image_path, cache_dir=tmp_path)
    assert isinstance(image, np.memmap)
    assert image.shape == (165, 768, 1024) and image.dtype == np.uint8
    assert 80 < float(image[::16].mean()) < 200
    labels = read_labels(label_path, cache_dir=tmp_path)
    assert labels.shape == image.shape and labels.dtype == bool
    assert labels.mean() == pytest.approx(0.053, abs=0.003)
