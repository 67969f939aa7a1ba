"""Write a prediction as an OME-Zarr image (NGFF 0.5 on Zarr v3): chunked, compressed, with a
multiscale pyramid and the voxel size, so napari and other OME-Zarr viewers open it; block by
block, resumably.

    output = OmeZarrOutput.create(path, shape, "float32", chunks, voxel_size_nm, job=record)
    output.write(block.core, values); output.mark_done(block.key)   # any order, any process
    output.finish()                                                # pyramid levels 1..n

Finished blocks are recorded as empty files in ``<path>/.mitoseg/blocks/`` (created atomically,
so several processes can record at once); ``OmeZarrOutput.resume`` reopens an unfinished
output made for the same job and tells which blocks are done. An existing output is never
replaced unless ``overwrite=True``; one made for another job is refused with the difference.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitoseg.errors import InputError

STATE = ".mitoseg"


class OmeZarrOutput:
    """An OME-Zarr image being written: level 0 block by block, the pyramid at the end."""

    def __init__(self, path: Path, group: Any) -> None:
        self.path, self.group = path, group
        self.level0 = group["0"]

    @classmethod
    def create(cls, path: str | Path, shape: Sequence[int], dtype: str | np.dtype,
               chunks: Sequence[int], voxel_size_nm: Sequence[float] | None,
               job: dict[str, Any], levels: int = 3, name: str = "prediction",
               overwrite: bool = False) -> OmeZarrOutput:
        """A new, empty output (fill value 0). ``job``: what made it (checkpoint, settings,
        input), stored so that a resume can check it continues the same job."""
        import zarr

        path = Path(path)
        if path.exists():
            if not overwrite:
                raise InputError(f"output '{path}' exists; it is never replaced unless asked "
                                 "(overwrite=true), and an unfinished one of the same job is "
                                 "resumed (resume=true)")
            shutil.rmtree(path)
        shape = tuple(int(n) for n in shape)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        scales = _level_shapes(shape, levels)
        for number, level_shape in enumerate(scales):
            group.create_array(str(number), shape=level_shape, dtype=np.dtype(dtype),
                               chunks=tuple(min(c, n) for c, n in zip(chunks, level_shape)),
                               fill_value=0)
        voxel = [float(v) for v in voxel_size_nm] if voxel_size_nm is not None else [1.0] * 3
        datasets = [{"path": str(number), "coordinateTransformations": [
            {"type": "scale", "scale": [voxel[0] / 1000.0, voxel[1] / 1000.0 * 2 ** number,
                                        voxel[2] / 1000.0 * 2 ** number]}]}
            for number in range(len(scales))]
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{
            "name": name, "datasets": datasets,
            "axes": [{"name": axis, "type": "space", "unit": "micrometer"} for axis in "zyx"]}]}
        group.attrs["mitoseg"] = {"job": job, "complete": False,
                                  "voxel_size_known": voxel_size_nm is not None}
        (path / STATE / "blocks").mkdir(parents=True)
        return cls(path, group)

    @classmethod
    def resume(cls, path: str | Path, job: dict[str, Any]) -> OmeZarrOutput:
        """Reopen an unfinished output of the same ``job``."""
        import zarr

        path = Path(path)
        try:
            group = zarr.open_group(str(path), mode="r+")
        except Exception as error:  # noqa: BLE001 - not a Zarr group at all
            raise InputError(f"cannot resume '{path}': not an OME-Zarr output ({error})") from error
        record = dict(group.attrs.get("mitoseg", {}))
        if record.get("complete"):
            raise InputError(f"output '{path}' is already complete; nothing to resume")
        if not (path / STATE / "blocks").is_dir():
            raise InputError(f"cannot resume '{path}': it is not an unfinished mitoseg output")
        if record.get("job") != job:
            diff = sorted(k for k in set(job) | set(record.get("job", {}))
                          if job.get(k) != record.get("job", {}).get(k))
            raise InputError(f"cannot resume '{path}': it was made by another job (differs in "
                             f"{diff}); choose another output or overwrite=true")
        return cls(path, group)

    @classmethod
    def open(cls, path: str | Path) -> OmeZarrOutput:
        """An output being written, opened by another process (a worker) to write its blocks."""
        import zarr

        return cls(Path(path), zarr.open_group(str(path), mode="r+"))

    @staticmethod
    def is_complete(path: str | Path, job: dict[str, Any]) -> bool:
        """Whether ``path`` is a finished output of ``job`` (one of another job is refused)."""
        import zarr

        if not Path(path).exists():
            return False
        record = dict(zarr.open_group(str(path), mode="r").attrs.get("mitoseg", {}))
        if record.get("job") != job:
            raise InputError(f"output '{path}' was made by another job; choose another output "
                             "or overwrite=true")
        return bool(record.get("complete"))

    def done(self) -> set[str]:
        return {p.name for p in (self.path / STATE / "blocks").iterdir()}

    def write(self, box: Sequence[slice], values: np.ndarray) -> None:
        self.level0[tuple(box)] = values

    def mark_done(self, key: str) -> None:
        (self.path / STATE / "blocks" / key).touch()

    def finish(self, slices_per_step: int = 8) -> None:
        """Make the pyramid (level k = level k-1 averaged over 2 x 2 in y, x; masks keep their
        values by taking every second voxel) and mark the output complete."""
        previous = self.level0
        number = 1
        while str(number) in self.group:
            level = self.group[str(number)]
            for start in range(0, level.shape[0], slices_per_step):
                stop = min(start + slices_per_step, level.shape[0])
                level[start:stop] = _halve(np.asarray(previous[start:stop]), level.shape[1:])
            previous, number = level, number + 1
        record = dict(self.group.attrs["mitoseg"])
        self.group.attrs["mitoseg"] = {**record, "complete": True}
        shutil.rmtree(self.path / STATE)


def _level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    shapes = [shape]
    while len(shapes) < levels and min(shapes[-1][1:]) >= 2:
        depth, height, width = shapes[-1]
        shapes.append((depth, -(-height // 2), -(-width // 2)))
    return shapes


def _halve(block: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """2 x 2 mean in y, x for floats (an odd edge averages what it has); every second voxel
    for integer masks."""
    if not np.issubdtype(block.dtype, np.floating):
        return block[:, ::2, ::2]
    depth, height, width = block.shape
    padded = np.pad(block.astype(np.float64), ((0, 0), (0, height % 2), (0, width % 2)),
                    mode="edge")
    out = padded.reshape(depth, target[0], 2, target[1], 2).mean(axis=(2, 4))
    return out.astype(block.dtype)



def convert_to_ome_zarr(source: Any, path: str | Path, voxel_size_nm: Sequence[float] | None,
                        slices_per_chunk: int = 16, levels: int = 3,
                        overwrite: bool = False) -> OmeZarrOutput:
    """Copy a (D, H, W) volume (any lazily sliced array: a ``volume_sources.Volume``, a memmap,
    an HDF5 dataset) into a new OME-Zarr image, ``slices_per_chunk`` slices at a time."""
    shape = tuple(int(n) for n in source.shape)
    out = OmeZarrOutput.create(path, shape, np.dtype(source.dtype),
                               (slices_per_chunk, *shape[1:]), voxel_size_nm,
                               {"converted_from": str(getattr(source, "source", "array"))},
                               levels=levels, overwrite=overwrite)
    for start in range(0, shape[0], slices_per_chunk):
        stop = min(start + slices_per_chunk, shape[0])
        out.write((slice(start, stop), slice(None), slice(None)), np.asarray(source[start:stop]))
    out.finish()
    return out
