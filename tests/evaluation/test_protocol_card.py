"""Every metric carries its protocol card: metrics.json, summary.json, protocols.csv and
test_per_image.csv (fluorescence and EM, after training and in evaluate.py)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.protocol_card import TestSetHash, card_columns, protocol_card
from mitoseg.evaluation.reconstruction import ReconstructionSettings
from mitoseg.postproc.binarize import Binarize
from mitoseg.training.train import train
from tests.conftest import TINY, compose_config
from tests.evaluation.test_em_end_to_end import EM_2D

CARD_KEYS = {"reconstruction", "window", "overlap", "blending", "tta", "zfilter", "divisor",
             "precision", "average", "threshold", "threshold_source", "test_set"}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_the_fingerprint_is_sha256_over_the_arrays() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = a > 5
    sha = hashlib.sha256()
    for array in (a, b):
        sha.update(str((array.dtype.str, array.shape)).encode())
        sha.update(array.tobytes())
    assert TestSetHash().update(a, b).fingerprint() == sha.hexdigest()[:16]
    assert TestSetHash().update(a, b).fingerprint() != TestSetHash().update(a, ~b).fingerprint()
    columns = card_columns({"reconstruction": "overlap", "window": [8, 32, 32], "overlap": 0.5,
                            "blending": "constant", "tta": 1,
                            "zfilter": {"size": 0, "axis": "z"}, "divisor": None,
                            "precision": "bf16-mixed", "average": "images", "threshold": 0.5,
                            "threshold_source": "fixed",
                            "test_set": {"fingerprint": "ab", "units": 1, "description": "d"}})
    assert columns["card_window"] == "8x32x32" and columns["card_zfilter_size"] == 0
    assert columns["card_test_set_fingerprint"] == "ab"
    assert columns["card_divisor"] == "" and columns["card_precision"] == "bf16-mixed"


def test_the_card_states_the_padding_and_the_arithmetic_of_inference() -> None:
    """Full image pads to a multiple of the divisor and bf16 rounds differently from fp32: both
    change the numbers, so both are on the card (None: a mode that does not pad)."""
    test_set = {"fingerprint": "ab", "units": 1, "description": "d"}
    full = ReconstructionSettings("full_image", tta=True, zfilter=5, divisor=32,
                                  precision="bf16-mixed")
    card = protocol_card(full, 2, Binarize(0.5), test_set)
    assert (card["divisor"], card["precision"], card["tta"]) == (32, "bf16-mixed", 8)
    assert card["average"] == "images"  # paper 002: full image, "the average over all images"
    tiled = protocol_card(replace(full, reconstruction="overlap_blend", patch_size=(64, 64)), 2,
                          Binarize(0.5), test_set)
    assert (tiled["divisor"], tiled["precision"]) == (None, "bf16-mixed")
    patches = protocol_card(replace(full, reconstruction="per_patch", patch_size=(64, 64)), 2,
                            Binarize(0.5), test_set)
    assert patches["average"] == "patches"  # per patch: "the average value over all patches"


def test_fluorescence_metrics_carry_the_card(tmp_path: Path) -> None:
    cfg = compose_config("train", TINY, tmp_path / "run")
    train(cfg)
    card = json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol_card"]
    assert set(card) == CARD_KEYS
    assert (card["reconstruction"], card["window"], card["overlap"], card["tta"]) == (
        "whole_image", None, None, 1)
    assert card["zfilter"] == {"size": 0, "axis": "z"} and card["threshold"] == 0.5
    assert card["threshold_source"] == "fixed" and card["test_set"]["units"] >= 1
    assert card["divisor"] is None and card["precision"] == cfg.trainer.precision == "32-true"
    # the fingerprint: the test images and masks as the loader gives them
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    expected = TestSetHash()
    for batch in datamodule.test_dataloader():
        expected.update(batch["image"][:, 0], batch["mask"])
    assert card["test_set"]["fingerprint"] == expected.fingerprint()
    rows = _csv(tmp_path / "run" / "test_per_image.csv")
    assert {r["card_test_set_fingerprint"] for r in rows} == {expected.fingerprint()}
    assert {r["card_reconstruction"] for r in rows} == {"whole_image"}
    assert {"mask_id", "as", "abd_px", "abd_um", "pred_empty"} <= set(rows[0])
    # evaluate.py: the same card for the same test set
    summary = evaluate(compose_config("evaluate", [
        f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}"], tmp_path / "eval"))
    assert summary["protocol_card"] == card


def test_em_matrix_rows_and_headline_carry_their_cards(tmp_path: Path) -> None:
    cfg = compose_config("train", EM_2D + ["inference.protocols=[per_patch,overlap_blend]"],
                         tmp_path)
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    card = metrics["protocol_card"]
    assert set(card) == CARD_KEYS
    # em_quick's headline: blended 50 % overlap of the 32 x 32 training window, z-median 5
    assert (card["reconstruction"], card["window"], card["overlap"], card["blending"],
            card["tta"], card["zfilter"]) == ("overlap_blend", [32, 32], 0.5, "spline", 1,
                                              {"size": 5, "axis": "z"})
    assert card["divisor"] is None and card["precision"] == cfg.inference.precision
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    volumes = datamodule.volumes
    assert card["test_set"] == {
        "fingerprint": TestSetHash().update(volumes.test_image, volumes.test_labels).fingerprint(),
        "units": 1, "description": f"{volumes.description}: test volume (6, 64, 64)"}
    rows = _csv(tmp_path / "protocols.csv")
    assert [(r["card_reconstruction"], r["card_overlap"], r["card_zfilter_size"]) for r in rows] == [
        ("per_patch", "0.0", "0"), ("per_patch", "0.0", "5"),
        ("overlap_blend", "0.5", "0"), ("overlap_blend", "0.5", "5")]
    assert {r["card_tta"] for r in rows} == {"1"} and {r["card_window"] for r in rows} == {"32x32"}
    assert {(r["card_divisor"], r["card_precision"]) for r in rows} == {("", "32-true")}
    assert [r["card_average"] for r in rows] == ["patches", "patches", "images", "images"]
