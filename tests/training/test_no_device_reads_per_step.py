"""A training step of the GPU recipe, and of the default job with its images synthesized on the
device (``trainer=gpu``'s choice), reads nothing back from the device.

On a GPU any read of a tensor's value on the host (``.item()``, ``float(t)``, ``if t:``,
``.tolist()``, a boolean mask index, ``nonzero``) makes the CPU wait until the GPU has finished,
so the next batch is prepared while the GPU idles. The CPU has no device queue, so the test
watches every such operation at the dispatcher during a whole ``experiment=lucchi_fast`` run
(patches cut on the device, augmentation, loss, optimizer, logging) and finds the code that asks
for it: with twice the steps, only reads of values that live on the host anyway may grow.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mitoseg.training.train import train
from tests.conftest import TINY, compose_config
from tests.training.test_fast_recipe import TINY_FAST

# the default (fluorescence) job as trainer=gpu runs it: images synthesized where the batch is;
# 80 training masks, so that 12 steps stay inside one epoch (validation reads once an epoch)
TINY_FLUORESCENCE_ON_DEVICE = [*TINY, "dataset.synthesis=device", "dataset.masks.count=88",
                               "trainer.limit_train_batches=1.0", "trainer.max_epochs=1"]
JOBS = {"lucchi_fast": TINY_FAST, "fluorescence, synthesis on the device": TINY_FLUORESCENCE_ON_DEVICE}

# aten operations that need a tensor's values on the host
READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
         "unique_consecutive", "is_nonzero", "equal", "allclose", "nonzero_static"}
# Reads per step that stay on the host on a GPU too: the optimizer's step counters (CPU tensors
# unless capturable), seeds drawn from torch's CPU generator for the window corners and the
# augmentation, the CPU-only branch of the finite-loss check (an accelerator defers it), and
# the fluorescence synthesis plan (the batch's conditions, read before it moves).
HOST_ONLY = {("torch/optim/optimizer.py", "_get_value"), ("mitoseg/data/em_patches.py", "origins"),
             ("mitoseg/data/em_datamodule.py", "on_after_batch_transfer"),
             ("mitoseg/training/module.py", "_check_finite"),
             # the fluorescence batch's synthesis plan, made before the batch goes to the device
             ("mitoseg/data/fluo_datamodule.py", "on_before_batch_transfer"),
             ("mitoseg/data/fluo_datamodule.py", "<listcomp>")}


class Reads(TorchDispatchMode):
    """Counts host reads by the innermost Python function outside torch's dispatch layers."""

    def __init__(self) -> None:
        super().__init__()
        self.by_caller: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket.__name__
        if name in READS or (name == "index" and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ())):
            self.by_caller[caller()] += 1
        return func(*args, **(kwargs or {}))


def caller() -> tuple[str, str]:
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        inside = "/torch/" in path and "/torch/optim/" not in path
        if not inside and "_python_dispatch" not in path:
            tail = "/".join(path.split("/")[-3:])
            return tail, frame.f_code.co_name
        frame = frame.f_back
    return "?", "?"


def reads_during_fit(job: list[str], steps: int, tmp_path: Path,
                     monkeypatch) -> collections.Counter:  # noqa: ANN001
    steps_key = "trainer.max_steps" if job is TINY_FAST else "+trainer.max_steps"
    cfg = compose_config("train", [*job, f"{steps_key}={steps}",
                                   "trainer.log_every_n_steps=50"], tmp_path / str(steps))
    reads = Reads()
    fit = pl.Trainer.fit

    def watched(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        with reads:
            return fit(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pl.Trainer, "fit", watched)
        train(cfg)
    return reads.by_caller


@pytest.mark.parametrize("job", list(JOBS))
def test_only_host_values_are_read_per_training_step(job: str, tmp_path: Path,
                                                     monkeypatch) -> None:  # noqa: ANN001
    few, more = (reads_during_fit(JOBS[job], steps, tmp_path, monkeypatch) for steps in (6, 12))
    growing = {site for site in set(few) | set(more) if more[site] > few[site]}
    assert growing, "the watch saw no read at all: it is not watching"
    assert growing <= HOST_ONLY, f"reads per step of device values: {growing - HOST_ONLY}"
