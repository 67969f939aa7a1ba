"""checkpoints/last.ckpt is the state after the last finished epoch; best.ckpt the best one.

Lightning 2.6's ``save_last=True`` writes last.ckpt only when a top-k checkpoint is written in
the same step, so once the monitored metric stopped improving, last.ckpt stayed at the best
epoch: resume then trained again every epoch since the best one (a preempted job might
never get further), and "the last weights" were the best ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from tests.conftest import compose_config


class ConstantMonitor(pl.LightningModule):
    """Learns, but its monitored validation loss never improves after the first epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", 1.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)


@pytest.mark.parametrize("monitor", ["val/loss", "null"])
def test_last_checkpoint_is_the_last_epoch_even_when_the_monitor_stops_improving(
        tmp_path: Path, monitor: str) -> None:
    """With ``monitor: null`` (lucchi_fast) best.ckpt is the last epoch too."""
    cfg = compose_config("train", [f"paths.output_dir={tmp_path}", f"monitor={monitor}"])
    callbacks = [instantiate(node) for node in cfg.callbacks.values()]
    trainer = pl.Trainer(max_epochs=3, callbacks=callbacks, logger=False, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    module = ConstantMonitor()
    trainer.fit(module, _loader(), _loader())
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(folder / "last.ckpt", weights_only=True)
    best = torch.load(folder / "best.ckpt", weights_only=True)
    best_step = 2 if monitor != "null" else 6  # 2 steps an epoch
    assert last["global_step"] == 6 and best["global_step"] == best_step
    assert torch.equal(last["state_dict"]["layer.weight"], module.layer.weight.detach())
    assert torch.equal(best["state_dict"]["layer.weight"], module.layer.weight.detach()) == (
        monitor == "null")
    assert trainer.checkpoint_callback.best_model_path == str(folder / "best.ckpt")
