"""evaluate.py keeps EM test slices out of the gap the checkpoint's training split kept.

The copy check compares contents: a neighbouring slice is no copy (correlation about 0.89 on
Lucchi, 0.84 on these procedural slices, below the 0.98 of a near-copy). So a ``dataset=lucchi``
checkpoint tested with a larger ``holdout_slices`` was scored on slices inside its gap, next to
its training slices, without a word. Now test slices that share a recording with the slices the
checkpoint trained or validated on must keep that gap (``volume_training_overlap``'s slice gap).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mitoseg.data.volume_set import LabelledVolume, recording_of
from mitoseg.errors import InputError
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.training_overlap import (
    UNSTATED_GAP_SLICES,
    required_gap,
    slice_gap,
    slices_too_close,
)
from mitoseg.synth.em_volumes import synthetic_em_volume
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.evaluation.test_em_end_to_end import EM_2D

DEPTH, HOLDOUT, GAP = 24, 6, 3  # training slices 0-14, gap 15-17, test 18-23
LUCCHI = ["dataset=lucchi", f"dataset.volumes.holdout_slices={HOLDOUT}",
          f"dataset.volumes.test_gap_slices={GAP}", "dataset.patch_size=[32,32]"]
TRAINED = [o for o in EM_2D
           if not o.startswith(("dataset=", "dataset.volumes", "dataset.patch_size"))] + LUCCHI
# the same recording with 9 slices held out: test 15-23, three of them in the gap
INTO_THE_GAP = [*LUCCHI, "dataset.volumes.holdout_slices=9", "inference=em_quick"]


def write_lucchi(root: Path) -> Path:
    """A procedural Lucchi folder (training.tif and its 0/255 labels): neighbouring slices
    correlate about 0.84, as real ones do (0.89), so they are no near-copies."""
    image, labels = synthetic_em_volume((DEPTH, 64, 64), seed=3)
    root.mkdir(parents=True)
    tifffile.imwrite(root / "training.tif", image)
    tifffile.imwrite(root / "training_groundtruth.tif", labels.astype(np.uint8) * 255)
    return root


def data_paths(shared: Path) -> list[str]:
    return [f"paths.shared_data={shared}", f"paths.cache_dir={shared / 'cache'}"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = tmp_path_factory.mktemp("shared")
    write_lucchi(shared / "lucchi")
    return shared


@pytest.fixture(scope="module")
def checkpoint(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("em-gap")
    train(compose_config("train", [*TRAINED, *data_paths(shared)], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_test_slices_inside_the_training_gap_are_refused(checkpoint: Path, shared: Path,
                                                          tmp_path: Path) -> None:
    cfg = compose_config("evaluate", [f"ckpt_path={checkpoint}", *INTO_THE_GAP,
                                      *data_paths(shared)], tmp_path)
    with pytest.raises(InputError) as refused:
        evaluate(cfg)
    message = str(refused.value)
    recording = (shared / "lucchi" / "training.tif").resolve()
    assert "3 test slice(s) lie closer to slices that checkpoint" in message
    assert f"{checkpoint.name}' trained or validated on than the 3-slice gap" in message
    assert f"'{recording}' ({DEPTH} x 64 x 64)" in message
    assert ("test slices 15 (nearest seen: 14), 16 (nearest seen: 14), 17 (nearest seen: 14)"
            in message)
    assert "Use the training run's split" in message
    assert "allow_training_overlap=true" in message
    assert not (tmp_path / "summary.json").exists()


def test_the_training_run_own_split_is_scored(checkpoint: Path, shared: Path,
                                              tmp_path: Path) -> None:
    evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}", *data_paths(shared)],
                            tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "WARNING" not in summary
    gap = summary["training_overlap"]["slice_gap"]
    assert gap["required_gap_slices"] == GAP and gap["too_close_slices"] == 0
    assert [v["test_slices"] for v in gap["same_recording"]] == [HOLDOUT]


def test_allowed_gap_slices_are_scored_and_marked(checkpoint: Path, shared: Path,
                                                  tmp_path: Path) -> None:
    evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}", *INTO_THE_GAP,
                                         *data_paths(shared), "allow_training_overlap=true"],
                            tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert next(iter(summary)) == "WARNING"
    assert "3-slice gap" in summary["WARNING"]
    gap = summary["training_overlap"]["slice_gap"]
    assert gap["too_close_slices"] == 3
    assert gap["examples"] == [["test", 15, 14], ["test", 16, 14], ["test", 17, 14]]
    assert summary["data"]["test_slices"] == [[15, 23]]


def test_the_same_file_named_otherwise_is_the_same_recording(checkpoint: Path, shared: Path,
                                                             tmp_path: Path) -> None:
    """dataset=em_volumes z ranges of the checkpoint's training.tif, read through a link:
    the resolved file and its shape, not the name, say which recording it is."""
    link = tmp_path / "linked"
    link.symlink_to(shared / "lucchi")
    entry = (f"image:'{link}/training.tif',labels:'{link}/training_groundtruth.tif',"
             "z_range:[{},{}]")
    overrides = ["dataset=em_volumes", "dataset.patch_size=[32,32]", "inference=em_quick",
                 "dataset.volumes.voxel_size_nm=[5,5,5]",
                 "dataset.volumes.label_mapping.foreground=[255]",
                 f"dataset.volumes.train=[{{{entry.format(0, 10)}}}]",
                 f"dataset.volumes.test=[{{{entry.format(16, DEPTH)}}}]"]
    cfg = compose_config("evaluate", [f"ckpt_path={checkpoint}", *overrides,
                                      *data_paths(shared)], tmp_path / "out")
    with pytest.raises(InputError, match=r"2 test slice\(s\) .* test slices 16 \(nearest seen: "
                                         r"14\), 17 \(nearest seen: 14\)\. "):
        evaluate(cfg)


def test_required_gap_is_the_training_split_own_or_one_slice() -> None:
    assert required_gap({"test_gap_slices": 10})[0] == 10
    assert required_gap({"test_gap_slices": 0})[0] == 0
    assert required_gap({"test_gap_slices": None})[0] == UNSTATED_GAP_SLICES == 1
    assert required_gap({})[0] == 1


def test_slices_too_close_keep_their_nearest_seen_slice() -> None:
    seen = [*range(0, 122)]
    assert slices_too_close(list(range(132, 165)), seen, 10) == []
    assert slices_too_close([131, 132], seen, 10) == [(131, 121)]
    assert slices_too_close([121, 122, 123], seen, 1) == [(121, 121), (122, 121)]
    # between two seen blocks the nearer one counts; gap 0 only refuses the same slice
    assert slices_too_close([45, 52], [*range(40), *range(55, 60)], 4) == [(52, 55)]
    assert slices_too_close([5, 6], [5], 0) == [(5, 5)]
    assert slices_too_close([5], [], 3) == []


def test_only_volumes_of_one_recording_are_compared(tmp_path: Path) -> None:
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((30, 8, 8), np.uint8))
    whole = recording_of(stack, (30, 8, 8))
    assert recording_of(tmp_path / "." / "stack.tif", (30, 8, 8)) == whole
    assert recording_of(stack, (30, 4, 4)) != whole  # another array at that path

    def volume(name: str, numbers: list[int], recording: object) -> LabelledVolume:
        image = np.zeros((len(numbers), 8, 8), np.uint8)
        return LabelledVolume(name, image, image > 0, slice_numbers=numbers,
                              recording=recording)

    seen = [volume("train", list(range(20)), whole)]
    near = volume("test", list(range(20, 30)), whole)
    elsewhere = volume("other", list(range(20, 30)), recording_of(stack, (30, 4, 4)))
    procedural = volume("procedural", list(range(20, 30)), None)
    record = slice_gap(seen, [near, elsewhere, procedural], {"test_gap_slices": None})
    assert record["too_close_slices"] == 1 and record["examples"] == [["test", 20, 19]]
    assert [v["test_volume"] for v in record["same_recording"]] == ["test"]
