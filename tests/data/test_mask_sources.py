"""Mask folders (polarity, grouping, checks), group-wise splits, and image reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from mitoseg.data.image_io import read_array, read_image, read_intensities, read_mask
from mitoseg.data.mask_sources import folder_mask_set, procedural_mask_set, split_by_group
from mitoseg.errors import InputError
from tests.conftest import SHARED_DATA

REAL_MASKS = SHARED_DATA / "fluo-masks"


def _foreground(seed: int, shape: tuple[int, int] = (24, 20), fraction: float = 0.2) -> np.ndarray:
    """A random mask with mitochondria as a minority (never empty)."""
    mask = np.random.default_rng(seed).random(shape) < fraction
    mask[0, 0] = True
    return mask


def _write(path: Path, mitochondria: np.ndarray, stored_inverted: bool,
           dtype: type = np.uint8) -> None:
    """Store a mask as paper 000 does (inverted: mitochondria at the low level) or normally."""
    stored = ~mitochondria if stored_inverted else mitochondria
    if dtype is bool:
        data = stored
    else:
        high = 255 if dtype == np.uint8 else 1
        data = np.where(stored, high, 0).astype(dtype)
    if path.suffix == ".png":
        skio.imsave(path, data.astype(np.uint8) * (255 if dtype is bool else 1),
                    check_contrast=False)
    else:
        tifffile.imwrite(path, data)


def _folder(tmp_path: Path, numbers, stored_inverted=True, suffix=".tif", shape=(24, 20),
            name: str = "masks") -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / name
    folder.mkdir()
    truth = {}
    for number in numbers:
        mask = _foreground(int(number), shape)
        inverted = stored_inverted(number) if callable(stored_inverted) else stored_inverted
        _write(folder / f"{number}{suffix}", mask, inverted)
        truth[str(number)] = mask
    return folder, truth


# ---------------------------------------------------------------------------------------------
# Polarity
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_inverted_polarity_reads_the_low_level_as_mitochondria(tmp_path, suffix):
    folder, truth = _folder(tmp_path, range(1, 5), stored_inverted=True, suffix=suffix)
    masks = folder_mask_set(str(folder), polarity="inverted")
    assert masks.masks.dtype == bool and masks.masks.shape == (4, 24, 20)
    assert masks.ids == ["1", "2", "3", "4"]
    for mask, mask_id in zip(masks.masks, masks.ids):
        np.testing.assert_array_equal(mask, truth[mask_id])
    assert masks.notes["inverted_files"] == 4
    assert masks.notes["polarity"] == "inverted"
    # Read the same files as 'normal', and they come out as the complement.
    normal = folder_mask_set(str(folder), polarity="normal")
    np.testing.assert_array_equal(normal.masks, ~masks.masks)
    assert normal.notes["inverted_files"] == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, bool])
def test_normal_polarity_reads_the_high_level_as_mitochondria(tmp_path, dtype):
    folder = tmp_path / "m"
    folder.mkdir()
    truth = _foreground(5)
    _write(folder / "1.tif", truth, stored_inverted=False, dtype=dtype)
    masks = folder_mask_set(str(folder), polarity="normal")
    np.testing.assert_array_equal(masks.masks[0], truth)


def test_auto_polarity_takes_the_minority_level_per_file(tmp_path):
    # Odd numbers stored inverted, even numbers stored normally: 'auto' recovers all of them.
    folder, truth = _folder(tmp_path, range(1, 7), stored_inverted=lambda n: n % 2 == 1)
    masks = folder_mask_set(str(folder), polarity="auto")
    for mask, mask_id in zip(masks.masks, masks.ids):
        np.testing.assert_array_equal(mask, truth[mask_id])
    assert masks.notes["inverted_files"] == 3
    assert "3 inverted" in masks.notes["message"]


def test_auto_polarity_single_level_and_bad_polarity(tmp_path):
    path = tmp_path / "1.tif"
    tifffile.imwrite(path, np.full((8, 8), 255, np.uint8))
    assert not read_mask(path, "auto")[0].any()  # one level: no mitochondria
    assert read_mask(path, "normal")[0].all()
    assert not read_mask(path, "inverted")[0].any()
    with pytest.raises(InputError, match="polarity"):
        folder_mask_set(str(tmp_path), polarity="upside-down")


# ---------------------------------------------------------------------------------------------
# Grouping
# ---------------------------------------------------------------------------------------------

def test_group_size_6_groups_consecutive_numbers_sorted_numerically(tmp_path):
    numbers = [*range(1, 13), *range(19, 25)]  # a gap, as in the real folder
    folder, _ = _folder(tmp_path, reversed(numbers))
    masks = folder_mask_set(str(folder), polarity="inverted", group_size=6)
    assert masks.ids == [str(n) for n in numbers]  # 2 before 10
    assert masks.groups.tolist() == [0] * 6 + [1] * 6 + [3] * 6  # (n - 1) // 6
    assert len(masks) == 18


def test_group_size_1_gives_every_file_its_own_group(tmp_path):
    folder, _ = _folder(tmp_path, [10, 2, 1])
    masks = folder_mask_set(str(folder), polarity="inverted")
    assert masks.ids == ["1", "2", "10"]
    assert masks.groups.tolist() == [0, 1, 2]


def test_incomplete_group_is_refused(tmp_path):
    folder, _ = _folder(tmp_path, range(1, 11))  # 1-6 complete, 7-10 incomplete
    with pytest.raises(InputError, match=r"incomplete") as error:
        folder_mask_set(str(folder), group_size=6)
    assert "[7]" in str(error.value)


def test_grouping_needs_numeric_names(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("a", "b"):
        _write(folder / f"{name}.tif", _foreground(1), True)
    with pytest.raises(InputError, match="numeric"):
        folder_mask_set(str(folder), group_size=2)
    with pytest.raises(InputError, match="group_size"):
        folder_mask_set(str(folder), group_size=0)


def test_limit_takes_the_first_files_in_numeric_order(tmp_path):
    folder, _ = _folder(tmp_path, range(1, 13))
    masks = folder_mask_set(str(folder), polarity="inverted", limit=3)
    assert masks.ids == ["1", "2", "3"]


# ---------------------------------------------------------------------------------------------
# Bad folders and files
# ---------------------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="not found") as error:
        folder_mask_set(str(missing))
    assert str(missing) in str(error.value)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no masks here")
    with pytest.raises(InputError, match="no .tif") as error:
        folder_mask_set(str(tmp_path))
    assert str(tmp_path) in str(error.value)


def test_non_binary_mask_is_refused_naming_the_file(tmp_path):
    folder, _ = _folder(tmp_path, [1, 2])
    tifffile.imwrite(folder / "3.tif", np.array([[0, 128], [255, 0]], np.uint8))
    with pytest.raises(InputError, match="3 distinct values") as error:
        folder_mask_set(str(folder))
    assert "3.tif" in str(error.value)


def test_shape_mismatch_is_refused_naming_the_file(tmp_path):
    folder, _ = _folder(tmp_path, [1, 2])
    _write(folder / "3.tif", _foreground(3, (24, 21)), True)
    with pytest.raises(InputError, match="shape") as error:
        folder_mask_set(str(folder))
    assert "3.tif" in str(error.value)


def test_3d_mask_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "1.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="2D") as error:
        folder_mask_set(str(tmp_path))
    assert "1.tif" in str(error.value)


# ---------------------------------------------------------------------------------------------
# Splits by group
# ---------------------------------------------------------------------------------------------

def _groups_of(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_keeps_groups_whole_and_rounds_up(seed):
    groups = _groups_of([6] * 20)
    split = split_by_group(groups, {"val": 10, "test": 5}, seed)
    all_indices = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(all_indices.tolist()) == list(range(len(groups)))  # a partition
    sets = {name: set(groups[idx].tolist()) for name, idx in split.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert len(split["test"]) == 6  # 5 rounded up to one group
    assert len(split["val"]) == 12  # 10 rounded up to two groups
    assert len(split["train"]) == 120 - 18


def test_split_with_uneven_groups_takes_at_least_the_wanted_count():
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    groups = _groups_of(counts)
    for seed in range(10):
        split = split_by_group(groups, {"val": 8, "test": 4}, seed)
        assert len(split["val"]) >= 8 and len(split["test"]) >= 4
        # Rounded up, not more: the overshoot is less than one of the groups taken.
        for name, wanted in (("val", 8), ("test", 4)):
            chosen = np.unique(groups[split[name]])
            assert len(split[name]) < wanted + max(np.array(counts)[chosen])


def test_split_is_deterministic_per_seed_and_differs_across_seeds():
    groups = _groups_of([6] * 30)
    a = split_by_group(groups, {"val": 12, "test": 6}, 3)
    b = split_by_group(groups, {"val": 12, "test": 6}, 3)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name], b[name])
    tests = {tuple(split_by_group(groups, {"val": 12, "test": 6}, seed)["test"]) for seed in range(6)}
    assert len(tests) > 1


def test_split_of_zero_still_takes_one_group_each():
    split = split_by_group(_groups_of([2] * 5), {"val": 0, "test": 0}, 0)
    assert len(split["val"]) == 2 and len(split["test"]) == 2 and len(split["train"]) == 6


@pytest.mark.parametrize("counts, sizes", [
    ([6, 6], {"val": 1, "test": 1}),  # two groups, three splits
    ([6] * 5, {"val": 20, "test": 6}),  # nothing left for training
])
def test_too_few_groups_is_refused(counts, sizes):
    with pytest.raises(InputError, match="no training data"):
        split_by_group(_groups_of(counts), sizes, 0)


def test_unknown_split_name_is_refused():
    with pytest.raises(InputError, match="validation"):
        split_by_group(_groups_of([1] * 10), {"validation": 2, "test": 2}, 0)


def test_procedural_masks_are_one_group_each():
    masks = procedural_mask_set(count=5, seed=2, shape=(48, 48))
    assert masks.groups.tolist() == [0, 1, 2, 3, 4]
    assert masks.ids == [f"procedural-2-{i}" for i in range(5)]
    with pytest.raises(InputError, match="count"):
        procedural_mask_set(count=0)


# ---------------------------------------------------------------------------------------------
# The real folder of paper 000's masks
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_masks():
    if not REAL_MASKS.is_dir():
        pytest.skip(f"real masks not present at {REAL_MASKS} (see ../shared/data/README.md)")
    return folder_mask_set(str(REAL_MASKS), polarity="auto", group_size=6)


def test_real_folder_layout_and_polarity(real_masks):
    assert len(real_masks) == 540
    assert real_masks.masks.shape == (540, 200, 200)
    assert len(np.unique(real_masks.groups)) == 90
    assert np.all(np.unique(real_masks.groups, return_counts=True)[1] == 6)
    # Every file is stored inverted, and 'auto' finds that out by itself.
    assert real_masks.notes["inverted_files"] == 540
    fraction = real_masks.masks.mean()
    # The README says "about 7-8 %"; that is the median per mask (0.072). The pooled mean is
    # 0.0870, pulled up by a few dense crops. Either way far from the 0.91 of the wrong polarity.
    assert 0.08 < fraction < 0.095
    assert 0.065 < np.median(real_masks.masks.mean(axis=(1, 2))) < 0.08
    explicit = folder_mask_set(str(REAL_MASKS), polarity="inverted", group_size=6, limit=12)
    np.testing.assert_array_equal(explicit.masks, real_masks.masks[:12])


def test_real_groups_are_flips_and_rotations_of_one_crop(real_masks):
    for group in np.unique(real_masks.groups)[::9]:
        members = real_masks.masks[real_masks.groups == group]
        views = [np.rot90(members[0], k) for k in range(4)]
        views += [view[:, ::-1] for view in views]
        for member in members:
            assert any(np.array_equal(member, view) for view in views), f"group {group}"


def test_real_split_val_100_test_30(real_masks):
    # split_by_group alone keeps groups whole; that still leaks shared strips between
    # neighbouring crops, so the data modules deal out clusters (test_leak_free_split.py).
    split = split_by_group(real_masks.groups, {"val": 100, "test": 30}, seed=0)
    assert len(split["test"]) == 30  # exactly 5 whole groups
    assert len(np.unique(real_masks.groups[split["test"]])) == 5
    assert len(split["val"]) == 102  # 100 rounded up to 17 groups
    assert len(split["train"]) == 540 - 132
    sets = {name: set(real_masks.groups[idx].tolist()) for name, idx in split.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"]
                or sets["val"] & sets["test"])


# ---------------------------------------------------------------------------------------------
# read_image
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_read_image_refuses_non_finite_pixels(tmp_path, bad):
    image = np.ones((6, 7), np.float32)
    image[2, 3] = bad
    path = tmp_path / "broken_image.tif"
    tifffile.imwrite(path, image)
    with pytest.raises(InputError, match="NaN") as error:
        read_image(path)
    assert "broken_image.tif" in str(error.value)


def test_read_image_returns_float32_and_refuses_rgb_png(tmp_path):
    path = tmp_path / "gray.tif"
    tifffile.imwrite(path, np.arange(12, dtype=np.uint16).reshape(3, 4))
    image = read_image(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, np.arange(12).reshape(3, 4))
    rgb = tmp_path / "colour.png"
    skio.imsave(rgb, np.zeros((5, 5, 3), np.uint8), check_contrast=False)
    with pytest.raises(InputError, match="colour") as error:
        read_image(rgb)
    assert "colour.png" in str(error.value)
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "absent.tif")
    (tmp_path / "garbage.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="garbage.tif"):
        read_image(tmp_path / "garbage.tif")


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["grey_alpha", "rgb", "rgba"])
def test_a_png_with_channels_is_refused_not_read_as_a_stack(tmp_path, channels):
    """A grey + alpha PNG decodes to (H, W, 2): read as a stack it would be H slices of W x 2
    pixels, segmented without a word. Every PNG with channels is refused, naming the file."""
    path = tmp_path / "image.png"
    skio.imsave(path, np.full((40, 30, channels), 200, np.uint8), check_contrast=False)
    assert read_array(path).shape == (40, 30, channels)
    for reader in (read_image, read_intensities):
        with pytest.raises(InputError, match=rf"image\.png.*{channels} channels"):
            reader(path)


@pytest.mark.parametrize("options", [{}, {"compression": "zlib"}, {"imagej": True}])
@pytest.mark.parametrize("shape", [(9, 7), (5, 9, 7)])
def test_read_array_gives_the_pixels_tifffile_reads(tmp_path, shape, options):
    """read_array opens a TIFF once for its colour check and its pixels: the same array, dtype
    and shape as tifffile.imread, plain, compressed or ImageJ, 2D or a stack."""
    array = np.random.default_rng(3).integers(0, 60000, shape).astype(np.uint16)
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, array, **options)
    read = read_array(path)
    assert read.dtype == np.uint16 and read.shape == shape
    np.testing.assert_array_equal(read, tifffile.imread(path))
    np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize("kind", ["rgb", "rgba", "planar_stack"])
def test_every_image_reader_refuses_a_tiff_of_several_samples_per_pixel(tmp_path, kind):
    """A colour TIFF is not a stack: (H, W, 3) would be 'H slices of W x 3 pixels'. The
    image readers refuse it, naming the file and its samples per pixel."""
    array, options, samples = {
        "rgb": (np.zeros((16, 12, 3), np.uint8), {"photometric": "rgb"}, 3),
        "rgba": (np.zeros((16, 12, 4), np.uint8), {"photometric": "rgb", "extrasamples": [2]}, 4),
        "planar_stack": (np.zeros((3, 16, 12), np.float32), {"photometric": "rgb",
                                                           "planarconfig": "separate"}, 3),
    }[kind]
    path = tmp_path / f"{kind}.tif"
    tifffile.imwrite(path, array, **options)
    for reader in (read_array, read_image):
        with pytest.raises(InputError, match=rf"{kind}\.tif.*{samples} samples per pixel"):
            reader(path)
    with pytest.raises(InputError, match=rf"{kind}\.tif.*{samples} samples per pixel"):
        read_mask(path)
