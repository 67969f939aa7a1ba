"""Reading images and masks from disk, with checks that name the file and what was expected."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from skimage import io as skio

from mitoseg.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


def list_image_files(folder: str | Path, what: str = "image") -> list[Path]:
    """TIF/PNG files of a folder, sorted numerically where names are numbers (2 before 10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: '{folder}' (expected a folder of "
                         f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files)")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        raise InputError(f"{what} folder '{folder}' holds no .tif/.tiff/.png files")
    return sorted(files, key=natural_key)


def natural_key(path: Path) -> tuple:
    parts = re.split(r"(\d+)", path.stem)
    return tuple(int(p) if p.isdigit() else p for p in parts) + (path.suffix,)


def check_grayscale_tiff(path: str | Path) -> None:
    """Stop at a TIFF of more than one sample per pixel (RGB, RGBA, planar colour). Every TIFF
    reader checks this first: read as an array, a colour image (H, W, 3) would pass for a stack
    of H slices of W x 3 pixels."""
    with _open_tiff(path) as tif:
        _check_samples(tif, path)


def _open_tiff(path: str | Path) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise InputError(f"could not read '{path}' as a TIFF: {error}") from error


def _check_samples(tif: tifffile.TiffFile, path: str | Path) -> None:
    try:
        samples = tif.pages[0].samplesperpixel
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise InputError(f"could not read '{path}' as a TIFF: {error}") from error
    if samples != 1:
        raise InputError(f"'{path}': {samples} samples per pixel (colour channels); expected a "
                         "grayscale TIFF, one sample per pixel (a stack of 3 or 4 slices that "
                         "tifffile wrote without photometric='minisblack' is stored as colour: "
                         "write it again with that option)")


def read_array(path: str | Path) -> np.ndarray:
    """The pixels of a TIFF (grayscale, checked as ``check_grayscale_tiff`` does, with the file
    opened once) or of a PNG, as they are stored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: '{path}'")
    if path.suffix.lower() not in (".tif", ".tiff"):
        return _decoded(path, lambda: skio.imread(path))
    with _open_tiff(path) as tif:
        _check_samples(tif, path)
        return _decoded(path, tif.asarray)


def _decoded(path: Path, decode: Callable[[], Any]) -> np.ndarray:
    try:
        return np.asarray(decode())
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(f"could not read '{path}' as an image: {error}") from error


def read_image(path: str | Path) -> np.ndarray:
    """A 2D grayscale image (or a 3D stack, Z first) as float32; RGB(A) is refused."""
    return finite(read_intensities(path).astype(np.float32), path)


def read_intensities(path: str | Path) -> np.ndarray:
    """``read_image`` in the file's own dtype: the units an EM input normalization was fitted in
    (``Normalization.check_input`` compares them); a PNG with channels (grey + alpha, RGB(A)) is
    refused, float pixels must be finite."""
    image = read_array(path)
    if image.ndim == 3 and Path(path).suffix.lower() == ".png":  # a PNG is one 2D image: the
        # third axis is its channels (grey + alpha, RGB, RGBA), never slices
        raise InputError(f"'{path}': expected a single-channel image, got {image.shape[-1]} "
                         "channels (colour or alpha); save it as 8- or 16-bit grayscale")
    if image.ndim not in (2, 3):
        raise InputError(f"'{path}': expected a 2D image or a 3D stack, got shape {image.shape}")
    return finite(image, path)


def finite(image: np.ndarray, source: str | Path) -> np.ndarray:
    """``image`` as it is; NaN or infinite pixels (of a float image) are refused, naming
    ``source``."""
    image = np.asarray(image)
    if image.dtype.kind in "fc" and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InputError(f"'{source}': {bad} pixel(s) are NaN or infinite; expected finite "
                         "values")
    return image


def read_mask(path: str | Path, polarity: str = "auto") -> tuple[np.ndarray, bool]:
    """A 2D binary mask as bool with mitochondria True; returns (mask, was_inverted).

    polarity: 'normal' (the higher level is foreground), 'inverted' (the lower level is
    foreground, as in paper 000's published masks) or 'auto' (the minority level is
    foreground: mitochondria cover well under half of any crop). A mask with one level is
    empty under 'normal'/'auto' (no mitochondria) and full under 'inverted'.
    """
    mask = read_array(path)
    if mask.ndim != 2:
        raise InputError(f"mask '{path}': expected a 2D mask, got shape {mask.shape}")
    levels = np.unique(mask)
    if levels.size > 2:
        raise InputError(f"mask '{path}': expected two levels (binary), got {levels.size} "
                         f"distinct values, e.g. {levels[:6].tolist()}")
    if polarity not in ("auto", "normal", "inverted"):
        raise InputError(f"mask polarity must be 'auto', 'normal' or 'inverted', got {polarity!r}")
    if levels.size == 1:
        # One level: 'normal' and 'inverted' read it literally; 'auto' calls it empty, since a
        # crop that is all mitochondrion is implausible.
        nonzero = bool(levels[0])
        foreground = {"normal": nonzero, "inverted": not nonzero, "auto": False}[polarity]
        return np.full(mask.shape, foreground), polarity == "inverted"
    high = mask == levels.max()
    inverted = polarity == "inverted" or (polarity == "auto" and high.mean() > 0.5)
    return (~high if inverted else high), inverted
