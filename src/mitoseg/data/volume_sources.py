"""Open a user's (D, H, W) volume lazily from a TIFF stack, a folder of slices, an HDF5 dataset,
or a Zarr / OME-Zarr array, by one string.

    open_volume("stack.tif")                 # multi-page TIFF (memory-mapped or read by page)
    open_volume("slices/")                   # a folder of 2D TIF/PNG slices, in natural order
    open_volume("volume.h5:/raw")            # an HDF5 dataset
    open_volume("volume.zarr")               # a Zarr array
    open_volume("volume.ome.zarr", level=1)  # one level of an OME-Zarr multiscale image

Nothing is read whole: every source answers ``shape``, ``dtype`` and numpy-style slicing of
(z, y, x) blocks, so patches and prediction blocks read only what they touch. The voxel size
(nm, z y x) comes from OME-Zarr metadata where the file has it (``Volume.voxel_size_nm``), else
None; ``check_voxel_size`` refuses a given size that disagrees with the file's. An ImageJ TIFF's
calibration is read by ``tiff_voxel_size_nm`` (segment.py's TIFF outputs keep it), not by
``open_volume``. A TIFF of more than one sample per pixel (colour) is refused
(``image_io.check_grayscale_tiff``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from mitoseg.data.image_io import check_grayscale_tiff, list_image_files, read_array
from mitoseg.errors import InputError

NM_PER_UNIT = {"nanometer": 1.0, "nm": 1.0, "micrometer": 1000.0, "um": 1000.0,
               "micron": 1000.0, "millimeter": 1e6, "mm": 1e6, "angstrom": 0.1}
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass(frozen=True)
class Volume:
    """A lazily read (D, H, W) array and where it came from."""

    array: Any  # anything with .shape, .dtype and numpy slicing
    source: str
    voxel_size_nm: tuple[float, float, float] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.array[index])


def open_volume(spec: str | Path, level: int | None = None) -> Volume:
    """The volume named by ``spec`` (see the module docstring); ``level``: an OME-Zarr
    multiscale level (0 = full resolution; default 0)."""
    text = str(spec)
    path_text, _, inner = split_inner(text)
    path = Path(path_text).expanduser()
    if not path.exists():
        raise InputError(f"volume not found: '{path}' (from '{text}')")
    if path.suffix.lower() in HDF5_SUFFIXES:
        volume = _hdf5(path, inner, text)
    elif path.suffix.lower() == ".zarr" or (path / "zarr.json").exists() or (
            path / ".zarray").exists() or (path / ".zgroup").exists():
        volume = _zarr(path, inner, level, text)
    elif path.is_dir():
        volume = Volume(SliceFolder(path), text)
    elif path.suffix.lower() in (".tif", ".tiff"):
        volume = Volume(_tiff(path), text)
    else:
        raise InputError(f"volume '{text}': unknown kind; expected a .tif/.tiff stack, a folder "
                         "of slices, 'file.h5:/dataset' or a .zarr / .ome.zarr")
    if len(volume.shape) != 3:
        raise InputError(f"volume '{text}': expected 3 axes (z, y, x), got shape {volume.shape}")
    return volume


def resolve_source(spec: str | Path, root: str | Path | None) -> str:
    """``spec`` with a relative file path read from ``root`` ('a.h5:/raw' -> '<root>/a.h5:/raw');
    an absolute path, or no ``root``, leaves it as it is."""
    text = str(spec)
    path_text, separator, inner = split_inner(text)
    if root is None or Path(path_text).expanduser().is_absolute():
        return text
    return f"{Path(root) / path_text}{separator}{inner}"


def split_inner(text: str) -> tuple[str, str, str]:
    """'file.h5:/a/b' -> ('file.h5', ':', '/a/b'); a Windows drive letter is not a separator."""
    for suffix in (*HDF5_SUFFIXES, ".zarr"):
        marker = suffix + ":"
        at = text.lower().find(marker)
        if at >= 0:
            return text[:at + len(suffix)], ":", text[at + len(marker):]
    return text, "", ""


def _hdf5(path: Path, inner: str, text: str) -> Volume:
    import h5py

    handle = h5py.File(path, "r")
    if not inner:
        names = _hdf5_datasets(handle)
        raise InputError(f"volume '{text}': name the dataset inside the HDF5 file as "
                         f"'{path}:/<dataset>'; it holds {names or 'no datasets'}")
    if inner not in handle or not isinstance(handle[inner], h5py.Dataset):
        names = _hdf5_datasets(handle)
        raise InputError(f"volume '{text}': no dataset '{inner}' in '{path}'; it holds "
                         f"{names or 'no datasets'}")
    return Volume(handle[inner], text)


def _hdf5_datasets(handle: Any) -> list[str]:
    import h5py

    names: list[str] = []
    handle.visititems(lambda name, item: names.append("/" + name)
                      if isinstance(item, h5py.Dataset) else None)
    return names


def _zarr(path: Path, inner: str, level: int | None, text: str) -> Volume:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:  # noqa: BLE001 - any zarr failure is a bad store
        raise InputError(f"volume '{text}': could not open as Zarr: {error}") from error
    if inner:
        key = inner.strip("/")
        if isinstance(node, zarr.Array) or key not in node:
            raise InputError(f"volume '{text}': no array '{key}' in '{path}'")
        node = node[key]
    if isinstance(node, zarr.Array):
        if level not in (None, 0):
            raise InputError(f"volume '{text}': level {level} asked, but it is a single array")
        return Volume(node, text, _voxel_size_from_parent(path, inner))
    multiscales = _multiscales(dict(node.attrs))
    if not multiscales:
        arrays = [name for name, _ in node.arrays()]
        raise InputError(f"volume '{text}': a Zarr group without OME-Zarr multiscales metadata; "
                         f"name an array inside it as '{path}:/<array>' ({arrays})")
    datasets = multiscales[0]["datasets"]
    index = 0 if level is None else int(level)
    if not 0 <= index < len(datasets):
        raise InputError(f"volume '{text}': level {index} asked, the multiscale has levels "
                         f"0-{len(datasets) - 1}")
    dataset = datasets[index]
    return Volume(node[dataset["path"]], text,
                  _scale_nm(multiscales[0], dataset, text))


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """OME-NGFF 0.5 keeps them under 'ome', 0.4 at the top level."""
    return (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales") or []


def _scale_nm(multiscale: dict[str, Any], dataset: dict[str, Any],
              text: str) -> tuple[float, float, float] | None:
    axes = multiscale.get("axes") or []
    scale = None
    for transform in (*multiscale.get("coordinateTransformations", []),
                      *dataset.get("coordinateTransformations", [])):
        if transform.get("type") == "scale":
            values = np.asarray(transform["scale"], float)
            scale = values if scale is None else scale * values
    if scale is None or len(axes) != len(scale):
        return None
    spatial = [(axis, value) for axis, value in zip(axes, scale)
               if (axis.get("type") if isinstance(axis, dict) else None) in ("space", None)
               and (axis.get("name") if isinstance(axis, dict) else axis) in ("z", "y", "x")]
    if len(spatial) != 3:
        return None
    sizes = []
    for axis, value in spatial:
        unit = str(axis.get("unit", "nanometer")).lower() if isinstance(axis, dict) else "nanometer"
        if unit not in NM_PER_UNIT:
            raise InputError(f"volume '{text}': OME-Zarr axis unit '{unit}' is not a length unit "
                             f"mitoseg knows ({sorted(NM_PER_UNIT)})")
        sizes.append(float(value) * NM_PER_UNIT[unit])
    return tuple(sizes)  # type: ignore[return-value]


def _voxel_size_from_parent(path: Path, inner: str) -> tuple[float, float, float] | None:
    """An array inside an OME-Zarr image ('image.ome.zarr:/0') takes its level's scale."""
    if not inner:
        return None
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.is_file():
            attrs = json.loads(meta.read_text())
            attrs = attrs.get("attributes", attrs)
            multiscales = _multiscales(attrs)
            if multiscales:
                for dataset in multiscales[0]["datasets"]:
                    if dataset["path"].strip("/") == inner.strip("/"):
                        return _scale_nm(multiscales[0], dataset, str(path))
    return None


def _tiff(path: Path) -> Any:
    """Uncompressed TIFFs are memory-mapped; others are read page by page through Zarr."""
    check_grayscale_tiff(path)
    try:
        return tifffile.memmap(path, mode="r")
    except (ValueError, OSError):
        pass
    import zarr

    try:
        return zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(f"could not read '{path}' as a TIFF stack: {error}") from error


class SliceFolder:
    """A folder of equally shaped 2D slices as a lazy (D, H, W) array: slicing reads only the
    slices it touches."""

    def __init__(self, folder: Path) -> None:
        self.files = list_image_files(folder, what="volume slice")
        first = read_array(self.files[0])
        if first.ndim != 2:
            raise InputError(f"slice folder '{folder}': '{self.files[0].name}' is not a 2D "
                             f"image (shape {first.shape})")
        self.shape = (len(self.files), *first.shape)
        self.dtype = first.dtype
        self.folder = folder

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        z, rest = index[0], index[1:]
        single = isinstance(z, (int, np.integer))
        numbers = [int(z)] if single else range(*(z if isinstance(z, slice)
                                                  else slice(None)).indices(self.shape[0]))
        planes = [self._plane(n)[rest] if rest else self._plane(n) for n in numbers]
        stacked = np.stack(planes) if planes else np.zeros((0, *self.shape[1:]), self.dtype)
        return stacked[0] if single else stacked

    def _plane(self, number: int) -> np.ndarray:
        plane = read_array(self.files[number])
        if plane.shape != self.shape[1:]:
            raise InputError(f"slice folder '{self.folder}': '{self.files[number].name}' has "
                             f"shape {plane.shape}, the first slice {self.shape[1:]}")
        return plane


def tiff_voxel_size_nm(path: str | Path
                       ) -> tuple[float | None, float | None, float | None] | None:
    """The voxel size (z, y, x nm) a TIFF states, or None. Only ImageJ TIFFs with a length unit
    count: their x/y resolution and z spacing are a calibration, while the resolution tags of
    other TIFFs are mostly writers' defaults (72 per inch, 1 per unit). z is None without a
    spacing (a 2D image)."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            metadata = tif.imagej_metadata or {}
            tags = tif.pages[0].tags
            per_unit = [_rational(tags.get(name)) for name in ("YResolution", "XResolution")]
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise InputError(f"could not read '{path}' as a TIFF: {error}") from error
    unit = str(metadata.get("unit", "")).strip().lower()
    for micro in ("\\u00b5", "\u00b5", "\u03bc"):  # ImageJ's escaped µ, the micro sign, mu
        unit = unit.replace(micro, "u")
    if unit not in NM_PER_UNIT:
        return None
    nm = NM_PER_UNIT[unit]
    spacing = metadata.get("spacing")
    y, x = (nm / value if value else None for value in per_unit)
    return (float(spacing) * nm if spacing else None), y, x


def _rational(tag: Any) -> float | None:
    """A TIFF rational tag (numerator, denominator) as a number."""
    if tag is None or not tag.value[1]:
        return None
    return tag.value[0] / tag.value[1]


def check_voxel_size(volume: Volume, given: Sequence[float] | None
                     ) -> tuple[float, float, float] | None:
    """The voxel size to use: the file's, or the given one; both, they must agree (1e-6)."""
    if given is None:
        return volume.voxel_size_nm
    given_nm = tuple(float(v) for v in given)
    if len(given_nm) != 3 or min(given_nm) <= 0:
        raise InputError(f"voxel size for '{volume.source}' must be 3 positive numbers (z, y, x "
                         f"in nm), got {list(given)}")
    if volume.voxel_size_nm is not None and not np.allclose(given_nm, volume.voxel_size_nm,
                                                            rtol=1e-6):
        raise InputError(f"voxel size for '{volume.source}': {list(given_nm)} nm given, but the "
                         f"file's metadata says {list(volume.voxel_size_nm)} nm; drop the given "
                         "value or correct it")
    return given_nm  # type: ignore[return-value]


def check_pair(image: Volume, labels: Volume) -> None:
    """An image and its labels must cover the same voxels."""
    if image.shape != labels.shape:
        raise InputError(f"image '{image.source}' has shape {image.shape} but labels "
                         f"'{labels.source}' have {labels.shape}; they must match voxel for voxel")
