"""Block-wise prediction into OME-Zarr equals one pass in memory; a killed run resumes to the
identical output; 2 Dask workers give what 1 process gives, also when a worker dies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mitoseg.data.em_sources import synthetic_volumes
from mitoseg.data.ome_zarr_output import OmeZarrOutput
from mitoseg.data.volume_sources import open_volume
from mitoseg.evaluation.chunked import BlockJob, close_client, dask_client, run_dask, run_local
from mitoseg.inference import median_z_filter, net_predictor, reconstruct
from mitoseg.inference.blocks import block_grid, receptive_radius, round_up
from mitoseg.models.nets.unet_paper002 import UNetPaper002

pytest.importorskip("zarr")
SHAPE = (6, 48, 64)
DIVISOR = 4


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNetPaper002(spatial_dims=2, filters=(4, 8, 8), dropout=0.0).eval()


@dataclass(frozen=True)
class TinyPredictor:
    """A picklable factory: full image + 8-fold TTA + z-median 3 with a fixed network.
    ``die_once``: a marker file; the first process to predict without it creates it and dies."""

    die_once: str | None = None
    fail_after: int | None = None

    def __call__(self):
        torch.set_num_threads(1)
        predict = net_predictor(tiny_net(), "cpu", "32-true")
        calls = []

        def probabilities(block: np.ndarray) -> np.ndarray:
            if self.die_once and not os.path.exists(self.die_once):
                Path(self.die_once).touch()
                os._exit(1)  # a worker killed mid-run
            if self.fail_after is not None and len(calls) >= self.fail_after:
                raise KeyboardInterrupt  # the run is stopped
            calls.append(1)
            out = reconstruct(predict, block.astype(np.float32) / 255.0, "full_image", (32, 32),
                              2, tta=True, divisor=DIVISOR).probabilities
            return median_z_filter(out.numpy(), size=3)

        return probabilities


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("vol")
    image = np.asarray(synthetic_volumes(SHAPE, (2, 48, 64)).train_image)
    tifffile.imwrite(folder / "image.tif", image, compression="zlib")
    return str(folder / "image.tif")


def blocks_for():
    radius = receptive_radius(tiny_net(), 2, size=64)
    halo = round_up(radius, DIVISOR)
    return block_grid(SHAPE, (2, 16, 32), (1, halo, halo), (1, DIVISOR, DIVISOR))


def new_output(path: Path) -> OmeZarrOutput:
    return OmeZarrOutput.create(path, SHAPE, "float32", (2, 16, 32), (5, 5, 5), {"test": 1})


def in_memory(source: str) -> np.ndarray:
    return TinyPredictor()()(open_volume(source)[:])


def test_chunked_equals_in_memory_and_a_killed_run_resumes_to_the_same_output(
        tmp_path, source) -> None:
    blocks = blocks_for()
    whole = in_memory(source)
    clean = new_output(tmp_path / "clean.ome.zarr")
    assert run_local(BlockJob(source, None, str(clean.path), TinyPredictor()), blocks, clean,
                     progress=False) == len(blocks)
    clean.finish()
    chunked = open_volume(clean.path)[:]
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=2e-6)  # float32 rounding
    stopped = new_output(tmp_path / "stopped.ome.zarr")
    with pytest.raises(KeyboardInterrupt):
        run_local(BlockJob(source, None, str(stopped.path), TinyPredictor(fail_after=5)),
                  blocks, stopped, progress=False)
    assert len(stopped.done()) == 5
    again = OmeZarrOutput.resume(stopped.path, {"test": 1})
    assert run_local(BlockJob(source, None, str(stopped.path), TinyPredictor()), blocks, again,
                     progress=False) == len(blocks) - 5
    again.finish()
    for level in (0, 1, 2):
        np.testing.assert_array_equal(open_volume(stopped.path, level)[:],
                                      open_volume(clean.path, level)[:])


def test_two_dask_workers_give_the_single_process_output_even_when_one_dies(
        tmp_path, source, monkeypatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    blocks = blocks_for()
    single = new_output(tmp_path / "single.ome.zarr")
    run_local(BlockJob(source, None, str(single.path), TinyPredictor()), blocks, single,
              progress=False)
    client = dask_client("local", workers=2, threads_per_worker=1)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        # Dask's default MALLOC_TRIM_THRESHOLD_ made every block 1.8x slower (page faults)
        trim = client.run(lambda: __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert set(trim.values()) == {None}
        spread = new_output(tmp_path / "dask.ome.zarr")
        run_dask(BlockJob(source, None, str(spread.path), TinyPredictor()), blocks, spread,
                 client, progress=False)
        np.testing.assert_array_equal(open_volume(spread.path)[:], open_volume(single.path)[:])
        marker = tmp_path / "died"
        killed = new_output(tmp_path / "killed.ome.zarr")
        run_dask(BlockJob(source, None, str(killed.path), TinyPredictor(str(marker))), blocks,
                 killed, client, progress=False)
        assert marker.exists()  # a worker did die, and its blocks were redone
        assert killed.done() == {b.key for b in blocks}
        np.testing.assert_array_equal(open_volume(killed.path)[:], open_volume(single.path)[:])
    finally:
        cluster = client.cluster
        close_client(client)
        assert cluster.status.name == "closed"  # the worker processes are gone too
