"""How a Predictor turns a network into probabilities: the one record of a reconstruction.

``whole_image`` feeds each image (2D network) or the volume (3D network) to the network as it
is, without padding: fluorescence's path since paper 000. The other four are paper 002's
protocols (``mitoseg.inference.protocols``): ``per_patch``, ``overlap`` (50 %, averaged),
``overlap_blend`` (50 %, blended) and ``full_image`` (padded to a multiple of ``divisor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mitoseg.errors import InputError
from mitoseg.inference.network import PRECISIONS
from mitoseg.inference.protocols import PROTOCOLS

RECONSTRUCTIONS = ("whole_image", *PROTOCOLS)
TILED = ("per_patch", "overlap", "overlap_blend")


@dataclass(frozen=True)
class ReconstructionSettings:
    """One reconstruction: mode, window (patch) size, TTA, Z-filter and the speed options."""

    reconstruction: str = "whole_image"
    tta: bool = False
    zfilter: int = 0  # median over this many slices after prediction; 0 (or 1): off
    patch_size: tuple[int, ...] | None = None  # the window of the tiled modes
    window: str | None = None  # overlap_blend's blending window (None: spline)
    batch_size: int = 8
    divisor: int = 16  # full_image pads each axis to a multiple of this
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False  # torch.compile the network (same probabilities to float rounding)

    def __post_init__(self) -> None:
        if self.reconstruction not in RECONSTRUCTIONS:
            raise InputError(f"inference: unknown reconstruction {self.reconstruction!r}; "
                             f"expected one of {list(RECONSTRUCTIONS)}")
        if self.zfilter < 0 or (self.zfilter > 1 and self.zfilter % 2 == 0):
            raise InputError(f"inference option 'zfilter' takes 0 (off) or an odd size, got "
                             f"{self.zfilter}")
        if self.reconstruction in TILED and not self.patch_size:
            raise InputError(f"inference: reconstruction {self.reconstruction!r} needs a window "
                             "size (inference.patch_size)")
        if self.precision not in PRECISIONS:
            raise InputError(f"inference option 'precision' must be one of {sorted(PRECISIONS)},"
                             f" got {self.precision!r}")
        if self.batch_size < 1 or self.divisor < 1:
            raise InputError(f"inference options 'batch_size' and 'divisor' must be >= 1, got "
                             f"{self.batch_size} and {self.divisor}")

    @property
    def overlap(self) -> float | None:
        """The share of a window its neighbour covers (tiled modes), else None."""
        if self.reconstruction not in TILED:
            return None
        return 0.0 if self.reconstruction == "per_patch" else 0.5

    @property
    def blending(self) -> str | None:
        if self.reconstruction not in TILED:
            return None
        return (self.window or "spline") if self.reconstruction == "overlap_blend" else "constant"

    def tta_views(self, spatial_dims: int) -> int:
        """How many views TTA averages: 1 without it, 8 (2D) or 16 (3D) with it."""
        return (8 if spatial_dims == 2 else 16) if self.tta else 1

    def with_row(self, protocol: str, tta: bool) -> "ReconstructionSettings":
        """The same options for one row of the protocol matrix (its Z-filter comes after)."""
        return replace(self, reconstruction=protocol, tta=bool(tta), zfilter=0)

    def describe(self, spatial_dims: int) -> dict[str, Any]:
        """What segmentation.json and the protocol card record."""
        tiled = self.reconstruction in TILED
        return {"reconstruction": self.reconstruction,
                "window": list(self.patch_size) if tiled else None,
                "overlap": self.overlap, "blending": self.blending,
                "tta": self.tta_views(spatial_dims),
                "zfilter": {"size": int(self.zfilter), "axis": "z"},
                "divisor": self.divisor if self.reconstruction == "full_image" else None,
                "precision": self.precision}


def from_inference_config(node: Mapping[str, Any] | None, patch_size: Sequence[int] | None
                          ) -> ReconstructionSettings:
    """The settings of an inference config (conf/inference/*.yaml): its ``headline`` row
    (protocol, TTA, Z-filter) with its speed options; ``patch_size`` when it names none."""
    if not node:
        return ReconstructionSettings(reconstruction="whole_image")
    headline = node.get("headline") or {}
    protocol = str(headline.get("protocol") or node.get("reconstruction") or "whole_image")
    patch = node.get("patch_size") or patch_size
    return ReconstructionSettings(
        reconstruction=protocol, tta=bool(headline.get("tta", False)),
        zfilter=int(headline.get("zfilter", 0) or 0),
        patch_size=tuple(int(p) for p in patch) if patch else None,
        window=node.get("window"), batch_size=int(node.get("batch_size") or 8),
        divisor=int(node.get("divisor") or 16),
        precision=str(node.get("precision") or "32-true"),
        channels_last=bool(node.get("channels_last", False)),
        compile=bool(node.get("compile", False)))
