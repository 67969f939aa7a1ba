"""Near-copy detection between EM slices, and how alike slices k apart are.

Byte fingerprints only catch exact copies. A copy shifted by one pixel, or re-exported with
another intensity scale (Lucchi++'s ``Test_In`` is EPFL's Lucchi training volume at about
0.70 x + 40), has other bytes. Here slices are compared by Pearson correlation, which ignores
a linear intensity change, at the best of all shifts up to ``MAX_SHIFT_PX`` pixels.

Why a shift search: on the real Lucchi volume a slice correlates 0.89 with itself shifted by
one pixel, and also 0.89 with the next slice (5 nm away), so without the search a shifted copy
and a neighbour look the same. With it, a shifted copy scores 1.0 and a neighbour about 0.90;
``NEAR_COPY_CORRELATION`` sits between the two.

Cost: every test slice is compared with every training slice on 8x-reduced thumbnails (the
test volume's held, the training volume's made ``THUMB_SLICES`` at a time, so the depth of a
training volume adds only its scores to the memory); only the ``CANDIDATES`` best training
slices per test slice get the full shift search, on a central crop of at most ``CROP_PX``
pixels. Each volume is read once, in slabs of whole storage chunks, and then only the crop
windows of the candidates' training slabs (``slice_copies``): a Zarr volume in 64-slice
chunks read slice by slice would be decompressed 64 times over.

``python -m mitoseg.data.em_overlap <lucchi folder>`` prints the neighbour table that chose the
test gap of ``conf/dataset/lucchi.yaml``.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitoseg.data.slabs import slab_ranges, slices_in_slabs

NEAR_COPY_CORRELATION = 0.98  # copies (shifted / rescaled): 1.0; Lucchi neighbours: ~0.90
MAX_SHIFT_PX = 2
CANDIDATES = 5
CROP_PX = 256
THUMB_BLOCK = 8
THUMB_SLICES = 32  # training slices whose thumbnails are held at once


@dataclass(frozen=True)
class NearCopy:
    """Test slice ``test`` matches training slice ``train``: test[y, x] ~ a * train[y + dy,
    x + dx] + b for ``shift`` = (dy, dx), with Pearson ``correlation``."""

    test: int
    train: int
    correlation: float
    shift: tuple[int, int]


def _standardized(values: np.ndarray) -> np.ndarray | None:
    """Zero mean, unit root-mean-square (float64); None for a constant array."""
    values = np.asarray(values, dtype=np.float64)
    values = values - values.mean()
    scale = np.sqrt(np.mean(values * values))
    return None if not scale > 1e-12 else values / scale


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (0 when either is constant)."""
    a, b = _standardized(a), _standardized(b)
    return 0.0 if a is None or b is None else float(np.mean(a * b))


def _thumbnail_rows(slab: np.ndarray, block: int) -> np.ndarray:
    """(len(slab), n) block-mean thumbnails of a slab's slices, each standardized and divided
    by sqrt(n): their dot product is their correlation (0 for constant slices)."""
    _, height, width = slab.shape
    h, w = height // block * block, width // block * block
    rows = np.zeros((len(slab), (h // block) * (w // block)), np.float64)
    for row, image in enumerate(slab):
        small = np.asarray(image[:h, :w], np.float64).reshape(h // block, block, w // block,
                                                              block).mean((1, 3)).ravel()
        standard = _standardized(small)
        if standard is not None:
            rows[row] = standard / np.sqrt(standard.size)
    return rows


def _fingerprint(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


def _crop_window(shape: Sequence[int], max_shift: int, crop: int
                 ) -> tuple[slice, slice] | None:
    """The part of a (H, W) slice the shift search reads: a central crop of at most ``crop``
    pixels per side and ``max_shift`` pixels around it; None when the slice is too small."""
    height, width = shape
    size_y, size_x = min(crop, height - 2 * max_shift), min(crop, width - 2 * max_shift)
    if size_y < 4 or size_x < 4:
        return None
    y0, x0 = (height - size_y) // 2, (width - size_x) // 2
    return (slice(y0 - max_shift, y0 + size_y + max_shift),
            slice(x0 - max_shift, x0 + size_x + max_shift))


def _best_shift(test_window: np.ndarray, train_window: np.ndarray,
                max_shift: int) -> tuple[float, tuple[int, int]]:
    """Highest correlation of the centre of ``test_window`` with ``train_window`` moved by
    (dy, dx), |dy|, |dx| <= ``max_shift`` (both windows from ``_crop_window``)."""
    size_y, size_x = (n - 2 * max_shift for n in test_window.shape)
    reference = _standardized(test_window[max_shift:max_shift + size_y,
                                          max_shift:max_shift + size_x])
    if reference is None:
        return 0.0, (0, 0)
    best = (-1.0, (0, 0))
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            moved = _standardized(train_window[max_shift + dy:max_shift + dy + size_y,
                                               max_shift + dx:max_shift + dx + size_x])
            value = -1.0 if moved is None else float(np.mean(reference * moved))
            if value > best[0]:
                best = (value, (dy, dx))
    return best


@dataclass(frozen=True)
class SliceCopies:
    """Test slices of one volume that are copies of slices of another: ``exact`` (the same
    bytes) and ``near`` (``near_copy_pairs``: shifted and/or linearly rescaled copies; exact
    copies of non-constant slices are among them too)."""

    exact: int
    near: list[NearCopy]

    def __bool__(self) -> bool:
        return bool(self.exact or self.near)


def slice_copies(train: Any, test: Any, threshold: float = NEAR_COPY_CORRELATION,
                 max_shift: int = MAX_SHIFT_PX, candidates: int = CANDIDATES) -> SliceCopies:
    """The one check every path uses for test slices that copy training slices of two
    (D, H, W) volumes (volumes of different slice shapes have no near-copies).

    Each volume is read once, in slabs of whole storage chunks (``mitoseg.data.slabs``): the
    test volume's fingerprints, thumbnails and shift-search windows are held; the training
    volume gives its fingerprints and its thumbnails' scores against the test slices, a few
    slices at a time. Then only the shift-search windows of the training slabs that hold a
    test slice's ``candidates`` best matches are read again."""
    comparable = (tuple(train.shape[1:]) == tuple(test.shape[1:]) and train.shape[0] > 0
                  and test.shape[0] > 0)
    block = max(1, min(THUMB_BLOCK, train.shape[1] // 8, train.shape[2] // 8))
    window = _crop_window(tuple(test.shape[1:]), max_shift, CROP_PX) if comparable else None
    test_prints, test_rows, test_windows = [], [], []
    for start, stop in slab_ranges(test):
        slab = np.asarray(test[start:stop])
        test_prints += [_fingerprint(image) for image in slab]
        if comparable:
            test_rows.append(_thumbnail_rows(slab, block))
            if window is not None:
                test_windows.append(np.array(slab[(slice(None), *window)]))
    test_print_set, shared = set(test_prints), set()
    scores = np.empty((test.shape[0], train.shape[0]), np.float64) if comparable else None
    rows = np.concatenate(test_rows) if comparable else None
    for start, stop in slab_ranges(train):
        slab = np.asarray(train[start:stop])
        shared.update(print_ for print_ in map(_fingerprint, slab) if print_ in test_print_set)
        # thumbnails a few slices at a time: memory does not grow with the training volume
        for first in range(0, len(slab), THUMB_SLICES) if comparable else ():
            part = slab[first:first + THUMB_SLICES]
            scores[:, start + first:start + first + len(part)] = rows @ _thumbnail_rows(
                part, block).T
    exact = len(shared)  # distinct slices in both
    if window is None:
        return SliceCopies(exact, [])
    windows = np.concatenate(test_windows)
    best = {t: [int(z) for z in np.argsort(-scores[t], kind="stable")[:candidates]]
            for t in range(test.shape[0])}
    wanted = sorted({z for zs in best.values() for z in zs})
    train_windows = dict(slices_in_slabs(train, wanted, window=window))
    found = []
    for t, zs in best.items():
        for z in zs:
            value, shift = _best_shift(windows[t], train_windows[z], max_shift)
            if value >= threshold:
                found.append(NearCopy(t, z, value, shift))
    return SliceCopies(exact, found)


def near_copy_pairs(train: Any, test: Any, threshold: float = NEAR_COPY_CORRELATION,
                    max_shift: int = MAX_SHIFT_PX,
                    candidates: int = CANDIDATES) -> list[NearCopy]:
    """(test, train) slice pairs of two (D, H, W) volumes that are copies up to a shift of
    ``max_shift`` pixels and a linear intensity change. Volumes of different slice shapes are
    not compared (returns [])."""
    return slice_copies(train, test, threshold, max_shift, candidates).near


def neighbour_similarity(image: Any, labels: Any, offsets: Sequence[int]) -> list[dict]:
    """For each k in ``offsets``: image correlation and label IoU between slices z and z + k,
    over all z (mean, min, max). Slices are read once each; a window of them is kept."""
    depth = image.shape[0]
    cache: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
    values: dict[int, tuple[list, list]] = {k: ([], []) for k in offsets}

    def slice_at(z: int) -> tuple[np.ndarray | None, np.ndarray]:
        if z not in cache:
            standard = _standardized(image[z])
            cache[z] = (None if standard is None else standard.astype(np.float32),
                        np.asarray(labels[z]) > 0)
        return cache[z]

    for z in range(depth):
        first = slice_at(z)
        for k in offsets:
            if z + k < depth:
                other = slice_at(z + k)
                corr = 0.0 if first[0] is None or other[0] is None else float(
                    np.mean(first[0] * other[0]))
                union = np.count_nonzero(first[1] | other[1])
                values[k][0].append(corr)
                values[k][1].append(np.count_nonzero(first[1] & other[1]) / union if union else 1.0)
        cache.pop(z)  # later slices only look further ahead
    rows = []
    for k in offsets:
        corr, iou = (np.array(v) for v in values[k])
        rows.append({"offset": k, "pairs": len(corr), "image_corr_mean": float(corr.mean()),
                     "image_corr_min": float(corr.min()), "image_corr_max": float(corr.max()),
                     "label_iou_mean": float(iou.mean()), "label_iou_min": float(iou.min()),
                     "label_iou_max": float(iou.max())})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from mitoseg.console import console_logging, emit
    from mitoseg.data.em_volumes import lucchi_files, open_tif_volume, read_labels

    parser = argparse.ArgumentParser(description="Image correlation and label IoU between "
                                     "slices z and z + k of the Lucchi training volume")
    parser.add_argument("root", help="folder with training.tif and training_groundtruth.tif")
    parser.add_argument("--max-offset", type=int, default=20)
    parser.add_argument("--cache-dir", default=None, help="decode compressed TIFFs once here")
    args = parser.parse_args(argv)
    console_logging()
    image_path, label_path = lucchi_files(args.root, ["train"])["train"]
    image = open_tif_volume(image_path, args.cache_dir)
    labels = read_labels(label_path, cache_dir=args.cache_dir)
    emit(f"{image_path}: {image.shape}; slices z and z + k, over all z")
    emit("| k | pairs | image corr mean (min-max) | label IoU mean (min-max) |")
    emit("| --- | --- | --- | --- |")
    for row in neighbour_similarity(image, labels, range(1, args.max_offset + 1)):
        emit(f"| {row['offset']} | {row['pairs']} | {row['image_corr_mean']:.3f} "
              f"({row['image_corr_min']:.3f}-{row['image_corr_max']:.3f}) | "
              f"{row['label_iou_mean']:.3f} ({row['label_iou_min']:.3f}-"
              f"{row['label_iou_max']:.3f}) |")


if __name__ == "__main__":
    main()
