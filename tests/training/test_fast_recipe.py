"""experiment=lucchi_fast composes and runs end to end (on synthetic volumes, on the CPU):
patches cut on the device, cosine annealing by steps, no validation, last weights, the headline."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mitoseg.training.train import train
from tests.conftest import compose_config

TINY_FAST = [
    "experiment=lucchi_fast", "dataset=synthetic_em", "dataset.volumes.train_shape=[12,64,64]",
    "dataset.volumes.test_shape=[6,64,64]", "dataset.patch_size=[32,32]",
    "dataset.patches_per_image=4", "dataset.batch_size=4", "model.filters=[4,8,8,16,16]",
    "trainer=cpu", "trainer.max_steps=14", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "logger=none",
    "inference.channels_last=false", "speed.channels_last=false",
]


def test_fast_recipe_trains_by_steps_on_every_slice_and_reports_the_paper_protocol(
        tmp_path: Path) -> None:
    cfg = compose_config("train", TINY_FAST, tmp_path)
    assert cfg.scheduler._target_.endswith("cosine_by_steps") and cfg.dataset.sampling == "device"
    assert [t._target_.rsplit(".", 1)[1] for t in cfg.augmentation.transforms] == [
        "RandomFlip", "RandomRot90", "RandomRotation"]
    metrics = train(cfg)
    assert metrics["headline"] == {"protocol": "full_image", "tta": True, "zfilter": 5}
    rows = (tmp_path / "protocols.csv").read_text().splitlines()
    assert len(rows) == 3  # header + the TTA row without and with the z-median
    data = json.loads((tmp_path / "data.json").read_text())
    assert data["train_slice_count"] == 12 and data["val_slices"] == []
    assert data["normalization"]["mode"] == "training_zscore"
    assert data["sampling"] == "device" and data["placement"] == "uniform"
    # the model tested is the last one: 14 steps of 12 x 4 / 4 = 12 per epoch
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    tested = torch.load(metrics["checkpoint"], weights_only=True)
    assert last["global_step"] == tested["global_step"] == 14
    for key, value in last["state_dict"].items():
        assert torch.equal(value, tested["state_dict"][key])
    assert last["mitoseg_normalization"] == data["normalization"]
    # the cosine was stepped per optimizer step over the run: 14 steps done, lr annealed to 0
    schedule = last["lr_schedulers"][0]
    assert schedule["_step_count"] == 15 and schedule["T_max"] == 14
    assert schedule["_last_lr"][0] == 0.0
