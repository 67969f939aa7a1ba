"""Reading EM volumes (Lucchi, Lucchi++, Kasthuri++) lazily, as (D, H, W) arrays.

Layouts on disk
---------------
Lucchi / EPFL Hippocampus (Lucchi et al. 2011; https://www.epfl.ch/labs/cvlab/data/data-em/,
"Electron Microscopy Dataset"): one folder with four multi-page TIFFs, 165 x 768 x 1024 uint8
each, labels {0, 255}: ``training.tif``, ``training_groundtruth.tif``, ``testing.tif``,
``testing_groundtruth.tif``.

Lucchi++ and Kasthuri++ (Casser et al. 2020, "Fast Mitochondria Detection for Connectomics",
MIDL; distributed from https://sites.google.com/view/connectomics/ as
``http://www.casser.io/files/lucchi_pp.zip`` and ``.../kasthuri_pp.zip``). Each zip holds one
top folder, ``Lucchi++/`` or ``Kasthuri++/``, with four folders of 2D PNG slices::

    Lucchi++/Train_In/   mask0000.png ... (images; the "mask" prefix is really on the images)
    Lucchi++/Train_Out/  0.png, 1.png, ... (labels; not zero-padded, so sort numerically)
    Lucchi++/Test_In/    Lucchi++/Test_Out/   (same naming)
    Kasthuri++/Train_In/ Train_Out/ Test_In/ Test_Out/

Images and labels are paired by the number that ends their names (``paired_slice_volumes``),
never by sorted position. Checked on the Lucchi++ copy in ``shared/data/lucchi_pp``: Test_Out
labels are RGBA (R = G = B, alpha 255), Train_Out single-channel {0, 255}; Test_In is EPFL's
training volume (= Lucchi ``training.tif`` at about 0.70 x + 40) and Train_In EPFL's testing
volume, of which that copy holds slices 145-164 only (see ``conf/dataset/lucchi_pp.yaml``).

Sources (read, not run here):
torch-em ``torch_em/data/datasets/electron_microscopy/lucchi.py`` and ``kasthuri.py`` (URLs,
SHA-256, folder names, the slice patterns ``mask%04i.png`` / ``%i.png``, labels either
grayscale {0, 255} or RGBA with foreground (255, 255, 255, 255)); micro-sam
``micro_sam/sample_data.py`` (the same Lucchi++ URL and SHA-256, 165 ``Test_In/maskNNNN.png``);
Kasthuri++ labels are RGB with mitochondria (255, 255, 255) and (2, 2, 2) marking the empty area
outside the imaged tissue (torch-em maps it to -1, "ignore"). Sizes from paper 002: Kasthuri++
train 85 x 1463 x 1613, test 75 x 1334 x 1553 voxels. The folder names are parameters
(``layout``) in case a copy was re-arranged (some tools move them to train/images etc.).

Memory mapping: an uncompressed TIFF is mapped with ``tifffile.memmap``. A compressed one cannot
be mapped; it is decoded with ``tifffile.imread`` (logged), or, given ``cache_dir``, decoded once
page by page into an uncompressed ``.npy`` there and mapped from that. The copy of the Lucchi
training volume in ``shared/data/lucchi`` is deflate-compressed, so it needs ``cache_dir`` to
come back as an ``np.memmap``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import tifffile

from mitoseg.data import em_datasets
from mitoseg.data.image_io import check_grayscale_tiff, list_image_files, read_array
from mitoseg.errors import InputError

log = logging.getLogger(__name__)

# The facts of each data set live in mitoseg.data.em_datasets (one module each); these tables
# are views of them for the readers below.
VOXEL_SIZE_NM: dict[str, tuple[float, float, float]] = {
    key: module.VOXEL_SIZE_NM for key, module in em_datasets.BY_KEY.items()}  # (z, y, x) nm

LUCCHI_PAGE = em_datasets.lucchi.PAGE
LUCCHI_FILES: dict[str, tuple[str, str]] = em_datasets.lucchi.LAYOUT

CASSER_PAGE = em_datasets.lucchi_pp.PAGE
CASSER_FOLDERS: dict[str, str] = {key: m.FOLDER for key, m in em_datasets.CASSER.items()}
CASSER_LAYOUT: dict[str, tuple[str, str]] = {
    "train": ("Train_In", "Train_Out"),
    "test": ("Test_In", "Test_Out"),
}
# Label values that are neither mitochondrion nor background (Kasthuri++: 2 outside the
# tissue). ``binary_labels`` reads them as background; ``label_ignore_mask`` finds them, and
# ``em_sources.casser_volumes`` makes them ignored voxels (no loss, no metric) by default.
CASSER_IGNORE_VALUES: dict[str, tuple[int, ...]] = {
    key: m.IGNORE_VALUES for key, m in em_datasets.CASSER.items()}

_CHUNK_SLICES = 16  # z-slices per chunk when scanning a (possibly mapped) volume


def _download_hint(dataset: str) -> str:
    return f"`python -m mitoseg.data.download {dataset} <folder>` (mitoseg.data.download)"


def lucchi_files(root: str | Path,
                 splits: Iterable[str] = ("train", "test")) -> dict[str, tuple[Path, Path]]:
    """``{split: (image_path, label_path)}`` of the official Lucchi layout under ``root``.

    All expected files are checked at once; the error lists every expected path, so a user sees
    the whole layout, not one missing file at a time.
    """
    root = Path(root)
    splits = tuple(splits)
    unknown = [s for s in splits if s not in LUCCHI_FILES]
    if unknown or not splits:
        raise InputError(f"lucchi_files splits: expected some of {sorted(LUCCHI_FILES)}, "
                         f"got {list(splits)}")
    files = {s: (root / LUCCHI_FILES[s][0], root / LUCCHI_FILES[s][1]) for s in splits}
    expected = [p for pair in files.values() for p in pair]
    missing = [p for p in expected if not p.is_file()]
    if missing:
        listing = "\n".join(f"  {p}{'  (missing)' if p in missing else ''}" for p in expected)
        raise InputError(
            f"Lucchi data set folder '{root}': {len(missing)} of {len(expected)} expected files "
            f"missing. Expected:\n{listing}\nGet them from the EPFL CVLab 'Electron Microscopy "
            f"Dataset' page ({LUCCHI_PAGE}) or with {_download_hint('lucchi')}.")
    return files


def casser_files(root: str | Path, dataset: str,
                 layout: Mapping[str, tuple[str, str]] = CASSER_LAYOUT,
                 ) -> dict[str, tuple[Path, Path]]:
    """``{split: (image_folder, label_folder)}`` of Lucchi++ or Kasthuri++ (Casser et al. 2020).

    ``root`` may be the unzipped top folder itself (``.../Lucchi++``) or the folder that holds
    it. ``layout`` maps each split to its (image, label) folder names.
    """
    key = dataset.lower()
    if key not in CASSER_FOLDERS:
        raise InputError(f"casser_files dataset: expected one of {sorted(CASSER_FOLDERS)}, "
                         f"got {dataset!r}")
    root = Path(root)
    candidates = [root, root / CASSER_FOLDERS[key]]
    base = next((c for c in candidates
                 if all((c / name).is_dir() for pair in layout.values() for name in pair)), None)
    if base is None:
        base = candidates[1] if candidates[1].is_dir() else root
        expected = [base / name for pair in layout.values() for name in pair]
        listing = "\n".join(f"  {p}/{'' if p.is_dir() else '  (missing)'}" for p in expected)
        raise InputError(
            f"{CASSER_FOLDERS[key]} data set folder '{root}': expected these folders of PNG "
            f"slices:\n{listing}\nGet the data from {CASSER_PAGE} or with "
            f"{_download_hint(key)}.")
    return {split: (base / image, base / label) for split, (image, label) in layout.items()}


def open_tif_volume(path: str | Path, cache_dir: str | Path | None = None) -> np.ndarray:
    """A multi-page TIFF as a (D, H, W) array, memory-mapped where the file allows.

    Uncompressed contiguous TIFFs come back as ``np.memmap`` (read-only). Compressed ones are
    decoded in full (logged), unless ``cache_dir`` is given: then they are decoded once into an
    uncompressed ``.npy`` there (keyed by path, size and modification time) and mapped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"TIFF volume not found: '{path}'")
    check_grayscale_tiff(path)
    try:
        volume = tifffile.memmap(path, mode="r")
    except ValueError as error:  # compressed, tiled or non-contiguous: not mappable
        reason = str(error)
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise InputError(f"could not read '{path}' as a TIFF: {error}") from error
    else:
        return _as_volume(volume, path)
    if cache_dir is not None:
        return _as_volume(_cached_memmap(path, Path(cache_dir)), path)
    log.info("'%s' cannot be memory-mapped (%s); decoding it into memory. Pass cache_dir to "
             "decode it once into a mappable .npy.", path, reason)
    try:
        return _as_volume(np.asarray(tifffile.imread(path)), path)
    except Exception as error:  # noqa: BLE001
        raise InputError(f"could not read '{path}' as a TIFF: {error}") from error


def _as_volume(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array.reshape((1,) + array.shape)
    if array.ndim != 3:
        raise InputError(f"'{path}': expected a grayscale (D, H, W) volume, got shape "
                         f"{array.shape}")
    return array


def _cached_memmap(path: Path, cache_dir: Path) -> np.memmap:
    stat = path.stat()
    key = hashlib.blake2b(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode(),
                          digest_size=8).hexdigest()
    cached = cache_dir / f"{path.stem}-{key}.npy"
    if not cached.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        log.info("decoding compressed '%s' once into '%s' for memory mapping", path, cached)
        handle, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{cached.name}.",
                                            suffix=".part")
        os.close(handle)
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                if len(series.shape) not in (2, 3):
                    raise InputError(f"'{path}': expected a grayscale (D, H, W) volume, got "
                                     f"shape {series.shape}")
                shape = (1,) * (3 - len(series.shape)) + tuple(series.shape)
                out = np.lib.format.open_memmap(tmp_name, mode="w+", dtype=series.dtype,
                                                shape=shape)
                pages = series.pages if len(series.pages) == shape[0] else None
                if pages is None:
                    out[:] = series.asarray().reshape(shape)
                else:
                    for z, page in enumerate(pages):  # page by page: bounded memory
                        out[z] = page.asarray()
                out.flush()
                del out
            os.replace(tmp_name, cached)
        except InputError:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        except Exception as error:  # noqa: BLE001
            Path(tmp_name).unlink(missing_ok=True)
            raise InputError(f"could not decode '{path}' into the cache '{cache_dir}': "
                             f"{error}") from error
    return np.load(cached, mmap_mode="r")


def slice_folder_volume(folder: str | Path) -> np.ndarray:
    """PNG/TIF 2D slices of a folder, sorted numerically (2 before 10), as one (D, H, W) array.

    Colour PNG slices whose R, G and B are equal (labels saved as RGB/RGBA) become grayscale;
    any other colour slice (a colour TIFF always: ``image_io.check_grayscale_tiff``), a slice of
    another shape or dtype, or a mix of file types is refused with the file named.
    """
    return _stack_slices(list_image_files(folder, what="slice"), folder)


def slice_number(path: Path) -> int | None:
    """The number that ends a slice file's name: 145 for ``mask0145.png`` and ``145.png``."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def numbered_slice_files(folder: str | Path) -> dict[int, Path]:
    """``{slice number: file}`` of a folder of slices; every name must end in its number."""
    numbered: dict[int, Path] = {}
    for path in list_image_files(folder, what="slice"):
        number = slice_number(path)
        if number is None:
            raise InputError(f"slice '{path}': its name does not end in a slice number (expected "
                             "e.g. mask0145.png or 145.png)")
        if number in numbered:
            raise InputError(f"slices '{numbered[number]}' and '{path.name}' both have slice "
                             f"number {number}")
        numbered[number] = path
    return numbered


def paired_slice_volumes(image_folder: str | Path,
                         label_folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image, raw labels, slice numbers): the slices of two folders paired by the number in
    their names (``Train_In/mask0145.png`` with ``Train_Out/145.png``), not by sorted position,
    in increasing slice number. Numbers present in one folder only are refused."""
    images, labels = numbered_slice_files(image_folder), numbered_slice_files(label_folder)
    if images.keys() != labels.keys():
        lonely_images = sorted(images.keys() - labels.keys())
        lonely_labels = sorted(labels.keys() - images.keys())
        raise InputError(f"'{image_folder}' and '{label_folder}': images and labels are paired by "
                         f"the slice number in their names, but image slice number(s) "
                         f"{lonely_images[:10]} have no label and label slice number(s) "
                         f"{lonely_labels[:10]} no image")
    numbers = sorted(images)
    if numbers != list(range(numbers[0], numbers[-1] + 1)):
        log.warning("'%s': slice numbers are not consecutive (%d slices from %d to %d); "
                    "neighbouring slices in the volume may not be neighbours in the tissue",
                    image_folder, len(numbers), numbers[0], numbers[-1])
    return (_stack_slices([images[n] for n in numbers], image_folder),
            _stack_slices([labels[n] for n in numbers], label_folder), numbers)


def _stack_slices(files: list[Path], folder: str | Path) -> np.ndarray:
    suffixes = {p.suffix.lower().replace(".tiff", ".tif") for p in files}
    if len(suffixes) > 1:
        examples = {s: next(p.name for p in files if p.suffix.lower().startswith(s))
                    for s in sorted(suffixes)}
        raise InputError(f"slice folder '{folder}': expected one file type, found "
                         f"{', '.join(f'{s} ({n})' for s, n in examples.items())}")
    first = _grayscale_slice(files[0])
    volume = np.empty((len(files),) + first.shape, dtype=first.dtype)
    volume[0] = first
    for z, path in enumerate(files[1:], start=1):
        image = _grayscale_slice(path)
        if image.shape != first.shape or image.dtype != first.dtype:
            raise InputError(f"slice '{path}': shape {image.shape} {image.dtype}, but "
                             f"'{files[0].name}' (the first slice) is {first.shape} "
                             f"{first.dtype}; all slices of a volume must match")
        volume[z] = image
    return volume


def _grayscale_slice(path: Path) -> np.ndarray:
    image = read_array(path)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise InputError(f"slice '{path}': expected a grayscale slice (or R = G = B), got "
                             "colour pixels")
        image = rgb[..., 0]
    if image.ndim != 2:
        raise InputError(f"slice '{path}': expected a 2D slice, got shape {image.shape}")
    return image


def binary_labels(volume: np.ndarray, source: str | Path,
                  ignore_values: Iterable[int] = ()) -> np.ndarray:
    """Labels {0, 255} or {0, 1} (mitochondria = the high value) as a bool volume.

    Values in ``ignore_values`` (e.g. Kasthuri++'s 2 outside the tissue) are read as
    background. Anything else is refused, naming ``source`` and the values found. A mapped
    volume is scanned a few slices at a time, so memory stays bounded by the bool result.
    """
    volume = np.asarray(volume) if not isinstance(volume, np.ndarray) else volume
    if volume.dtype == bool:
        return np.array(volume, dtype=bool)
    ignore = {int(v) for v in ignore_values}
    found = _distinct_values(volume)
    levels = found - ignore
    if not (levels <= {0, 255} or levels <= {0, 1}):
        shown = sorted(found)[:12]
        raise InputError(f"labels '{source}': expected values {{0, 255}} or {{0, 1}}"
                         f"{f' (plus ignored {sorted(ignore)})' if ignore else ''}, found "
                         f"{len(found)} distinct value(s): {shown}"
                         f"{' ...' if len(found) > len(shown) else ''}")
    high = 255 if 255 in levels else 1
    labels = np.empty(volume.shape, dtype=bool)
    for z in range(0, len(volume), _CHUNK_SLICES):
        np.equal(volume[z:z + _CHUNK_SLICES], high, out=labels[z:z + _CHUNK_SLICES])
    ignored = found & ignore
    if ignored:
        log.info("labels '%s': value(s) %s read as background (ignore values)", source,
                 sorted(ignored))
    return labels


def label_ignore_mask(volume: np.ndarray, ignore_values: Iterable[int]) -> np.ndarray:
    """True where a raw label volume holds one of ``ignore_values``."""
    return np.isin(np.asarray(volume), list(ignore_values))


def _distinct_values(volume: np.ndarray) -> set[int | float]:
    if volume.ndim == 0 or volume.shape[0] == 0:
        return set()
    if volume.dtype.kind == "u" and volume.dtype.itemsize == 1:
        counts = np.zeros(256, dtype=np.int64)
        for z in range(0, volume.shape[0], _CHUNK_SLICES):
            counts += np.bincount(np.asarray(volume[z:z + _CHUNK_SLICES]).ravel(),
                                  minlength=256)
        return {int(v) for v in np.flatnonzero(counts)}
    values: set = set()
    for z in range(0, volume.shape[0], _CHUNK_SLICES):
        values.update(np.unique(np.asarray(volume[z:z + _CHUNK_SLICES])).tolist())
        if len(values) > 64:  # clearly not a binary label volume; enough for the message
            break
    return {int(v) if float(v).is_integer() else v for v in values}


def read_labels(path: str | Path, ignore_values: Iterable[int] = (),
                cache_dir: str | Path | None = None) -> np.ndarray:
    """A label volume (a multi-page TIFF or a folder of slices) as bool, mitochondria True."""
    path = Path(path)
    raw = slice_folder_volume(path) if path.is_dir() else open_tif_volume(path, cache_dir)
    return binary_labels(raw, path, ignore_values)
