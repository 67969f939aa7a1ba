"""W&B offline runs as report input: the transaction-log reader (checksums, truncation), the
records built from what train.py logs to W&B, and report.py on a root of offline runs only."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import wandb

from mitoseg.reporting.collect import collect_runs, metric_values, wandb_run_record
from mitoseg.reporting.wandb_offline import (OfflineRun, merge_attempts, read_offline_run,
                                             read_records)
from tests.conftest import REPO, python_command
from tests.reporting.conftest import SHARED

GROUP = "default-2026-01-01_10-00-00"
AS = [0.90, 0.92]  # test/as of the two finished seeds
ERROR = "CUDA out of memory while fitting"
PROTOCOL_ROWS = [
    {"protocol": "full_image", "tta": "False", "zfilter": "0", "iou_fg": "0.88", "dice": "0.93"},
    {"protocol": "full_image", "tta": "True", "zfilter": "5", "iou_fg": "0.89", "dice": "0.94"},
]


class OfflineRuns(NamedTuple):
    cluster: Path  # 2 finished seeds of one configuration, 1 failed, 1 killed (no exit record)
    em: Path  # 1 finished EM run with inference protocols
    foreign: Path  # 1 W&B run that train.py did not log
    resumed: Path  # 1 run: a killed attempt, then a finished one under the same W&B id
    finished: list[Path]  # the run-<id>.wandb files
    failed: Path
    killed: Path


def make_wandb_run(root: Path, overrides: Sequence[str], seed: int, *,
                   model: str = "attention_unet", dataset: str = "fluo_procedural",
                   metrics: Mapping[str, Any] | None = None,
                   protocols: Sequence[Mapping[str, str]] | None = None,
                   error: str | None = None, exit_code: int = 0,
                   summary: Mapping[str, Any] | None = None, resume: str | None = None) -> Path:
    """An offline run under ``root/wandb/`` as train.py logs it; returns its run-<id>.wandb.
    ``resume``: the W&B id of an earlier attempt to continue."""
    config = {"mitoseg": {"overrides": [*overrides, f"seed={seed}", "logger=wandb"],
                          "choices": {"model": model, "dataset": dataset}, "seed": seed,
                          "optimized_metric": "test/as",
                          "run_folder": f"/cluster/outputs/{GROUP}/{seed}"}}
    run = wandb.init(mode="offline", dir=root, project="mitoseg", group=GROUP, id=resume,
                     resume="allow" if resume else None)
    run.config.update(config)  # as train.py does, once the logger has started the run
    run.log({"val/loss": 0.5})
    run.summary.update(dict(summary or {}))
    if metrics is not None:
        run.summary.update({f"test/{k}": v["mean"] for k, v in metrics["test"].items()})
        run.summary["mitoseg/metrics_json"] = json.dumps(dict(metrics))
    if protocols is not None:
        run.summary["mitoseg/protocols_json"] = json.dumps(list(protocols))
    if error is not None:
        run.summary["mitoseg/error"] = error
    return finish(run, exit_code)


def finish(run: Any, exit_code: int = 0) -> Path:
    """Finish a W&B run and return its run-<id>.wandb once its exit record is written."""
    folder = Path(run.dir).parent
    run.finish(exit_code=exit_code)
    log = next(folder.glob("run-*.wandb"))
    deadline = time.monotonic() + 20
    while read_offline_run(log).exit_code is None:  # finish() may return before the flush
        assert time.monotonic() < deadline, f"{log} never got its exit record"
        time.sleep(0.05)
    return log


def fluo_metrics(seed: int, value: float) -> dict[str, Any]:
    return {"seed": seed, "test": {"as": {"mean": value, "sem": 0.01, "n": 30},
                                   "abd_px": {"mean": 1.0, "sem": 0.1, "n": 30}}}


def offset_of(log: Path, record_type: str) -> int:
    return next(o for o, r in read_records(log)[0] if r.WhichOneof("record_type") == record_type)


def cut(log: Path, size: int) -> None:
    log.write_bytes(log.read_bytes()[:size])


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> OfflineRuns:
    """The W&B offline runs, made once per module (each wandb.init takes a while)."""
    base = tmp_path_factory.mktemp("wandb-runs")
    roots = [base / name for name in ("cluster", "em", "foreign", "resumed")]
    for folder in [*roots, roots[3] / "first", roots[3] / "second"]:
        folder.mkdir()
    configuration = [*SHARED, "model=attention_unet"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            env.setenv(name, str(base / name.lower()))
        big = {"notes": "x" * 70000,  # one record over two blocks: FIRST, MIDDLE, LAST chunks
               "outer": {"inner": 1}}
        finished = [make_wandb_run(roots[0], configuration, seed, metrics=fluo_metrics(seed, v),
                                   summary=big if seed == 0 else None)
                    for seed, v in enumerate(AS)]
        failed = make_wandb_run(roots[0], configuration, 2, error=ERROR, exit_code=1)
        killed = make_wandb_run(roots[0], configuration, 3)
        cut(killed, offset_of(killed, "exit"))  # killed before wandb wrote the exit record
        em_metrics = {"seed": 0, "test": {"iou_fg": {"mean": 0.88, "sem": 0.01, "n": 1}},
                      "headline": {"protocol": "full_image", "tta": False, "zfilter": 0}}
        make_wandb_run(roots[1], ["model=unet2d_paper002"], 0, model="unet2d_paper002",
                       dataset="lucchi", metrics=em_metrics, protocols=PROTOCOL_ROWS)
        finish(wandb.init(mode="offline", dir=roots[2], project="other", config={"lr": 0.1}))
        first = make_wandb_run(roots[3] / "first", configuration, 4)
        cut(first, offset_of(first, "exit"))
        make_wandb_run(roots[3] / "second", configuration, 4, metrics=fluo_metrics(4, 0.93),
                       resume=read_offline_run(first).run_id)
    return OfflineRuns(*roots, finished, failed, killed)


def test_reader_replays_config_summary_and_exit(offline: OfflineRuns) -> None:
    log = read_offline_run(offline.finished[0])
    assert log.problems == ()
    assert offline.finished[0].parent.name.endswith("-" + log.run_id)
    assert log.group == GROUP and log.exit_code == 0
    assert log.config["mitoseg"]["seed"] == 0
    assert log.config["mitoseg"]["choices"] == {"model": "attention_unet",
                                                "dataset": "fluo_procedural"}
    assert log.summary["test/as"] == AS[0] and log.summary["val/loss"] == 0.5
    assert log.summary["notes"] == "x" * 70000  # reassembled across blocks
    assert log.summary["outer"] == {"inner": 1}
    assert json.loads(log.summary["mitoseg/metrics_json"]) == fluo_metrics(0, AS[0])
    assert "_wandb/runtime" in log.summary  # a nested key, joined by '/'
    assert read_offline_run(offline.failed).exit_code == 1
    foreign = next(offline.foreign.glob("wandb/offline-run-*/run-*.wandb"))
    assert read_offline_run(foreign).config["lr"] == 0.1  # the config given to wandb.init
    assert read_offline_run(offline.killed).exit_code is None
    assert read_offline_run(offline.killed).problems == ()  # cut between records: no damage


def test_damaged_logs_give_what_was_read_and_a_problem(offline: OfflineRuns,
                                                       tmp_path: Path) -> None:
    source = offline.finished[0]
    exit_at, big_at = offset_of(source, "exit"), None
    for offset, record in read_records(source)[0]:
        if any(item.key == "notes" for item in record.summary.update):
            big_at = offset
    assert big_at is not None

    def damaged(name: str, change) -> OfflineRun:
        copy = tmp_path / name / source.name
        copy.parent.mkdir()
        data = bytearray(source.read_bytes())
        copy.write_bytes(bytes(change(data)))
        return read_offline_run(copy)

    def flip(at: int):
        def change(data: bytearray) -> bytearray:
            data[at] ^= 0xFF
            return data
        return change

    flipped = damaged("flipped", flip(exit_at + 9))  # a byte of the exit record's data
    assert flipped.exit_code is None and flipped.summary["test/as"] == AS[0]
    assert flipped.config["mitoseg"]["seed"] == 0
    assert flipped.problems == (f"{source.name}: checksum mismatch in the chunk at byte "
                                f"{exit_at}",)
    header = damaged("header", flip(1))
    assert "not a W&B transaction log" in header.problems[0] and header.config == {}

    for size, expected in [(exit_at + 3, "inside a chunk header"),
                           (exit_at + 9, f"truncated at byte {exit_at + 9}"),
                           (big_at + 40000, "truncated")]:
        log = damaged(f"cut{size}", lambda data: data[:size])
        assert log.exit_code is None and len(log.problems) == 1, (size, log.problems)
        assert expected in log.problems[0] and log.config["mitoseg"]["seed"] == 0
        assert ("notes" in log.summary) == ("mitoseg/metrics_json" in log.summary) \
            == (size > big_at + 70000)
    assert damaged("cut3", lambda data: data[:3]).problems[0].endswith("b':W&')")


def test_offline_runs_become_records(offline: OfflineRuns) -> None:
    collection = collect_runs([offline.cluster])
    runs = collection.runs
    assert collection.skipped == [] and len(runs) == 4
    assert {r.source for r in runs} == {"wandb-offline"}
    assert {r.folder for r in runs} == {p.parent for p in [*offline.finished, offline.failed,
                                                           offline.killed]}
    assert Counter(r.status for r in runs) == {"finished": 2, "failed": 1, "unfinished": 1}
    assert {r.config for r in runs} == {"model=attention_unet trainer.max_epochs=1"}
    assert {(r.model, r.dataset, r.optimized_metric) for r in runs} == {
        ("attention_unet", "fluo_procedural", "test/as")}
    by_seed = {r.seed: r for r in runs}
    assert sorted(by_seed) == [0, 1, 2, 3]
    assert [metric_values(by_seed[s], "test/as") for s in (0, 1)] == [[("-", v)] for v in AS]
    assert by_seed[2].status == "failed" and by_seed[2].error == ERROR
    assert by_seed[3].status == "unfinished" and "no exit record" in by_seed[3].error

    em = collect_runs([offline.em]).runs[0]
    assert (em.status, em.model, em.dataset) == ("finished", "unet2d_paper002", "lucchi")
    assert metric_values(em, "iou_fg") == [("full_image", 0.88), ("full_image +TTA +Z5", 0.89)]
    assert metric_values(em, "test/iou_fg") == [("full_image", 0.88)]

    foreign = collect_runs([offline.foreign])
    assert foreign.runs == [] and len(foreign.skipped) == 1
    assert "without the 'mitoseg' config key" in foreign.skipped[0][1]


def test_mixed_root_counts_each_run_once(offline: OfflineRuns, study: Path) -> None:
    shutil.copytree(offline.cluster, study / "cluster")  # latest-run becomes a real copy
    assert (study / "cluster" / "wandb" / "latest-run").is_dir()
    local = next((study / "multirun" / "default").iterdir())
    run_folder = sorted(local.iterdir())[0]
    em_log = next(offline.em.glob("wandb/offline-run-*"))
    inside = run_folder / "wandb" / em_log.name
    shutil.copytree(em_log, inside)  # where train.py logger=wandb puts it
    for roots in ([study], [study, run_folder / "wandb"]):
        collection = collect_runs(roots)
        assert len(collection.runs) == 11 + 4, roots
        offline_runs = [r for r in collection.runs if r.source == "wandb-offline"]
        assert len(offline_runs) == 4 and all("cluster" in r.folder.parts for r in offline_runs)
        assert collection.skipped == []
    shutil.copytree(em_log, study / "copied" / em_log.name)  # the same W&B run elsewhere
    collection = collect_runs([study])
    assert len(collection.runs) == 11 + 4
    assert collection.skipped == [((study / "copied" / em_log.name).resolve(),
                                   f"a copy of the W&B log of run folder {run_folder.resolve()}"
                                   ", counted there")]
    assert collect_runs([inside]).runs[0].source == "wandb-offline"  # alone, it is a run


def test_a_resumed_run_is_one_record(offline: OfflineRuns) -> None:
    collection = collect_runs([offline.resumed])
    (run,) = collection.runs
    assert (run.status, run.seed, metric_values(run, "test/as")) == ("finished", 4,
                                                                    [("-", 0.93)])
    assert run.folder.parent.parent.name == "second"
    ((earlier, why),) = collection.skipped
    assert earlier.parent.parent.name == "first" and "an earlier attempt" in why
    first = OfflineRun("abc", GROUP, {"mitoseg": {"seed": 1}, "lr": 0.1}, {"test/as": 0.5}, 1)
    second = OfflineRun("abc", GROUP, {"lr": 0.2}, {}, None, ("cut",))
    assert merge_attempts([first, second]) == OfflineRun(
        "abc", GROUP, {"mitoseg": {"seed": 1}, "lr": 0.2}, {}, None, ("cut",))


def test_report_cli_on_offline_runs_only(offline: OfflineRuns, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(python_command("report.py", str(offline.cluster), "--out", str(out)),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out / "summary.csv") as stream:
        (row,) = list(csv.DictReader(stream))
    assert (row["metric"], row["model"], row["dataset"]) == ("test/as", "attention_unet",
                                                             "fluo_procedural")
    assert (row["n"], row["failed"], row["unfinished"]) == ("2", "1", "1")
    assert float(row["mean"]) == pytest.approx(sum(AS) / 2)
    assert float(row["std"]) == pytest.approx(math.sqrt((AS[1] - AS[0]) ** 2 / 2))
    with open(out / "runs.csv") as stream:
        runs = list(csv.DictReader(stream))
    assert [r["source"] for r in runs] == ["wandb-offline"] * 4
    text = (out / "report.md").read_text()
    assert "0.9100 ± 0.0141" in text and ERROR in text
    assert "4 run folders (4 of them W&B offline runs)" in text
    assert "| failed | `(base)` | 2 |" in text and "| wandb-offline |" in text


@pytest.mark.parametrize("exit_code, summary, status, error", [
    (0, {"mitoseg/metrics_json": "{}"}, "finished", ""),
    (0, {}, "failed", "exit code 0 but no readable mitoseg/metrics_json"),
    (0, {"mitoseg/metrics_json": "{oops"}, "failed", "'mitoseg/metrics_json' unreadable"),
    (2, {"mitoseg/metrics_json": "{}"}, "failed", "exit code 2"),
    (None, {"mitoseg/error": "bad mask"}, "failed", "bad mask"),
    (None, {}, "unfinished", "no exit record"),
])
def test_status_follows_the_logging_contract(exit_code: int | None, summary: dict, status: str,
                                             error: str) -> None:
    log = OfflineRun("abc", GROUP, {"mitoseg": {"seed": 0}}, summary, exit_code)
    run = wandb_run_record(Path("offline-run-x-abc"), log)
    assert (run.status, run.seed, run.model) == (status, 0, "?")
    assert error in run.error if error else run.error == ""
    assert run.overrides == ("(overrides not recorded: offline-run-x-abc)",)
