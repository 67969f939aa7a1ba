"""Segment a volume of any size block by block: read lazily (TIFF, slice folder, HDF5, Zarr,
OME-Zarr), predict slabs with the checkpoint's ``Predictor``, write probabilities and masks as
OME-Zarr (a pyramid, the voxel size), resumably, in this process or on a Dask cluster.

Blocks are slabs of whole slices, so the result equals one pass in memory (up to float32
rounding) for every reconstruction of a 2D network: a 2D network sees each slice alone, and the
slab is read with ``zfilter // 2`` more slices on each side for the z-median. A 3D network looks
across slices: its slabs are read with a halo of its measured receptive field along z (rounded
up to its size divisor, so that pooling and the padding past the volume's end line up) and
need the ``full_image`` reconstruction,
whose result does not depend on where a window starts. Masks come from the probabilities slab
by slab, so the post-processing must act slice by slice or voxel by voxel (a threshold; the 2D
component filters of ``EMPostprocess`` act per slice on 2D input).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.data.ome_zarr_output import OmeZarrOutput
from mitoseg.data.volume_exports import export_paths, export_segmentation
from mitoseg.data.volume_sources import check_voxel_size, open_volume
from mitoseg.errors import InputError
from mitoseg.evaluation.chunked import BlockJob, close_client, dask_client, run_dask, run_local
from mitoseg.evaluation.modality import training_voxel_size_nm
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.reconstruction import ReconstructionSettings
from mitoseg.inference.blocks import block_grid, receptive_radius, round_up
from mitoseg.runs.files import write_new_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointProbabilities:
    """Picklable: a checkpoint's Predictor, made once per process; called on a slab it returns
    the probabilities (normalization, reconstruction, z-median)."""

    checkpoint: str
    settings: ReconstructionSettings
    device: str | None = None

    def __call__(self) -> Any:
        predictor = Predictor.from_checkpoint(self.checkpoint, self.settings, device=self.device)
        predictor.progress = False
        return predictor.probabilities


def slab_blocks(predictor: Predictor, shape: tuple[int, int, int], depth: int) -> tuple[list, int]:
    """Slabs of ``depth`` slices and the halo along z they need (see the module docstring)."""
    settings = predictor.settings
    zfilter_reach = int(settings.zfilter) // 2 if settings.zfilter > 1 else 0
    if predictor.spatial_dims == 2:
        halo, align = zfilter_reach, 1
    else:
        if settings.reconstruction != "full_image":
            raise InputError(f"block-wise prediction of a 3D network needs inference "
                             f"reconstruction 'full_image' (got {settings.reconstruction!r}: "
                             "its windows would start elsewhere in every block); choose "
                             "inference=em_paper-like full_image, or predict in memory")
        # slabs on the full-image divisor: the pooling grid, and the reflected slices past the
        # volume's end, line up as in one pass; the halo is the reach along z (a network that
        # does not pool z reaches far less along z than in y, x)
        align = int(settings.divisor)
        radius = receptive_radius(predictor.net, 3, size=64, device=predictor.device, axis=0)
        halo = round_up(radius + zfilter_reach, align)
        log.info("3D network: receptive field %d slices along z (measured), halo %d slices",
                 radius, halo)
    depth = round_up(max(int(depth), 1), align)
    blocks = block_grid(shape, (depth, *shape[1:]), (halo, 0, 0), (align, 1, 1))
    return blocks, halo


def _voxel_size(volume: Any, given: list[float] | None, stored: dict[str, Any]
                ) -> tuple[tuple[float, float, float] | None, str | None]:
    """The voxel size the outputs state and where it came from: the option (checked against the
    input's metadata), the input's OME-Zarr metadata, else the checkpoint's training voxel size
    (as ``segment.py``'s in-memory path); (None, None) where none says."""
    voxel = check_voxel_size(volume, given)
    if voxel is not None:
        return voxel, "option" if given is not None else "input"
    trained = training_voxel_size_nm(stored)
    if trained is not None and None not in trained:
        log.info("the input states no voxel size: its outputs state the checkpoint's training "
                 "voxel size %s nm (give voxel_size_nm=[z,y,x] otherwise)", list(trained))
        return tuple(float(v) for v in trained), "checkpoint"
    return None, None


def segment_volume(checkpoint: str | Path, source: str, out_dir: str | Path, *,
                   inference: ReconstructionSettings | dict | None = None,
                   level: int | None = None, block_depth: int = 32,
                   voxel_size_nm: list[float] | None = None, engine: str = "none",
                   workers: int = 2, address: str | None = None,
                   jobqueue: dict[str, Any] | None = None, resume: bool = False,
                   overwrite: bool = False, device: str | None = None,
                   postproc: Any = None, progress: bool = True,
                   also_write: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``<name>_prob.ome.zarr`` (float32) and ``<name>_mask.ome.zarr`` (uint8, 255 =
    mitochondrion) into ``out_dir`` and return the record also written as
    ``<name>_segmentation.json``. ``inference``: reconstruction settings or an inference config
    (None: the checkpoint's default); ``postproc``: None: the checkpoint's. ``engine``: 'none'
    (this process), 'local' (Dask worker processes), 'address' (a running scheduler), 'slurm'
    or 'pbs' (dask-jobqueue). ``also_write``: copies in 'hdf5' and/or 'tiff' once the OME-Zarr
    outputs are complete (``mitoseg.data.volume_exports``)."""
    predictor = Predictor.from_checkpoint(checkpoint, inference, postproc, device=device)
    volume = open_volume(source, level)
    predictor.normalization.check_input(volume.dtype, f"segment: '{source}'")  # before any file
    voxel, voxel_from = _voxel_size(volume, voxel_size_nm, predictor.stored)
    blocks, halo = slab_blocks(predictor, volume.shape, block_depth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = _stem(source)
    exports = {fmt: export_paths(out, name, fmt) for fmt in also_write}  # unknown: stop now
    taken = [str(p) for paths in exports.values() for p in paths if p.exists()]
    if taken and not (resume or overwrite):
        raise InputError(f"{taken} exist; an output is never replaced unless asked "
                         "(blockwise.overwrite=true)")
    job = {"checkpoint_sha256": _sha256(checkpoint), "source": str(source), "level": level,
           "shape": list(volume.shape),
           "reconstruction": predictor.settings.describe(predictor.spatial_dims),
           "normalization": predictor.normalization.to_dict(),
           "block_depth": int(blocks[0].core[0].stop - blocks[0].core[0].start),
           "halo_slices": halo}
    chunks = (job["block_depth"], *volume.shape[1:])
    check_slab_postproc(predictor.postproc)
    prob_path, mask_path = out / f"{name}_prob.ome.zarr", out / f"{name}_mask.ome.zarr"
    predicted = 0
    if not (resume and OmeZarrOutput.is_complete(prob_path, job)):
        probabilities = _output(prob_path, volume.shape, "float32", chunks, voxel, job, resume,
                                overwrite)
        factory = CheckpointProbabilities(str(Path(checkpoint).resolve()), predictor.settings,
                                          None if device is None else str(device))
        task = BlockJob(str(source), level, str(prob_path), factory)
        if engine == "none":
            predicted = run_local(task, blocks, probabilities, progress)
        else:
            client = dask_client(engine, workers, 1, address, jobqueue)
            try:
                predicted = run_dask(task, blocks, probabilities, client, progress)
            finally:
                close_client(client)
        probabilities.finish()
    masks = _output(mask_path, volume.shape, "uint8", chunks, voxel, job, resume, overwrite)
    prob_level0 = open_volume(prob_path)
    for block in blocks:  # masks slab by slab: no network, the post-processing only
        if block.key in masks.done():
            continue
        mask = predictor.masks(prob_level0[block.core], volume[block.core])
        masks.write(block.core, mask.astype(np.uint8) * 255)
        masks.mark_done(block.key)
    masks.finish()
    written = []
    for fmt, paths in exports.items():
        if resume and not overwrite and all(p.exists() for p in paths):
            written += [p.name for p in paths]  # finished before the run was stopped
            continue
        written += [p.name for p in export_segmentation(
            open_volume(prob_path), open_volume(mask_path), out, name, fmt, voxel, overwrite)]
    record = {**job, "voxel_size_nm": list(voxel) if voxel else None,
              "voxel_size_from": voxel_from, "blocks": len(blocks),
              "blocks_predicted_now": predicted, "engine": engine,
              "postproc": predictor.describe()["postproc"],
              "probabilities": prob_path.name, "mask": mask_path.name, "also_written": written}
    write_new_json(out / f"{name}_segmentation.json", record)
    log.info("Segmented %s block-wise (%d blocks); results in %s", source, len(blocks), out)
    return record


def check_slab_postproc(postproc: Any) -> None:
    """Masks are made slab by slab: a post-processing that looks across slices (3D components
    or watershed of ``EMPostprocess`` with per_slice=false) would see a cut volume."""
    across = getattr(postproc, "per_slice", True) is False and (
        getattr(postproc, "min_size", 0) > 1 or getattr(postproc, "watershed", False)
        or getattr(postproc, "min_mean_probability", 0.0) > 0)
    if across:
        raise InputError("block-wise segmentation makes masks slab by slab, but the "
                         "post-processing works on 3D components (per_slice: false); use "
                         "postproc.per_slice=true, a plain threshold, or predict in memory")


def _output(path: Path, shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...],
            voxel: Any, job: dict[str, Any], resume: bool, overwrite: bool) -> OmeZarrOutput:
    if resume and path.exists():
        return OmeZarrOutput.resume(path, job)
    return OmeZarrOutput.create(path, shape, dtype, chunks, voxel, job, overwrite=overwrite)


def _stem(source: str) -> str:
    path = str(source).split(":")[0].rstrip("/")
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr", ".h5", ".hdf5", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
