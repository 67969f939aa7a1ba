"""Training volumes held on the training device, for cutting patches there (``sampling=device``).

Every training volume is flattened into one joint buffer on the device (image, foreground and,
when the data set ignores voxels, the ignore mask), with each volume's offset, slice size and
row length in small index tensors. A batch of windows from any mix of volumes, of any shapes, is
then cut with one gather per buffer: no padding, no per-volume loop, and no value read back from
the device (a loop over the volumes present in a batch would have to read them back first).

The patches equal what ``RandomPatchDataset`` returns from the same volumes at the same corners:
the image goes through the same ``Normalization``, the mask is ``labels > 0`` and ``valid`` is
1 where a voxel is not ignored (all ones for a volume without an ignore mask), all float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mitoseg.data.normalization import Normalization, native_dtype
from mitoseg.errors import InputError

# The share of the device's free memory the volumes may take: training needs the rest.
MAX_SHARE_OF_FREE = 0.5
_SLICES_PER_COPY = 16  # host memory bound while copying: this many slices at a time


def storage_dtype(dtype: np.dtype) -> torch.dtype:
    """The device dtype an image is held in: its own, exactly, and indexable on every device.
    uint16 is held as the int16 of the same bits (``_restore`` turns it back); float64 as
    float32 (the value the loader's ``Normalization`` computes with anyway); either byte order."""
    dtype = native_dtype(dtype)
    held = {np.dtype(np.uint16): torch.int16, np.dtype(np.uint32): torch.int64,
            np.dtype(np.float64): torch.float32, np.dtype(np.bool_): torch.uint8}
    if dtype in held:
        return held[dtype]
    if dtype.kind not in "uif" or dtype == np.dtype(np.uint64):
        raise InputError(f"sampling=device: images of dtype {dtype} cannot be held on the "
                         "device; use sampling=loader")
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def _tensor(block: np.ndarray) -> torch.Tensor:
    """A host tensor over ``block`` (copied only if it is read-only or not contiguous)."""
    return torch.from_numpy(np.require(block, requirements=["C", "W"]))


def _as_held(block: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if block.dtype == np.uint16:
        return _tensor(block.view(np.int16))
    return _tensor(block).to(dtype)


def _restore(values: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
    """Held image values back to their own numbers (uint16 from its int16 bits)."""
    if np.dtype(dtype) == np.uint16:
        return values.to(torch.int32) & 0xFFFF
    return values


class DeviceVolumes:
    """The training volumes on ``device``, flattened into joint buffers.

    Args:
        volumes: per training volume, (image, labels, ignored or None), each (D, H, W)
            array-like: numpy, memory maps or lazy views read by whole slices.
        normalization: the network input scaling fitted on the training slices.
        with_valid: also hold the ignore mask (the batches carry ``valid``).
        device: where to hold them.
    """

    def __init__(self, volumes: Sequence[tuple[Any, Any, Any | None]],
                 normalization: Normalization, with_valid: bool, device: torch.device) -> None:
        if not volumes:
            raise InputError("sampling=device: no training volume to hold on the device")
        dtypes = [native_dtype(image.dtype) for image, _, _ in volumes]  # '>u2' as uint16
        for dtype in dtypes:
            storage_dtype(dtype)  # refuses what cannot be held
        # volumes of several dtypes share the one that holds all their values (uint8 and
        # uint16: uint16); the loader's Normalization sees the same numbers either way
        self.image_dtype = np.result_type(*dtypes)
        self.normalization, self.with_valid = normalization, bool(with_valid)
        self.device = torch.device(device)
        shapes = [tuple(int(n) for n in image.shape) for image, _, _ in volumes]
        sizes = [int(np.prod(shape)) for shape in shapes]
        held = storage_dtype(self.image_dtype)
        check_fits(sum(sizes), held, self.with_valid, self.device, shapes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.image = torch.empty(sum(sizes), dtype=held, device=self.device)
        self.foreground = torch.empty(sum(sizes), dtype=torch.bool, device=self.device)
        self.ignored = (torch.empty(sum(sizes), dtype=torch.bool, device=self.device)
                        if self.with_valid else None)
        for (image, labels, ignored), shape, offset in zip(volumes, shapes, offsets):
            self._copy_in(image, labels, ignored, shape, int(offset))
        long = dict(dtype=torch.int64, device=self.device)
        self.offsets = torch.as_tensor(offsets, **long)
        self.slice_sizes = torch.as_tensor([h * w for _, h, w in shapes], **long)
        self.row_lengths = torch.as_tensor([w for _, _, w in shapes], **long)

    def _copy_in(self, image: Any, labels: Any, ignored: Any | None,
                 shape: tuple[int, int, int], offset: int) -> None:
        area = shape[1] * shape[2]
        for z0 in range(0, shape[0], _SLICES_PER_COPY):
            z1 = min(z0 + _SLICES_PER_COPY, shape[0])
            window = (slice(z0, z1), slice(None), slice(None))
            part = slice(offset + z0 * area, offset + z1 * area)
            block = np.asarray(image[window]).astype(self.image_dtype, copy=False)
            self.image[part].copy_(_as_held(block, self.image.dtype).ravel())
            self.foreground[part].copy_(_tensor(np.asarray(labels[window]) > 0).ravel())
            if self.ignored is not None:
                block = (np.zeros((z1 - z0, *shape[1:]), bool) if ignored is None
                         else np.asarray(ignored[window], bool))
                self.ignored[part].copy_(_tensor(block).ravel())

    def cut(self, origins: torch.Tensor, volume_numbers: torch.Tensor,
            patch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Normalized image, mask and valid (or None) patches (B, 1, *patch), float32, of the
        windows with corners ``origins`` (B, 3) (z, y, x; in 2D z is the slice) in volumes
        ``volume_numbers`` (B,), both on this device."""
        linear = self.window_indices(origins, volume_numbers, patch)
        image = self.normalization(_restore(self.image[linear], self.image_dtype))[:, None]
        mask = self.foreground[linear].to(torch.float32)[:, None]
        valid = None if self.ignored is None else (~self.ignored[linear]).to(torch.float32)[:, None]
        return image, mask, valid

    def window_indices(self, origins: torch.Tensor, volume_numbers: torch.Tensor,
                       patch: Sequence[int]) -> torch.Tensor:
        """Positions in the joint buffers of every voxel of each window: (B, *patch) int64."""
        origins, volume = origins.long(), volume_numbers.long()
        shape = (origins.shape[0],) + (1,) * len(patch)  # broadcasts over a window
        steps = [torch.arange(int(size), device=origins.device) for size in patch]
        slice_size = self.slice_sizes[volume].view(shape)
        first = self.offsets[volume].view(shape) + origins[:, 0].view(shape) * slice_size
        rows = origins[:, 1].view(shape) + steps[-2].view(-1, 1)
        columns = origins[:, 2].view(shape) + steps[-1]
        linear = first + rows * self.row_lengths[volume].view(shape) + columns
        if len(patch) == 3:  # the window's further slices
            linear = linear + steps[0].view(-1, 1, 1) * slice_size
        return linear


def check_fits(voxels: int, image_dtype: torch.dtype, with_valid: bool, device: torch.device,
               shapes: Sequence[tuple[int, ...]]) -> None:
    """Refuse volumes that would take more than ``MAX_SHARE_OF_FREE`` of a GPU's free memory."""
    if device.type != "cuda":
        return
    per_voxel = torch.empty((), dtype=image_dtype).element_size() + 1 + int(with_valid)
    needed = voxels * per_voxel
    free, _ = torch.cuda.mem_get_info(device)
    if needed > MAX_SHARE_OF_FREE * free:
        raise InputError(f"sampling=device holds the training volumes {list(shapes)} on "
                         f"{device}: {needed / 2**30:.2f} GiB, more than "
                         f"{MAX_SHARE_OF_FREE:.0%} of its {free / 2**30:.2f} GiB free; use "
                         "sampling=loader (patches read by DataLoader workers)")
