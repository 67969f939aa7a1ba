"""val/as: the mean per-image AS (metrics.segmentation.area_similarity) of the configured
post-processing's threshold step, computed on the device; with an ignore mask, over the valid
voxels of the images that have any."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import area_similarity
from mitoseg.postproc.binarize import Binarize
from mitoseg.postproc.em import EMPostprocess
from mitoseg.training.losses import BCELoss
from mitoseg.training.module import SegmentationModule


def logged_validation(postproc, logits: torch.Tensor, mask: torch.Tensor) -> dict:
    module = SegmentationModule(torch.nn.Identity(), torch.nn.BCEWithLogitsLoss(),
                                partial(torch.optim.SGD, lr=0.1), binarize=postproc)
    logged: dict = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, (value, kwargs))
    module.validation_step({"image": logits, "mask": mask}, 0)
    return logged


@pytest.mark.parametrize("postproc", [Binarize(), Binarize(threshold=0.9),
                                      EMPostprocess(threshold=0.3)])
def test_val_as_is_the_mean_area_similarity_of_the_postprocessed_masks(postproc) -> None:
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0.0, 2.0, (5, 1, 24, 31)).astype(np.float32))
    mask = torch.from_numpy((rng.random((5, 1, 24, 31)) > 0.5).astype(np.float32))
    mask[2] = 0.0
    logits[2] = -10.0  # both empty: AS 1
    logged = logged_validation(postproc, logits, mask)
    value, options = logged["val/as"]
    probabilities = torch.sigmoid(logits).numpy()
    expected = np.mean([area_similarity(m[0] > 0.5, postproc(p[0]))
                        for m, p in zip(mask.numpy(), probabilities)])
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert options["batch_size"] == 5 and options["on_epoch"] and options["sync_dist"]
    assert "val/loss" in logged


def test_val_as_and_val_loss_skip_ignored_voxels_and_fully_ignored_images() -> None:
    rng = np.random.default_rng(4)
    logits = torch.from_numpy(rng.normal(0.0, 2.0, (4, 1, 12, 10)).astype(np.float32))
    mask = torch.from_numpy((rng.random((4, 1, 12, 10)) > 0.5).astype(np.float32))
    valid = torch.from_numpy((rng.random((4, 1, 12, 10)) > 0.3).astype(np.float32))
    valid[1] = 0.0  # left out of val/as
    module = SegmentationModule(torch.nn.Identity(), BCELoss(), partial(torch.optim.SGD, lr=0.1))
    logged: dict = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, (value, kwargs))
    module.validation_step({"image": logits, "mask": mask, "valid": valid}, 0)
    expected = []
    for x, m, v in zip(logits.numpy(), mask.numpy(), valid.numpy()):
        keep = v[0] > 0.5
        if keep.any():
            truth, predicted = m[0][keep] > 0.5, x[0][keep] > 0.0
            expected.append((truth & predicted).sum() / (truth | predicted).sum())
    value, options = logged["val/as"]
    assert float(value) == pytest.approx(np.mean(expected), rel=1e-6)
    # val/as: a mean over the 3 images with valid voxels; val/loss: over the valid voxels
    assert options["batch_size"] == 3
    assert logged["val/loss"][1]["batch_size"] == int(valid.sum())
    keep = valid > 0
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], mask[keep])
    assert float(logged["val/loss"][0]) == pytest.approx(float(loss), rel=1e-5)


def test_a_batch_without_valid_voxels_weighs_nothing() -> None:
    """Logged with weight 0 (so that DDP ranks reduce the same keys; tests/training/
    test_ddp_ignored.py), it leaves the epoch's weighted means unchanged."""
    module = SegmentationModule(torch.nn.Identity(), BCELoss(), partial(torch.optim.SGD, lr=0.1))
    logged: dict = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, (value, kwargs))
    batch = {"image": torch.randn(2, 1, 4, 4), "mask": torch.ones(2, 1, 4, 4),
             "valid": torch.zeros(2, 1, 4, 4)}
    module.validation_step(batch, 0)
    for name in ("val/as", "val/loss"):
        value, options = logged[name]
        assert float(value) == 0.0 and options["batch_size"] == 0 and options["sync_dist"]


def test_a_batch_with_valid_needs_a_loss_that_takes_it() -> None:
    module = SegmentationModule(torch.nn.Identity(), torch.nn.BCEWithLogitsLoss(),
                                partial(torch.optim.SGD, lr=0.1))
    module.log = lambda *args, **kwargs: None
    batch = {"image": torch.randn(2, 1, 4, 4), "mask": torch.ones(2, 1, 4, 4),
             "valid": torch.ones(2, 1, 4, 4)}
    with pytest.raises(InputError, match="BCEWithLogitsLoss takes no 'valid'"):
        module.training_step(batch, 0)
