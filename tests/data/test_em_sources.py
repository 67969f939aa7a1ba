"""EM data sets as configured: Casser et al.'s folder layout and anisotropic voxel sizes."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hydra.utils import instantiate
from skimage import io as skio

from mitoseg.config.validation import plain_config
from mitoseg.data.em_sources import (
    casser_volumes,
    configured_voxel_size_nm,
    lucchi_volumes,
    synthetic_volumes,
)
from mitoseg.data.em_volumes import paired_slice_volumes
from mitoseg.errors import InputError
from mitoseg.evaluation.em_protocols import protocol_matrix
from tests.conftest import SHARED_DATA, compose_config

LUCCHI_PP = SHARED_DATA / "lucchi_pp"
needs_lucchi_pp = pytest.mark.skipif(not (LUCCHI_PP / "Train_In").is_dir(),
                                     reason=f"real Lucchi++ copy not found at {LUCCHI_PP}")


def write_kasthuri(root: Path, depth: int = 4) -> Path:
    rng = np.random.default_rng(0)
    base = root / "Kasthuri++"
    for split, offset in (("Train", 0), ("Test", 100)):
        (base / f"{split}_In").mkdir(parents=True)
        (base / f"{split}_Out").mkdir(parents=True)
        for z in range(depth):
            image = rng.integers(0, 256, (24, 32), dtype=np.uint8)
            label = np.zeros((24, 32), np.uint8)
            label[4:10, 5 + z + offset % 7: 15 + z] = 255
            label[:, -2:] = 2  # Kasthuri++ marks the area outside the tissue with 2
            skio.imsave(base / f"{split}_In" / f"mask{z:04d}.png", image, check_contrast=False)
            skio.imsave(base / f"{split}_Out" / f"{z}.png", label, check_contrast=False)
    return base


def test_kasthuri_layout_and_anisotropic_voxels_reach_the_metrics(tmp_path: Path) -> None:
    write_kasthuri(tmp_path)
    volumes = casser_volumes(str(tmp_path), "kasthuri++")
    assert volumes.voxel_size_nm == (30.0, 3.0, 3.0)
    assert volumes.train_image.shape == volumes.train_labels.shape == (4, 24, 32)
    assert not volumes.train_labels[:, :, -2:].any()  # the "outside" value reads as background
    rows = protocol_matrix(lambda b: b, volumes.test_image, volumes.test_labels, 2, (16, 16),
                           lambda p: p > 0.5, protocols=["full_image"], tta=[False], zfilter=[0],
                           voxel_size_nm=volumes.voxel_size_nm)
    assert rows[0]["voxel_size_z_nm"] == 30.0 and rows[0]["voxel_size_x_nm"] == 3.0
    voxel_um3 = 30 * 3 * 3 * 1e-9
    assert rows[0]["gt_volume_um3"] == pytest.approx(volumes.test_labels.sum() * voxel_um3)


def test_configured_voxel_size_wins_and_is_checked(tmp_path: Path) -> None:
    write_kasthuri(tmp_path)
    assert casser_volumes(str(tmp_path), "kasthuri++", [40, 4, 4]).voxel_size_nm == (40.0, 4.0, 4.0)
    with pytest.raises(InputError, match="voxel_size_nm"):
        synthetic_volumes((4, 32, 32), (2, 32, 32), voxel_size_nm=[5, 5])


def test_missing_folders_are_listed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"Test_Out"):
        casser_volumes(str(tmp_path), "lucchi++")


def write_lucchi_training(root: Path, depth: int = 40) -> None:
    """A small training.tif whose slice z holds the value z, with its labels."""
    image = np.broadcast_to(np.arange(depth, dtype=np.uint8)[:, None, None], (depth, 16, 20))
    labels = np.zeros((depth, 16, 20), np.uint8)
    labels[:, 4:8, 5:9] = 255
    tifffile.imwrite(root / "training.tif", np.ascontiguousarray(image))
    tifffile.imwrite(root / "training_groundtruth.tif", labels)


def test_lucchi_holdout_leaves_a_gap_before_the_test_slices(tmp_path: Path) -> None:
    """Issue 14.5: the held-out test slices began right after the last training slice."""
    write_lucchi_training(tmp_path)
    volumes = lucchi_volumes(str(tmp_path), holdout_slices=8, test_gap_slices=5)
    assert volumes.train_image[:, 0, 0].tolist() == list(range(27))
    assert volumes.test_image[:, 0, 0].tolist() == volumes.slice_numbers("test") == list(range(32, 40))
    assert volumes.notes["test_gap_slices"] == 5
    assert (volumes.notes["train_slices"], volumes.notes["gap_slices"],
            volumes.notes["test_slices"]) == ([[0, 26]], [[27, 31]], [[32, 39]])
    assert lucchi_volumes(str(tmp_path), holdout_slices=8, test_gap_slices=0).train_image.shape[0] == 32
    with pytest.raises(InputError, match=r"holdout_slices.*test_gap_slices.*40"):
        lucchi_volumes(str(tmp_path), holdout_slices=30, test_gap_slices=10)
    with pytest.raises(InputError, match=r"test_gap_slices.*>= 0"):
        lucchi_volumes(str(tmp_path), test_gap_slices=-1)


def test_lucchi_test_gap_defaults_to_ten_slices_and_reaches_data_json(tmp_path: Path) -> None:
    assert inspect.signature(lucchi_volumes).parameters["test_gap_slices"].default == 10
    write_lucchi_training(tmp_path, depth=60)
    cfg = compose_config("train", ["dataset=lucchi", f"dataset.volumes.root={tmp_path}",
                                   "dataset.volumes.holdout_slices=12", "augmentation=none",
                                   "dataset.patch_size=[8,8]", f"paths.cache_dir={tmp_path}"])
    assert cfg.dataset.volumes.test_gap_slices == 10
    described = instantiate(cfg.dataset).describe()
    assert described["test_gap_slices"] == 10 and described["test_slices"] == [[48, 59]]
    assert described["train_slice_count"] + len(described["val_slices"]) == 38


def _save(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    skio.imsave(folder / name, array, check_contrast=False)


def test_casser_images_and_labels_pair_by_slice_number(tmp_path: Path) -> None:
    """Sorted position pairs slice 5's image with slice 4's label without a word."""
    base = tmp_path / "Lucchi++"
    rng = np.random.default_rng(0)
    for split, numbers in (("Train", (1, 2, 3, 5)), ("Test", (0, 1))):
        for z in numbers:
            _save(base / f"{split}_In", f"mask{z:04d}.png", rng.integers(0, 256, (8, 8), np.uint8))
    for split, numbers in (("Train", (1, 2, 3, 4)), ("Test", (0, 1))):
        for z in numbers:
            _save(base / f"{split}_Out", f"{z}.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match=r"Train_In.*Train_Out.*slice number.*\[5\].*\[4\]"):
        casser_volumes(str(tmp_path), "lucchi++")


def write_lucchi_pp(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """A small copy with the quirks of ../shared/data/lucchi_pp: RGBA labels in Test_Out,
    single-channel ones in Train_Out, images named maskNNNN.png and labels N.png, and Train_*
    holding only slices 8-11 of 12."""
    from tests.data.test_em_overlap import textured_stack

    base = root / "lucchi_pp"
    epfl_train, epfl_test = textured_stack(12, seed=5), textured_stack(12, seed=6)
    for z in range(12):
        label = ((epfl_train[z] < 90) * 255).astype(np.uint8)
        _save(base / "Test_In", f"mask{z:04d}.png", epfl_train[z])
        _save(base / "Test_Out", f"{z}.png", np.dstack([label, label, label, np.full_like(label, 255)]))
    for z in range(8, 12):
        _save(base / "Train_In", f"mask{z:04d}.png", epfl_test[z])
        _save(base / "Train_Out", f"{z}.png", ((epfl_test[z] < 90) * 255).astype(np.uint8))
    return epfl_train, epfl_test


def test_lucchi_pp_copy_loads_as_distributed(tmp_path: Path) -> None:
    epfl_train, epfl_test = write_lucchi_pp(tmp_path)
    cfg = compose_config("train", ["dataset=lucchi_pp", f"paths.shared_data={tmp_path}",
                                   "augmentation=none", "dataset.patch_size=[16,16]",
                                   "dataset.num_workers=0"])
    datamodule = instantiate(cfg.dataset)
    described = datamodule.describe()
    volumes = datamodule.volumes
    np.testing.assert_array_equal(volumes.train_image, epfl_train)  # Test_* trains
    np.testing.assert_array_equal(volumes.train_labels, epfl_train < 90)
    np.testing.assert_array_equal(volumes.test_image, epfl_test[8:])  # Train_* tests
    np.testing.assert_array_equal(volumes.test_labels, epfl_test[8:] < 90)
    assert described["test_slices"] == [[8, 11]] and described["test_gap_slices"] is None
    assert described["train_slice_count"] + len(described["val_slices"]) == 12
    assert described["notes"]["train_folders"] == ["Test_In", "Test_Out"]
    assert described["notes"]["test_folders"] == ["Train_In", "Train_Out"]
    assert "EPFL" in described["notes"]["split"]
    assert next(iter(datamodule.train_dataloader()))["image"].shape[1:] == (1, 16, 16)


def paired_better_than_neighbours(image: np.ndarray, labels: np.ndarray) -> float:
    """Share of slices whose own label separates dark mitochondria from the rest better than
    the labels of the slices before and after it: near 1 when images and labels pair right."""
    def contrast(z: int, k: int) -> float:
        inside = labels[z + k] > 0
        return float(image[z][~inside].mean()) - float(image[z][inside].mean())
    wins = [contrast(z, 0) > max(contrast(z, -1), contrast(z, 1)) for z in range(1, len(image) - 1)]
    return float(np.mean(wins))


@needs_lucchi_pp
def test_real_lucchi_pp_train_folders_pair_by_number() -> None:
    image, raw_labels, numbers = paired_slice_volumes(LUCCHI_PP / "Train_In", LUCCHI_PP / "Train_Out")
    assert numbers == list(range(145, 165))  # only these 20 slices of EPFL's testing volume
    assert image.shape == raw_labels.shape == (20, 768, 1024) and image.dtype == np.uint8
    assert (raw_labels > 0).mean() == pytest.approx(0.0535, abs=0.002)
    assert paired_better_than_neighbours(image, raw_labels) >= 0.9  # measured 17 of 18


@pytest.mark.slow
@needs_lucchi_pp
def test_real_lucchi_pp_loads_through_the_dataset_config(tmp_path: Path) -> None:
    cfg = compose_config("train", ["dataset=lucchi_pp", f"paths.shared_data={SHARED_DATA}",
                                   "augmentation=none"])
    datamodule = instantiate(cfg.dataset)
    described = datamodule.describe()  # set-up includes the overlap guard
    volumes = datamodule.volumes
    assert volumes.train_image.shape == volumes.train_labels.shape == (165, 768, 1024)
    assert volumes.test_image.shape == volumes.test_labels.shape == (20, 768, 1024)
    assert volumes.train_labels.mean() == pytest.approx(0.0669, abs=0.002)  # README: 6.7 %
    assert volumes.test_labels.mean() == pytest.approx(0.0535, abs=0.002)
    assert described["test_slices"] == [[145, 164]] and described["notes"]["train_slices"] == [[0, 164]]
    assert paired_better_than_neighbours(volumes.train_image, volumes.train_labels) >= 0.8  # 0.86


def test_max_test_slices_keeps_the_first_test_slices_and_names_them(tmp_path: Path) -> None:
    from mitoseg.data.em_sources import limit_test_slices

    whole = synthetic_volumes((4, 32, 32), (6, 32, 32))
    cut = synthetic_volumes((4, 32, 32), (6, 32, 32), max_test_slices=2)
    assert np.array_equal(cut.test_image, whole.test_image[:2])
    assert np.array_equal(cut.test_labels, whole.test_labels[:2])
    assert np.array_equal(cut.train_image, whole.train_image)  # training is untouched
    assert cut.notes["max_test_slices"] == 2 and cut.notes["test_slices"] == [[0, 1]]
    assert limit_test_slices(whole, 6) is whole and limit_test_slices(whole, None) is whole
    kasthuri = casser_volumes(str(write_kasthuri(tmp_path)), "kasthuri++", max_test_slices=3)
    assert kasthuri.test_image.shape[0] == 3 and kasthuri.slice_numbers("test") == [0, 1, 2]
    assert kasthuri.notes["test_slices"] == [[0, 2]]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="'volumes.max_test_slices' must be null or an int"):
            limit_test_slices(whole, bad)


def test_the_lucchi_tuning_split_never_reads_the_holdout_or_its_gap(tmp_path: Path) -> None:
    """Recipes chosen by their holdout test score make that score optimistic. test=tuning makes
    the holdout's cut again inside its training slices: a recipe chosen there has seen nothing
    of the holdout test slices or their gap (slice z holds the value z)."""
    write_lucchi_training(tmp_path, depth=60)
    holdout = lucchi_volumes(str(tmp_path), holdout_slices=8, test_gap_slices=5)
    tuning = lucchi_volumes(str(tmp_path), test="tuning", holdout_slices=8, test_gap_slices=5)
    assert holdout.slice_numbers("test") == list(range(52, 60))  # holdout training: 0-46
    assert tuning.train_image[:, 0, 0].tolist() == list(range(34))
    assert tuning.test_image[:, 0, 0].tolist() == tuning.slice_numbers("test") == list(range(39, 47))
    seen = set(tuning.train_image[:, 0, 0].tolist()) | set(tuning.test_image[:, 0, 0].tolist())
    assert seen.isdisjoint(range(47, 60))  # the holdout's gap and test slices
    assert (tuning.notes["test"], tuning.notes["train_slices"], tuning.notes["gap_slices"],
            tuning.notes["test_slices"]) == ("tuning", [[0, 33]], [[34, 38]], [[39, 46]])
    assert "slices 47-59 (the holdout and its gap) never read" in tuning.description
    with pytest.raises(InputError, match=r"before the holdout's gap \(test=tuning\)"):
        lucchi_volumes(str(tmp_path), test="tuning", holdout_slices=25, test_gap_slices=5)
    with pytest.raises(InputError, match=r"'official', 'holdout', 'tuning'"):
        lucchi_volumes(str(tmp_path), test="validation")


def test_max_test_slices_cuts_the_lucchi_holdout_from_its_start(tmp_path: Path) -> None:
    write_lucchi_training(tmp_path)
    volumes = lucchi_volumes(str(tmp_path), holdout_slices=8, test_gap_slices=5,
                             max_test_slices=3)
    assert volumes.test_image[:, 0, 0].tolist() == [32, 33, 34]
    assert volumes.slice_numbers("test") == [32, 33, 34]
    assert volumes.notes["test_slices"] == [[32, 34]]


def test_every_em_data_set_reads_max_test_slices_from_the_debug_option() -> None:
    for option in ("lucchi", "lucchi_pp", "kasthuri_pp", "synthetic_em"):
        plain = compose_config("train", [f"dataset={option}"]).dataset.volumes
        assert plain.max_test_slices is None
        tiny = compose_config("train", [f"dataset={option}", "debug=tiny"]).dataset.volumes
        assert tiny.max_test_slices == 8
        assert "max_test_slices" in inspect.signature(instantiate(tiny).func).parameters


def test_kasthuri_outside_the_tissue_is_ignored_unless_asked(tmp_path: Path) -> None:
    """Label 2 (outside the tissue) becomes ignored voxels: the data module's batches carry a
    valid mask that is 0 exactly there; ignore_unlabelled=false reads it as background."""
    from mitoseg.data.em_datamodule import EMDataModule
    from mitoseg.data.volume_set import from_em_volumes

    root = write_kasthuri(tmp_path)
    volumes = casser_volumes(str(tmp_path), "kasthuri++")
    raw = np.stack([skio.imread(p) for p in
                    sorted((root / "Test_Out").iterdir(), key=lambda p: int(p.stem))])
    np.testing.assert_array_equal(volumes.test_ignored, raw == 2)
    assert volumes.notes["ignored_voxels"]["test"] == int((raw == 2).sum()) > 0
    assert from_em_volumes(volumes).test[0].valid().sum() == raw.size - (raw == 2).sum()
    plain = casser_volumes(str(tmp_path), "kasthuri++", ignore_unlabelled=False)
    assert plain.train_ignored is None and plain.test_ignored is None
    module = EMDataModule(lambda: casser_volumes(str(tmp_path), "kasthuri++"), patch_size=(16, 16),
                          split_seed=0, seed=0, val_fraction=0.0, num_workers=0)
    module.setup()
    sample = module.datasets["train"][0]
    assert module.with_valid and sample["valid"].shape == sample["mask"].shape


@pytest.mark.parametrize(("overrides", "expected"), [
    (["dataset=lucchi"], (5.0, 5.0, 5.0)),            # null: the data set's own
    (["dataset=lucchi_pp"], (5.0, 5.0, 5.0)),
    (["dataset=kasthuri_pp"], (30.0, 3.0, 3.0)),
    (["dataset=synthetic_em"], (5.0, 5.0, 5.0)),
    (["dataset=lucchi", "dataset.volumes.voxel_size_nm=[10,4,4]"], (10.0, 4.0, 4.0)),
    (["dataset=em_volumes"], None),                   # only the files' metadata knows it
])
def test_a_dataset_config_names_its_voxel_size_without_reading_data(
        tmp_path: Path, overrides: list[str], expected) -> None:
    volumes = plain_config(compose_config("train", overrides, tmp_path))["dataset"]["volumes"]
    assert configured_voxel_size_nm(volumes) == expected


def test_synthetic_voxels_follow_their_anisotropy() -> None:
    """synthetic_em with volumes.anisotropy=4 draws slices 4x as far apart as its pixels; its
    voxel size (metrics, physical augmentation lengths) said 5 x 5 x 5 nm whatever that was."""
    volumes = synthetic_volumes((4, 32, 32), (2, 32, 32), anisotropy=4.0)
    assert volumes.voxel_size_nm == (20.0, 5.0, 5.0)
    cfg = compose_config("train", ["dataset=synthetic_em", "dataset.volumes.anisotropy=4.0"])
    assert configured_voxel_size_nm(cfg.dataset.volumes) == (20.0, 5.0, 5.0)
    given = synthetic_volumes((4, 32, 32), (2, 32, 32), anisotropy=4.0, voxel_size_nm=(8, 2, 2))
    assert given.voxel_size_nm == (8.0, 2.0, 2.0)  # a size given wins
