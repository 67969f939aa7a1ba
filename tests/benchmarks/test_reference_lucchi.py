"""The bare Lucchi yardstick: runs --quick, and its plain pieces agree with the framework's.

The yardstick re-implements cropping, TTA, the z-median and the IoU on purpose; each pair is
checked here both ways, so a bug in either shows.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mitoseg.inference.tta import predict_with_tta
from mitoseg.training.losses import BCELoss
from mitoseg.inference.zfilter import median_z_filter
from mitoseg.metrics.volume import mean_per_slice, volume_metrics
from tests.benchmarks.test_benchmarks_smoke import run_quick
from tests.conftest import REPO


@pytest.fixture(scope="module")
def reference():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("reference_lucchi",
                                                  REPO / "benchmarks" / "reference_lucchi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_protocol() -> None:
    report = run_quick("reference_lucchi")
    results = report["results"]
    assert set(results["protocols"]) == {"full_image", "full_image_z5", "full_image_tta",
                                         "full_image_tta_z5"}
    # the headline as the framework's test/iou_fg: the mean over the slices (paper 002)
    headline = results["protocols"]["full_image_tta_z5"]
    assert results["iou_fg"] == headline["iou_fg_mean_per_slice"]
    assert results["iou_fg_over_volume"] == headline["iou_fg"]
    assert 0.0 <= results["iou_fg"] <= 1.0 and results["train_seconds"] > 0
    assert results["data"]["train_slices"] == 10 and results["data"]["val_slices"] == 0
    # the scaling it used, once: not the data module's default beside it
    normalization = results["normalization"]
    assert normalization["mode"] == "training_zscore" and normalization["std"] > 0
    assert "normalization" not in results["data"]["split"]


def test_quick_runs_on_the_cpu_unless_a_device_is_named(reference) -> None:
    assert reference.parse_args(["--quick"]).device == "cpu"  # even where a GPU is present
    assert reference.parse_args(["--quick", "--device", "cuda"]).device == "cuda"
    assert reference.parse_args([]).device is None  # the GPU when there is one


def test_z_median_equals_the_framework_z_filter(reference) -> None:
    volume = torch.rand(9, 5, 4, generator=torch.Generator().manual_seed(0))
    for size in (3, 5):
        np.testing.assert_array_equal(reference.z_median(volume, size).numpy(),
                                      median_z_filter(volume.numpy(), size))
    for depth in (1, 2):  # fewer slices than the window reaches: reflected again, as scipy
        for size in (3, 5, 7):
            np.testing.assert_array_equal(reference.z_median(volume[:depth], size).numpy(),
                                          median_z_filter(volume[:depth].numpy(), size))


def test_tta_equals_the_framework_tta(reference) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 1, 5, padding=2)).eval()
    image = torch.rand(1, 1, 12, 16)
    with torch.no_grad():
        ours = reference.tta_probabilities(net, image, tta=True)
        framework = predict_with_tta(lambda x: torch.sigmoid(net(x)), image, spatial_dims=2)
    torch.testing.assert_close(ours, framework, rtol=0, atol=1e-6)


def test_iou_equals_the_framework_volume_metrics(reference) -> None:
    rng = np.random.default_rng(1)
    truth, predicted = rng.random((6, 10, 8)) < 0.3, rng.random((6, 10, 8)) < 0.4
    truth[2] = predicted[2] = False  # a slice empty in both counts 1 in the mean per slice
    volume, per_slice = reference.iou_fg(torch.from_numpy(truth), torch.from_numpy(predicted))
    assert volume == pytest.approx(volume_metrics(truth, predicted)["iou_fg"], abs=1e-12)
    assert per_slice == pytest.approx(mean_per_slice(truth, predicted)["iou_fg"], abs=1e-12)


def test_iou_of_empty_masks_is_one_as_the_framework(reference) -> None:
    empty = np.zeros((3, 4, 4), bool)  # nothing to find and nothing found: full agreement
    assert reference.iou_fg(torch.from_numpy(empty), torch.from_numpy(empty)) == (1.0, 1.0)
    assert volume_metrics(empty, empty)["iou_fg"] == 1.0
    valid = np.ones_like(empty)
    valid[:, :, :2] = False
    truth = empty.copy()
    truth[:, :, :2] = True  # foreground only where nothing counts
    assert reference.iou_fg(torch.from_numpy(truth), torch.from_numpy(empty),
                            torch.from_numpy(valid)) == (1.0, 1.0)


def test_scale_divides_by_the_dtype_range_as_the_framework(reference) -> None:
    from mitoseg.data.normalization import fit_normalization

    for dtype in (np.uint8, np.uint16):
        raw = np.arange(24, dtype=dtype).reshape(2, 3, 4) * 7
        mean, std, reported = reference.fit_scaling(torch.from_numpy(raw), "scale")
        assert (mean, std) == (0.0, fit_normalization("scale", raw).scale)
        assert reported == {"mode": "scale", "scale": std}
    raw = torch.rand(2, 3, 4)
    with pytest.raises(ValueError, match="--scaling scale.*float32"):
        reference.fit_scaling(raw, "scale")
    mean, std, reported = reference.fit_scaling(raw, "zscore")
    assert mean == pytest.approx(float(raw.double().mean()), abs=1e-12)
    assert std == pytest.approx(float(raw.double().std(unbiased=False)), abs=1e-12)
    assert reported["mode"] == "training_zscore"


def test_crops_cut_the_windows_they_draw(reference) -> None:
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 20, 30)
    labels = image.long() % 7 == 0
    for placement in ("uniform", "centred"):
        generator = torch.Generator().manual_seed(3)
        x, y = reference.crops(image, labels, 50, 8, placement, generator)
        assert x.shape == (50, 1, 8, 8)
        for patch, mask in zip(x[:, 0], y[:, 0]):
            flat = int(patch[0, 0])
            z, rest = divmod(flat, 600)
            r, c = divmod(rest, 30)
            torch.testing.assert_close(patch, image[z, r:r + 8, c:c + 8])
            assert torch.equal(mask, labels[z, r:r + 8, c:c + 8])


def test_augmentation_keeps_image_and_mask_together(reference) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(16, 1, 12, 12)
    mask = (image > 0.5).float()
    for rotation in ("rot90", "free"):
        x, y = reference.augment(image, mask, rotation, generator)
        if rotation == "rot90":  # exact: the mask is still the image thresholded
            assert torch.equal((x > 0.5).float(), y)
        else:  # interpolated: agreement except near edges of the mask
            assert ((x > 0.5).float() == y).float().mean() > 0.8


def write_kasthuri(root: Path) -> Path:
    """A Kasthuri++-like folder: 64 x 64 slices with label 2 (outside the tissue, ignored) in
    the left 16 columns, a square mitochondrion, and one test slice ignored whole."""
    import skimage.io as skio

    rng = np.random.default_rng(0)
    for split, depth in (("Train", 8), ("Test", 4)):
        (root / f"{split}_In").mkdir(parents=True)
        (root / f"{split}_Out").mkdir(parents=True)
        for z in range(depth):
            label = np.zeros((64, 64), np.uint8)
            label[20:40, 20 + z:40 + z] = 255
            label[:, :16] = 2
            if split == "Test" and z == 3:
                label[:] = 2
            skio.imsave(root / f"{split}_In" / f"{z:03d}.png",
                        rng.integers(0, 256, (64, 64), dtype=np.uint8), check_contrast=False)
            skio.imsave(root / f"{split}_Out" / f"{z:03d}.png", label, check_contrast=False)
    return root


def test_iou_leaves_ignored_voxels_out_as_the_framework(reference) -> None:
    rng = np.random.default_rng(2)
    truth, predicted = rng.random((5, 12, 10)) < 0.3, rng.random((5, 12, 10)) < 0.4
    valid = np.ones_like(truth)
    valid[:, :, :3] = False  # a band outside the tissue
    valid[4] = False  # a slice with nothing annotated
    truth[:, :, :3] = False
    predicted[:, :, :3] = True  # marked as mitochondria where nothing counts
    volume, per_slice = reference.iou_fg(torch.from_numpy(truth), torch.from_numpy(predicted),
                                         torch.from_numpy(valid))
    # as if the band and the ignored slice were not there
    bare_volume, bare_per_slice = reference.iou_fg(torch.from_numpy(truth[:4, :, 3:]),
                                                   torch.from_numpy(predicted[:4, :, 3:]))
    assert (volume, per_slice) == pytest.approx((bare_volume, bare_per_slice), abs=1e-12)
    assert volume == pytest.approx(volume_metrics(truth, predicted, valid=valid)["iou_fg"],
                                   abs=1e-12)
    assert per_slice == pytest.approx(
        mean_per_slice(truth, predicted, valid=valid)["iou_fg"], abs=1e-12)
    with pytest.raises(ValueError, match="ignored"):
        reference.iou_fg(torch.from_numpy(truth), torch.from_numpy(predicted),
                         torch.zeros_like(torch.from_numpy(valid)))


def test_bce_leaves_ignored_voxels_out_as_the_framework(reference) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=generator, requires_grad=True)
    target = (torch.rand(3, 1, 8, 8, generator=generator) < 0.3).float()
    valid = torch.ones_like(target)
    valid[..., :2] = 0
    loss = reference.bce(logits, target, valid)
    torch.testing.assert_close(loss, BCELoss()(logits, target, valid), rtol=0, atol=1e-7)
    torch.testing.assert_close(loss, reference.bce(logits[..., 2:], target[..., 2:], None),
                               rtol=0, atol=1e-6)  # summed in another order
    loss.backward()
    assert not logits.grad[..., :2].any()  # an ignored voxel teaches nothing
    plain = reference.bce(logits, target, None)  # without ignored voxels: as before
    torch.testing.assert_close(plain, torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target), rtol=0, atol=0)


def test_split_carries_the_ignore_masks(reference, tmp_path: Path) -> None:
    root = write_kasthuri(tmp_path / "Kasthuri++")
    args = reference.parse_args(["--dataset", "kasthuri_pp", "--override",
                                 f"dataset.volumes.root={root}", "dataset.patch_size=[32,32]"])
    split = reference.load_split(args)
    for part in ("train", "test"):
        expected = np.ones_like(split[f"{part}_labels"])
        expected[:, :, :16] = False
        if part == "test":
            expected[3] = False
        np.testing.assert_array_equal(split[f"{part}_valid"], expected)
        assert not split[f"{part}_labels"][~expected].any()


def test_quick_run_with_ignored_voxels(tmp_path: Path) -> None:
    root = write_kasthuri(tmp_path / "Kasthuri++")
    report = run_quick("reference_lucchi", "--dataset", "kasthuri_pp", "--override",
                       f"dataset.volumes.root={root}")
    data = report["results"]["data"]
    assert data["ignored_voxels"] == {"train": 8 * 64 * 16, "test": 3 * 64 * 16 + 64 * 64}
    assert data["train_slices"] == 8 and data["test_shape"] == [4, 64, 64]
    assert data["scored_test_shape"] == [4, 64, 64]
    assert 0.0 <= report["results"]["iou_fg"] <= 1.0


def test_the_record_says_how_many_test_slices_were_scored(tmp_path: Path) -> None:
    report = run_quick("reference_lucchi", "--max-test-slices", "2")
    data = report["results"]["data"]
    assert data["test_shape"][0] > 2 and data["scored_test_shape"] == [2, *data["test_shape"][1:]]
