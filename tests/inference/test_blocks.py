"""Block grids with halos, the measured receptive field, and block-wise prediction equal to one
pass over the whole volume (full image + 8-fold TTA + z-median)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mitoseg.errors import InputError
from mitoseg.inference import median_z_filter, net_predictor, reconstruct
from mitoseg.inference.blocks import (
    block_grid,
    check_halo,
    predict_blocks,
    receptive_radius,
    round_up,
)
from mitoseg.models.nets.unet_paper002 import UNetPaper002


@pytest.mark.parametrize("shape,block,halo,align", [
    ((7, 50, 45), (3, 16, 32), (1, 16, 16), (1, 16, 16)),
    ((5, 64, 64), (5, 32, 32), (0, 0, 0), 1),
    ((9, 20, 33), (4, 8, 8), (2, 8, 0), (1, 4, 4)),
])
def test_cores_tile_the_volume_once_and_reads_hold_them_aligned(shape, block, halo, align) -> None:
    blocks = block_grid(shape, block, halo, align)
    cover = np.zeros(shape, int)
    aligns = (align,) * 3 if isinstance(align, int) else align
    for b in blocks:
        cover[b.core] += 1
        for core, read, h, n, a in zip(b.core, b.read, halo, shape, aligns):
            assert read.start <= core.start and core.stop <= read.stop <= n
            assert read.start == max(core.start - h, 0) and read.start % a == 0
            assert (n - read.stop) % a == 0 and read.stop >= min(core.stop + h, n)
        inner = np.zeros(tuple(r.stop - r.start for r in b.read))
        assert inner[b.core_in_read].shape == tuple(c.stop - c.start for c in b.core)
    assert (cover == 1).all()
    assert len({b.key for b in blocks}) == len(blocks)


def test_misaligned_blocks_and_halos_are_refused() -> None:
    with pytest.raises(InputError, match="multiples of the network's size divisor"):
        block_grid((4, 64, 64), (4, 24, 32), (0, 16, 16), (1, 16, 16))
    with pytest.raises(InputError, match="halo"):
        block_grid((4, 64, 64), (4, 32, 32), (0, 8, 16), (1, 16, 16))
    with pytest.raises(InputError, match="receptive field"):
        check_halo((0, 16, 16), radius=20, spatial_dims=2)
    check_halo((0, 32, 32), radius=20, spatial_dims=2)


def test_receptive_radius_of_known_networks() -> None:
    chain = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)])
    assert receptive_radius(chain, 2, size=32) == 3
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2),
                           nn.Conv2d(2, 2, 3, padding=1), nn.Upsample(scale_factor=2))
    # 1 (first conv) + 2 x 1 (second conv at half resolution) + 1 (pool/upsample cell)
    assert receptive_radius(pooled, 2, size=32) in (3, 4)
    wide = nn.Conv2d(1, 1, 41, padding=20)  # reaches past a 32-voxel input: the input grows
    assert receptive_radius(wide, 2, size=32) == 20


def test_blocks_give_the_whole_volume_result_with_tta_and_z_median() -> None:
    torch.manual_seed(0)
    net = UNetPaper002(spatial_dims=2, filters=(4, 8, 8), dropout=0.0).eval()
    radius = receptive_radius(net, 2, size=64)
    divisor = 4  # two poolings
    volume = np.random.default_rng(0).random((4, 48, 68)).astype(np.float32)
    predict = net_predictor(net, "cpu", "32-true")

    def probabilities(block: np.ndarray) -> np.ndarray:
        out = reconstruct(predict, block, "full_image", (48, 48), 2, tta=True,
                          divisor=divisor).probabilities
        return median_z_filter(out.numpy(), size=3)

    whole = probabilities(volume)
    halo = (1, round_up(radius, divisor), round_up(radius, divisor))
    check_halo(halo, radius, 2)
    blocks = block_grid(volume.shape, (2, 16, 32), halo, (1, divisor, divisor))
    assert len(blocks) == 18 and any(b.read[1].stop < 48 for b in blocks)
    out = np.full(volume.shape, np.nan, np.float32)
    seen = []

    def write(block, core):
        out[block.core] = core

    predicted = predict_blocks(lambda box: volume[box], probabilities, write, blocks,
                               progress=lambda done, total: seen.append((done, total)))
    assert predicted == 18 and seen[-1] == (18, 18)
    # float32 rounding only: the kernels meet inputs of other sizes
    np.testing.assert_allclose(out, whole, rtol=0, atol=2e-6)
    # a halo below the receptive field is visibly wrong: the check is not a formality
    short = block_grid(volume.shape, (4, 16, 32), (0, 0, 0), (1, divisor, divisor))
    bad = np.full(volume.shape, np.nan, np.float32)
    predict_blocks(lambda box: volume[box], probabilities,
                   lambda block, core: bad.__setitem__(block.core, core), short)
    assert np.abs(bad - whole).max() > 1e-3


def test_finished_blocks_are_skipped() -> None:
    blocks = block_grid((2, 8, 8), (1, 4, 4), (0, 0, 0))
    calls = []
    predicted = predict_blocks(lambda box: np.zeros((1, 4, 4)), lambda x: calls.append(1) or x,
                               lambda block, core: None, blocks, done={blocks[0].key, blocks[3].key})
    assert predicted == len(blocks) - 2 == len(calls)
