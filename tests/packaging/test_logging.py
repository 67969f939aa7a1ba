"""Library code logs; commands show status on stderr and write their result to stdout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mitoseg.console import console_logging, emit, on_stderr


def test_status_goes_to_stderr_and_the_result_to_stdout(capsys: pytest.CaptureFixture) -> None:
    console_logging()
    console_logging()  # once per process: no second handler, no doubled lines
    logging.getLogger("mitoseg.some.module").info("working on %d files", 3)
    emit("| a | b |")
    out, err = capsys.readouterr()
    assert out == "| a | b |\n"
    assert err == "working on 3 files\n"


def test_on_stderr_adds_the_terminal_for_one_block(capsys: pytest.CaptureFixture,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mitoseg.test_on_stderr")
    with on_stderr(log):
        log.error("mitoseg: error: %s", "bad input")
    log.error("later, not on stderr")
    assert capsys.readouterr().err == "mitoseg: error: bad input\n"
    assert [r.getMessage() for r in caplog.records] == ["mitoseg: error: bad input",
                                                        "later, not on stderr"]


def test_model_table_logs_an_unknown_model(caplog: pytest.LogCaptureFixture,
                                           capsys: pytest.CaptureFixture) -> None:
    from mitoseg.models.table import main

    assert main(["no_such_model"]) == 2
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "mitoseg: error: unknown model(s) ['no_such_model']; known:" in record.getMessage()
    assert "unet_paper000" in record.getMessage()
    assert capsys.readouterr().out == ""  # no table


def test_folder_leakage_logs_its_summary_beside_the_json(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture,
                                                         capsys: pytest.CaptureFixture) -> None:
    from mitoseg.data.folder_leakage import main
    from tests.data.test_folder_leakage import _write_tiles

    _write_tiles(tmp_path / "masks", "mask")
    caplog.set_level(logging.INFO)
    assert main([str(tmp_path / "masks"), "--polarity", "normal", "--min-area", "256"]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    (summary,) = [r.getMessage() for r in caplog.records if "pairs share a region" in r.getMessage()]
    assert summary.startswith(f"4 files, {result['pairs']} pairs share a region, "
                              f"{result['clusters']} clusters (of several files: [2, 2]), ")


def test_multirun_failure_summary_is_logged(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    from mitoseg.runs.failures import MultirunFailureSummary

    for job, outcome in (("0_seed-0", "metrics.json"), ("1_seed-1", "failed.json")):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / outcome).write_text("{}")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with pytest.raises(SystemExit) as stop:
        MultirunFailureSummary().on_multirun_end(config)
    assert stop.value.code == 1
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == (f"multirun: 1 of 2 jobs failed, 0 unfinished ({tmp_path}):\n"
                                   "  failed: 1_seed-1  (see failed.json)")
