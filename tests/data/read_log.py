"""A volume that logs its reads, for tests of how chunked storage is read."""

from __future__ import annotations

import numpy as np


class ReadLog:
    """A (D, H, W) array that says it is stored in chunks of ``chunk`` slices (as a Zarr array
    says in ``chunks``) and logs every read: its slices, and whether it took whole slices."""

    def __init__(self, data: np.ndarray, chunk: int) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype
        self.chunks = (chunk, *data.shape[1:])
        self.reads: list[tuple[range, bool]] = []

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        z = index[0]
        slices = range(*z.indices(self.shape[0])) if isinstance(z, slice) else range(z, z + 1)
        self.reads.append((slices, all(i == slice(None) for i in index[1:])))
        return self.data[index]

    @property
    def slices_read(self) -> list[range]:
        return [slices for slices, _ in self.reads]
