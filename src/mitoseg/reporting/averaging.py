"""Which average each reported figure is. One name, two numbers would mislead: protocols.csv's
``iou_fg`` (``iou_bg``, ``iou_overall``, ``dice``) is the score of all test voxels pooled,
its ``iou_fg_mean_per_slice`` / ``_mean_per_patch`` are means over slices / patches, and
metrics.json's headline ``test/iou_fg`` is the mean its reconstruction averages over (slices;
volumes, each pooled, for a 3D network; patches for per_patch: the protocol card's ``average``,
``protocol_columns.metric_average``) while ``test/iou_fg_over_volume`` is the pooled one.
``report.py`` states the average in each table's heading and accepts ``<key>_over_volume`` for
protocols.csv's pooled column too.
"""

from __future__ import annotations

from mitoseg.runs.protocol_columns import (
    AVERAGED_COLUMNS,
    OVER_VOLUME,
    SCORE_COLUMNS,
    VOLUMES,
    metric_average,
)

POOLED = "pooled over all test voxels"
OVER = {"images": "mean over slices", "patches": "mean over patches",
        VOLUMES: "pooled over each test volume's voxels, mean over volumes"}
# a run tested on several volumes reports, for each figure, the mean over its volumes of that
# figure on each volume (protocols.csv's mean rows, metrics.json's headline)
PER_VOLUME = {POOLED: OVER[VOLUMES],
              OVER["images"]: "mean over each test volume's slices, mean over volumes",
              OVER["patches"]: "mean over each test volume's patches, mean over volumes"}
SHORT = {POOLED: "pooled", OVER["images"]: "per slice", OVER["patches"]: "per patch",
         OVER[VOLUMES]: "pooled per volume",
         PER_VOLUME[OVER["images"]]: "per slice, mean over volumes",
         PER_VOLUME[OVER["patches"]]: "per patch, mean over volumes"}


def protocols_column(metric: str) -> str:
    """The protocols.csv column of a metric name without a slash: ``iou_fg_over_volume`` ->
    ``iou_fg`` (the pooled column, named as metrics.json names it); others unchanged."""
    key = metric.removesuffix(OVER_VOLUME)
    return key if metric.endswith(OVER_VOLUME) and key in SCORE_COLUMNS else metric


def average_text(metric: str, protocol: str, card_average: str | None = None) -> str:
    """What ``metric`` (as given to --metric) averages for one run, under inference protocol
    label ``protocol`` ('full_image +TTA'); '' when it is not one of the volume scores.

    A headline score (``test/iou_fg``) is averaged as the run's protocol card says
    (``card_average``: "images", "patches" or "volumes"). Without one (no card, or a card older
    than the field) it is read from the protocol as a 2D network's."""
    split, _, key = metric.rpartition("/")
    if key.removesuffix(OVER_VOLUME) in SCORE_COLUMNS and key.endswith(OVER_VOLUME):
        return POOLED  # test/iou_fg_over_volume, or protocols.csv's iou_fg by that name
    for average, suffix in AVERAGED_COLUMNS.items():
        if key.endswith(f"_{suffix}") and key.removesuffix(f"_{suffix}") in SCORE_COLUMNS:
            return OVER[average]
    if key not in SCORE_COLUMNS:
        return ""
    if not split:
        return POOLED  # protocols.csv's bare column
    if card_average:
        return OVER.get(card_average, card_average)
    reconstruction = protocol.split(" ")[0]
    if reconstruction in ("", "-"):
        return ""
    return OVER[metric_average(reconstruction, spatial_dims=2)]


def per_volume_text(average: str) -> str:
    """``average_text``'s text for a run tested on several volumes, whose figures are each
    volume's, averaged over the volumes."""
    return PER_VOLUME.get(average, average)


def short_text(average: str) -> str:
    """``average_text``'s text in a few words, for a column heading."""
    return " / ".join(SHORT.get(part, part) for part in average.split(" / "))
