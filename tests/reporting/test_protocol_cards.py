"""Numbers measured under different test protocols are never silently one comparison."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mitoseg.errors import InputError
from mitoseg.reporting import collect_runs, markdown, summarize_runs, write_report
from mitoseg.reporting.protocol_cards import card_conflict, card_fields
from mitoseg.runs.files import write_new_csv
from tests.reporting.conftest import make_run
from tests.reporting.test_report_cli import run

CARD = {"reconstruction": "sliding_window", "window": [256, 256], "overlap": 0.5,
        "blending": "gaussian", "tta": True, "zfilter": {"size": 5, "axis": 0},
        "threshold": 0.5, "threshold_source": "postproc",
        "test_set": {"fingerprint": "ab12", "units": 33, "description": "Lucchi test 132-164"}}
BASELINE = "model=unet_paper000"


def runs_with(tmp_path: Path, cards: dict[str, list]) -> Path:
    """Per configuration label, one run per card (None: an older run without a card)."""
    root = tmp_path / "runs"
    for label, per_seed in cards.items():
        model = label.split("=")[1]
        for seed, card in enumerate(per_seed):
            folder = make_run(root / f"{model}_{seed}", [label], seed, model=model,
                              metrics={"as": 0.8 + 0.01 * seed})
            if card is not None:
                body = json.loads((folder / "metrics.json").read_text())
                (folder / "metrics.json").write_text(json.dumps(body | {"protocol_card": card}))
    return root


def other(**changes) -> dict:
    return json.loads(json.dumps(CARD)) | changes


def test_one_card_compares(tmp_path: Path) -> None:
    root = runs_with(tmp_path, {BASELINE: [CARD, CARD], "model=fcn_paper000": [CARD, CARD]})
    report = summarize_runs(collect_runs([root]).runs, ["test/as"], baseline=BASELINE)
    assert not report.mixed and len(report.rows) == 2
    assert "every table holds one card; 0 of 4 finished runs have no card" in markdown(report)


def test_different_cards_are_refused_naming_fields_and_runs(tmp_path: Path) -> None:
    window = other(window=[512, 512], zfilter={"size": 0, "axis": 0})
    root = runs_with(tmp_path, {BASELINE: [CARD, CARD], "model=fcn_paper000": [window, window]})
    runs = collect_runs([root]).runs
    with pytest.raises(InputError) as refused:
        summarize_runs(runs, ["test/as"], baseline=BASELINE)
    message = str(refused.value)
    assert "refusing to compare runs measured under different test protocols (test/as, " \
           "dataset 'FluorescenceDataModule')" in message
    assert "card fields window, zfilter.size differ" in message
    assert "window=[256, 256], zfilter.size=5 in 2 run(s): " in message
    assert "window=[512, 512], zfilter.size=0 in 2 run(s): " in message
    assert "unet_paper000_0" in message and "fcn_paper000_1" in message
    assert "--mixed-protocols" in message
    report = summarize_runs(runs, ["test/as"], baseline=BASELINE, mixed_protocols=True)
    assert len(report.rows) == 2 and report.mixed[0][:2] == ("test/as", "FluorescenceDataModule")
    text = markdown(report)
    assert "## Tables that mix protocol cards (--mixed-protocols)" in text
    assert "1 table(s) mix cards" in text


def test_runs_without_a_card_are_another_card_unless_all_lack_one(tmp_path: Path) -> None:
    old = runs_with(tmp_path / "old", {BASELINE: [None, None], "model=fcn_paper000": [None]})
    report = summarize_runs(collect_runs([old]).runs, ["test/as"])
    assert not report.mixed and "3 of 3 finished runs have no card" in markdown(report)
    mixed = runs_with(tmp_path / "mixed", {BASELINE: [CARD, None], "model=fcn_paper000": [CARD]})
    with pytest.raises(InputError, match=r"cards differ \(runs without a card count as another "
                                         r"card\): a card in 2 run\(s\).*; no card in 1 run\(s\): "
                                         r".*unet_paper000_1"):
        summarize_runs(collect_runs([mixed]).runs, ["test/as"])


def test_cards_in_runs_csv_and_the_cli_flag(tmp_path: Path) -> None:
    root = runs_with(tmp_path, {BASELINE: [CARD, None]})
    done = run("report.py", str(root), "--metric", "test/as", "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and "different test protocols" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "a").exists()
    done = run("report.py", str(root), "--metric", "test/as", "--mixed-protocols",
               "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "b" / "runs.csv") as stream:
        cards = {Path(r["folder"]).name: r["protocol_card"] for r in csv.DictReader(stream)}
    assert cards["unet_paper000_1"] == "no card"
    assert json.loads(cards["unet_paper000_0"]) == CARD


def test_card_helpers() -> None:
    assert card_fields(CARD)["zfilter.size"] == 5 and card_fields(CARD)["test_set.units"] == 33
    assert card_conflict([]) is None


def test_write_report_passes_the_flag(tmp_path: Path) -> None:
    root = runs_with(tmp_path, {BASELINE: [CARD, other(threshold=0.7)]})
    with pytest.raises(InputError, match="card fields threshold differ"):
        write_report([root], tmp_path / "out", metrics=["test/as"])
    written = write_report([root], tmp_path / "out", metrics=["test/as"], mixed_protocols=True)
    assert "threshold=0.7 in 1 run(s)" in written["report.md"].read_text()


def _em_run(root: Path, label: str, seed: int, rows: list[dict]) -> Path:
    model = label.split("=")[1]
    folder = make_run(root / f"{model}_{seed}", [label], seed, model=model,
                      metrics={"iou_fg": rows[-1]["iou_fg"]})
    write_new_csv(folder / "protocols.csv", rows)  # every row's columns, as a run writes them
    body = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(body | {"protocol_card": CARD}))
    return folder


def test_protocol_rows_are_compared_by_their_own_cards(tmp_path: Path) -> None:
    """A protocols.csv metric is measured under its row's card, not under the headline's: rows
    of the same protocol with other windows (e.g. another dataset.patch_size) are refused."""
    root = tmp_path / "runs"
    for label, window in ((BASELINE, "128x128"), ("model=fcn_paper000", "256x256")):
        for seed in range(2):
            _em_run(root, label, seed, [
                {"protocol": "full_image", "tta": "False", "zfilter": 0, "iou_fg": 0.8 + seed / 100,
                 "card_window": ""},
                {"protocol": "per_patch", "tta": "False", "zfilter": 0, "iou_fg": 0.7 + seed / 100,
                 "card_window": window}])
    runs = collect_runs([root]).runs
    with pytest.raises(InputError, match=r"protocol 'per_patch'\): card fields window differ: "
                                         r".*window=128x128 in 2 run"):
        summarize_runs(runs, ["iou_fg"], baseline=BASELINE)
    report = summarize_runs(runs, ["iou_fg"], baseline=BASELINE, mixed_protocols=True)
    assert [m[2] for m in report.mixed] == ["per_patch"]  # full_image's rows share one card


def test_several_test_volumes_count_once_per_run_by_their_mean_row(tmp_path: Path) -> None:
    """protocols.csv of a run with several test volumes holds each volume's row and their mean
    row: the run's value is the mean row, one per run (not three values per run)."""
    from mitoseg.evaluation.em_evaluate import mean_over_volumes

    root = tmp_path / "runs"
    expected = {}
    for label, base in ((BASELINE, 0.8), ("model=fcn_paper000", 0.7)):
        for seed in range(3):
            volumes = [{"test_volume": name, "protocol": "full_image", "tta": "True",
                        "zfilter": 5, "iou_fg": base + shift + seed / 50}
                       for name, shift in (("a", 0.05), ("b", -0.03))]
            _em_run(root, label, seed, volumes + mean_over_volumes(volumes))
            expected.setdefault(label, []).append(base + 0.01 + seed / 50)
    report = summarize_runs(collect_runs([root]).runs, ["iou_fg"], baseline=BASELINE)
    for row in report.rows:
        values = expected[row["configuration"]]
        assert row["n"] == row["runs"] == 3
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))


def test_a_card_read_from_w_and_b_equals_the_same_card_read_from_protocols_csv() -> None:
    """protocols.csv gives text ("8", "0.5"), a W&B offline record numbers (8, 0.5): one card,
    so two runs of one protocol are compared; a real difference is still refused."""
    from mitoseg.reporting.collect import RunRecord

    typed = {"protocol": "full_image", "tta": True, "zfilter": 5, "iou_fg": 0.88,
             "card_tta": 8, "card_threshold": 0.5, "card_zfilter_size": 5,
             "card_divisor": None, "card_test_set_fingerprint": "ab"}
    text = {key: "" if value is None else str(value) for key, value in typed.items()}

    def run(number: int, row: dict, source: str) -> RunRecord:
        return RunRecord(folder=Path(f"/runs/r{number}"), status="finished",
                         overrides=("model=unet",), model="unet", dataset="lucchi",
                         seed=number, metrics={"test": {}}, protocols=(row,), source=source)

    report = summarize_runs([run(0, text, "folder"), run(1, dict(typed, iou_fg=0.86),
                                                        "wandb-offline")], ["iou_fg"])
    assert [(row["mean"], row["n"]) for row in report.rows] == [(pytest.approx(0.87), 2)]
    with pytest.raises(InputError, match="card fields tta differ"):
        summarize_runs([run(0, text, "folder"), run(1, dict(typed, card_tta=1),
                                                    "wandb-offline")], ["iou_fg"])
