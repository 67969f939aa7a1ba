"""The one prediction path: a trained network, its input scaling and a reconstruction.

Every place that turns images into probabilities -- the test after training, ``evaluate.py``,
``segment.py``, the study -- goes through a ``Predictor`` (the shape of nnU-Net's
nnUNetPredictor): build it from a checkpoint or from a trained module, then
``probabilities(array)`` and ``masks(probabilities, image)``.

A 2D image (H, W), a stack of 2D images or a volume (D, H, W); a 2D network sees a stack or a
volume slice by slice (like MONAI's SliceInferer), a 3D network sees the volume whole. The
arithmetic is ``mitoseg.inference``'s (protocols, TTA, Z-filter, the network wrapper).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from tqdm.auto import tqdm

from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.modality import (
    modality_of,
    network_spatial_dims,
    stored_patch_size,
)
from mitoseg.evaluation.reconstruction import (
    ReconstructionSettings,
    from_inference_config,
)
from mitoseg.evaluation.scoring import apply_postproc
from mitoseg.inference.network import net_predictor
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.tta import predict_with_tta
from mitoseg.inference.zfilter import median_z_filter

log = logging.getLogger(__name__)

SLICES_PER_STEP = 16  # a 2D network's stack goes this many slices per progress step


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def as_applied(settings: ReconstructionSettings, shape: tuple[int, ...]
               ) -> ReconstructionSettings:
    """``settings`` as they act on an input of ``shape``: the z-median needs neighbouring
    slices, so a 2D image or a single slice gets none."""
    single_slice = len(shape) == 2 or shape[0] == 1
    return replace(settings, zfilter=0) if single_slice and settings.zfilter else settings


class Predictor:
    """Probabilities and masks of one network under one reconstruction.

    Args:
        net: a network returning logits.
        normalization: the input scaling it was trained with (the checkpoint's).
        spatial_dims: 2 (the network sees 2D images) or 3 (volumes).
        settings: the reconstruction (``mitoseg.evaluation.reconstruction``).
        postproc: probabilities -> mask (``Binarize``, ``EMPostprocess``, a level set ...).
        volume_postproc: post-process a stack as one volume (EM) instead of image by image.
        device: None: cuda when present, else the CPU.
    """

    def __init__(self, net: nn.Module, normalization: Normalization, spatial_dims: int,
                 settings: ReconstructionSettings, postproc: Callable[..., np.ndarray],
                 volume_postproc: bool = False, device: str | torch.device | None = None,
                 progress: bool = True) -> None:
        if spatial_dims not in (2, 3):
            raise InputError(f"Predictor: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.net, self.normalization, self.spatial_dims = net, normalization, int(spatial_dims)
        self.settings, self.postproc = settings, postproc
        self.volume_postproc, self.progress = bool(volume_postproc), bool(progress)
        self.device = torch.device(device or default_device())
        self.stored: dict[str, Any] = {}  # a checkpoint's stored config (from_checkpoint)
        self.predict = net_predictor(net, self.device, settings.precision,
                                     channels_last=settings.channels_last and spatial_dims == 2,
                                     compile=settings.compile)

    @classmethod
    def from_checkpoint(cls, path: str | Path,
                        inference: ReconstructionSettings | Mapping[str, Any] | None = None,
                        postproc: Callable[..., np.ndarray] | None = None,
                        device: str | torch.device | None = None,
                        compile: bool | None = None) -> "Predictor":
        """A checkpoint's network with its stored normalization and post-processing.

        ``inference``: the reconstruction, as settings or as an inference config (its
        headline row; the window defaults to the training patch size); None: the checkpoint's
        modality's default (``modality.default_settings``). ``compile``: None: as the
        settings say; True or False: torch.compile the network or not, whatever they say.
        """
        net, stored = load_network(path)
        modality = modality_of(stored)
        if inference is None:
            settings = modality.default_settings(stored)
        elif isinstance(inference, ReconstructionSettings):
            settings = inference
        else:
            settings = from_inference_config(inference, stored_patch_size(stored))
        if compile is not None:
            settings = replace(settings, compile=bool(compile))
        if postproc is None:
            postproc = instantiate(OmegaConf.create(stored["postproc"]))
        predictor = cls(net, Normalization.from_dict(stored["normalization"]),
                        network_spatial_dims(net), settings, postproc,
                        modality.volume_postproc, device)
        predictor.stored = stored
        return predictor

    @classmethod
    def from_module(cls, net: nn.Module, normalization: Normalization, spatial_dims: int,
                    inference: ReconstructionSettings, postproc: Callable[..., np.ndarray],
                    device: str | torch.device | None = None,
                    volume_postproc: bool = False) -> "Predictor":
        """The network of a module just trained (the test after fitting)."""
        return cls(net, normalization, spatial_dims, inference, postproc, volume_postproc, device)

    def probabilities(self, array: np.ndarray | torch.Tensor,
                      reconstruction: ReconstructionSettings | None = None) -> np.ndarray:
        """Float32 probabilities shaped like ``array``: (H, W), or (D, H, W) for a stack or a
        volume. The raw intensities are scaled by the stored normalization first."""
        array = np.asarray(array)
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise InputError(f"Predictor: expected a 2D image (H, W) or a stack/volume "
                             f"(D, H, W), got shape {array.shape}")
        self.normalization.check_input(array.dtype, "Predictor: the input")
        return self.network_probabilities(self.normalization(array), reconstruction)

    @torch.no_grad()
    def network_probabilities(self, scaled: np.ndarray | torch.Tensor,
                              reconstruction: ReconstructionSettings | None = None) -> np.ndarray:
        """``probabilities`` of inputs already scaled as in training (e.g. a data loader's
        batch (N, H, W), scaled by the same ``Normalization``)."""
        settings = reconstruction or self.settings
        x = torch.as_tensor(np.asarray(scaled, dtype=np.float32)
                            if not isinstance(scaled, torch.Tensor) else scaled.float()).cpu()
        single_image = x.ndim == 2
        if single_image:
            if self.spatial_dims == 3:
                raise InputError(f"Predictor: a 3D network needs a volume (D, H, W), got a 2D "
                                 f"image of shape {tuple(x.shape)}")
            x = x[None]
        if self.spatial_dims == 2:
            # whole images go in batches, full images one by one; the tiled modes share
            # network calls between the windows of all slices, so they go in one step
            step = {"whole_image": settings.batch_size, "full_image": SLICES_PER_STEP}.get(
                settings.reconstruction, x.shape[0])
            steps = [x[i:i + step] for i in range(0, x.shape[0], step)]
            out = torch.cat([self._reconstruct(part, settings)
                             for part in self._bar(steps, "slices", step)])
        else:
            log.info("predicting a %s volume (%s)", tuple(x.shape), settings.reconstruction)
            out = self._reconstruct(x, settings)
        probabilities = out.numpy().astype(np.float32, copy=False)
        if as_applied(settings, probabilities.shape).zfilter > 1:
            probabilities = median_z_filter(probabilities, int(settings.zfilter))
        return probabilities[0] if single_image else probabilities

    def _reconstruct(self, x: torch.Tensor, settings: ReconstructionSettings) -> torch.Tensor:
        """(D, H, W) network inputs -> (D, H, W) probabilities on the CPU."""
        if settings.reconstruction != "whole_image":
            return reconstruct(self.predict, x, settings.reconstruction,
                               settings.patch_size or x.shape[-self.spatial_dims:],
                               self.spatial_dims, settings.tta, settings.window,
                               divisor=settings.divisor, batch_size=settings.batch_size,
                               device=self.device).probabilities
        batch = x[:, None] if self.spatial_dims == 2 else x[None, None]
        outs = []
        for start in range(0, batch.shape[0], settings.batch_size):
            part = batch[start:start + settings.batch_size].to(self.device)
            out = (predict_with_tta(self.predict, part, self.spatial_dims) if settings.tta
                   else self.predict(part))
            outs.append(out.float().cpu())
        out = torch.cat(outs)
        return out[:, 0] if self.spatial_dims == 2 else out[0, 0]

    def _bar(self, steps: list, unit: str, per_step: int) -> Any:
        if not self.progress or len(steps) < 2:
            return steps
        return tqdm(steps, desc=f"predicting ({per_step} {unit} a step)", unit="step")

    def masks(self, probabilities: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
        """Boolean masks of ``probabilities``: 2D images one by one (with their image for a
        post-processing that refines on it), EM stacks and volumes as one volume."""
        probabilities = np.asarray(probabilities)
        if probabilities.ndim == 2 or self.volume_postproc:
            return np.asarray(apply_postproc(self.postproc, probabilities, image), dtype=bool)
        planes = [None] * len(probabilities) if image is None else list(image)
        return np.stack([np.asarray(apply_postproc(self.postproc, p, plane), dtype=bool)
                         for p, plane in zip(probabilities, planes)])

    def describe(self, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """The reconstruction, normalization and post-processing, for result records:
        as configured, or, given an input's ``shape``, as applied to that input."""
        describe = getattr(self.postproc, "describe", None)
        settings = self.settings if shape is None else as_applied(self.settings, shape)
        return {"reconstruction": settings.describe(self.spatial_dims),
                "normalization": self.normalization.to_dict(),
                "postproc": describe() if describe else repr(self.postproc),
                "spatial_dims": self.spatial_dims, "device": str(self.device)}
