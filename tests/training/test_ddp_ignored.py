"""Validation under DDP when one rank sees only ignored voxels.

Before, a batch without a valid voxel logged no ``val/as``: the rank that saw only such
batches skipped the epoch-end reduction of ``val/as``, the ranks' collective calls no longer
paired up, and the run failed (gloo: "Connection closed by peer"). ``val/loss`` counted those
batches as loss 0, which halved it here. The test runs two real gloo processes and checks the
metrics against a numpy computation over the valid voxels (``val/as``: over the images that
hold any; ``val/loss``: over the voxels themselves, each once, as the module weighs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.training.ddp_validate_ignored import IMAGES, network, tile

HERE = Path(__file__).resolve().parent


def expected(all_valid: bool = False) -> tuple[float, float, float]:
    """Mean over the images with valid voxels of their IoU, the BCE over all valid voxels of
    both ranks, and the IoU of all valid voxels of both ranks pooled."""
    net, ious, losses, counts = network(), [], [], np.zeros(3)
    for i in range(IMAGES):
        t = tile(i, all_valid)
        keep = t["valid"][0].numpy() > 0.5
        if not keep.any():
            continue
        with torch.no_grad():
            logits = net(t["image"][None])[0, 0].double().numpy()[keep]
        truth = t["mask"][0].numpy()[keep] > 0.5
        predicted = 1 / (1 + np.exp(-logits)) > 0.5
        ious.append((truth & predicted).sum() / (truth | predicted).sum())
        losses.append(np.logaddexp(0, logits) - truth * logits)
        counts += [(truth & predicted).sum(), (~truth & predicted).sum(), (truth & ~predicted).sum()]
    return (float(np.mean(ious)), float(np.concatenate(losses).mean()),
            float(counts[0] / counts.sum()))


def test_val_metrics_reduce_over_ranks_when_one_rank_has_no_valid_voxel(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run([sys.executable, str(HERE / "ddp_validate_ignored.py"), str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(out.read_text())
    iou, loss, pooled = expected()
    assert metrics["val/as"] == pytest.approx(iou, rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["val/iou_fg"] == pytest.approx(pooled, rel=1e-6)  # summed over the ranks


def test_val_iou_fg_pools_the_voxels_of_every_rank(tmp_path: Path) -> None:
    """Every image valid: each rank holds other voxels, so a value not summed over the ranks
    would be rank 0's alone."""
    out = tmp_path / "metrics.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run([sys.executable, str(HERE / "ddp_validate_ignored.py"), str(out),
                           "all-valid"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    pooled = expected(all_valid=True)[2]
    rank_0_alone = expected_rank_0_pooled()
    assert abs(pooled - rank_0_alone) > 1e-3  # the test can tell the two apart
    assert json.loads(out.read_text())["val/iou_fg"] == pytest.approx(pooled, rel=1e-6)


def expected_rank_0_pooled() -> float:
    net, counts = network(), np.zeros(3)
    for i in range(0, IMAGES, 2):
        t = tile(i, True)
        with torch.no_grad():
            logits = net(t["image"][None])[0, 0].double().numpy()
        truth, predicted = t["mask"][0].numpy() > 0.5, logits > 0
        counts += [(truth & predicted).sum(), (~truth & predicted).sum(), (truth & ~predicted).sum()]
    return float(counts[0] / counts.sum())
