"""Choosing a data set brings its modality's defaults; choosing a 3D model brings 3D patches; a
model that does not fit the data stops before any data is read, saying what to set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from mitoseg.config.validation import check_model_fits_data
from mitoseg.errors import InputError
from mitoseg.training.train import train
from tests.conftest import CONF, REPO, compose_config, python_command

EM_DATASETS = ["kasthuri_pp", "lucchi", "lucchi_pp", "synthetic_em"]
# tiny synthetic volumes for the runs below (a debug=tiny run of seconds)
SMALL_VOLUMES = ["dataset.volumes.train_shape=[16,96,96]", "dataset.volumes.test_shape=[8,96,96]"]


def option(group: str, name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"))


@pytest.mark.parametrize("dataset", EM_DATASETS)
def test_an_em_data_set_brings_em_augmentation_and_post_processing(dataset: str) -> None:
    cfg = compose_config("train", [f"dataset={dataset}"])
    assert OmegaConf.to_container(cfg.augmentation) == option("augmentation", "paper2d")
    assert OmegaConf.to_container(cfg.postproc) == option("postproc", "em_default")
    assert cfg.inference.protocols == option("inference", "em_matrix")["protocols"]


@pytest.mark.parametrize("dataset", ["fluo_procedural", "fluo_masks", "fluo_pairs"])
def test_a_fluorescence_data_set_keeps_the_fluorescence_defaults(dataset: str) -> None:
    cfg = compose_config("train", [f"dataset={dataset}"])
    assert OmegaConf.to_container(cfg.augmentation) == option("augmentation", "dihedral")
    assert OmegaConf.to_container(cfg.postproc) == option("postproc", "default")


@pytest.mark.parametrize("overrides, augmentation, postproc", [
    (["dataset=synthetic_em", "augmentation=none"], "none", "em_default"),
    (["augmentation=strong", "dataset=lucchi", "postproc=em_oztel"], "strong", "em_oztel"),
    (["experiment=lucchi_unet2d", "dataset=synthetic_em"], "paper2d", "em_default"),
    (["experiment=paper000_real_masks"], "none", "default"),  # the experiment's own choice
    (["experiment=lucchi_unet2d", "ablation=a0_baseline"], "none", "em_default"),
])
def test_explicit_choices_win_over_the_data_sets_defaults(overrides: list[str], augmentation: str,
                                                          postproc: str) -> None:
    cfg = compose_config("train", overrides)
    assert OmegaConf.to_container(cfg.augmentation) == option("augmentation", augmentation)
    assert OmegaConf.to_container(cfg.postproc) == option("postproc", postproc)


@pytest.mark.parametrize("dataset", ["lucchi", "synthetic_em"])
def test_evaluate_keeps_the_checkpoints_choices(dataset: str) -> None:
    """evaluate.py dataset=<EM data set>: post-processing and inference stay the checkpoint's
    (null here) unless given; the modality defaults are for training."""
    cfg = compose_config("evaluate", ["ckpt_path=x.ckpt", f"dataset={dataset}"])
    assert cfg.get("postproc") is None and cfg.get("inference") is None
    assert OmegaConf.to_container(cfg.augmentation) == option("augmentation", "none")
    given = compose_config("evaluate", ["ckpt_path=x.ckpt", f"dataset={dataset}",
                                        "postproc=em_oztel"])
    assert OmegaConf.to_container(given.postproc) == option("postproc", "em_oztel")


def test_the_readme_command_trains_with_em_defaults(tmp_path: Path) -> None:
    """python train.py model=unet_plusplus dataset=synthetic_em (README) stopped with an
    augmentation error; it runs as written (here shrunk by debug=tiny, volumes and widths)."""
    cfg = compose_config("train", ["model=unet_plusplus", "dataset=synthetic_em", *SMALL_VOLUMES,
                                   "dataset.patch_size=[64,64]", "+model.filters=[4,8,8,8,8]",
                                   "debug=tiny", "logger=none"], tmp_path)
    assert cfg.augmentation._target_.endswith("EMCompose")
    metrics = train(cfg)
    assert 0.0 <= metrics["test"]["iou_fg"]["mean"] <= 1.0
    assert (tmp_path / "protocols.csv").is_file()


@pytest.mark.parametrize("dataset, patch", [("lucchi", [80, 80, 80]),
                                            ("kasthuri_pp", [20, 160, 160]),
                                            ("synthetic_em", [16, 128, 128])])
def test_a_3d_model_brings_3d_patches(dataset: str, patch: list[int]) -> None:
    cfg = compose_config("train", ["model=unet3d_paper002", f"dataset={dataset}"])
    assert list(cfg.dataset.patch_size) == patch
    check_model_fits_data(cfg)
    two_d = compose_config("train", [f"dataset={dataset}"])
    assert len(two_d.dataset.patch_size) == 2


def test_the_3d_command_of_the_issue_composes_and_fits(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model=unet3d_paper002", "dataset=synthetic_em",
                                   "augmentation=paper3d"], tmp_path)
    assert list(cfg.dataset.patch_size) == [16, 128, 128]
    check_model_fits_data(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["model=unet3d_paper002", "dataset=synthetic_em", "augmentation=paper3d",
      "dataset.patch_size=[128,128]"],
     (r"model UNetPaper002 is 3D \(model.spatial_dims=3\) but dataset.patch_size=\[128, 128\] "
      r"has 2 sizes: set dataset.patch_size to 3 sizes \(e.g. dataset.patch_size=\[80,80,80\]\)")),
    (["model=unet2d_paper002", "dataset=lucchi", "dataset.patch_size=[16,64,64]"],
     (r"is 2D \(model.spatial_dims=2\) but dataset.patch_size=\[16, 64, 64\] has 3 sizes: set "
      r"dataset.patch_size to 2 sizes")),
    (["model=unet3d_paper002"], r"is 3D .* whole 2D images: choose a 2D model"),
])
def test_a_model_that_does_not_fit_the_data_stops_before_training(
        overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(InputError, match=message):
        train(cfg)
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_mismatch_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(python_command(
        "train.py", "model=unet3d_paper002", "dataset=synthetic_em", "augmentation=paper3d",
        "dataset.patch_size=[128,128]", f"paths.output_root={tmp_path}", "logger=none"),
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "set dataset.patch_size to 3 sizes" in done.stderr
    assert "Traceback" not in done.stderr and "expected input" not in done.stderr


@pytest.mark.parametrize("dataset", ["lucchi", "synthetic_em"])
def test_a_3d_model_does_not_train_on_the_2d_augmentation_unawares(dataset: str,
                                                                    tmp_path: Path) -> None:
    """An EM data set brings augmentation=paper2d whatever the model; paper 002 adds elastic
    deformation for 3D networks (paper3d), so a 3D model on paper2d stops and says what to set;
    paper3d, or a 2D model on paper2d, passes."""
    from hydra import compose, initialize_config_dir

    from mitoseg.config.validation import check_augmentation_fits_model

    def choices(*overrides: str) -> tuple:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[f"dataset={dataset}", *overrides],
                          return_hydra_config=True)
        return cfg, dict(cfg.hydra.runtime.choices)

    cfg, chosen = choices("model=unet3d_paper002")
    assert chosen["augmentation"] == "paper2d"
    with pytest.raises(InputError, match=r"3D but augmentation=paper2d .* set augmentation=paper3d"):
        check_augmentation_fits_model(cfg, chosen)
    check_augmentation_fits_model(*choices("model=unet3d_paper002", "augmentation=paper3d"))
    check_augmentation_fits_model(*choices())  # 2D model, paper2d
    if dataset == "synthetic_em":  # the command line: one line, before anything is written
        done = subprocess.run(python_command(
            "train.py", "model=unet3d_paper002", f"dataset={dataset}",
            f"paths.output_root={tmp_path}", "logger=none"),
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "set augmentation=paper3d" in done.stderr and "Traceback" not in done.stderr
        assert not list(tmp_path.rglob("run_info.json"))


@pytest.mark.parametrize("dataset", ["lucchi", "kasthuri_pp", "synthetic_em"])
def test_a_3d_model_is_not_headlined_by_a_full_image_reconstruction_unawares(
        dataset: str, tmp_path: Path) -> None:
    """An EM data set brings inference=em_matrix, whose headline is the full image with 8-fold
    TTA and a z-median (paper 002's 2D protocol); the paper reports its 3D networks per patch
    and with 50 % overlap only. A 3D model with a full-image headline stops and says what to
    set; em_matrix_3d, another headline, or a 2D model passes."""
    from mitoseg.config.validation import check_inference_fits_model

    def composed(*overrides: str) -> DictConfig:
        return compose_config("train", [f"dataset={dataset}", *overrides])

    for inference in ("em_matrix", "em_paper", "em_matrix_no_tta"):
        with pytest.raises(InputError, match=r"3D but the test headline is a full-image .* "
                                             r"set inference=em_matrix_3d"):
            check_inference_fits_model(composed("model=unet3d_paper002",
                                                f"inference={inference}"))
    check_inference_fits_model(composed("model=unet3d_paper002", "inference=em_matrix_3d"))
    check_inference_fits_model(composed("model=unet3d_paper002",
                                        "inference.headline.protocol=overlap"))
    check_inference_fits_model(composed("model=unet3d_paper002", "inference=em_quick"))
    check_inference_fits_model(composed("experiment=kasthuri_unet3d") if dataset == "kasthuri_pp"
                               else composed())  # the 3D recipe; a 2D model on em_matrix
    if dataset == "synthetic_em":  # the command line: one line, before anything is written
        done = subprocess.run(python_command(
            "train.py", "model=unet3d_paper002", f"dataset={dataset}", "augmentation=paper3d",
            f"paths.output_root={tmp_path}", "logger=none"),
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "set inference=em_matrix_3d" in done.stderr and "Traceback" not in done.stderr
        assert not list(tmp_path.rglob("run_info.json"))


@pytest.mark.parametrize("model, voxel_size, warns", [
    ("unet3d_paper002", (30, 3, 3), True),        # Kasthuri++ with z pooling
    ("unet3d_cicek", (30, 3, 3), True),           # no z_pooling option: taken to pool z
    ("unet3d_anisotropic", (30, 3, 3), False),    # paper 002's Kasthuri++ networks
    ("residual_unet3d_anisotropic", (30, 3, 3), False),
    ("unet3d_paper002", (5, 5, 5), False),        # isotropic Lucchi
    ("unet3d_paper002", (8, 5, 5), False),        # below 2x
    ("unet2d_paper002", (30, 3, 3), False),       # 2D: no z axis to pool
])
def test_z_pooling_on_anisotropic_voxels_warns(model, voxel_size, warns) -> None:
    from mitoseg.config.validation import z_pooling_warning

    cfg = compose_config("train", [f"model={model}"])
    warning = z_pooling_warning(cfg.model, voxel_size)
    assert (warning is not None) == warns
    if warns:
        assert "10 times longer in z" in warning and "unet3d_anisotropic" in warning
