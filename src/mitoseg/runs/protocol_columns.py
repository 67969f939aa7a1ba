"""The columns of an EM run's protocols.csv that its writer (``evaluation.em_evaluate``,
``evaluation.protocol_card``) and its reader (``reporting``) share: one owner, so a renamed
column cannot leave the report reading rows that are no longer there."""

from __future__ import annotations

VOLUME_COLUMN = "test_volume"  # which test volume a row scores (only with several volumes)
MEAN_OVER_VOLUMES = "mean"  # VOLUME_COLUMN of the rows averaging every test volume
VOLUMES_COLUMN = "volumes"  # how many volumes a mean row averages
CARD_PREFIX = "card_"  # a row's own protocol card, one column per field
PROTOCOL_COLUMNS = ("protocol", "tta", "zfilter")  # the matrix cell a row scores


def is_label_column(name: str) -> bool:
    """Whether a protocols.csv column says what a row is (its protocol, its test volume, how
    many volumes it averages, its card) rather than what it measured."""
    return name in (*PROTOCOL_COLUMNS, VOLUME_COLUMN, VOLUMES_COLUMN) or \
        name.startswith(CARD_PREFIX)

# the protocols.csv column suffixes of a score averaged over images (slices) or over patches;
# averaged over volumes, a score is its bare (pooled) column: ``averaged_column``
AVERAGED_COLUMNS = {"images": "mean_per_slice", "patches": "mean_per_patch"}
VOLUMES = "volumes"  # the average of a 3D network's per-image protocols: one IoU per volume
# the scores of a row, pooled over the volume's voxels under their bare names (the metric
# keys of ``mitoseg.metrics.volume``, a test keeps the two equal; runs/ imports no metrics/)
SCORE_COLUMNS = ("iou_fg", "iou_bg", "iou_overall", "dice")
OVER_VOLUME = "_over_volume"  # metrics.json's name of a pooled score: test/iou_fg_over_volume


def metric_average(reconstruction: str, spatial_dims: int) -> str:
    """What a test metric is the average over, as paper 002 reports each reconstruction
    ("Output Reconstruction": per patch, "the average value over all patches"; per image with
    50 % overlap and full image, "the average over all reconstructed images"): "patches" for
    ``per_patch`` (2D or 3D patches); else the reconstructed images, which for a 2D network
    (``spatial_dims`` 2) are "images" (the slices of a volume, or a fluorescence set's images)
    and for a 3D network (3) "volumes" (each test volume scored as one, its voxels pooled)."""
    if reconstruction == "per_patch":
        return "patches"
    return VOLUMES if spatial_dims == 3 else "images"


def averaged_column(score: str, average: str) -> str:
    """The protocols.csv column holding ``score`` (one of ``SCORE_COLUMNS``) averaged over
    ``average`` (``metric_average``): ``iou_fg_mean_per_slice``, ``iou_fg_mean_per_patch``, or
    over volumes the bare pooled ``iou_fg`` (a mean row's is the mean over the volumes)."""
    return score if average == VOLUMES else f"{score}_{AVERAGED_COLUMNS[average]}"
