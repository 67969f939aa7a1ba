"""Lazy training and validation volumes read into memory once when they fit
``dataset.hold_in_memory_mib``: the same voxels, the same batches, whole chunks read once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.data.em_volume_files import em_volume_files
from mitoseg.data.held_volumes import MIB, held_bytes, hold, hold_fitting, is_lazy
from mitoseg.data.label_mapping import LabelMapping
from mitoseg.data.volume_set import LabelledVolume, mapped_views
from mitoseg.errors import InputError
from tests.data.read_log import ReadLog

MAPPING = {"foreground": [1], "background": [0], "ignore": [2]}


def _raw_labels(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = (rng.random(shape) < 0.2).astype(np.uint8)
    values[:, :, :5] = 2  # an ignored band
    return values


def test_hold_reads_whole_chunks_once_and_gives_the_same_voxels(monkeypatch) -> None:
    """Image, foreground and ignore mask equal what the lazy views read; the image is read in
    slabs of whole chunks, once, and the raw labels of a slab are mapped once for both
    views."""
    monkeypatch.setattr("mitoseg.data.slabs.SLAB_BYTES", 16 * 20 * 30)  # 16-slice slabs
    # a mapped slab is mapped 2 slices (1,200 voxels) at a time, not all at once
    monkeypatch.setattr("mitoseg.data.volume_set.CHECK_VOXELS", 1_300)
    data = np.random.default_rng(0).integers(0, 256, (40, 20, 30), dtype=np.uint8)
    image = ReadLog(data, chunk=8)
    raw = ReadLog(_raw_labels(data.shape, 1), chunk=8)
    labels, ignored = mapped_views(raw, LabelMapping.from_config(MAPPING), "raw")
    held = hold(LabelledVolume("v", image, labels, ignored, slice_numbers=list(range(5, 45))))
    assert all(isinstance(a, np.ndarray) for a in (held.image, held.labels, held.ignored))
    np.testing.assert_array_equal(held.image, data)
    np.testing.assert_array_equal(held.labels, raw.data == 1)
    np.testing.assert_array_equal(held.ignored, raw.data == 2)
    assert held.labels.dtype == bool and held.slice_numbers == list(range(5, 45))
    assert image.slices_read == raw.slices_read == [range(0, 16), range(16, 32), range(32, 40)]


def test_arrays_in_memory_are_kept_as_they_are(tmp_path: Path) -> None:
    data = np.zeros((4, 8, 8), np.uint8)
    mapped = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.uint8,
                                       shape=(4, 8, 8))
    volume = LabelledVolume("v", mapped, data > 0)
    assert not is_lazy(mapped) and held_bytes(volume) == 0
    assert hold(volume) is volume and hold_fitting([volume], 1, "budget") == [volume]


def _lazy_volume(name: str, depth: int) -> LabelledVolume:
    data = np.zeros((depth, 32, 32), np.uint16)  # 2 KiB a slice of image, 1 KiB of labels
    return LabelledVolume(name, ReadLog(data, chunk=1), ReadLog(data > 0, chunk=1))


def test_each_volume_is_held_while_it_fits_what_is_left_of_the_budget() -> None:
    volumes = [_lazy_volume("a", 512), _lazy_volume("b", 512), _lazy_volume("c", 128)]
    assert [held_bytes(v) for v in volumes] == [1.5 * MIB, 1.5 * MIB, 0.375 * MIB]
    out = hold_fitting(volumes, 2, "budget")  # a fits (1.5), b would pass 2, c fits (1.875)
    assert [isinstance(v.image, np.ndarray) for v in out] == [True, False, True]
    assert out[1] is volumes[1]
    assert all(v is w for v, w in zip(hold_fitting(volumes, 0, "budget"), volumes))
    with pytest.raises(InputError, match="budget must be >= 0"):
        hold_fitting(volumes, -1, "budget")


def test_at_most_half_the_available_memory_is_held(monkeypatch) -> None:
    volumes = [_lazy_volume("a", 512), _lazy_volume("c", 128)]  # 1.5 and 0.375 MiB
    monkeypatch.setattr("mitoseg.data.held_volumes.available_mib", lambda: 2.0)
    out = hold_fitting(volumes, 2048, "budget")  # 1 MiB allowed: only c
    assert [isinstance(v.image, np.ndarray) for v in out] == [False, True]


@pytest.fixture(scope="module")
def chunked_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training volumes and a test volume in Zarr, in chunks of 4 x 16 x 16."""
    root = tmp_path_factory.mktemp("chunked")
    rng = np.random.default_rng(3)
    for name, depth in (("a", 24), ("b", 12), ("test", 6)):
        image = zarr.create_array(str(root / f"{name}.zarr"), shape=(depth, 48, 40),
                                  dtype="uint8", chunks=(4, 16, 16))
        image[:] = rng.integers(0, 256, (depth, 48, 40), dtype=np.uint8)
        labels = zarr.create_array(str(root / f"{name}_labels.zarr"), shape=(depth, 48, 40),
                                   dtype="uint8", chunks=(4, 16, 16))
        labels[:] = _raw_labels((depth, 48, 40), depth)
    return root


def _module(root: Path, hold_mib: float, **options) -> EMDataModule:
    def volumes():
        entry = [{"name": n, "image": f"{n}.zarr", "labels": f"{n}_labels.zarr"}
                 for n in ("a", "b")]
        return em_volume_files(train=entry, test=[{"image": "test.zarr",
                                                   "labels": "test_labels.zarr"}],
                               label_mapping=MAPPING, voxel_size_nm=[5, 5, 5], root=str(root))
    module = EMDataModule(volumes, patch_size=(16, 16), split_seed=2, seed=0, batch_size=5,
                          num_workers=0, val_fraction=0.2, normalize="training_zscore",
                          foreground_weight=3.0, hold_in_memory_mib=hold_mib, **options)
    module.setup()
    return module


def _batches(module: EMDataModule, split: str, count: int) -> list[dict]:
    torch.manual_seed(11)
    loader = module.train_dataloader() if split == "train" else module.val_dataloader()
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


def test_held_volumes_give_the_same_batches_as_lazy_ones(chunked_root: Path,
                                                        monkeypatch) -> None:
    """The same split, normalization, foreground draws, training and validation batches; the
    held module reads nothing more from the files once set up."""
    lazy, held = _module(chunked_root, 0), _module(chunked_root, 64)
    assert lazy.held == [] and held.held == ["a", "b"]
    assert held.describe()["held_in_memory"] == ["a", "b"]
    assert lazy.slices == held.slices
    assert lazy.normalization.to_dict() == held.normalization.to_dict()
    assert all(isinstance(v.image, np.ndarray) and isinstance(v.labels, np.ndarray)
               for v in held.volumes.train)
    assert not isinstance(held.volumes.test[0].image, np.ndarray)  # the test stays lazy
    def no_file_reads(*args, **kwargs):
        raise AssertionError("a held volume was read from its file")

    for split, count in (("train", 8), ("val", 4)):
        expected = _batches(lazy, split, count)
        with monkeypatch.context() as patch:
            patch.setattr(zarr.Array, "__getitem__", no_file_reads)
            got = _batches(held, split, count)
        for a, b in zip(expected, got, strict=True):
            assert a.keys() == b.keys()
            for key in ("image", "mask", "valid"):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            assert a["mask_id"] == b["mask_id"]


def test_a_small_budget_holds_what_fits_and_device_sampling_holds_nothing(
        chunked_root: Path) -> None:
    # training volume a: 24 x 48 x 40 voxels, 3 bytes each (image, labels, ignore mask)
    size_a = 24 * 48 * 40 * 3 / MIB
    assert _module(chunked_root, size_a).held == ["a"]
    assert _module(chunked_root, size_a * 0.9).held == ["b"]  # only b fits
    assert _module(chunked_root, 64, sampling="device").held == []
