"""``segment(cfg)``: apply any trained checkpoint (2D or 3D network) to a user's own images:
a TIFF/PNG image, a multi-page TIFF (a stack of 2D images, or a volume), or a folder of them.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from hydra.utils import instantiate
from omegaconf import DictConfig

from mitoseg.data.image_io import finite_float32, list_image_files, read_array, read_image
from mitoseg.data.volume_sources import SliceFolder
from mitoseg.evaluation.modality import modality_of
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.segment_volume import segment_volume
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_bytes, write_new_json
from mitoseg.runs.paths import display_path

log = logging.getLogger(__name__)

RECORD = "segmentation.json"


def input_files(path: str | Path) -> list[Path]:
    path = Path(path).expanduser()
    if path.is_dir():
        return list_image_files(path, what="input image")
    if not path.is_file():
        raise InputError(f"input not found: '{path}' (expected a .tif/.png image, a stack, or a "
                         "folder of them)")
    return [path]


@dataclass(frozen=True)
class SegmentInput:
    """What one prediction reads, and the files its outputs are named after: an image or a
    stack (``path`` itself), or a folder of slices predicted as one volume (``slices``, in z
    order: one output pair per slice)."""

    path: Path
    slices: tuple[Path, ...] = ()

    @property
    def named_after(self) -> tuple[Path, ...]:
        return self.slices or (self.path,)

    def read(self) -> np.ndarray:
        if not self.slices:
            return read_image(self.path)
        return finite_float32(SliceFolder(self.path)[:], self.path)


def segment_inputs(path: str | Path, slices_form_volumes: bool) -> list[SegmentInput]:
    """The predictions an input asks for: a folder of 2D slices is one volume where the
    checkpoint's modality says so (EM: the z-median needs the neighbouring slices; every slice
    must then have the first one's shape); otherwise every file is predicted alone."""
    files = input_files(path)
    folder = Path(path).expanduser()
    if slices_form_volumes and folder.is_dir() and read_array(files[0]).ndim == 2:
        return [SegmentInput(folder, tuple(SliceFolder(folder).files))]
    return [SegmentInput(file) for file in files]


def _tiff_bytes(array: np.ndarray, pixel_size_um: float) -> bytes:
    buffer = io.BytesIO()
    resolution = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
    tifffile.imwrite(buffer, array, resolution=resolution,
                     metadata={"unit": "um", "axes": "ZYX" if array.ndim == 3 else "YX"},
                     imagej=True)
    return buffer.getvalue()


def _outputs(out: Path, file: Path) -> tuple[Path, Path]:
    return out / f"{file.stem}_prob.tif", out / f"{file.stem}_mask.tif"


def _refuse_existing(out: Path, inputs: list[SegmentInput]) -> None:
    """Stop before any prediction when a result would be overwritten."""
    files = [file for item in inputs for file in item.named_after]
    for path in [out / RECORD] + [p for file in files for p in _outputs(out, file)]:
        if path.exists():
            raise InputError(f"refusing to overwrite existing result '{path}'")


def build_predictor(cfg: DictConfig) -> Predictor:
    """The checkpoint's Predictor with the reconstruction ``cfg.inference`` chooses (null:
    the checkpoint's modality's: whole images for fluorescence, the stored inference
    headline for EM) and the post-processing ``cfg.postproc`` (null: the checkpoint's);
    ``cfg.compile`` true compiles the network (null: as the inference config says)."""
    compile = cfg.get("compile")
    return Predictor.from_checkpoint(
        cfg.ckpt_path, inference=cfg.get("inference") or None, device=cfg.get("device") or None,
        postproc=instantiate(cfg.postproc) if cfg.get("postproc") else None,
        compile=None if compile is None else bool(compile))


def blockwise(cfg: DictConfig) -> bool:
    """Block by block into OME-Zarr: always for Zarr / OME-Zarr / HDF5 inputs, and for any
    volume when ``blockwise.enabled`` is true."""
    enabled = (cfg.get("blockwise") or {}).get("enabled", "auto")
    if enabled not in ("auto", True, False):
        raise InputError(f"segment option 'blockwise.enabled' must be auto, true or false, got "
                         f"{enabled!r}")
    text = str(cfg.input).lower()
    chunked_input = any(marker in text for marker in (".zarr", ".h5", ".hdf5", ".hdf"))
    if enabled is False and chunked_input:
        raise InputError(f"input '{cfg.input}' is a Zarr/HDF5 volume: it is segmented block by "
                         "block (blockwise.enabled=auto or true)")
    return chunked_input or enabled is True


def segment_blockwise(cfg: DictConfig) -> dict[str, Any]:
    """One volume, block by block (``mitoseg.evaluation.segment_volume``)."""
    options = cfg.blockwise
    postproc = instantiate(cfg.postproc) if cfg.get("postproc") else None
    settings = build_predictor(cfg).settings
    return segment_volume(
        cfg.ckpt_path, str(cfg.input), Path(cfg.output_dir or cfg.paths.output_dir),
        inference=settings, level=cfg.get("level"), block_depth=int(options.block_depth),
        voxel_size_nm=list(cfg.voxel_size_nm) if cfg.get("voxel_size_nm") else None,
        engine=str(options.engine), workers=int(options.workers), address=options.get("address"),
        jobqueue=dict(options.get("jobqueue") or {}), resume=bool(options.resume),
        overwrite=bool(options.overwrite), device=cfg.get("device") or None, postproc=postproc,
        also_write=[str(f) for f in options.get("also_write") or []])


def segment(cfg: DictConfig) -> dict[str, Any]:
    """Write ``<name>_prob.tif`` (float32 probabilities) and ``<name>_mask.tif`` (uint8, 255 =
    mitochondrion) for every input file, plus ``segmentation.json`` recording the checkpoint,
    the normalization, the reconstruction (mode, window, overlap, TTA, Z-filter), the
    post-processing and the pixel size. A 3D TIFF is a stack that a 2D network segments slice by
    slice, or a volume for a 3D network. A folder of 2D slices given with an EM checkpoint is
    one volume (as its stack TIFF would be: the Z-filter sees the neighbouring slices); its
    outputs keep one pair per slice, named after the slice. With a fluorescence checkpoint
    every file of a folder is segmented alone. Each entry of ``images`` records the
    reconstruction as applied to its input (no Z-filter on a single image); the top-level
    ``reconstruction`` is that of every input, or null where they differ. Existing files are
    never overwritten: the run stops before predicting anything.
    """
    if blockwise(cfg):
        return segment_blockwise(cfg)
    predictor = build_predictor(cfg)
    stored = predictor.stored
    inputs = segment_inputs(cfg.input, modality_of(stored).slices_form_volumes)
    pixel_size = float(cfg.pixel_size_um or stored["dataset"].get("pixel_size_um", 1.0))
    out = Path(cfg.output_dir or cfg.paths.output_dir)
    _refuse_existing(out, inputs)
    data_root = cfg.paths.shared_data
    log.info("segmenting %d input(s) on %s: %s", len(inputs), predictor.device,
             predictor.settings.describe(predictor.spatial_dims))
    outputs = []
    for item in inputs:
        image = item.read()
        probabilities = predictor.probabilities(image)
        masks = predictor.masks(probabilities, image).astype(np.uint8) * 255
        reconstruction = predictor.describe(image.shape)["reconstruction"]
        planes = zip(item.slices, probabilities, masks) if item.slices else [
            (item.path, probabilities, masks)]
        for file, file_probabilities, file_masks in planes:
            prob_path, mask_path = _outputs(out, file)
            write_new_bytes(prob_path, _tiff_bytes(file_probabilities.astype(np.float32),
                                                   pixel_size))
            write_new_bytes(mask_path, _tiff_bytes(file_masks, pixel_size))
            outputs.append({"input": display_path(file, data_root),
                            "probabilities": prob_path.name, "mask": mask_path.name,
                            "shape": list(file_masks.shape),
                            "foreground_fraction": float((file_masks > 0).mean()),
                            "reconstruction": reconstruction})
        log.info("%s: %s -> %d output pair(s)", item.path.name, image.shape,
                 len(item.named_after))
    description = predictor.describe()
    record = {"checkpoint": display_path(cfg.ckpt_path, data_root), "pixel_size_um": pixel_size,
              "postproc": description["postproc"],
              "normalization": description["normalization"],
              "reconstruction": _common([entry["reconstruction"] for entry in outputs]),
              "spatial_dims": predictor.spatial_dims, "device": description["device"],
              "images": outputs}
    write_new_json(out / RECORD, record)
    log.info("Segmented %d input(s); results written to %s", len(inputs), out)
    return record


def _common(values: list[Any]) -> Any:
    """The value every entry shares, or None where they differ."""
    return values[0] if values and all(value == values[0] for value in values) else None
