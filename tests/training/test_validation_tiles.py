"""val/loss, val/iou_fg and val/as over validation tiles count every voxel once.

A volume whose sides are not multiples of the tile has a last tile shifted back to end at the
border (``TiledPatchDataset``); its overlap with the tile before it counted twice (audit
2026-12-05, F4). A Lightning validation over those tiles, in batches that do not divide the
tiles, must give what numpy computes over the whole volume, each voxel once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mitoseg.data.em_patches import TiledPatchDataset
from mitoseg.training.losses import BCELoss
from mitoseg.training.module import SegmentationModule
from tests.conftest import REPO

WEIGHT, BIAS = 8.0, -4.0  # logit = 8 x - 4 of the input x in [0, 1]

CASES = [  # volume shape, validation slices, tile
    ((3, 40, 50), [0, 2], (32, 32)),
    ((6, 22, 27), list(range(1, 6)), (4, 16, 16)),
]


def pointwise_network(spatial_dims: int) -> torch.nn.Module:
    """A fixed 1 x 1 (x 1) convolution: each voxel's logit depends on that voxel alone, so the
    whole volume's logits are known without tiling it."""
    conv = (torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d)(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(WEIGHT)
        conv.bias.fill_(BIAS)
    return conv


def module_for(dataset: TiledPatchDataset) -> SegmentationModule:
    return SegmentationModule(pointwise_network(dataset.spatial_dims), BCELoss(),
                              partial(torch.optim.SGD, lr=0.1))


def validated(dataset: TiledPatchDataset) -> dict[str, float]:
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    [metrics] = trainer.validate(module_for(dataset), DataLoader(dataset, batch_size=3),
                                 verbose=False)
    return metrics


def first_tile_owner(dataset: TiledPatchDataset, shape: tuple[int, ...]) -> np.ndarray:
    """Per voxel, the first tile (in the dataset's order) whose window covers it; -1: none."""
    owner = np.full(shape, -1)
    depth = 1 if dataset.spatial_dims == 2 else dataset.patch[0]
    for index, (z, y, x) in enumerate(dataset.origins):
        window = owner[z:z + depth, y:y + dataset.patch[-2], x:x + dataset.patch[-1]]
        window[window < 0] = index
    return owner


def brute_force(image: np.ndarray, labels: np.ndarray, scored: np.ndarray, owner: np.ndarray,
                ) -> dict[str, float]:
    """BCE and pooled IoU over the ``scored`` voxels of the whole volume, each once; and the
    mean AS of the tiles over the voxels each owns, left out where it owns none scored."""
    logits = WEIGHT * (image.astype(np.float64) / 255.0) + BIAS
    truth, predicted = labels > 0, logits > 0
    bce = np.logaddexp(0.0, logits) - truth * logits
    tp, fp, fn = ((truth & predicted)[scored].sum(), (~truth & predicted)[scored].sum(),
                  (truth & ~predicted)[scored].sum())
    per_tile = []
    for tile in range(owner.max() + 1):
        own = scored & (owner == tile)
        if own.any():
            union = (truth | predicted)[own].sum()
            per_tile.append((truth & predicted)[own].sum() / union if union else 1.0)
    return {"val/loss": float(bce[scored].mean()), "val/iou_fg": float(tp / (tp + fp + fn)),
            "val/as": float(np.mean(per_tile))}


def tiles_and_expected(shape: tuple[int, ...], z: list[int], tile: tuple[int, ...],
                       with_ignored: bool) -> tuple[TiledPatchDataset, dict[str, float]]:
    """Validation tiles of a random volume, and the metrics numpy computes over it."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = (rng.random(shape) > 0.6).astype(np.uint8)
    ignored = rng.random(shape) < 0.25 if with_ignored else None
    dataset = TiledPatchDataset(image, labels, z, tile, ignored=ignored)
    scored = np.zeros(shape, bool)
    scored[z] = True if ignored is None else ~ignored[z]
    return dataset, brute_force(image, labels, scored, first_tile_owner(dataset, shape))


@pytest.mark.parametrize("with_ignored", [False, True])
@pytest.mark.parametrize(("shape", "z", "tile"), CASES)
def test_val_metrics_over_shifted_tiles_count_each_voxel_once(shape, z, tile,
                                                              with_ignored: bool) -> None:
    dataset, expected = tiles_and_expected(shape, z, tile, with_ignored)
    assert len(dataset) % 3  # the last batch is short
    metrics = validated(dataset)
    for name in ("val/loss", "val/iou_fg", "val/as"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-5), name


def test_two_ranks_count_each_voxel_once(tmp_path: Path) -> None:
    """Lightning's sampler splits the tiles over two gloo ranks: the ranks' weighted means and
    summed counts give the same numbers as numpy over the whole volume."""
    out = tmp_path / "metrics.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "ddp_validate_tiles.py"),
                           str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(out.read_text())
    expected = tiles_and_expected(*CASES[0], with_ignored=False)[1]
    for name in ("val/loss", "val/iou_fg", "val/as"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-5), name
