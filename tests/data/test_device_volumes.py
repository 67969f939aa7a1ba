"""sampling=device with several training volumes of different shapes and dtypes, and with
ignored voxels: the patches cut from the joint device buffers equal the DataLoader's patches at
the same corners (brute force, numpy), every volume gives its share, and a batch is drawn per
volume at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mitoseg.data.device_volumes import DeviceVolumes, check_fits, storage_dtype
from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.data.em_patches import ConcatPatches
from mitoseg.data.normalization import Normalization
from mitoseg.data.volume_set import LabelledVolume, VolumeSet
from mitoseg.errors import InputError
from tests.data.test_em_volume_files import open_set, root  # noqa: F401  (fixture)


def _volume(name: str, shape: tuple[int, int, int], seed: int, dtype=np.uint8,
            ignored: bool = False) -> LabelledVolume:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1.0
    image = (rng.random(shape) * top).astype(dtype)
    labels = rng.random(shape) < 0.3
    mask = None
    if ignored:
        mask = np.zeros(shape, bool)
        mask[:, :, :5] = True  # a band along the left edge counts nowhere
    return LabelledVolume(name, image, labels, mask)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


def _set(train: list[LabelledVolume]) -> VolumeSet:
    test = _volume("test", (4, 30, 34), 99, train[0].image.dtype)
    return VolumeSet(train=train, test=[test], voxel_size_nm=(5.0, 5.0, 5.0),
                     description="mixed shapes")


def _module(volumes, patch, **options) -> EMDataModule:
    module = EMDataModule(lambda: volumes, patch, split_seed=0, seed=0, patches_per_image=3,
                          batch_size=8, val_fraction=0.0, **options)
    module.setup()
    return module


def _loader_batch(module: EMDataModule, items: list[dict]) -> dict[str, torch.Tensor]:
    """What the DataLoader path reads at the items' corners: numpy slicing of each volume."""
    images, masks, valids = [], [], []
    for item in items:
        volume = module.patch_volumes[int(item["volume"])]
        z, y, x = (int(v) for v in item["origin"])
        ys, xs = slice(y, y + module.patch_size[-2]), slice(x, x + module.patch_size[-1])
        window = (z, ys, xs) if len(module.patch_size) == 2 else (
            slice(z, z + module.patch_size[0]), ys, xs)
        images.append(module.normalization(np.asarray(volume.image[window])))
        masks.append(np.asarray(volume.labels[window]) > 0)
        ignored = (np.zeros(masks[-1].shape, bool) if volume.ignored is None
                   else np.asarray(volume.ignored[window], bool))
        valids.append(~ignored)
    return {key: torch.from_numpy(np.stack(values).astype(np.float32))[:, None]
            for key, values in (("image", images), ("mask", masks), ("valid", valids))}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("patch", [(8, 12), (4, 8, 12)])
@pytest.mark.parametrize("normalize", ["scale", "training_zscore"])
def test_patches_of_several_shapes_equal_the_volumes_read_at_the_same_corners(
        patch, normalize, device) -> None:
    volumes = _set([_volume("wide", (10, 20, 40), 0, ignored=True),
                    _volume("tall", (9, 36, 18), 1), _volume("small", (6, 14, 16), 2)])
    module = _module(volumes, patch, normalize=normalize, sampling="device")
    dataset = module.datasets["train"]
    assert isinstance(dataset, ConcatPatches)
    torch.manual_seed(0)
    items = dataset.__getitems__(list(range(len(dataset))))
    assert {int(item["volume"]) for item in items} == {0, 1, 2}
    origins = torch.stack([item["origin"] for item in items])
    numbers = torch.tensor([int(item["volume"]) for item in items])
    image, mask, valid = (t.cpu() for t in module.device_patches(origins.to(device),
                                                                  numbers.to(device)))
    expected = _loader_batch(module, items)
    assert image.shape == (len(items), 1, *patch) and image.dtype == torch.float32
    torch.testing.assert_close(image, expected["image"], rtol=0, atol=0)
    torch.testing.assert_close(mask, expected["mask"], rtol=0, atol=0)
    torch.testing.assert_close(valid, expected["valid"], rtol=0, atol=0)
    assert valid.min() == 0 and mask.max() == 1  # the band and the foreground are there


def test_the_framework_batch_equals_the_loader_batch_with_ignored_voxels(
        root: Path) -> None:  # noqa: F811
    loader = EMDataModule(lambda: open_set(root, val=[]), patch_size=(32, 48), split_seed=0,
                          seed=0, val_fraction=0.0, batch_size=6)
    device = EMDataModule(lambda: open_set(root, val=[]), patch_size=(32, 48), split_seed=0,
                          seed=0, val_fraction=0.0, batch_size=6, sampling="device")
    loader.setup(), device.setup()
    assert device.with_valid and len(device.patch_volumes) == 2
    tif = len(device.datasets["train"].datasets[0])
    for index in (0, 5, tif + 3):  # both volumes: the TIFF with its band, the HDF5 without
        torch.manual_seed(index)
        expected = loader.datasets["train"][index]
        torch.manual_seed(index)
        item = device.datasets["train"][index]
        assert set(item) == {"origin", "volume", "index"}
        batch = device.on_after_batch_transfer(
            {"origin": item["origin"][None], "volume": torch.tensor([item["volume"]])}, 0)
        for key in ("image", "mask", "valid"):
            torch.testing.assert_close(batch[key][0], expected[key], rtol=0, atol=0)


def test_a_batch_is_drawn_once_per_volume_and_keeps_its_order() -> None:
    volumes = _set([_volume("a", (10, 20, 40), 0), _volume("b", (9, 36, 18), 1)])
    module = _module(volumes, (8, 12), sampling="device")
    dataset = module.datasets["train"]
    calls = []
    for member in dataset.datasets:
        draw = member.origins
        member.origins = (lambda d: lambda indices: calls.append(list(indices)) or d(indices))(draw)
    first = len(dataset.datasets[0])
    indices = [first + 2, 1, first, 4, 0]
    torch.manual_seed(1)
    items = dataset.__getitems__(indices)
    assert sorted(calls) == [[1, 4, 0], [2, 0]]  # one draw per volume, local indices
    assert [int(item["volume"]) for item in items] == [1, 0, 1, 0, 0]
    assert [int(item["index"]) for item in items] == [2, 1, 0, 4, 0]
    torch.manual_seed(1)
    again = dataset.__getitems__(indices)
    assert all(torch.equal(a["origin"], b["origin"]) for a, b in zip(items, again))
    # every volume gives its share of an epoch: the whole loader, corners inside their volume
    batches = list(module.train_dataloader())
    counts = torch.bincount(torch.cat([b["volume"] for b in batches]), minlength=2)
    assert counts.tolist() == [10 * 3, 9 * 3]
    for batch in batches:
        for (z, y, x), number in zip(batch["origin"].tolist(), batch["volume"].tolist()):
            depth, height, width = module.patch_volumes[number].shape
            assert 0 <= z < depth and 0 <= y <= height - 8 and 0 <= x <= width - 12


@pytest.mark.parametrize("device", DEVICES)
def test_images_are_held_exactly_whatever_their_dtype(device) -> None:
    image = np.array([[[0, 1, 32767, 32768, 65535, 40000]]], np.uint16)
    labels = image > 30000
    corner, first = torch.tensor([[0, 0, 0]], device=device), torch.tensor([0], device=device)
    held = DeviceVolumes([(image, labels, None)], Normalization("none"), False, device)
    assert held.image.dtype == torch.int16  # 2 bytes a voxel, not 4
    cut, mask, valid = held.cut(corner, first, (1, 6))
    assert cut.flatten().tolist() == image.flatten().astype(float).tolist()
    assert mask.flatten().tolist() == labels.flatten().astype(float).tolist() and valid is None
    floats = np.linspace(0, 1, 6).reshape(1, 1, 6) / 3  # float64: held as the float32 it becomes
    held = DeviceVolumes([(floats, labels, None)], Normalization("none"), False, device)
    cut, _, _ = held.cut(corner, first, (1, 6))
    assert np.array_equal(cut.flatten().cpu().numpy(), floats.flatten().astype(np.float32))
    assert storage_dtype(np.dtype(np.uint8)) == torch.uint8
    small = np.array([[[0, 7, 255, 128, 1, 2]]], np.uint8)  # with the uint16 one: as uint16
    held = DeviceVolumes([(image, labels, None), (small, labels, None)], Normalization("none"),
                         False, device)
    both, _, _ = held.cut(torch.tensor([[0, 0, 0], [0, 0, 0]], device=device),
                          torch.tensor([0, 1], device=device), (1, 6))
    assert both[:, 0, 0].tolist() == [image[0, 0].astype(float).tolist(),
                                      small[0, 0].astype(float).tolist()]
    with pytest.raises(InputError, match="complex128"):
        storage_dtype(np.dtype(np.complex128))


@pytest.mark.parametrize("device", DEVICES)
def test_a_big_endian_volume_is_held_with_its_own_numbers(device, tmp_path: Path) -> None:
    """An uncompressed big-endian uint16 TIFF (Fiji's default) maps as '>u2': the device holds
    the same numbers as of a little-endian one, and its normalization keeps 'uint16', so the
    same recording read either way (mapped or decoded) is one dtype."""
    import tifffile

    from mitoseg.data.em_volumes import open_tif_volume
    from mitoseg.data.normalization import fit_normalization

    image = np.array([[[0, 1, 255, 256, 65535, 40000]]] * 2, np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", image, byteorder=">")
    mapped = open_tif_volume(tmp_path / "big.tif")
    assert mapped.dtype.str == ">u2" and np.array_equal(mapped, image)
    labels = image > 30000
    held = DeviceVolumes([(mapped, labels, None)], Normalization("none"), False, device)
    cut, _, _ = held.cut(torch.tensor([[1, 0, 0]], device=device),
                         torch.tensor([0], device=device), (1, 6))
    assert cut.flatten().tolist() == image[1].flatten().astype(float).tolist()
    fitted = fit_normalization("training_zscore", mapped)
    assert fitted.dtype == "uint16" and fitted == fit_normalization("training_zscore", image)
    for dtype in (">u2", "<u2", "uint16"):
        fitted.check_input(np.dtype(dtype), "a test")
        Normalization("scale", scale=65535.0, dtype=">u2").check_input(np.dtype(dtype), "old")
    with pytest.raises(InputError, match="dtype uint8"):
        fitted.check_input(np.dtype(np.uint8), "a test")


def test_volumes_too_large_for_the_gpu_are_refused_before_anything_is_copied(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * 2**30, 80 * 2**30))
    gpu = torch.device("cuda", 0)
    check_fits(2**29, torch.uint8, True, gpu, [(256, 1024, 2048)])  # 1.5 GiB: half of it
    with pytest.raises(InputError, match=r"more than 50% of its 3.00 GiB free; use sampling=l"):
        check_fits(2**30, torch.uint8, True, gpu, [(512, 1024, 2048)])  # 3 GiB
    check_fits(2**30, torch.uint8, True, torch.device("cpu"), [(512, 1024, 2048)])  # no GPU


def test_several_volumes_with_ignored_voxels_train_with_sampling_device(
        root: Path) -> None:  # noqa: F811
    module = EMDataModule(lambda: open_set(root), patch_size=(64, 64), split_seed=0, seed=0,
                          sampling="device", batch_size=4)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    out = module.on_after_batch_transfer(dict(batch), 0)
    assert out["image"].shape == out["mask"].shape == out["valid"].shape == (4, 1, 64, 64)


def test_train_py_runs_several_volumes_with_ignored_voxels_on_the_device(
        tmp_path: Path) -> None:
    from mitoseg.training.train import train
    from tests.conftest import compose_config
    from tests.evaluation.test_em_volumes_end_to_end import RUN

    cfg = compose_config("train", [*RUN, "dataset.sampling=device", "inference.zfilter=[0]",
                                   "inference.headline.zfilter=0",
                                   f"paths.output_root={tmp_path / 'root'}"], tmp_path / "run")
    metrics = train(cfg)
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["sampling"] == "device" and data["ignore_label"] is True
    assert [v["name"] for v in data["volume_list"] if v["split"] == "train"] == ["tif_stack",
                                                                                 "hdf5"]
    assert np.isfinite(metrics["test"]["iou_fg"]["mean"])


def test_the_device_copy_is_let_go_after_training() -> None:
    volumes = _set([_volume("a", (10, 20, 40), 0), _volume("b", (9, 36, 18), 1)])
    module = _module(volumes, (8, 12), sampling="device")
    module.device_patches(torch.tensor([[0, 0, 0]]), torch.tensor([1]))
    assert module._device_volumes is not None
    module.teardown("validate")
    assert module._device_volumes is not None
    module.teardown("fit")  # what Lightning calls at the end of trainer.fit
    assert module._device_volumes is None
