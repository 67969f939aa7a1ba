"""The study scores every network on one set of test images per condition, so its runs must
share one data split: runs of another ``data_seed`` are refused before anything is scored (they
would be scored on images they trained on), runs of other image conditions are not."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mitoseg.errors import InputError
from mitoseg.study import analysis
from mitoseg.study.analysis import TrainedRun, study_rows
from tests.conftest import SHARED_DATA, compose_config

# 24 procedural 48 x 48 masks, the same for every data_seed (only the split moves with it)
SMALL = ["dataset.masks.count=24", "dataset.masks.shape=[48,48]", "dataset.split={val:4,test:4}",
         "dataset.masks.seed=0"]


def _run(folder: Path, condition: str, seed: int, data_seed: int,
         dataset: list[str] = SMALL) -> TrainedRun:
    """A finished training job as ``find_trained_runs`` reads it (no checkpoint: the networks
    are stubbed), with the dataset config training would have resolved."""
    cfg = compose_config("train", [f"paths.shared_data={SHARED_DATA}", f"condition={condition}",
                                   f"seed={seed}", f"data_seed={data_seed}", *dataset])
    config = {"dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
              "seed": seed, "data_seed": data_seed}
    return TrainedRun(folder, condition, "unet_paper000", seed, folder / "best.ckpt", config)


def _mask_ids(run: TrainedRun) -> dict[str, set[str]]:
    """The masks of each split of the run's data module, as its training dealt them."""
    datamodule = instantiate(OmegaConf.create(run.config["dataset"]))
    datamodule.setup()
    return {name: set(dataset.masks.ids) for name, dataset in datamodule.datasets.items()}


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[TrainedRun]:
    """Stub networks (an empty mask) that record the runs they were made for."""
    made: list[TrainedRun] = []

    def segmenter(run: TrainedRun, postproc=None):
        made.append(run)
        return lambda image: np.zeros(image.shape, bool)

    monkeypatch.setattr(analysis, "network_segmenter", segmenter)
    return made


def test_runs_of_different_data_seeds_are_refused_before_scoring(tmp_path, scored) -> None:
    """The audit's case: train_overrides data_seed=0,5. Before, every network was scored on
    the first run's test images, most of which the data_seed-5 runs had trained on."""
    runs = [_run(tmp_path / f"{n}_job", "snr4", seed, data_seed)
            for n, (seed, data_seed) in enumerate([(0, 0), (1, 0), (0, 5), (1, 5)])]
    first, other = _mask_ids(runs[0]), _mask_ids(runs[2])
    seen = first["test"] & (other["train"] | other["val"])
    assert seen  # the data_seed-5 runs trained or validated on data_seed 0's test masks

    with pytest.raises(InputError) as refused:
        study_rows(runs, ["snr"], [], {}, [1])
    message = str(refused.value)
    assert not scored  # refused before any network was made
    assert "not all trained on one data split" in message
    for n in range(4):
        assert f"{n}_job" in message
    assert re.search(r"2 run\(s\): \S+0_job, \S+1_job \(data_seed 0\)", message)
    assert re.search(r"2 run\(s\): \S+2_job, \S+3_job \(data_seed 5\)", message)
    assert (f"{len(seen)} of the {len(first['test'])} test masks of split 1 are masks it "
            "trained or validated on") in message
    assert "a study per split" in message and "the same data_seed" in message


def test_many_runs_are_named_a_few_then_a_count(tmp_path, scored) -> None:
    runs = [_run(tmp_path / f"{n}_job", "snr4", n, 0) for n in range(5)]
    runs.append(_run(tmp_path / "5_job", "snr4", 0, 5))
    with pytest.raises(InputError, match=r"5 run\(s\): \S+0_job, \S+1_job, \S+2_job and 2 more "
                                         r"\(data_seed 0\)"):
        study_rows(runs, ["snr"], [], {}, [])


def test_runs_of_one_data_seed_but_other_masks_are_refused(tmp_path, scored) -> None:
    """The split is what each run's data module deals, not a list of options: procedural
    masks of another shape have the same names but are other masks."""
    runs = [_run(tmp_path / "0_job", "snr4", 0, 0),
            _run(tmp_path / "1_job", "snr4", 0, 0, [*SMALL, "dataset.masks.shape=[40,40]"])]
    with pytest.raises(InputError, match=r"\(data_seed 0\): masks of the same names as split 1 "
                                         r"with other content"):
        study_rows(runs, ["snr"], [], {}, [])
    assert not scored


def test_real_masks_of_data_seed_5_hold_most_of_data_seed_0s_test_set(tmp_path, scored) -> None:
    """The audit's numbers: data_seed 5 trains on 24 of data_seed 0's 36 test images."""
    if not (SHARED_DATA / "fluo-masks").is_dir():
        pytest.skip(f"real masks not found at {SHARED_DATA / 'fluo-masks'}")
    runs = [_run(tmp_path / f"seed{s}", "snr4", 0, s, ["dataset=fluo_masks"]) for s in (0, 5)]
    with pytest.raises(InputError, match=r"test masks of split 1 are masks it trained or "
                                         r"validated on") as refused:
        study_rows(runs, ["snr"], [], {}, [])
    assert re.search(r"(2[4-9]|3[0-6]) of the 36 test masks of split 1", str(refused.value))
    assert not scored


def test_runs_of_other_conditions_and_seeds_on_one_split_are_scored(tmp_path, scored) -> None:
    """Conditions (SNR, a mixture), training seeds and where training images were made differ
    between the runs of a study by design: they share the split, so every network is scored
    on the same test images."""
    runs = [_run(tmp_path / "0_job", "snr4", 0, 3),
            _run(tmp_path / "1_job", "snr1", 1, 3, [*SMALL, "dataset.synthesis=device"]),
            _run(tmp_path / "2_job", "mix_snr", 0, 3)]
    rows = study_rows(runs, ["snr"], ["mix_snr"], {}, [1])
    assert [run.folder.name for run in scored] == ["0_job", "1_job", "0_job", "1_job",
                                                   "2_job", "0_job"]
    assert {row["image"] for row in rows} == _mask_ids(runs[0])["test"]
    parts = {(row["part"], row["train_level"]) for row in rows}
    assert {("robustness", 4.0), ("robustness", 1.0), ("cross", 4.0), ("cross", 1.0),
            ("mixture", "mix"), ("sensitivity", 4.0)} <= parts
