"""What a test metric is averaged over, as paper 002 averages each reconstruction ("Output
Reconstruction"): the patches for per patch, the reconstructed images otherwise, which for a
3D network are its volumes."""

from __future__ import annotations

import pytest

from mitoseg.runs.protocol_columns import averaged_column, metric_average

CASES = [  # (reconstruction, spatial_dims, average)
    ("full_image", 2, "images"),
    ("overlap", 2, "images"),
    ("overlap_blend", 2, "images"),
    ("whole_image", 2, "images"),
    ("per_patch", 2, "patches"),
    ("overlap", 3, "volumes"),  # paper 002's 3D "50 % overlap": one IoU per merged volume
    ("full_image", 3, "volumes"),
    ("per_patch", 3, "patches"),  # "the average value over all patches", 3D patches
]


@pytest.mark.parametrize(("reconstruction", "spatial_dims", "average"), CASES)
def test_the_average_follows_the_reconstruction_and_the_networks_dims(
        reconstruction: str, spatial_dims: int, average: str) -> None:
    assert metric_average(reconstruction, spatial_dims) == average


def test_each_average_names_its_protocols_csv_column() -> None:
    assert averaged_column("iou_fg", "images") == "iou_fg_mean_per_slice"
    assert averaged_column("dice", "patches") == "dice_mean_per_patch"
    assert averaged_column("iou_fg", "volumes") == "iou_fg"  # pooled per volume
