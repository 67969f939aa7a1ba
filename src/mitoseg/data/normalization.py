"""Network input scaling: the one owner of how raw intensities become network inputs.

Every path that feeds a network -- training patches, validation tiles, the test after
training, ``evaluate.py``, ``segment.py``, the study -- applies the same ``Normalization``,
fitted once on the training data and stored in every checkpoint (``mitoseg_normalization``).

Modes:
- ``zscore``: each 2D image by its own mean and std (fluorescence, paper 000).
- ``training_zscore``: (x - mean) / std with the mean and std of the *training slices* of an EM
  volume, fitted once and stored; the same numbers then scale every input, so a slice gives the
  same network input in training, evaluation and segmentation.
- ``scale``: x / the training data's integer range (255 for uint8, 65535 for uint16), i.e. [0, 1].
- ``none``: intensities as they are (cast to float32).

A fitted EM normalization (the three modes above) also keeps the training volumes' dtype: its
numbers are in that dtype's units, so an input of another dtype (a uint16 export of a uint8
recording: 257 times the values; floats already in [0, 1]) is refused where raw volumes enter
(``check_input``) instead of reaching the network at another scale.

Works on numpy arrays and torch tensors alike (any shape; "per image" means the last two axes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from mitoseg.data.slabs import slices_in_slabs
from mitoseg.errors import InputError

MODES = ("zscore", "training_zscore", "scale", "none")
EM_MODES = ("training_zscore", "scale", "none")  # per-image z-scores of patches != of slices
_EPS = 1e-6
_CHUNK = 8  # slices per chunk when fitting statistics on a (possibly mapped) volume


@dataclass(frozen=True)
class Normalization:
    """How raw intensities become network inputs; see the module docstring for the modes."""

    mode: str
    mean: float | None = None
    std: float | None = None
    scale: float | None = None
    dtype: str | None = None  # the training intensities' dtype (None: any, e.g. per image)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"dataset option 'normalize' must be one of {list(MODES)}, "
                             f"got {self.mode!r}")
        if self.mode == "training_zscore" and (self.mean is None or not self.std
                                               or self.std <= 0):
            raise InputError(f"normalization 'training_zscore' needs a mean and a std > 0, "
                             f"got mean={self.mean}, std={self.std}")
        if self.mode == "scale" and (not self.scale or self.scale <= 0):
            raise InputError(f"normalization 'scale' needs a scale > 0, got {self.scale}")

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Float32 network input of the same shape (numpy in, numpy out; torch likewise)."""
        x = x.float() if isinstance(x, torch.Tensor) else np.asarray(x).astype(np.float32)
        if self.mode == "none":
            return x
        if self.mode == "scale":
            return x / np.float32(self.scale)
        if self.mode == "training_zscore":
            return (x - np.float32(self.mean)) / np.float32(self.std)
        return _per_image_zscore(x)

    def check_input(self, dtype: Any, where: str) -> None:
        """Refuse raw intensities of ``dtype`` when training's were of another one (their
        numbers would mean other intensities); a normalization without a dtype (per image, or
        from a checkpoint written before it was kept) takes any. Byte order does not count: a
        big-endian uint16 TIFF (Fiji's default) holds the same numbers as a little-endian one."""
        if self.dtype is not None and native_dtype(dtype) != native_dtype(self.dtype):
            raise InputError(f"{where}: intensities of dtype {np.dtype(dtype)}, but the network "
                             f"was trained on {self.dtype} (normalize={self.mode}); convert this "
                             f"input to {self.dtype}, in the same intensity units as the "
                             "training volumes")

    def range_unit(self) -> float:
        """The network-input span of the raw data's whole intensity range (its integer dtype's,
        e.g. 0-255; float data: taken as 0-1, so float volumes in other units get amounts
        scaled accordingly weaker): what an augmentation's absolute amount of 1 means, so
        that 0.1 is a tenth of the range whatever the mode ('scale': 1; 'training_zscore':
        range / std; 'none': the range). Per-image 'zscore' has no one span: refused."""
        if self.mode == "zscore":
            raise InputError("normalization 'zscore' scales each image by its own std, so an "
                             "intensity augmentation's absolute amount has no one meaning; use "
                             "a relative one (contrast, gamma)")
        span = 1.0
        if self.dtype is not None and np.dtype(self.dtype).kind in "ui":
            span = dtype_range(self.dtype)
        if self.mode == "scale":
            return span / float(self.scale)
        if self.mode == "training_zscore":
            return span / float(self.std)
        return span

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> "Normalization":
        return cls(**{k: stored[k] for k in ("mode", "mean", "std", "scale", "dtype")
                      if k in stored})


def _per_image_zscore(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if x.ndim < 2:
        raise InputError(f"normalization 'zscore' is per 2D image, got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True, unbiased=False).clamp(min=_EPS)
        return (x - mean) / std
    if x.ndim == 2:
        return (x - x.mean()) / max(float(x.std()), _EPS)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = np.maximum(x.std(axis=(-2, -1), keepdims=True), _EPS)
    return ((x - mean) / std).astype(np.float32)


def native_dtype(dtype: Any) -> np.dtype:
    """``dtype`` in this machine's byte order: the same numbers, whatever order a file stores
    them in (an uncompressed big-endian TIFF maps as '>u2', a decoded one reads as uint16)."""
    return np.dtype(dtype).newbyteorder("=")


def dtype_range(dtype: np.dtype) -> float:
    """The integer range a 'scale' normalization divides by; refuses non-integer data."""
    dtype = np.dtype(dtype)
    if dtype == bool or dtype.kind not in "ui":
        raise InputError(f"normalization 'scale' needs integer intensities (uint8, uint16, ...), "
                         f"got {dtype}; use normalize=training_zscore or none")
    return float(np.iinfo(dtype).max)


def fit_normalization(mode: str, volume: Any, z_indices: Iterable[int] | None = None,
                      allowed: Iterable[str] = MODES) -> Normalization:
    """The normalization of ``mode`` fitted on ``volume[z_indices]`` (all slices by default).

    ``training_zscore`` reads the slices a few at a time (float64 sums), so a memory-mapped
    volume is never loaded whole.
    """
    return fit_normalization_over(mode, [(volume, z_indices)], allowed)


def fit_normalization_over(mode: str, parts: Sequence[tuple[Any, Iterable[int] | None]],
                           allowed: Iterable[str] = MODES) -> Normalization:
    """``fit_normalization`` over the training slices of several volumes at once: ``parts``
    is [(volume, z_indices or None), ...]. Every mode but the per-image ``zscore`` needs them
    to share one dtype, which it keeps (``check_input``)."""
    allowed = tuple(allowed)
    if mode not in allowed:
        raise InputError(f"dataset option 'normalize' must be one of {list(allowed)} for this "
                         f"data set, got {mode!r}")
    if mode == "zscore":
        return Normalization(mode)
    dtypes = sorted({str(native_dtype(volume.dtype)) for volume, _ in parts})
    if len(dtypes) != 1:
        raise InputError(f"normalization {mode!r}: the training volumes have different dtypes "
                         f"{dtypes}, so their numbers mean different intensities; convert "
                         "them to one dtype")
    dtype = dtypes[0]
    if mode == "scale":
        return Normalization(mode, scale=dtype_range(dtype), dtype=dtype)
    if mode == "none":
        return Normalization(mode, dtype=dtype)
    total = total_sq = 0.0
    count = 0
    for volume, z_indices in parts:
        z = list(range(volume.shape[0])) if z_indices is None else sorted(int(i) for i in z_indices)
        for block in _blocks_of_slices(volume, z, _CHUNK):
            block = np.asarray(block, dtype=np.float64)
            total += float(block.sum())
            total_sq += float(np.square(block).sum())
            count += block.size
    if not count:
        raise InputError("normalization 'training_zscore': no training slices to fit on")
    mean = total / count
    std = max(float(np.sqrt(max(total_sq / count - mean * mean, 0.0))), _EPS)
    return Normalization(mode, mean=round(mean, 6), std=round(std, 6), dtype=dtype)


def _blocks_of_slices(volume: Any, z: list[int], size: int) -> Iterator[np.ndarray]:
    """Slices ``z`` (sorted) of a volume, ``size`` at a time (the last block may hold fewer),
    read in slabs of whole storage chunks (``slices_in_slabs``): reading a chunked Zarr or HDF5
    volume slice by slice decompresses each chunk once for every slice of it."""
    pending: list[np.ndarray] = []
    for _, image in slices_in_slabs(volume, z):
        pending.append(image)
        if len(pending) == size:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)