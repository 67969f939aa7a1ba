"""Copies of a finished block-wise segmentation (OME-Zarr level 0) in the formats smaller tools
read: one HDF5 file (``/probabilities`` float32, ``/mask`` uint8, the voxel size as attributes)
or two ImageJ TIFF stacks (``_prob.tif``, ``_mask.tif``, with the voxel spacing).

Each copy is written slab by slab (memory stays at one slab), into a temporary file that is
renamed into place when complete: a killed export leaves no half file under the final name. An
existing file is never replaced unless ``overwrite``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.errors import InputError

FORMATS = ("hdf5", "tiff")
SLICES_PER_STEP = 16


def export_paths(out_dir: Path, name: str, fmt: str) -> list[Path]:
    """The files format ``fmt`` writes for the segmentation called ``name``."""
    if fmt == "hdf5":
        return [out_dir / f"{name}_segmentation.h5"]
    if fmt == "tiff":
        return [out_dir / f"{name}_prob.tif", out_dir / f"{name}_mask.tif"]
    raise InputError(f"blockwise.also_write: unknown format {fmt!r}; choose from {list(FORMATS)}")


def export_segmentation(probabilities: Any, mask: Any, out_dir: Path, name: str, fmt: str,
                        voxel_size_nm: Sequence[float] | None,
                        overwrite: bool = False) -> list[Path]:
    """Write ``probabilities`` and ``mask`` ((D, H, W) lazily sliced arrays) as ``fmt``."""
    paths = export_paths(out_dir, name, fmt)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{existing} exist; an output is never replaced unless asked "
                         "(blockwise.overwrite=true)")
    if tuple(probabilities.shape) != tuple(mask.shape):
        raise InputError(f"export: probabilities {tuple(probabilities.shape)} and mask "
                         f"{tuple(mask.shape)} differ in shape")
    if fmt == "hdf5":
        _write_hdf5(probabilities, mask, paths[0], voxel_size_nm)
    else:
        _write_tiff(probabilities, paths[0], voxel_size_nm)
        _write_tiff(mask, paths[1], voxel_size_nm)
    return paths


def _steps(depth: int) -> range:
    return range(0, depth, SLICES_PER_STEP)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _write_hdf5(probabilities: Any, mask: Any, path: Path,
                voxel_size_nm: Sequence[float] | None) -> None:
    import h5py

    shape = tuple(int(n) for n in probabilities.shape)
    temporary = _partial(path)
    with h5py.File(temporary, "w") as handle:
        chunks = (1, *shape[1:])
        prob = handle.create_dataset("probabilities", shape, np.float32, chunks=chunks,
                                     compression="gzip")
        masks = handle.create_dataset("mask", shape, np.uint8, chunks=chunks, compression="gzip")
        for start in _steps(shape[0]):
            stop = min(start + SLICES_PER_STEP, shape[0])
            prob[start:stop] = np.asarray(probabilities[start:stop], np.float32)
            masks[start:stop] = np.asarray(mask[start:stop], np.uint8)
        if voxel_size_nm is not None:
            voxel = [float(v) for v in voxel_size_nm]
            for dataset in (prob, masks):
                dataset.attrs["voxel_size_nm"] = voxel  # (z, y, x)
                dataset.attrs["element_size_um"] = [v / 1000.0 for v in voxel]  # ilastik, BDV
        handle.attrs["mask_values"] = "255 = mitochondrion, 0 = background"
    os.replace(temporary, path)


def imagej_calibration(voxel_size_nm: Sequence[float | None] | None
                       ) -> tuple[tuple[float, float] | None, dict[str, Any]]:
    """The TIFF ``resolution`` (pixels per µm in x and y) and ImageJ metadata (unit µm, z
    ``spacing``) stating a voxel size (z, y, x nm); an axis of size None is not stated."""
    z, y, x = voxel_size_nm if voxel_size_nm is not None else (None, None, None)
    resolution = (1000.0 / float(x), 1000.0 / float(y)) if x and y else None
    metadata: dict[str, Any] = {"unit": "um"} if resolution or z else {}
    if z:
        metadata["spacing"] = float(z) / 1000.0
    return resolution, metadata


def _write_tiff(volume: Any, path: Path, voxel_size_nm: Sequence[float] | None) -> None:
    import tifffile

    shape = tuple(int(n) for n in volume.shape)
    dtype = np.dtype(volume.dtype)
    resolution, calibration = imagej_calibration(voxel_size_nm)
    metadata: dict[str, Any] = {"axes": "ZYX", **calibration}
    temporary = _partial(path)
    big = int(np.prod(shape)) * dtype.itemsize > 2**32 - 2**25
    with tifffile.TiffWriter(temporary, bigtiff=big, imagej=not big) as writer:
        writer.write(_slices(volume, shape[0]), shape=shape, dtype=dtype, resolution=resolution,
                     metadata=metadata, contiguous=True)
    os.replace(temporary, path)


def _slices(volume: Any, depth: int):
    for start in _steps(depth):
        for plane in np.asarray(volume[start:min(start + SLICES_PER_STEP, depth)]):
            yield plane
