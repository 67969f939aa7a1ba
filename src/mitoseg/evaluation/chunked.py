"""Block-wise prediction of a volume into an OME-Zarr output: in this process, or as independent
tasks on a Dask cluster (local worker processes, an existing scheduler, or SLURM/PBS through
dask-jobqueue).

Each block reads its region of the input (lazily, ``mitoseg.data.volume_sources``), turns it
into probabilities with a predict function made once per process (``PredictorFactory``: a
network is loaded once per worker, not once per block), and writes its core into level 0 of
the output, then records the block as done. Cores are whole output chunks, so two blocks never
write the same chunk, and a block redone (a resumed run, a task rescheduled after its worker
died) writes the same values again. The pyramid is made once every block is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitoseg.data.ome_zarr_output import OmeZarrOutput
from mitoseg.data.volume_sources import open_volume
from mitoseg.errors import InputError
from mitoseg.inference.blocks import Block, predict_blocks

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]
_CACHE: dict[Any, PredictFn] = {}  # per process: factory -> its predict function


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs for any block: plain, picklable values."""

    source: str
    level: int | None
    output: str
    factory: Any  # a picklable, hashable callable () -> predict function


def predict_function(factory: Any) -> PredictFn:
    """The predict function of ``factory``, made once in this process."""
    if factory not in _CACHE:
        _CACHE[factory] = factory()
    return _CACHE[factory]


def run_block(job: BlockJob, block: Block) -> str:
    """Predict one block and record it; returns the block's key (a Dask task)."""
    source = open_volume(job.source, job.level)
    output = OmeZarrOutput.open(job.output)
    predict = predict_function(job.factory)
    probabilities = predict(source[block.read])
    output.write(block.core, probabilities[block.core_in_read])
    output.mark_done(block.key)
    return block.key


def run_local(job: BlockJob, blocks: list[Block], output: OmeZarrOutput,
              progress: bool = True) -> int:
    """Every block not yet done, in this process, with a progress bar (blocks, rate, time
    left). Returns the number of blocks predicted."""
    source = open_volume(job.source, job.level)
    predict = predict_function(job.factory)
    bar = _progress_bar(len(blocks), progress, len(output.done()))

    def write(block: Block, core: np.ndarray) -> None:
        output.write(block.core, core)
        output.mark_done(block.key)

    try:
        return predict_blocks(lambda box: source[box], predict, write, blocks, output.done(),
                              progress=lambda done, total: bar.update(1))
    finally:
        bar.close()


def run_dask(job: BlockJob, blocks: list[Block], output: OmeZarrOutput, client: Any,
             progress: bool = True) -> int:
    """Every block not yet done as one task each on ``client``'s cluster; a worker that dies
    has its blocks redone by the scheduler. Returns the number of blocks predicted."""
    from distributed import as_completed

    todo = [b for b in blocks if b.key not in output.done()]
    bar = _progress_bar(len(blocks), progress, len(blocks) - len(todo))
    futures = [client.submit(run_block, job, block, key=f"mitoseg-block-{block.key}-{id(job)}",
                             pure=False) for block in todo]
    try:
        for future in as_completed(futures):
            future.result()  # re-raises a block's error here, with its traceback
            bar.update(1)
    finally:
        bar.close()
    return len(todo)


def dask_client(engine: str, workers: int = 2, threads_per_worker: int = 1,
                address: str | None = None, jobqueue: dict[str, Any] | None = None) -> Any:
    """A ``distributed.Client``: 'local' (worker processes on this machine), 'address' (an
    existing scheduler), 'slurm' or 'pbs' (dask-jobqueue, with ``jobqueue`` as its options)."""
    import dask
    from distributed import Client, LocalCluster

    if engine == "local":
        # each worker's math libraries get as many threads as the worker has task threads:
        # torch.set_num_threads in one thread does not reach the threads that run the tasks,
        # and unlimited OpenMP pools in every worker would fight over the cores
        threads = str(int(threads_per_worker))
        # Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536; setting it turns
        # off glibc's sliding mmap threshold, so every tensor above 128 KiB is a fresh mmap and
        # a page fault per 4 KiB: a block took 1.8x as long as in a plain process
        # (benchmarks/diagnose_dask_worker.py); None removes it from the worker's environment
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(n_workers=int(workers),
                                   threads_per_worker=int(threads_per_worker), processes=True,
                                   dashboard_address=None,
                                   env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                                        "OPENBLAS_NUM_THREADS": threads})
        return Client(cluster)
    if engine == "address":
        if not address:
            raise InputError("engine 'address' needs the scheduler's address, e.g. "
                             "tcp://10.0.0.5:8786")
        return Client(address)
    if engine in ("slurm", "pbs"):
        try:
            import dask_jobqueue
        except ImportError as error:
            raise InputError(f"engine '{engine}' needs dask-jobqueue: pip install dask-jobqueue"
                             ) from error
        cluster_class = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
        cluster = cluster_class[engine](**(jobqueue or {}))
        cluster.scale(jobs=int(workers))
        return Client(cluster)
    raise InputError(f"engine must be 'local', 'address', 'slurm' or 'pbs', got {engine!r}")


def close_client(client: Any) -> None:
    """Close ``client`` and the cluster it started ('local', 'slurm', 'pbs': worker processes
    or jobs); a scheduler joined by address is left running for its owner."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def _progress_bar(total: int, enabled: bool, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="block", disable=not enabled,
                desc="blocks", smoothing=0.1)

