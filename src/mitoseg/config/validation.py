"""Checks on a composed config that Hydra's schema-free YAML cannot make itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mitoseg.errors import InputError


def check_seeds(cfg: DictConfig) -> None:
    """``seed`` and ``data_seed`` must be explicit ints >= 0 (0 is a valid seed)."""
    for key in ("seed", "data_seed"):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"config option '{key}' must be an int >= 0, got {value!r} "
                             "(for several seeds use a multirun: -m seed=0..9)")


def check_model_fits_data(cfg: DictConfig) -> None:
    """The network's spatial dimensions match the data's: a 2D network takes 2D patches or
    images, a 3D network 3D patches (``dataset.patch_size`` of 3 sizes). Caught here, before
    any data is read, instead of as a shape error inside the first convolution."""
    model, dataset = cfg.get("model"), cfg.get("dataset")
    if not model or not dataset:
        return
    dims = int(model.get("spatial_dims", 2))
    name = _model_name(model)
    patch = dataset.get("patch_size")
    if patch is None:  # whole 2D images (the fluorescence data sets)
        if dims != 2:
            raise InputError(f"model {name} is {dims}D (model.spatial_dims={dims}) but the "
                             "dataset gives whole 2D images: choose a 2D model or a volume "
                             "(EM) data set")
        return
    patch = list(patch)
    if len(patch) != dims:
        example = "[80,80,80]" if dims == 3 else "[256,256]"
        raise InputError(f"model {name} is {dims}D (model.spatial_dims={dims}) but "
                         f"dataset.patch_size={patch} has {len(patch)} sizes: set "
                         f"dataset.patch_size to {dims} sizes (e.g. dataset.patch_size={example}),"
                         f" or leave it unset so the data set takes the model's default")


def check_augmentation_fits_model(cfg: DictConfig, choices: Mapping[str, Any]) -> None:
    """A 3D network does not train on the 2D augmentation preset: paper 002 adds elastic
    deformation for its 3D networks (``augmentation=paper3d``), and an EM data set brings
    ``paper2d`` whatever the model, so a 3D model would otherwise train without it unawares.
    ``choices``: Hydra's config-group choices (empty outside a Hydra run: nothing to check)."""
    model = cfg.get("model") or {}
    if int(model.get("spatial_dims", 2)) == 3 and choices.get("augmentation") == "paper2d":
        raise InputError(f"model {_model_name(model)} is 3D but augmentation=paper2d (what an "
                         "EM data set brings by default) has no elastic deformation, which "
                         "paper 002 adds for 3D networks: set augmentation=paper3d (or another "
                         "preset, e.g. rot90_flips or none, to train 3D without it)")


def check_inference_fits_model(cfg: DictConfig) -> None:
    """A 3D network's test headline is not a full-image reconstruction: paper 002 reports its
    3D networks per patch and with 50 % overlap only ("the 3D networks do not have results using
    full image reconstructions"), and an EM data set's default matrix (``em_matrix``) headlines
    the full image, so a 3D run would otherwise report a protocol the paper has no 3D figure
    for, unawares. The full-image rows may still be computed (protocols.csv)."""
    model = cfg.get("model") or {}
    headline = (cfg.get("inference") or {}).get("headline") or {}
    if int(model.get("spatial_dims", 2)) == 3 and headline.get("protocol") == "full_image":
        raise InputError(f"model {_model_name(model)} is 3D but the test headline is a full-image "
                         "reconstruction (inference.headline.protocol=full_image, what "
                         "inference=em_matrix, the EM default, headlines), for which paper 002 "
                         "has no 3D figure: set inference=em_matrix_3d (the paper's 3D "
                         "evaluation: per patch and 50 % overlap, 16-fold TTA), or another "
                         "headline (e.g. inference.headline.protocol=overlap)")


def z_pooling_warning(model: Mapping[str, Any] | None,
                      voxel_size_nm: Any) -> str | None:
    """A warning when a 3D network halves z on voxels at least twice as long in z as in y, x
    (Kasthuri++: 30 x 3 x 3 nm), where paper 002 removed the z pooling; None otherwise.
    Networks without a ``z_pooling`` option are taken to pool z."""
    model = model or {}
    if int(model.get("spatial_dims", 2)) != 3 or voxel_size_nm is None \
            or model.get("z_pooling", True) is False:
        return None
    z, y, x = (float(v) for v in voxel_size_nm)
    if z < 2 * min(y, x):
        return None
    return (f"model {_model_name(model)} pools along z, but the voxels are {z / min(y, x):g} "
            f"times longer in z ({z:g} x {y:g} x {x:g} nm): its deeper levels see a few "
            "slices smeared together. Paper 002 removed the z pooling for such data: "
            "model=unet3d_anisotropic (or attention_, se_, residual_unet3d_anisotropic; "
            "experiment=kasthuri_unet3d)")


def _model_name(model: Any) -> str:
    """The network's class name, for messages (``UNetPaper002``)."""
    return str(model.get("_target_", "?")).rsplit(".", 1)[-1]


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python types (safe to store in a checkpoint)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
