"""``segment(cfg)``: apply any trained checkpoint (2D or 3D network) to a user's own images:
a TIFF/PNG image, a multi-page TIFF (a stack of 2D images, or a volume), or a folder of them.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from hydra.utils import instantiate
from omegaconf import DictConfig

from mitoseg.data.image_io import list_image_files, read_image
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


def _tiff_bytes(array: np.ndarray, pixel_size_um: float) -> bytes:
    buffer = io.BytesIO()
    resolution = (1.0 / pixel_size_um, 1.0 / pixel_size_um)
    tifffile.imwrite(buffer, array, resolution=resolution,
                     metadata={"unit": "um", "axes": "ZYX" if array.ndim == 3 else "YX"},
                     imagej=True)
    return buffer.getvalue()


def _outputs(out: Path, file: Path) -> tuple[Path, Path]:
    return out / f"{file.stem}_prob.tif", out / f"{file.stem}_mask.tif"


def _refuse_existing(out: Path, files: list[Path]) -> None:
    """Stop before any prediction when a result would be overwritten."""
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
    mitochondrion) for every input, plus ``segmentation.json`` recording the checkpoint, the
    normalization, the reconstruction (mode, window, overlap, TTA, Z-filter), the
    post-processing and the pixel size. A 3D TIFF is a stack that a 2D network segments slice by
    slice, or a volume for a 3D network. Existing files are never overwritten: the run stops
    before predicting anything.
    """
    if blockwise(cfg):
        return segment_blockwise(cfg)
    files = input_files(cfg.input)
    predictor = build_predictor(cfg)
    stored = predictor.stored
    pixel_size = float(cfg.pixel_size_um or stored["dataset"].get("pixel_size_um", 1.0))
    out = Path(cfg.output_dir or cfg.paths.output_dir)
    _refuse_existing(out, files)
    data_root = cfg.paths.shared_data
    log.info("segmenting %d file(s) on %s: %s", len(files), predictor.device,
             predictor.settings.describe(predictor.spatial_dims))
    outputs = []
    for file in files:
        image = read_image(file)
        probabilities = predictor.probabilities(image)
        masks = predictor.masks(probabilities, image).astype(np.uint8) * 255
        prob_path, mask_path = _outputs(out, file)
        write_new_bytes(prob_path, _tiff_bytes(probabilities.astype(np.float32), pixel_size))
        write_new_bytes(mask_path, _tiff_bytes(masks, pixel_size))
        outputs.append({"input": display_path(file, data_root), "probabilities": prob_path.name,
                        "mask": mask_path.name, "shape": list(image.shape),
                        "foreground_fraction": float((masks > 0).mean())})
        log.info("%s: %s -> %s, %s", file.name, image.shape, prob_path.name, mask_path.name)
    description = predictor.describe()
    record = {"checkpoint": display_path(cfg.ckpt_path, data_root), "pixel_size_um": pixel_size,
              "postproc": description["postproc"],
              "normalization": description["normalization"],
              "reconstruction": description["reconstruction"],
              "spatial_dims": predictor.spatial_dims, "device": description["device"],
              "images": outputs}
    write_new_json(out / RECORD, record)
    log.info("Segmented %d file(s); results written to %s", len(outputs), out)
    return record
