"""val/as: the mean per-image AS (metrics.segmentation.area_similarity) of the configured
post-processing's threshold step, computed on the device."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from mitoseg.metrics.segmentation import area_similarity
from mitoseg.postproc.binarize import Binarize
from mitoseg.postproc.em import EMPostprocess
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
