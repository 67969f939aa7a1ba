"""Scoring a Predictor on an EM data module's test volume (paper 002's protocol matrix)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mitoseg.evaluation.em_protocols import matrix_table, protocol_matrix
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.protocol_card import TestSetHash, card_columns, protocol_card
from mitoseg.errors import InputError
from mitoseg.metrics.volume import METRIC_KEYS
from mitoseg.runs.files import write_new_csv, write_new_text
from mitoseg.runs.protocol_columns import (
    MEAN_OVER_VOLUMES,
    OVER_VOLUME,
    PROTOCOL_COLUMNS,
    VOLUME_COLUMN,
    VOLUMES_COLUMN,
    averaged_column,
    is_label_column,
)

log = logging.getLogger(__name__)


def evaluate_em(predictor: Predictor, datamodule: Any, inference: DictConfig,
                out_dir: Path) -> dict[str, Any]:
    """Run the inference matrix of ``inference`` on every test volume; write protocols.csv and
    protocols.md into ``out_dir``; return the rows and the headline row.

    The headline -- what metrics.json's ``test``, the optimized metric, the W&B summary and
    report.py show -- is the protocol ``inference.headline`` names (protocol, TTA, Z-filter);
    every other row stays in protocols.csv, each with its protocol card's columns. Its scores
    are averaged as paper 002 averages that reconstruction (the card's ``average``,
    ``metric_average``): for a 2D network over the images, i.e. the slices; for a 3D network
    over the volumes, each scored as one (its voxels pooled); over the patches for per_patch.
    ``iou_fg_over_volume`` is the foreground IoU of all voxels pooled (protocols.csv's
    ``iou_fg``) and ``iou_fg_mean_per_slice`` the mean over slices, for comparison. The
    predictor brings the network call, the input normalization (the checkpoint's) and the
    post-processing. Ignored voxels (the data set's label mapping) count in no metric.

    Several test volumes: each volume is one independent unit. protocols.csv holds every
    volume's rows (``test_volume`` names it) and, per protocol, the mean over the volumes
    (``test_volume`` = "mean"); the headline is that mean, with its n (volumes) and std.
    """
    choice = headline_choice(inference)
    datamodule.setup()
    volumes = datamodule.volumes
    patch_size = inference.get("patch_size") or datamodule.patch_size
    several = len(volumes.test) > 1
    rows: list[dict[str, Any]] = []
    whole_set = TestSetHash()
    for test in volumes.test:
        valid = test.valid()
        scored = protocol_matrix(
            predictor.predict, test.image, test.labels,
            predictor.spatial_dims, patch_size, predictor.postproc,
            protocols=list(inference.protocols), tta=list(inference.tta),
            zfilter=list(inference.zfilter), batch_size=int(inference.batch_size),
            divisor=int(inference.divisor), voxel_size_nm=volumes.voxel_size_nm,
            device=predictor.device, normalization=predictor.normalization,
            **({} if valid is None else {"valid": valid}))
        arrays = (test.image, test.labels) + (() if valid is None else (valid,))
        whole_set.update(*arrays)
        test_set = {"fingerprint": TestSetHash().update(*arrays).fingerprint(), "units": 1,
                    "description": f"{volumes.description}: test volume "
                                   f"{_named(test, several)}{tuple(test.shape)}"}
        rows += [({VOLUME_COLUMN: test.name} if several else {}) | row
                 | card_columns(_card(predictor, row, test_set)) for row in scored]
    if several:
        test_set = {"fingerprint": whole_set.fingerprint(), "units": len(volumes.test),
                    "description": f"{volumes.description}: {len(volumes.test)} test volumes "
                                   f"{[v.name for v in volumes.test]}"}
        rows += [row | card_columns(_card(predictor, row, test_set))
                 for row in mean_over_volumes(rows)]
    write_new_csv(out_dir / "protocols.csv", rows)
    shapes = ", ".join(f"{_named(v, several)}{tuple(v.shape)}" for v in volumes.test)
    title = (f"{volumes.description}: test volume{'s' if several else ''} {shapes}, "
             f"threshold {predictor.postproc.threshold}")
    write_new_text(out_dir / "protocols.md", matrix_table(rows, title))
    log.info("\n%s", matrix_table(rows, title))
    headline = next(row for row in rows if _key(row) == _key(choice)
                    and row.get(VOLUME_COLUMN, MEAN_OVER_VOLUMES) == MEAN_OVER_VOLUMES)
    card = _card(predictor, headline, test_set)
    test = {key: {"mean": headline[column], "n": len(volumes.test)}
            | ({"std": headline[f"{column}_std"]} if several else {})
            for key, column in headline_columns(card["average"]).items()}
    return {"test": test, "headline": {k: headline[k] for k in PROTOCOL_COLUMNS},
            "protocols": rows, "protocol_card": card}


def headline_columns(average: str) -> dict[str, str]:
    """metrics.json's ``test`` key -> the headline row's protocols.csv column it reads: each
    score averaged over ``average`` (the card's), then the pooled foreground IoU
    (``iou_fg_over_volume``) and the mean over slices (``iou_fg_mean_per_slice``), whatever
    the average, so a 3D run keeps its per-slice figure and every run its pooled one."""
    return {key: averaged_column(key, average) for key in METRIC_KEYS} | {
        f"iou_fg{OVER_VOLUME}": "iou_fg", "iou_fg_mean_per_slice": "iou_fg_mean_per_slice"}


# counts of a volume's row that add up over volumes (a volume that ignores nothing has no
# ignored slice, so its row has no such column: 0)
TOTALS = ("n_slices_ignored",)


def mean_over_volumes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (protocol, TTA, Z-filter): the mean of every metric over the test volumes' rows, and
    its std over volumes (``<metric>_std``, ddof 1); ``test_volume`` = "mean". Counts of
    ``TOTALS`` are summed instead (the slices left out of all volumes' per-slice means)."""
    groups: dict[tuple[str, bool, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    means = []
    for key, group in groups.items():
        mean: dict[str, Any] = {VOLUME_COLUMN: MEAN_OVER_VOLUMES, "protocol": key[0], "tta": key[1],
                                "zfilter": key[2], VOLUMES_COLUMN: len(group)}
        for name, value in group[0].items():
            if is_label_column(name) or name in TOTALS or isinstance(value, bool) or \
                    not isinstance(value, (int, float)):
                continue
            values = np.array([float(row[name]) for row in group])
            mean[name] = float(values.mean())
            mean[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        for name in TOTALS:
            if any(name in row for row in group):
                mean[name] = int(sum(int(row.get(name, 0)) for row in group))
        means.append(mean)
    return means


def _card(predictor: Predictor, row: dict[str, Any], test_set: dict[str, Any]) -> dict[str, Any]:
    return protocol_card(replace(predictor.settings, reconstruction=row["protocol"],
                                 tta=bool(row["tta"]), zfilter=int(row["zfilter"])),
                         predictor.spatial_dims, predictor.postproc, test_set)


def _named(volume: Any, several: bool) -> str:
    return f"'{volume.name}' " if several else ""


def headline_choice(inference: DictConfig) -> dict[str, Any]:
    """The headline protocol of an inference config, checked to be one of its matrix's rows."""
    node = inference.get("headline")
    if not node:
        raise InputError("inference option 'headline' is missing: name the protocol to report, "
                         "e.g. {protocol: full_image, tta: true, zfilter: 5}")
    choice = {"protocol": str(node.protocol), "tta": bool(node.tta), "zfilter": int(node.zfilter)}
    matrix = {(str(p), bool(t), int(z)) for p in inference.protocols for t in inference.tta
              for z in inference.zfilter}
    if _key(choice) not in matrix:
        raise InputError(f"inference option 'headline' {choice} is not in the protocol matrix "
                         f"(protocols {list(inference.protocols)}, tta {list(inference.tta)}, "
                         f"zfilter {list(inference.zfilter)}); add it there or choose another")
    return choice


def _key(row: dict[str, Any]) -> tuple[str, bool, int]:
    return str(row["protocol"]), bool(row["tta"]), int(row["zfilter"])
