"""The train/test overlap guard: exact slice copies, and near-copies (a copy shifted by a pixel or
with its intensities changed linearly) that byte fingerprints miss; neighbouring slices pass."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

from mitoseg.data.em_datamodule import EMVolumes, check_no_overlap
from mitoseg.data.em_overlap import NEAR_COPY_CORRELATION, near_copy_pairs, slice_copies
from mitoseg.errors import InputError
from tests.conftest import SHARED_DATA
from tests.data.read_log import ReadLog


def textured_stack(depth: int = 16, seed: int = 0) -> np.ndarray:
    """Smooth 3D texture: consecutive slices correlate about 0.95 (real Lucchi: 0.89)."""
    field = gaussian_filter(np.random.default_rng(seed).normal(size=(depth, 64, 80)), (2, 1.5, 1.5))
    return ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)


def guarded(train: np.ndarray, test: np.ndarray) -> None:
    check_no_overlap(EMVolumes(train, train > 128, test, test > 128, (5, 5, 5), "toy"))


def test_neighbouring_and_unrelated_slices_are_not_copies() -> None:
    stack = textured_stack()
    guarded(stack[:10], stack[10:])  # slice 10 is the next slice after 9, not a copy of it
    guarded(stack[:10], textured_stack(4, seed=1))
    assert near_copy_pairs(stack[:10], stack[10:]) == []


@pytest.mark.parametrize("shift", [(0, 1), (1, 0), (-1, 2), (2, -2)])
def test_a_copy_shifted_by_a_pixel_or_two_is_caught(shift: tuple[int, int]) -> None:
    stack = textured_stack()
    test = stack[12:].copy()
    test[1] = np.roll(stack[7], shift, axis=(0, 1))
    with pytest.raises(InputError, match=r"test slice 1 .*training slice 7"):
        guarded(stack[:10], test)
    [pair] = near_copy_pairs(stack[:10], test)
    assert (pair.test, pair.train) == (1, 7) and pair.correlation > NEAR_COPY_CORRELATION
    assert pair.shift == (-shift[0], -shift[1])  # where the training slice lines up


def test_a_copy_with_changed_intensities_is_caught() -> None:
    """Lucchi++'s Test_In is EPFL's training volume at about 0.70 x + 40 grey levels."""
    stack = textured_stack()
    test = stack[12:].copy()
    test[2] = np.round(0.7 * stack[3] + 40).astype(np.uint8)
    with pytest.raises(InputError, match=r"near-cop.*test slice 2 .*training slice 3"):
        guarded(stack[:10], test)


def test_exact_copies_are_still_named() -> None:
    stack = textured_stack()
    with pytest.raises(InputError, match="also occur in the training volume"):
        guarded(stack[:10], stack[8:])


def _lucchi_pages(first: int, count: int) -> np.ndarray:
    return tifffile.imread(SHARED_DATA / "lucchi" / "training.tif", key=range(first, first + count))


@pytest.mark.skipif(not (SHARED_DATA / "lucchi" / "training.tif").is_file(),
                    reason=f"real Lucchi data not found at {SHARED_DATA / 'lucchi'}")
def test_real_lucchi_neighbours_pass_and_shifted_copies_do_not() -> None:
    stack = _lucchi_pages(0, 24)
    assert near_copy_pairs(stack[:20], stack[20:]) == []  # 5 nm apart, correlation ~0.89
    test = stack[20:].copy()
    test[0] = np.roll(stack[5], 1, axis=1)
    assert [(p.test, p.train, p.shift) for p in near_copy_pairs(stack[:20], test)] == [(0, 5, (0, -1))]


@pytest.mark.skipif(not ((SHARED_DATA / "lucchi" / "training.tif").is_file()
                         and (SHARED_DATA / "lucchi_pp" / "Test_In").is_dir()),
                    reason=f"real Lucchi and Lucchi++ data not found under {SHARED_DATA}")
def test_lucchi_pp_test_in_is_caught_as_a_copy_of_the_lucchi_training_volume() -> None:
    from mitoseg.data.image_io import read_array

    lucchi = _lucchi_pages(40, 6)
    pp = np.stack([read_array(SHARED_DATA / "lucchi_pp" / "Test_In" / f"mask{z:04d}.png")
                   for z in range(40, 46)])
    assert not np.array_equal(lucchi, pp)  # other bytes: the exact fingerprints cannot see it
    pairs = near_copy_pairs(lucchi, pp)
    assert [(p.test, p.train, p.shift) for p in pairs] == [(i, i, (0, 0)) for i in range(6)]
    assert min(p.correlation for p in pairs) > 0.999


def test_the_near_copy_search_does_not_grow_with_the_training_volume() -> None:
    """The training volume's thumbnails are made a few slices at a time: 8x deeper training
    costs only its scores (16 bytes a slice here), not 1/8 byte a voxel of thumbnails
    (benchmarks/bench_patch_sampling.py: 64 MiB for 512 slices of 1024 x 1024)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    test = rng.integers(0, 256, (2, 64, 64), dtype=np.uint8)
    peaks = {}
    for depth in (256, 2048):
        train = rng.integers(0, 256, (depth, 64, 64), dtype=np.uint8)
        tracemalloc.start()
        assert near_copy_pairs(train, test) == []
        peaks[depth] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[2048] - peaks[256] < 100_000, peaks  # thumbnails held whole: ~900 kB more


def brute_force_near_copies(train: np.ndarray, test: np.ndarray, max_shift: int = 2,
                            crop: int = 256) -> set[tuple[int, int, tuple[int, int]]]:
    """Every (test, train) pair, every shift, with numpy's own Pearson correlation."""
    height, width = test.shape[1:]
    size_y, size_x = min(crop, height - 2 * max_shift), min(crop, width - 2 * max_shift)
    y0, x0 = (height - size_y) // 2, (width - size_x) // 2
    found = set()
    for t in range(len(test)):
        reference = test[t, y0:y0 + size_y, x0:x0 + size_x].astype(float).ravel()
        for z in range(len(train)):
            values = {(dy, dx): np.corrcoef(reference, train[z, y0 + dy:y0 + dy + size_y,
                                                            x0 + dx:x0 + dx + size_x]
                                            .astype(float).ravel())[0, 1]
                      for dy in range(-max_shift, max_shift + 1)
                      for dx in range(-max_shift, max_shift + 1)}
            shift = max(values, key=values.get)
            if values[shift] >= NEAR_COPY_CORRELATION:
                found.add((t, z, shift))
    return found


def test_the_pairs_found_are_those_of_a_brute_force_search_over_every_pair() -> None:
    stack = textured_stack(30, seed=3)
    train, test = stack[:20], stack[24:].copy()
    test[0] = np.roll(stack[4], (1, -2), axis=(0, 1))
    test[3] = np.round(0.7 * stack[17] + 40).astype(np.uint8)
    test[5] = stack[9]
    expected = brute_force_near_copies(train, test)
    assert {(t, z) for t, z, _ in expected} == {(0, 4), (3, 17), (5, 9)}
    copies = slice_copies(train, test)
    assert {(p.test, p.train, p.shift) for p in copies.near} == expected
    assert copies.exact == 1  # test slice 5 has the bytes of training slice 9


def test_each_volume_is_read_once_in_slabs_of_whole_chunks(monkeypatch) -> None:
    """Slice by slice, a volume in 8-slice chunks would be decompressed 8 times over (the
    old reader also read it twice, and its candidates' slices again, whole)."""
    stack = textured_stack(60, seed=4)
    train, test = ReadLog(stack[:40], chunk=8), ReadLog(stack[48:].copy(), chunk=8)
    test.data[2] = np.roll(stack[11], 1, axis=1)
    monkeypatch.setattr("mitoseg.data.slabs.SLAB_BYTES", 16 * 64 * 80)  # slabs of 16 slices
    [pair] = slice_copies(train, test).near
    assert (pair.test, pair.train) == (2, 11)
    assert test.reads == [(range(0, 12), True)]
    full = [r for r, whole in train.reads if whole]
    assert full == [range(0, 16), range(16, 32), range(32, 40)]
    assert train.reads[:3] == [(r, True) for r in full]
    # then only the crop windows of the slabs that hold candidates, each within one slab
    windows = [r for r, whole in train.reads[3:]]
    assert windows and not any(whole for _, whole in train.reads[3:])
    assert all(r.start // 16 == (r.stop - 1) // 16 for r in windows)
    assert len({r.start // 16 for r in windows}) == len(windows)
