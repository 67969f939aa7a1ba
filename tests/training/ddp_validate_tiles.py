"""Validate shifted validation tiles on two gloo ranks, split by Lightning's own sampler.

Used by test_validation_tiles.py as ``python ddp_validate_tiles.py <json out>``: rank 0 writes
the validation metrics Lightning reduced over both ranks. The tiles are those of the test's
first case (8 tiles: 4 a rank, so the sampler repeats none), with no voxel ignored: Lightning's
mean over ranks floors the ranks' summed weights divided by their number (an integer;
Lightning-AI/pytorch-lightning#21838), so the scored voxels (4000) and tiles (8) are even
here, and the reduction exact.
"""

import datetime
import json
import sys

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from tests.training.test_validation_tiles import CASES, module_for, tiles_and_expected

if __name__ == "__main__":
    dataset, _ = tiles_and_expected(*CASES[0], with_ignored=False)
    strategy = pl.strategies.DDPStrategy(process_group_backend="gloo",
                                         timeout=datetime.timedelta(seconds=60))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    [metrics] = trainer.validate(module_for(dataset), DataLoader(dataset, batch_size=3),
                                 verbose=False)
    if trainer.is_global_zero:
        with open(sys.argv[1], "w") as out:
            json.dump(metrics, out)
