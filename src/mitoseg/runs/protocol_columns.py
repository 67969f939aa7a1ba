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
