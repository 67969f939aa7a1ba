"""``segment(cfg)``: apply a trained checkpoint to a user's own images (file, folder or stack)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mitoseg.data.image_io import list_image_files, read_image
from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.scoring import apply_postproc
from mitoseg.evaluation.predict import predict_probabilities
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_bytes, write_new_json
from mitoseg.runs.paths import display_path


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


def segment(cfg: DictConfig) -> dict[str, Any]:
    """Write ``<name>_prob.tif`` (float32 probabilities) and ``<name>_mask.tif`` (uint8, 255 =
    mitochondrion) for every input, plus ``segmentation.json`` recording the checkpoint,
    threshold and pixel size. A 3D TIFF is a stack: every slice is segmented. Existing files
    are never overwritten.
    """
    net, stored = load_network(cfg.ckpt_path)
    binarize = instantiate(cfg.postproc if cfg.get("postproc") else
                           OmegaConf.create(stored["postproc"]))
    pixel_size = float(cfg.pixel_size_um or stored["dataset"].get("pixel_size_um", 1.0))
    normalization = Normalization.from_dict(stored["normalization"])
    out = Path(cfg.output_dir or cfg.paths.output_dir)
    data_root = cfg.paths.shared_data
    files = input_files(cfg.input)
    outputs = []
    for file in files:
        image = read_image(file)
        stack = image if image.ndim == 3 else image[None]
        probabilities = np.stack([predict_probabilities(net, plane, normalization) for plane in stack])
        masks = np.stack([apply_postproc(binarize, p, plane)
                          for p, plane in zip(probabilities, stack)]).astype(np.uint8) * 255
        if image.ndim == 2:
            probabilities, masks = probabilities[0], masks[0]
        prob_path = write_new_bytes(out / f"{file.stem}_prob.tif",
                                    _tiff_bytes(probabilities.astype(np.float32), pixel_size))
        mask_path = write_new_bytes(out / f"{file.stem}_mask.tif", _tiff_bytes(masks, pixel_size))
        outputs.append({"input": display_path(file, data_root), "probabilities": prob_path.name,
                        "mask": mask_path.name, "shape": list(image.shape),
                        "foreground_fraction": float((masks > 0).mean())})
    record = {"checkpoint": display_path(cfg.ckpt_path, data_root), "pixel_size_um": pixel_size,
              "postproc": binarize.describe(), "normalization": normalization.to_dict(),
              "images": outputs}
    write_new_json(out / "segmentation.json", record)
    print(f"Segmented {len(outputs)} file(s); results written to {out}")
    return record
