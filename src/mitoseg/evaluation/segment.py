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

from mitoseg.data.image_io import finite, list_image_files, read_array, read_intensities
from mitoseg.data.volume_exports import imagej_calibration
from mitoseg.data.volume_sources import SliceFolder, tiff_voxel_size_nm
from mitoseg.evaluation.modality import modality_of, training_voxel_size_nm
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.segment_volume import segment_volume
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_bytes, write_new_json
from mitoseg.runs.paths import display_path

log = logging.getLogger(__name__)

RECORD = "segmentation.json"
VoxelSize = tuple[float | None, float | None, float | None]  # (z, y, x) nm; None: unknown


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
        """The intensities in their own dtype (the checkpoint's normalization checks it)."""
        if not self.slices:
            return read_intensities(self.path)
        return finite(SliceFolder(self.path)[:], self.path)

    def stated_voxel_size_nm(self) -> VoxelSize | None:
        """What the input states of its voxels (an ImageJ-calibrated TIFF; a slice folder:
        its first slice), or None."""
        return tiff_voxel_size_nm(self.named_after[0])


def segment_inputs(path: str | Path, slices_form_volumes: bool) -> list[SegmentInput]:
    """The predictions an input asks for: a folder of 2D slices is one volume where the
    checkpoint's modality says so (EM: the z-median needs the neighbouring slices; every slice
    must then have the first one's shape); otherwise every file is predicted alone."""
    files = input_files(path)
    folder = Path(path).expanduser()
    if slices_form_volumes and folder.is_dir() and read_array(files[0]).ndim == 2:
        return [SegmentInput(folder, tuple(SliceFolder(folder).files))]
    return [SegmentInput(file) for file in files]


def output_voxel_size_nm(pixel_size_um: float | None, stated: VoxelSize | None,
                         trained: VoxelSize | None) -> tuple[VoxelSize, tuple[str | None, ...]]:
    """The voxel size (z, y, x nm) an output states, and where each axis came from: the
    ``pixel_size_um`` option (y and x), else what the input states (as an OME-Zarr input keeps
    its metadata), else the checkpoint's training voxel size; None where none says."""
    given = None if pixel_size_um is None else (None, pixel_size_um * 1000, pixel_size_um * 1000)
    candidates = (("option", given), ("input", stated), ("checkpoint", trained))
    chosen = [next(((name, sizes[axis]) for name, sizes in candidates
                    if sizes is not None and sizes[axis] is not None), (None, None))
              for axis in range(3)]
    return tuple(size for _, size in chosen), tuple(name for name, _ in chosen)


def pixel_size_option(cfg: DictConfig) -> float | None:
    """The ``pixel_size_um`` option (µm), or None."""
    value = cfg.get("pixel_size_um")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"segment option 'pixel_size_um' must be a pixel size in µm > 0 (or "
                         f"null: the input's or the checkpoint's), got {value!r}")
    return float(value)


def _warn_if_other_scale(item: SegmentInput, stated: VoxelSize | None,
                         trained: VoxelSize | None) -> None:
    """The network sees the input's pixels as they are: say so where they are not the size
    it was trained at."""
    if stated is None or trained is None:
        return
    pairs = [(a, b) for a, b in zip(stated, trained) if a is not None and b is not None]
    if any(not np.isclose(a, b, rtol=1e-6) for a, b in pairs):
        log.warning("'%s' states voxels of %s nm (z, y, x), the checkpoint was trained at %s nm; "
                    "it is segmented without resampling, and its outputs state its own size",
                    item.named_after[0], list(stated), list(trained))


def _tiff_bytes(array: np.ndarray, voxel_size_nm: VoxelSize) -> bytes:
    """An ImageJ TIFF stating ``voxel_size_nm`` (a 2D image: y and x only)."""
    buffer = io.BytesIO()
    stated = voxel_size_nm if array.ndim == 3 else (None, *voxel_size_nm[1:])
    resolution, calibration = imagej_calibration(stated)
    tifffile.imwrite(buffer, array, resolution=resolution,
                     metadata={"axes": "ZYX" if array.ndim == 3 else "YX", **calibration},
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
    post-processing and the voxel size. A 3D TIFF is a stack that a 2D network segments slice by
    slice, or a volume for a 3D network. A folder of 2D slices given with an EM checkpoint is
    one volume (as its stack TIFF would be: the Z-filter sees the neighbouring slices); its
    outputs keep one pair per slice, named after the slice. With a fluorescence checkpoint
    every file of a folder is segmented alone. Each entry of ``images`` records the
    reconstruction as applied to its input (no Z-filter on a single image); the top-level
    ``reconstruction`` is that of every input, or null where they differ.

    The outputs state their voxel size as ImageJ TIFF calibration (x/y resolution, z
    ``spacing``, unit µm), per axis from ``output_voxel_size_nm``: the ``pixel_size_um``
    option, else the input's own calibration, else the checkpoint's training voxel size
    (``training_voxel_size_nm``); an axis nothing states is left out. The record keeps each
    image's ``voxel_size_nm`` (z, y, x) and ``voxel_size_from``, the checkpoint's
    ``training_voxel_size_nm``, and ``pixel_size_um`` / ``voxel_size_nm`` shared by every
    image (null where unknown or they differ). Existing files are never overwritten: the run
    stops before predicting anything.
    """
    if blockwise(cfg):
        return segment_blockwise(cfg)
    pixel_size_um = pixel_size_option(cfg)
    predictor = build_predictor(cfg)
    stored = predictor.stored
    trained = training_voxel_size_nm(stored)
    inputs = segment_inputs(cfg.input, modality_of(stored).slices_form_volumes)
    out = Path(cfg.output_dir or cfg.paths.output_dir)
    _refuse_existing(out, inputs)
    data_root = cfg.paths.shared_data
    log.info("segmenting %d input(s) on %s: %s", len(inputs), predictor.device,
             predictor.settings.describe(predictor.spatial_dims))
    outputs = []
    for item in inputs:
        stated = item.stated_voxel_size_nm()
        _warn_if_other_scale(item, stated, trained)
        voxel, voxel_from = output_voxel_size_nm(pixel_size_um, stated, trained)
        if voxel[2] is None:
            log.warning("%s: no pixel size known (the checkpoint's config and the input state "
                        "none); its outputs state none. Give pixel_size_um=<µm>.", item.path)
        image = item.read()
        probabilities = predictor.probabilities(image)
        masks = predictor.masks(probabilities, image.astype(np.float32)).astype(np.uint8) * 255
        reconstruction = predictor.describe(image.shape)["reconstruction"]
        planes = zip(item.slices, probabilities, masks) if item.slices else [
            (item.path, probabilities, masks)]
        for file, file_probabilities, file_masks in planes:
            prob_path, mask_path = _outputs(out, file)
            write_new_bytes(prob_path, _tiff_bytes(file_probabilities.astype(np.float32), voxel))
            write_new_bytes(mask_path, _tiff_bytes(file_masks, voxel))
            outputs.append({"input": display_path(file, data_root),
                            "probabilities": prob_path.name, "mask": mask_path.name,
                            "shape": list(file_masks.shape),
                            "foreground_fraction": float((file_masks > 0).mean()),
                            "reconstruction": reconstruction, "voxel_size_nm": list(voxel),
                            "voxel_size_from": list(voxel_from)})
        log.info("%s: %s -> %d output pair(s)", item.path.name, image.shape,
                 len(item.named_after))
    description = predictor.describe()
    voxel_size = _common([entry["voxel_size_nm"] for entry in outputs])
    record = {"checkpoint": display_path(cfg.ckpt_path, data_root),
              "pixel_size_um": voxel_size[2] / 1000.0 if voxel_size and voxel_size[2] else None,
              "voxel_size_nm": voxel_size,
              "training_voxel_size_nm": None if trained is None else list(trained),
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
