"""dataset=em_volumes: a user's TIFF / HDF5 / Zarr / OME-Zarr volumes with a label mapping and
ignored voxels, read lazily, checked before training, served by the EM data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.data.em_datamodule import EMDataModule, check_no_overlap
from mitoseg.data.em_patches import ForegroundSampler, RandomPatchDataset
from mitoseg.data.em_volume_files import em_volume_files
from mitoseg.data.example_volumes import BAND_PX, IGNORE, example_em_volumes, write_example_volumes
from mitoseg.errors import InputError
from tests.conftest import SHARED_DATA

MAPPING = {"foreground": [1], "background": [0], "ignore": [2]}
TRAIN = [{"name": "tif_stack", "image": "train_a.tif", "labels": "train_a_labels.tif"},
         {"name": "hdf5", "image": "train_b.h5:/raw", "labels": "train_b.h5:/labels",
          "label_mapping": {"foreground": [255], "background": [0]}}]
VAL = [{"name": "zarr_sparse", "image": "val.zarr", "labels": "val_labels.zarr"}]
TEST = [{"name": "ome_zarr", "image": "test.ome.zarr", "labels": "test_labels.ome.zarr"}]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_volumes(tmp_path_factory.mktemp("volumes") / "example")


def open_set(root: Path, **changes):
    options = {"train": TRAIN, "val": VAL, "test": TEST, "label_mapping": MAPPING,
               "voxel_size_nm": [5, 5, 5], "root": str(root)} | changes
    return em_volume_files(**options)


def test_every_format_opens_with_its_mapping_and_ignored_voxels(root: Path) -> None:
    volumes = open_set(root)
    assert [v.name for v in volumes.train + volumes.val + volumes.test] == [
        "tif_stack", "hdf5", "zarr_sparse", "ome_zarr"]
    assert volumes.voxel_size_nm == (5.0, 5.0, 5.0)
    raw_a = tifffile.imread(root / "train_a_labels.tif")
    tif = volumes.train[0]
    np.testing.assert_array_equal(np.asarray(tif.labels), raw_a == 1)
    np.testing.assert_array_equal(np.asarray(tif.ignored), raw_a == IGNORE)
    assert (raw_a[:, :, :BAND_PX] == IGNORE).all() and not (raw_a[:, :, BAND_PX:] == IGNORE).any()
    import h5py

    with h5py.File(root / "train_b.h5") as handle:  # its own mapping: 255 is mitochondria
        np.testing.assert_array_equal(np.asarray(volumes.train[1].labels),
                                      handle["labels"][:] == 255)
    assert volumes.train[1].ignored is None  # its mapping ignores nothing
    valid = volumes.val[0].valid()  # sparse annotation: odd slices unannotated
    assert not valid[1::2].any() and valid[0::2].all()
    assert volumes.has_ignore


def test_voxel_size_comes_from_ome_zarr_metadata_and_must_agree(root: Path) -> None:
    renamed = [TEST[0] | {"name": "train_copy"}]
    alone = em_volume_files(train=renamed, test=TEST, root=str(root), label_mapping=MAPPING)
    assert alone.voxel_size_nm == (5.0, 5.0, 5.0)  # read from the OME-Zarr files
    with pytest.raises(InputError, match=r"\[4.0, 5.0, 5.0\] nm given, but the file's metadata"):
        open_set(root, voxel_size_nm=[4, 5, 5])
    with pytest.raises(InputError, match=r"no voxel size in the files' metadata"):
        open_set(root, voxel_size_nm=None)
    mixed = [TRAIN[0] | {"voxel_size_nm": [10, 5, 5]}, TRAIN[1]]
    with pytest.raises(InputError, match="different voxel sizes"):
        open_set(root, train=mixed)


def test_bad_input_stops_with_one_message_naming_the_volume(root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no dataset '/missing' in .*it holds \['/labels', '/raw'\]"):
        open_set(root, train=[{"image": "train_b.h5:/missing", "labels": "train_b.h5:/labels"}])
    with pytest.raises(InputError, match=r"volumes.train\[0\]: missing \['labels'\]"):
        open_set(root, train=[{"image": "train_a.tif"}])
    with pytest.raises(InputError, match=r"unknown key\(s\) \['mask'\]"):
        open_set(root, train=[TRAIN[0] | {"mask": "x.tif"}])
    # labels outside the mapping: the HDF5 labels hold 255, the global mapping knows 0, 1, 2
    with pytest.raises(InputError, match=r"volumes.train\[0\] \('hdf5'.*slices 0-15: label "
                                         r"value\(s\) \[255\] are not in the mapping"):
        open_set(root, train=[{k: v for k, v in TRAIN[1].items() if k != "label_mapping"}])
    short = tmp_path / "short_labels.tif"
    tifffile.imwrite(short, tifffile.imread(root / "train_a_labels.tif")[:10])
    with pytest.raises(InputError, match=r"has shape \(32, 160, 160\) but labels .* have "
                                         r"\(10, 160, 160\)"):
        open_set(root, train=[{"image": "train_a.tif", "labels": str(short)}])
    with pytest.raises(InputError, match=r"volume name\(s\) \['ome_zarr'\] are used twice"):
        open_set(root, val=TEST)


def test_a_stray_label_is_caught_when_read_if_the_scan_is_off(root: Path) -> None:
    volumes = open_set(root, train=[{k: v for k, v in TRAIN[1].items() if k != "label_mapping"}],
                       scan_labels=False)
    labels = volumes.train[0].labels  # opening read no label; the first read with 255 stops
    with pytest.raises(InputError, match=r"\('hdf5'.*block \[0, 0:64, 0:64\]: label "
                                         r"value\(s\) \[255\] are not in the mapping"):
        labels[0, 0:64, 0:64]


def test_the_data_module_serves_every_volume_with_its_valid_mask(root: Path) -> None:
    module = EMDataModule(lambda: open_set(root), patch_size=(64, 64), split_seed=0, seed=0,
                          patches_per_image=3, num_workers=0, augmentation=None)
    module.setup()
    train = module.datasets["train"]
    assert len(train) == (32 + 24) * 3  # every slice of both volumes trains (explicit val)
    assert module.describe()["volume_list"][0]["train_slices"] == [[0, 31]]
    raw = {"tif_stack": tifffile.imread(root / "train_a_labels.tif")}
    seen = 0
    for index in range(0, 32 * 3, 7):  # samples of the TIFF volume: valid = not IGNORE
        sample = train[index]
        z, y, x = (int(part[1:]) for part in sample["mask_id"].split("-"))
        window = raw["tif_stack"][z, y:y + 64, x:x + 64]
        np.testing.assert_array_equal(sample["valid"][0].numpy(), (window != IGNORE))
        np.testing.assert_array_equal(sample["mask"][0].numpy(), (window == 1))
        seen += int((window == IGNORE).any())
    assert seen  # some windows reach into the ignored band
    hdf5_sample = train[32 * 3]  # the HDF5 volume ignores nothing: valid all ones
    assert hdf5_sample["valid"].min() == 1
    val = module.datasets["val"]
    # the Zarr validation volume tiled by 64 x 64 (3 x 3 per slice); its unannotated slices
    # (every second one) are left out: they would measure nothing
    assert len(val) == 6 * 9 and val.z_indices == [0, 2, 4, 6, 8, 10]
    # nothing ignored on those slices: each voxel is valid in exactly one tile (the last tile
    # of a side, shifted back to end at the border, leaves out what the tile before covers)
    scored = np.zeros((12, *val.image.shape[1:]), int)
    for i, (z, y, x) in enumerate(val.origins):
        scored[z, y:y + 64, x:x + 64] += val[i]["valid"][0].numpy().astype(int)
    assert (scored[val.z_indices] == 1).all()
    batch = next(iter(module.train_dataloader()))
    assert set(batch) >= {"image", "mask", "valid"} and batch["valid"].shape == batch["mask"].shape


def test_one_volume_per_split_serves_what_it_always_did() -> None:
    """A named data set (one training volume, nothing ignored) keeps its datasets and items."""
    from mitoseg.data.em_sources import synthetic_volumes

    def make():
        return synthetic_volumes((12, 96, 96), (4, 96, 96), seed=3)

    module = EMDataModule(make, patch_size=(48, 48), split_seed=1, seed=0, num_workers=0)
    module.setup()
    assert isinstance(module.datasets["train"], RandomPatchDataset)
    assert "valid" not in module.datasets["train"][0] and not module.with_valid
    volumes = make()
    direct = RandomPatchDataset(volumes.train_image, volumes.train_labels, module.train_z,
                                (48, 48), normalization=module.normalization)
    import torch

    for index in range(4):
        torch.manual_seed(index)
        a = module.datasets["train"][index]
        torch.manual_seed(index)
        b = direct[index]
        assert a["mask_id"] == b["mask_id"] and torch.equal(a["image"], b["image"])


def test_slices_without_an_annotated_voxel_are_left_out_in_2d(root: Path) -> None:
    """Sparse annotation: the odd slices of the Zarr volume are all ignored; used for training
    (and for validation with val_fraction), none of them is drawn."""
    sparse = [{"name": "sparse", "image": "val.zarr", "labels": "val_labels.zarr"}]
    module = EMDataModule(lambda: open_set(root, train=sparse, val=[]), patch_size=(64, 64),
                          split_seed=0, seed=0, num_workers=0, val_fraction=0.3)
    module.setup()
    train_z, val_z = module.slices[0]
    assert set(train_z) | set(val_z) == {0, 2, 4, 6, 8, 10} and not set(train_z) & set(val_z)
    assert len(module.datasets["train"]) == len(train_z)
    everything_ignored = {"foreground": [7], "background": None, "ignore": [0, 1, 2]}
    with pytest.raises(InputError, match="no training slice holds a voxel that is not ignored"):
        EMDataModule(lambda: open_set(root, train=sparse, val=[],
                                      label_mapping=everything_ignored),
                     patch_size=(64, 64), split_seed=0, seed=0, num_workers=0).setup()


def test_without_validation_volumes_each_training_volume_gives_slices(root: Path) -> None:
    module = EMDataModule(lambda: open_set(root, val=[]), patch_size=(64, 64), split_seed=0,
                          seed=0, num_workers=0, val_fraction=0.25)
    module.setup()
    (train_a, val_a), (train_b, val_b) = module.slices
    assert len(val_a) == 8 and len(val_b) == 6
    assert not set(train_a) & set(val_a) and not set(train_b) & set(val_b)
    assert len(module.datasets["val"]) == (8 + 6) * 9


def test_a_test_volume_copying_a_second_training_volume_is_refused(root: Path) -> None:
    copied = [{"name": "copy_of_hdf5", "image": "train_b.h5:/raw", "labels": "train_b.h5:/labels",
               "label_mapping": {"foreground": [255], "background": [0]}}]
    volumes = open_set(root, test=TEST + copied)
    with pytest.raises(InputError, match=r"test volume 'copy_of_hdf5' against training volume "
                                         r"'hdf5'.*24 test slice\(s\) also occur"):
        check_no_overlap(volumes)


def test_a_validation_volume_sharing_training_slices_is_refused(root: Path) -> None:
    """Validation slices that training also sees would choose the best weights on training
    data: a z range of a training volume given again as validation is refused (its slices
    10-19 are training slices 10-19), and so is a shifted copy; disjoint z ranges of one
    recording are not."""
    stack = {"image": "train_a.tif", "labels": "train_a_labels.tif"}
    overlapping = open_set(root, train=[stack | {"name": "early", "z_range": [0, 20]}],
                           val=[stack | {"name": "late", "z_range": [10, 26]}])
    with pytest.raises(InputError, match=r"validation volume 'late' against training volume "
                                         r"'early'.*10 validation slice\(s\) also occur"):
        check_no_overlap(overlapping)
    with pytest.raises(InputError, match=r"validation volume 'late'"):
        EMDataModule(lambda: overlapping, patch_size=(64, 64), split_seed=0, seed=0).setup()
    image = tifffile.imread(root / "train_a.tif")
    labels = tifffile.imread(root / "train_a_labels.tif")
    tifffile.imwrite(root / "shifted.tif", np.roll(image[10:20], (2, -1), axis=(1, 2)))
    tifffile.imwrite(root / "shifted_labels.tif", np.roll(labels[10:20], (2, -1), axis=(1, 2)))
    shifted = open_set(root, train=[stack], val=[{"name": "shifted", "image": "shifted.tif",
                                                  "labels": "shifted_labels.tif"}])
    with pytest.raises(InputError, match=r"validation slice\(s\) are near-copies of slices of "
                                         r"the training volume.*validation slice 0 ~ training "
                                         r"slice 10"):
        check_no_overlap(shifted)
    apart = open_set(root, train=[stack | {"name": "early", "z_range": [0, 16]}],
                     val=[stack | {"name": "late", "z_range": [16, 32]}])
    check_no_overlap(apart)


class CountingArray:
    """An array that counts the voxels read through it."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.read = array, array.shape, array.dtype, 0

    def __getitem__(self, index):
        out = self.array[index]
        self.read += int(np.size(out))
        return out


def test_patches_read_only_their_windows() -> None:
    """Lazy sampling: 40 patches of 32 x 32 read 40 windows of image and labels, not volumes."""
    rng = np.random.default_rng(0)
    image = CountingArray(rng.integers(0, 255, (64, 256, 256), dtype=np.uint8))
    labels = CountingArray((rng.random((64, 256, 256)) < 0.1).astype(np.uint8))
    dataset = RandomPatchDataset(image, labels, range(64), (32, 32), placement="uniform")
    for index in range(40):
        dataset[index]
    assert image.read == labels.read == 40 * 32 * 32  # the volumes hold 4.2 M voxels each


def test_the_foreground_sampler_draws_the_same_voxels_without_holding_coordinates() -> None:
    """Past ``coords_limit`` the k-th foreground voxel is found slice by slice: the same draws."""
    rng = np.random.default_rng(1)
    labels = (rng.random((20, 40, 50)) < 0.05).astype(np.uint8)
    held = ForegroundSampler(labels, range(2, 18), 5.0)
    found = ForegroundSampler(labels, range(2, 18), 5.0, coords_limit=0)
    for seed in range(20):
        assert held.draw(np.random.default_rng(seed), (40, 50)) == found.draw(
            np.random.default_rng(seed), (40, 50))
    for a, b in zip(held.draw_many(np.random.default_rng(7), 64, (40, 50)),
                    found.draw_many(np.random.default_rng(7), 64, (40, 50))):
        np.testing.assert_array_equal(a, b)
    assert not found.holds_coordinates and held.coords().shape == (held.foreground_count(), 3)
    z, y, x = held.coords().T  # every held coordinate is a foreground voxel of the slices used
    assert labels[z, y, x].all() and set(np.unique(z)) <= set(range(2, 18))


def test_the_example_writes_once_and_is_never_overwritten(tmp_path: Path) -> None:
    volumes = example_em_volumes(str(tmp_path / "ex"), train=TRAIN, val=VAL, test=TEST,
                                 label_mapping=MAPPING, voxel_size_nm=[5, 5, 5])
    assert len(volumes.train) == 2
    stamp = (tmp_path / "ex" / "train_a.tif").stat().st_mtime_ns
    example_em_volumes(str(tmp_path / "ex"), train=TRAIN, test=TEST, label_mapping=MAPPING,
                       voxel_size_nm=[5, 5, 5])
    assert (tmp_path / "ex" / "train_a.tif").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="never overwritten"):
        write_example_volumes(tmp_path / "ex")


def test_z_ranges_cut_one_recording_into_volumes(root: Path) -> None:
    train = [TRAIN[0] | {"z_range": [0, 20]}]
    test = [TRAIN[0] | {"name": "later", "z_range": [26, 32]}]
    volumes = open_set(root, train=train, val=[], test=test)
    whole = tifffile.imread(root / "train_a.tif")
    np.testing.assert_array_equal(np.asarray(volumes.test[0].image[:]), whole[26:32])
    np.testing.assert_array_equal(volumes.test[0].image[2, 5:9], whole[28, 5:9])
    assert volumes.test[0].numbers() == list(range(26, 32))  # the recording's slice numbers
    assert volumes.train[0].depth == 20 and volumes.test[0].valid().shape == (6, 160, 160)
    for bad in ([20, 40], [5, 5], "7"):
        with pytest.raises(InputError, match=r"z_range"):
            open_set(root, train=[TRAIN[0] | {"z_range": bad}], val=[], test=test)


LUCCHI = SHARED_DATA / "lucchi"


@pytest.mark.skipif(not (LUCCHI / "training.tif").is_file(), reason=f"no Lucchi copy at {LUCCHI}")
def test_lucchi_holdout_is_em_volumes_with_z_ranges(tmp_path: Path) -> None:
    """The Lucchi preset's holdout (train 0-121, gap 122-131, test 132-164) as plain em_volumes
    entries: the same voxels, labels and slice numbers."""
    from mitoseg.data.em_sources import lucchi_volumes

    entry = {"image": "training.tif", "labels": "training_groundtruth.tif"}
    mine = em_volume_files(train=[entry | {"z_range": [0, 122]}],
                           test=[entry | {"name": "holdout", "z_range": [132, 165]}],
                           root=str(LUCCHI), voxel_size_nm=[5, 5, 5],
                           label_mapping={"foreground": [255], "background": [0]})
    preset = lucchi_volumes(str(LUCCHI), cache_dir=str(tmp_path))
    for split in ("train", "test"):
        ours, theirs = mine.only(split), getattr(preset, f"{split}_image")
        for z in (0, ours.depth // 2, ours.depth - 1):
            np.testing.assert_array_equal(ours.image[z], theirs[z])
            np.testing.assert_array_equal(ours.labels[z], getattr(preset, f"{split}_labels")[z])
        assert ours.numbers() == preset.slice_numbers(split)


def test_a_patch_reads_its_raw_labels_once_for_labels_and_ignore_mask() -> None:
    """The foreground and ignore views share one reader: a patch's window of raw labels is
    read and mapped once, not once per view."""
    from mitoseg.data.label_mapping import LabelMapping
    from mitoseg.data.volume_set import mapped_views

    rng = np.random.default_rng(0)
    image = CountingArray(rng.integers(0, 255, (16, 128, 128), dtype=np.uint8))
    raw = CountingArray(rng.integers(0, 3, (16, 128, 128), dtype=np.uint8))
    labels, ignored = mapped_views(raw, LabelMapping.from_config(MAPPING), "raw")
    dataset = RandomPatchDataset(image, labels, range(16), (32, 32), placement="uniform",
                                 ignored=ignored)
    for index in range(10):
        sample = dataset[index]
        z, y, x = (int(part[1:]) for part in sample["mask_id"].split("-"))
        window = raw.array[z, y:y + 32, x:x + 32]
        np.testing.assert_array_equal(sample["mask"][0].numpy(), window == 1)
        np.testing.assert_array_equal(sample["valid"][0].numpy(), window != 2)
    assert raw.read == image.read == 10 * 32 * 32


def test_setup_reads_the_raw_labels_once() -> None:
    """The label check, the search for slices without an annotated voxel (2D) and a foreground
    sampler past its coordinate limit share one pass over the raw labels (before: three); on a
    z range of the volume too, with the same slices kept and the same draws."""
    from mitoseg.data.em_datamodule import _annotated
    from mitoseg.data.em_volume_files import ZRange
    from mitoseg.data.label_mapping import LabelMapping
    from mitoseg.data.volume_set import LabelledVolume, mapped_views

    rng = np.random.default_rng(5)
    values = rng.integers(0, 2, (24, 64, 64), dtype=np.uint8)
    values[3] = values[10] = 2  # two slices without an annotated voxel
    raw = CountingArray(values)
    labels, ignored = mapped_views(raw, LabelMapping.from_config(MAPPING), "raw")
    labels.slice_counts()  # what opening a volume does: check every value, keep the counts
    image = np.zeros(values.shape, np.uint8)
    kept = _annotated(LabelledVolume("v", image, labels, ignored), list(range(24)))
    sampler = ForegroundSampler(labels, kept, 5.0, coords_limit=0)
    assert sampler.foreground_count() == int((values[kept] == 1).sum())
    part = LabelledVolume("part", ZRange(image, 8, 20), ZRange(labels, 8, 20),
                          ZRange(ignored, 8, 20))
    assert _annotated(part, list(range(12))) == [z for z in range(12) if z != 2]
    assert ForegroundSampler(part.labels, range(12), 5.0, coords_limit=0).foreground_count() \
        == int((values[8:20] == 1).sum())
    assert raw.read == values.size
    reading = ForegroundSampler(values == 1, kept, 5.0, coords_limit=0)  # read slice by slice
    for seed in range(5):
        assert sampler.draw(np.random.default_rng(seed), (32, 32)) == reading.draw(
            np.random.default_rng(seed), (32, 32))
