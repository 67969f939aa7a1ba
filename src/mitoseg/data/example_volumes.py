"""Small example volumes in every format ``dataset=em_volumes`` reads, with ignored voxels, made
from the procedural EM generator: what ``dataset=em_volumes_example`` trains on (written on its
first use, no download), and a template for a user's own config.

    python -m mitoseg.data.example_volumes <folder>     # write them (once; never overwritten)

Written into ``folder``:
- ``train_a.tif`` / ``train_a_labels.tif``: a TIFF stack; labels 0, 1 and 2 = outside the
  tissue (a black band along one edge, ignored);
- ``train_b.h5`` (datasets ``/raw``, ``/labels``): an HDF5 file; labels 0 / 255 (its config
  entry maps 255 to mitochondria), no ignored voxels;
- ``val.zarr`` / ``val_labels.zarr``: Zarr arrays; labels 0, 1 and 2 (sparse annotation:
  slices with an odd number are unannotated, all 2);
- ``test.ome.zarr`` / ``test_labels.ome.zarr``: OME-Zarr images with a 3-level pyramid and the
  voxel size (5 nm) in their metadata; labels 0, 1 and 2 (the black band).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from mitoseg.console import console_logging
from mitoseg.data.em_volume_files import em_volume_files
from mitoseg.data.volume_set import VolumeSet
from mitoseg.errors import InputError
from mitoseg.synth.em_volumes import synthetic_em_volume

log = logging.getLogger(__name__)

VOXEL_SIZE_NM = (5.0, 5.0, 5.0)
IGNORE = 2            # the label value of voxels that count nowhere
BAND_PX = 24          # width of the black band "outside the tissue"
SHAPES = {"train_a": (32, 160, 160), "train_b": (24, 160, 160), "val": (12, 160, 160),
          "test": (16, 160, 160)}
FILES = ("train_a.tif", "train_a_labels.tif", "train_b.h5", "val.zarr", "val_labels.zarr",
         "test.ome.zarr", "test_labels.ome.zarr")


def _volume(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    image, labels = synthetic_em_volume(SHAPES[name], seed=seed)
    return np.asarray(image, np.uint8), (np.asarray(labels) > 0).astype(np.uint8)


def _outside_band(image: np.ndarray, labels: np.ndarray) -> None:
    """A black band along the left edge, labelled IGNORE (like Kasthuri++ outside the tissue)."""
    image[:, :, :BAND_PX] = 0
    labels[:, :, :BAND_PX] = IGNORE


def write_example_volumes(folder: str | Path, seed: int = 0) -> Path:
    """Write the example volumes into ``folder`` (which must not exist yet); the files are
    written into a temporary folder first and moved into place at once, so concurrent runs
    never see half a data set. Returns ``folder``."""
    import h5py

    from mitoseg.data.ome_zarr_output import convert_to_ome_zarr

    folder = Path(folder)
    if folder.exists():
        raise InputError(f"example volumes: '{folder}' exists; it is never overwritten")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".example_volumes-", dir=folder.parent))
    try:
        image, labels = _volume("train_a", seed)
        _outside_band(image, labels)
        tifffile.imwrite(staging / "train_a.tif", image)
        tifffile.imwrite(staging / "train_a_labels.tif", labels)

        image, labels = _volume("train_b", seed + 1)
        with h5py.File(staging / "train_b.h5", "w") as handle:
            handle.create_dataset("raw", data=image, chunks=(1, *image.shape[1:]))
            handle.create_dataset("labels", data=labels * 255, chunks=(1, *image.shape[1:]),
                                  compression="gzip")

        import zarr

        image, labels = _volume("val", seed + 2)
        labels[1::2] = IGNORE  # sparse annotation: every second slice left unannotated
        for name, array in (("val.zarr", image), ("val_labels.zarr", labels)):
            stored = zarr.create_array(str(staging / name), shape=array.shape,
                                       dtype=array.dtype, chunks=(4, 80, 80))
            stored[:] = array

        image, labels = _volume("test", seed + 3)
        _outside_band(image, labels)
        convert_to_ome_zarr(image, staging / "test.ome.zarr", VOXEL_SIZE_NM, slices_per_chunk=8)
        convert_to_ome_zarr(labels, staging / "test_labels.ome.zarr", VOXEL_SIZE_NM,
                            slices_per_chunk=8)
        try:
            os.rename(staging, folder)
        except OSError:
            if not all((folder / name).exists() for name in FILES):
                raise
            shutil.rmtree(staging)  # another run wrote the same (seeded) files first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def example_em_volumes(root: str, **options: Any) -> VolumeSet:
    """``em_volume_files`` on the example volumes under ``root``, written there first if absent."""
    if not Path(root).exists():
        log.info("writing the example volumes into '%s' (once)", root)
        write_example_volumes(root)
    return em_volume_files(root=root, **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a new folder to write the volumes into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    console_logging()
    log.info("wrote %s", write_example_volumes(args.folder, args.seed))


if __name__ == "__main__":
    main()
