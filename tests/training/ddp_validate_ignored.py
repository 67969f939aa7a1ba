"""Validate a tiny module on two gloo ranks; every image rank 1 sees is fully ignored.

Used by test_ddp_ignored.py as ``python ddp_validate_ignored.py <json out> [all-valid]``:
rank 0 writes the validation metrics Lightning reduced over both ranks. Image i has valid
voxels for even i only (``all-valid``: every image has); the distributed sampler gives the even
images to rank 0 and the odd ones to rank 1.
"""

import datetime
import json
import sys
from functools import partial

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from mitoseg.training.losses import BCELoss
from mitoseg.training.module import SegmentationModule

IMAGES = 4


ALL_VALID = "all-valid" in sys.argv[2:]


def tile(i: int, all_valid: bool = ALL_VALID) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(i)
    image = torch.randn(1, 8, 8, generator=generator)
    mask = (torch.rand(1, 8, 8, generator=generator) > 0.5).float()
    valid = (torch.rand(1, 8, 8, generator=generator) > 0.3).float() * (all_valid or i % 2 == 0)
    return {"image": image, "mask": mask, "valid": valid}


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(1, 1, 3, padding=1)


class Tiles(Dataset):
    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return tile(i)


class Validation(pl.LightningDataModule):
    def val_dataloader(self) -> DataLoader:
        return DataLoader(Tiles(), batch_size=1, sampler=DistributedSampler(Tiles(), shuffle=False))


if __name__ == "__main__":
    module = SegmentationModule(network(), BCELoss(), partial(torch.optim.SGD, lr=0.1))
    strategy = pl.strategies.DDPStrategy(process_group_backend="gloo",
                                         timeout=datetime.timedelta(seconds=60))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False)
    [metrics] = trainer.validate(module, datamodule=Validation(), verbose=False)
    if trainer.is_global_zero:
        with open(sys.argv[1], "w") as out:
            json.dump(metrics, out)
