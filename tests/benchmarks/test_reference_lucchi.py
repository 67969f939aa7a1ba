"""The bare Lucchi yardstick: runs --quick, and its plain pieces agree with the framework's.

The yardstick re-implements cropping, TTA, the z-median and the IoU on purpose; each pair is
checked here both ways, so a bug in either shows.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from mitoseg.inference.tta import predict_with_tta
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


def test_z_median_equals_the_framework_z_filter(reference) -> None:
    volume = torch.rand(9, 5, 4, generator=torch.Generator().manual_seed(0))
    for size in (3, 5):
        np.testing.assert_array_equal(reference.z_median(volume, size).numpy(),
                                      median_z_filter(volume.numpy(), size))


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
