"""Scoring a Predictor on an EM data module's test volume (paper 002's protocol matrix)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mitoseg.evaluation.em_protocols import matrix_table, protocol_matrix
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.protocol_card import TestSetHash, card_columns, protocol_card
from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_csv, write_new_text

log = logging.getLogger(__name__)


def evaluate_em(predictor: Predictor, datamodule: Any, inference: DictConfig,
                out_dir: Path) -> dict[str, Any]:
    """Run the inference matrix of ``inference`` on the test volume; write protocols.csv and
    protocols.md into ``out_dir``; return the rows and the headline row.

    The headline -- what metrics.json's ``test``, the optimized metric, the W&B summary and
    report.py show -- is the protocol ``inference.headline`` names (protocol, TTA, Z-filter);
    every other row stays in protocols.csv, each with its protocol card's columns. The
    predictor brings the network call, the
    input normalization (the checkpoint's) and the post-processing.
    """
    choice = headline_choice(inference)
    datamodule.setup()
    volumes = datamodule.volumes
    patch_size = inference.get("patch_size") or datamodule.patch_size
    rows = protocol_matrix(
        predictor.predict, volumes.test_image, volumes.test_labels,
        predictor.spatial_dims, patch_size, predictor.postproc,
        protocols=list(inference.protocols), tta=list(inference.tta),
        zfilter=list(inference.zfilter), batch_size=int(inference.batch_size),
        divisor=int(inference.divisor), voxel_size_nm=volumes.voxel_size_nm,
        device=predictor.device, normalization=predictor.normalization)
    test_set = {"fingerprint": TestSetHash().update(volumes.test_image,
                                                   volumes.test_labels).fingerprint(),
                "units": 1, "description": f"{volumes.description}: test volume "
                                           f"{tuple(volumes.test_image.shape)}"}
    cards = [protocol_card(replace(predictor.settings, reconstruction=row["protocol"],
                                   tta=bool(row["tta"]), zfilter=int(row["zfilter"])),
                           predictor.spatial_dims, predictor.postproc, test_set) for row in rows]
    rows = [row | card_columns(card) for row, card in zip(rows, cards)]
    write_new_csv(out_dir / "protocols.csv", rows)
    title = (f"{volumes.description}: test volume {tuple(volumes.test_image.shape)}, "
             f"threshold {predictor.postproc.threshold}")
    write_new_text(out_dir / "protocols.md", matrix_table(rows, title))
    log.info("\n%s", matrix_table(rows, title))
    index = next(i for i, row in enumerate(rows) if _key(row) == _key(choice))
    headline = rows[index]
    test = {key: {"mean": headline[key], "n": 1} for key in
            ("iou_fg", "iou_bg", "iou_overall", "dice", "iou_fg_mean_per_slice")}
    return {"test": test, "headline": {k: headline[k] for k in ("protocol", "tta", "zfilter")},
            "protocols": rows, "protocol_card": cards[index]}


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
