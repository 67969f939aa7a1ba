"""Modality by config: each data module class declares how it is evaluated.

``FluorescenceDataModule`` and ``PairedFolderDataModule`` hold image sets (``evaluation =
"image_set"``): per-image metric rows, whole images, post-processing image by image.
``EMDataModule`` holds volumes (``evaluation = "volume_matrix"``): paper 002's protocol matrix,
the inference config's headline reconstruction, post-processing of the whole volume. A
checkpoint names its data module class in its stored config, so the modality of a checkpoint
is read from there, never guessed from types or file contents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.utils import get_class
from torch import nn

from mitoseg.evaluation.reconstruction import ReconstructionSettings, from_inference_config
from mitoseg.errors import InputError


@dataclass(frozen=True)
class Modality:
    """How one kind of data set is evaluated and segmented."""

    name: str                # the data module's ``evaluation``
    volume_postproc: bool    # post-process a stack as one volume
    uses_inference_config: bool  # default reconstruction: the stored inference headline
    slices_form_volumes: bool  # a folder of 2D slices is one volume (else separate images)

    def default_settings(self, run: Mapping[str, Any],
                         inference: Mapping[str, Any] | None = None,
                         patch_size: Sequence[int] | None = None) -> ReconstructionSettings:
        """The reconstruction a run of this modality is tested with unless another is chosen
        (``run``: its config, as stored in a checkpoint or live in train.py): whole images at
        the precision and channels-last setting its test ran with (image sets,
        ``tested_precision``), or the headline of ``inference`` (volumes; None: the run's own
        inference config) with the run's training window where that names none
        (``patch_size``; None: the stored ``dataset.patch_size``)."""
        if not self.uses_inference_config:
            precision, channels_last = tested_precision(run)
            return ReconstructionSettings("whole_image", precision=precision,
                                          channels_last=channels_last)
        node = run.get("inference") if inference is None else inference
        return from_inference_config(node, patch_size or stored_patch_size(run))


MODALITIES = {
    "image_set": Modality("image_set", volume_postproc=False, uses_inference_config=False,
                          slices_form_volumes=False),
    "volume_matrix": Modality("volume_matrix", volume_postproc=True, uses_inference_config=True,
                              slices_form_volumes=True),
}


def modality_named(name: str, where: str = "data module") -> Modality:
    if name not in MODALITIES:
        raise InputError(f"{where}: unknown evaluation {name!r}; expected one of "
                         f"{list(MODALITIES)}")
    return MODALITIES[name]


def modality_of_datamodule(datamodule: Any) -> Modality:
    """The modality a data module declares (its ``evaluation`` attribute)."""
    name = getattr(datamodule, "evaluation", None)
    if name is None:
        raise InputError(f"data module {type(datamodule).__name__} declares no 'evaluation' "
                         f"(one of {list(MODALITIES)})")
    return modality_named(str(name), type(datamodule).__name__)


def modality_of(stored: Mapping[str, Any]) -> Modality:
    """The modality of a checkpoint's stored config (its data module class declares it)."""
    target = str((stored.get("dataset") or {}).get("_target_", ""))
    try:
        cls = get_class(target)
    except Exception as error:  # noqa: BLE001 - any import failure: an unknown data module
        raise InputError(f"checkpoint: its data module {target!r} cannot be found: {error}"
                         ) from error
    return modality_of_datamodule(cls)


def stored_patch_size(stored: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The training window of a checkpoint (EM data sets), or None."""
    patch = (stored.get("dataset") or {}).get("patch_size")
    return tuple(int(p) for p in patch) if patch else None


def training_voxel_size_nm(stored: Mapping[str, Any]
                           ) -> tuple[float | None, float, float] | None:
    """The voxel size (z, y, x nm) a checkpoint was trained at, from its stored config: an EM
    data set's (``dataset.volumes``, see ``em_sources.configured_voxel_size_nm``), or a
    fluorescence data set's ``pixel_size_um`` (y and x; no z). None where the config does not
    say (EM volumes whose size came from their files' metadata)."""
    from mitoseg.data.em_sources import configured_voxel_size_nm

    dataset = stored.get("dataset") or {}
    if isinstance(dataset.get("volumes"), Mapping):
        return configured_voxel_size_nm(dataset["volumes"])
    pixel_size_um = dataset.get("pixel_size_um")
    if pixel_size_um is None:
        return None
    return None, float(pixel_size_um) * 1000.0, float(pixel_size_um) * 1000.0


def tested_precision(stored: Mapping[str, Any]) -> tuple[str, bool]:
    """The precision and channels-last setting an image-set run's test used: its trainer's
    ``precision`` and ``speed.channels_last`` (``training.train`` scores the test with them).
    evaluate.py and segment.py score its checkpoint the same way, so they reproduce its
    numbers (bf16 and fp32 differ by about 1e-3 in AS). Volumes take their inference config's."""
    from mitoseg.inference.network import PRECISIONS

    precision = str((stored.get("trainer") or {}).get("precision", "32-true"))
    channels_last = bool((stored.get("speed") or {}).get("channels_last", False))
    return (precision if precision in PRECISIONS else "32-true"), channels_last


def network_spatial_dims(net: nn.Module) -> int:
    """3 for a network with 3D convolutions, else 2."""
    return 3 if any(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) for m in net.modules()) else 2
