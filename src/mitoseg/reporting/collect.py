"""Find training run folders under one or many roots and read each into a ``RunRecord``.

A run folder is a folder holding ``run_info.json`` or ``.hydra/config.yaml`` (what
``train.py`` writes at start-up). Its *configuration* is the list of command-line overrides
of that job (``.hydra/overrides.yaml``) minus the seed and the keys that cannot change the
result (``mitoseg.runs.identity``), so that the seeds of one configuration group together.
Runs that crashed or are still running are records too, never dropped.

A W&B offline run folder (``wandb/offline-run-*/run-<id>.wandb``) found outside any run folder
is a run too (e.g. only the ``wandb/`` folders were copied from a cluster): its record is
read from what ``train.py`` logs to W&B (see ``wandb_run_record``). One record per W&B run id:
the one inside a run folder is never reached, a copy of it elsewhere is skipped, and the
attempts of a resumed run (one folder each) are merged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mitoseg.errors import InputError
from mitoseg.reporting.averaging import protocols_column
from mitoseg.reporting.sweep_jobs import missing_jobs
from mitoseg.reporting.wandb_offline import OfflineRun, merge_attempts, read_offline_run
from mitoseg.runs.identity import identity_overrides, identity_settings, override_key, under
from mitoseg.runs.lock import describe_holder, live_holder
from mitoseg.runs.protocol_columns import MEAN_OVER_VOLUMES, VOLUME_COLUMN, is_label_column

NO_PROTOCOL = "-"  # metrics that are not per inference protocol (fluorescence test images)
ERROR_MARK = "mitoseg: error:"  # what run_guarded logs when a job stops on bad input
WANDB_RUN_PREFIXES = ("offline-run-", "run-")  # W&B run folders; each holds run-<id>.wandb


@dataclass(frozen=True)
class RunRecord:
    """One run folder. ``status`` is finished (metrics.json), failed (failed.json -- the
    latest failed-N.json after several attempts, unless the run was resumed after it -- or an
    error in the job log), running (a live run.lock: ``mitoseg.runs.lock.live_holder``) or
    unfinished (none of these: killed, or running where its lock cannot be judged).
    ``source`` is "folder", or "wandb-offline" for a record read from a W&B offline run's
    log."""

    folder: Path
    status: str
    overrides: tuple[str, ...]  # identity overrides, sorted
    model: str
    dataset: str
    seed: int | None = None
    error: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    protocols: tuple[Mapping[str, Any], ...] = ()
    optimized_metric: str | None = None
    source: str = "folder"
    choices: Mapping[str, Any] = field(default_factory=dict)  # Hydra's config-group choices
    settings: Mapping[str, Any] = field(default_factory=dict)  # the resolved config.yaml
    # the replicate this run is within its configuration (``replicate_unit``); None: unknown
    unit: tuple[Any, ...] | None = None
    # what of the composed config (.hydra/config.yaml, interpolations as written) defines the
    # configuration (``identity.identity_settings``); {}: unknown
    composed: Mapping[str, Any] = field(default_factory=dict)
    started: bool = True  # False: a sweep's job that left no folder (``_never_started``)

    @property
    def config(self) -> str:
        """The configuration label: its identity overrides joined by spaces."""
        return " ".join(self.overrides) if self.overrides else "(defaults)"


@dataclass
class Collection:
    runs: list[RunRecord]
    skipped: list[tuple[Path, str]]  # folders that look like runs but are not training runs


def find_run_folders(roots: Iterable[str | Path]) -> list[Path]:
    """Every run folder at or under ``roots`` (sorted, each once); a training run folder's
    own subfolders (checkpoints, logs) are not searched."""
    return _walk(roots)[0]


def collect_runs(roots: Iterable[str | Path], ignore: Sequence[str] = ()) -> Collection:
    """Read every run folder and W&B offline run under ``roots``; ``ignore`` adds override
    keys to leave out of the configuration identity (besides ``mitoseg.runs.identity``'s)."""
    roots = list(roots)
    folders, wandb_logs = _walk(roots)
    if not folders and not wandb_logs:
        raise InputError(f"no run folders (holding run_info.json or .hydra/config.yaml) or W&B "
                         f"offline runs (offline-run-*/run-*.wandb) under "
                         f"{', '.join(map(str, roots))}")
    runs, skipped = [], []
    for folder in folders:
        job = _job_name(folder)
        if job not in (None, "train"):
            skipped.append((folder, f"a '{job}' job, not a training run"))
        else:
            runs.append(read_run(folder, ignore))
    runs += _never_started(runs, ignore)
    wandb_runs, wandb_skipped = _wandb_runs(wandb_logs, folders, ignore)
    return Collection(runs + wandb_runs, skipped + wandb_skipped)


def _never_started(runs: Sequence[RunRecord], ignore: Sequence[str]) -> list[RunRecord]:
    """An unfinished record for each job that the sweep of a found job folder asked for and
    that left no folder (``sweep_jobs``), in the configuration its overrides make: its model
    and data set are those of a started job of that configuration ('?' if none started)."""
    sweeps: dict[Path, list[RunRecord]] = defaultdict(list)
    for run in runs:
        if (run.folder.parent / "multirun.yaml").is_file():
            sweeps[run.folder.parent].append(run)
    missing = []
    for sweep, started in sorted(sweeps.items()):
        for number, job in missing_jobs(sweep, [run.folder for run in started]):
            overrides = identity_overrides(job, ignore)
            twin = next((run for run in started if run.overrides == overrides), None)
            seed = _override_value(job, "seed")
            missing.append(RunRecord(
                folder=sweep / f"{number}_(no folder)", status="unfinished", started=False,
                overrides=overrides, model=twin.model if twin else "?",
                dataset=twin.dataset if twin else "?",
                seed=int(seed) if seed is not None and seed.lstrip("-").isdigit() else None,
                error=f"never started: job {number} of the sweep ({' '.join(job)}) left no "
                      "folder (cancelled while it waited, or its launcher died)"))
    return missing


def _wandb_runs(logs: Sequence[Path], folders: Sequence[Path], ignore: Sequence[str]
                ) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """One record per W&B run id among ``logs``; the others are returned as skipped."""
    owners = {path.stem.removeprefix("run-"): folder  # what train.py logger=wandb wrote
              for folder in folders for path in folder.glob("wandb/*/run-*.wandb")}
    attempts: dict[str, list[tuple[Path, OfflineRun]]] = defaultdict(list)
    for path in sorted(logs, key=_started):
        log = read_offline_run(path)
        attempts[log.run_id].append((path.parent, log))
    runs, skipped = [], []
    for run_id, found in attempts.items():
        *earlier, folder = [f for f, _ in found]
        if run_id in owners:
            skipped += [(f, f"a copy of the W&B log of run folder {owners[run_id]}, counted "
                            "there") for f in [*earlier, folder]]
            continue
        skipped += [(f, f"an earlier attempt (or a copy) of W&B run {run_id}, read with "
                        f"{folder}") for f in earlier]
        log = merge_attempts([attempt for _, attempt in found])
        if isinstance(log.config.get("mitoseg"), Mapping):
            runs.append(wandb_run_record(folder, log, ignore))
        else:
            skipped.append((folder, "; ".join([
                "a W&B run without the 'mitoseg' config key, not logged by train.py",
                *log.problems])))
    return runs, skipped


def _started(log: Path) -> tuple[str, str]:
    """Sort key: when the W&B run folder was started (offline-run-YYYYMMDD_HHMMSS-<id>)."""
    stamp = re.search(r"\d{8}_\d{6}", log.parent.name)
    return (stamp.group() if stamp else "", str(log))


def _walk(roots: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """The run folders and the W&B run logs (run-<id>.wandb) at or under ``roots``, sorted,
    each once; neither kind of folder is searched further, and a log inside a found run
    folder (a root given inside it) belongs to that run, not to the list. The folder of
    another job (a study, an evaluation) is listed and searched: study.py trains its runs
    inside its own folder. Symlinked folders
    are followed (runs gathered by ``ln -s``), each resolved folder visited once, so a link
    to an ancestor does not loop."""
    folders: set[Path] = set()
    wandb_logs: set[Path] = set()
    visited: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"report root '{root}' is not a folder; expected a run folder or "
                             "a folder of runs (outputs/runs/..., outputs/multirun/...)")
        for folder, subfolders, files in os.walk(root, followlinks=True):
            here = Path(folder).resolve()  # a link's target names it (W&B's latest-run)
            if here in visited:
                subfolders.clear()
                continue
            visited.add(here)
            logs = sorted(f for f in files if f.startswith("run-") and f.endswith(".wandb"))
            if "run_info.json" in files or (here / ".hydra" / "config.yaml").is_file():
                folders.add(here)
                if _job_name(here) in (None, "train"):
                    subfolders.clear()
                else:  # a study's or evaluation's folder holds the runs it trained
                    subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            elif logs and here.name.startswith(WANDB_RUN_PREFIXES):
                wandb_logs.add(here / logs[0])
                subfolders.clear()
            else:
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    return sorted(folders), sorted(p for p in wandb_logs if not folders.intersection(p.parents))


def read_run(folder: Path, ignore: Sequence[str] = ()) -> RunRecord:
    """One run folder -> a ``RunRecord`` (unreadable files become the record's error)."""
    problems: list[str] = []
    config = _read_yaml(folder / "config.yaml", problems)
    if config is None:
        config = _read_yaml(folder / ".hydra" / "config.yaml", problems) or {}
    composed = _read_yaml(folder / ".hydra" / "config.yaml", [])  # none: not compared
    info = _read_json(folder / "run_info.json", problems) or {}
    overrides = _overrides(folder, info, problems)
    choices = _choices(folder)

    status, error, metrics, protocols = "unfinished", "", {}, ()
    if (folder / "metrics.json").is_file():
        metrics = _read_json(folder / "metrics.json", problems)
        if metrics is None:
            status = "failed"  # the reason is in problems
        else:
            status = "finished"
            if (folder / "protocols.csv").is_file():
                protocols = tuple(_read_csv(folder / "protocols.csv", problems))
    elif (record := _last_failure(folder)) is not None:
        failure = _read_json(record, problems) or {}
        status, error = "failed", str(failure.get("error") or f"{record.name} without an 'error'")
    elif (holder := live_holder(folder)) is not None:
        status = "running"
        error = f"run.lock held by {describe_holder(holder, time.time())}"
    else:
        error = _logged_error(folder)
        if error:
            status = "failed"
        else:
            error = "no metrics.json (still running, killed, or crashed before the end)"

    seed = config.get("seed", info.get("seed", (metrics or {}).get("seed")))
    seed = seed if isinstance(seed, int) else None
    return RunRecord(
        folder=folder, status=status,
        overrides=identity_overrides(overrides, ignore) if overrides is not None
        else (f"(overrides not recorded: {folder.name})",),
        model=choices.get("model") or _override_value(overrides, "model")
        or _target_name(config.get("model")),
        dataset=choices.get("dataset") or _override_value(overrides, "dataset")
        or _target_name(config.get("dataset")),
        seed=seed, unit=replicate_unit(seed, config.get("data_seed"), overrides, ignore),
        error="; ".join(filter(None, [error, *problems])),
        metrics=metrics or {}, protocols=protocols,
        optimized_metric=(metrics or {}).get("optimized_metric") or config.get("optimized_metric"),
        choices=choices, settings=config if isinstance(config, Mapping) else {},
        composed=identity_settings(composed, ignore) if isinstance(composed, Mapping) else {},
    )


def wandb_run_record(folder: Path, log: OfflineRun, ignore: Sequence[str] = ()) -> RunRecord:
    """A W&B offline run -> a ``RunRecord``, from what ``train.py`` logs to W&B: the config key
    ``mitoseg`` ({overrides, choices, seed, optimized_metric, run_folder}); on success the
    summary keys ``mitoseg/metrics_json`` (metrics.json as a JSON string) and, for EM runs,
    ``mitoseg/protocols_json`` (the protocols.csv rows); on failure ``mitoseg/error``.

    Finished: exit code 0 and metrics; failed: an error, a non-zero exit code, or no metrics;
    unfinished: no exit record (still running, or killed)."""
    problems = list(log.problems)
    info = log.config.get("mitoseg")
    info = info if isinstance(info, Mapping) else {}
    overrides = info.get("overrides")
    overrides = [str(o) for o in overrides] if isinstance(overrides, list) else None
    choices = info.get("choices") if isinstance(info.get("choices"), Mapping) else {}
    metrics = _logged_json(log.summary, "mitoseg/metrics_json", dict, problems)
    rows = _logged_json(log.summary, "mitoseg/protocols_json", list, problems) or []

    error = str(log.summary.get("mitoseg/error") or "")
    if error:
        status = "failed"
    elif log.exit_code is None:
        status, error = "unfinished", "no exit record in the W&B log (still running, or killed)"
    elif log.exit_code != 0:
        status, error = "failed", f"exit code {log.exit_code}"
    elif metrics is None:
        status, error = "failed", "exit code 0 but no readable mitoseg/metrics_json in the summary"
    else:
        status = "finished"
    if status != "finished":
        metrics, rows = None, []

    seed = info.get("seed", (metrics or {}).get("seed"))
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    return RunRecord(
        folder=folder, status=status,
        overrides=identity_overrides(overrides, ignore) if overrides is not None
        else (f"(overrides not recorded: {folder.name})",),
        model=str(choices.get("model") or _override_value(overrides, "model") or "?"),
        dataset=str(choices.get("dataset") or _override_value(overrides, "dataset") or "?"),
        seed=seed, unit=replicate_unit(seed, None, overrides, ignore),
        error="; ".join(filter(None, [error, *problems])),
        metrics=metrics or {}, protocols=tuple(r for r in rows if isinstance(r, Mapping)),
        optimized_metric=(metrics or {}).get("optimized_metric") or info.get("optimized_metric"),
        source="wandb-offline",
    )


def replicate_unit(seed: int | None, data_seed: Any, overrides: Sequence[str] | None,
                   ignore: Sequence[str]) -> tuple[Any, ...] | None:
    """What makes a run one independent replicate of its configuration: its seed, its
    data_seed (config.yaml) and the overrides ``--ignore`` left out of the configuration
    (runs that differ in those are different runs, e.g. data splits pooled as replicates
    with ``--ignore data_seed``). Runs with one unit (a rerun, a copy) are averaged into one
    value (``stats.per_seed``). None when the seed is unknown: the run is its own unit."""
    if seed is None:
        return None
    ignored = sorted(o for o in overrides or () if "=" in o and under(override_key(o), ignore))
    return (seed, data_seed if isinstance(data_seed, int) else None, *ignored)


def protocol_label(row: Mapping[str, Any]) -> str:
    """A protocols.csv row (or metrics.json 'headline') -> 'overlap_blend +TTA +Z5'."""
    label = str(row.get("protocol", "?"))
    if str(row.get("tta", "")).strip().lower() in ("true", "1", "yes"):
        label += " +TTA"
    z = str(row.get("zfilter", "0")).strip()
    if z not in ("", "0", "False", "false", "None"):
        label += f" +Z{z}"
    return label


def metric_values(run: RunRecord, name: str) -> list[tuple[str, float]]:
    """The values of metric ``name`` in one finished run, as (inference protocol, value).

    - ``split/key`` (``test/as``, ``test/abd_px``, ``test/iou_fg``): metrics.json[split][key],
      its ``mean`` when it is a summary dict (the run's mean over test images) or the number
      itself (``final/val/loss`` reads metrics.json["final"]["val/loss"]). One value, under
      the headline protocol of an EM run, else under ``NO_PROTOCOL``.
    - ``key`` without a slash (``iou_fg``, ``dice``): that column of protocols.csv
      (``iou_fg_over_volume``: its pooled ``iou_fg``, ``averaging``), one value per inference
      protocol row (``protocol_rows``: with several test volumes, their mean).

    Returns [] when the run does not record the metric; values that are not numbers are
    returned as nan (the caller lists them, never averages them).
    """
    if "/" in name:
        split, key = name.split("/", 1)
        entry = run.metrics.get(split, {})
        value = entry.get(key) if isinstance(entry, Mapping) else None
        if isinstance(value, Mapping):
            value = value.get("mean")
        if value is None:
            return []
        headline = run.metrics.get("headline")
        protocol = protocol_label(headline) if isinstance(headline, Mapping) else NO_PROTOCOL
        return [(protocol, _number(value))]
    column = protocols_column(name)
    return [(protocol_label(row), _number(row[column])) for row in protocol_rows(run)
            if column in row]


def protocol_rows(run: RunRecord) -> list[dict[str, Any]]:
    """The protocols.csv rows that stand for the run: all of them, or, when it was tested on
    several volumes (a ``test_volume`` column), only their mean rows (``test_volume`` "mean"):
    each volume's own row is a part of the run's value, not another value of it."""
    if tested_on_several_volumes(run):
        return [row for row in run.protocols if row.get(VOLUME_COLUMN) == MEAN_OVER_VOLUMES]
    return list(run.protocols)


def tested_on_several_volumes(run: RunRecord) -> bool:
    """Whether the run's protocols.csv has a row per test volume (a ``test_volume`` column),
    so that its figures are means over those volumes."""
    return any(row.get(VOLUME_COLUMN) for row in run.protocols)


def available_metrics(runs: Iterable[RunRecord]) -> list[str]:
    """The metric names the finished runs record (for error messages)."""
    names: dict[str, None] = {}
    for run in runs:
        for split in ("test", "final"):
            entry = run.metrics.get(split)
            if isinstance(entry, Mapping):
                names |= dict.fromkeys(f"{split}/{key}" for key in entry)
        for row in protocol_rows(run)[:1]:  # the row's labels and its card are no metrics
            names |= dict.fromkeys(k for k in row if not is_label_column(k))
    return list(names)


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _logged_json(summary: Mapping[str, Any], key: str, expected: type,
                 problems: list[str]) -> Any:
    """A W&B summary value that train.py logged as a JSON string (a dict logged as such
    would be flattened by W&B); None when absent or not of the ``expected`` type."""
    value = summary.get(key)
    if value is None:
        return None
    try:
        value = json.loads(value) if isinstance(value, str) else value
    except ValueError as error:
        problems.append(f"W&B summary '{key}' unreadable ({error})")
        return None
    if not isinstance(value, expected):
        problems.append(f"W&B summary '{key}': expected a JSON {expected.__name__}, got "
                        f"{type(value).__name__}")
        return None
    return value


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} unreadable ({error})")
        return None


def _read_yaml(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{path.name} unreadable ({str(error).splitlines()[0]})")
        return None
    return data if isinstance(data, (dict, list)) else None


def _read_csv(path: Path, problems: list[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as stream:
            return list(csv.DictReader(stream))
    except (OSError, csv.Error) as error:
        problems.append(f"{path.name} unreadable ({error})")
        return []


def _overrides(folder: Path, info: Mapping[str, Any], problems: list[str]) -> list[str] | None:
    """The job's overrides: .hydra/overrides.yaml, else the command line of a single run."""
    recorded = _read_yaml(folder / ".hydra" / "overrides.yaml", problems)
    if isinstance(recorded, list):
        return [str(o) for o in recorded]
    argv = info.get("argv") or shlex.split(info.get("command", ""))
    if argv and Path(argv[0]).name == "train.py" and not {"-m", "--multirun"} & set(argv):
        return [a for a in argv[1:] if "=" in a and not a.startswith("-")]
    return None  # a multirun's command line holds the sweep, not this job's values


def _last_failure(folder: Path) -> Path | None:
    """The record of the latest failed attempt: failed.json, or failed-2.json, failed-3.json
    ... when earlier attempts failed too (``mitoseg.runs.failures``); None when there is none
    or when the run was resumed after it (a resume-N.json written later: that failure is
    history)."""
    def attempt(path: Path) -> int:
        number = path.stem.removeprefix("failed").removeprefix("-")
        return int(number) if number.isdigit() else 1

    records = [p for p in folder.glob("failed*.json")
               if p.stem == "failed" or p.stem.removeprefix("failed-").isdigit()]
    if not records:
        return None
    latest = max(records, key=attempt)
    resumed = [p.stat().st_mtime for p in folder.glob("resume-*.json")]
    return None if resumed and max(resumed) > latest.stat().st_mtime else latest


def _override_value(overrides: Sequence[str] | None, key: str) -> str | None:
    for override in overrides or ():
        if "=" in override and override_key(override) == key:
            return override.split("=", 1)[1]
    return None


def _target_name(node: Any) -> str:
    """A config node's ``_target_`` class name (``...unet_paper000.UNetPaper000``)."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    return str(target).rsplit(".", 1)[-1] if target else "?"


def _hydra_runtime(folder: Path) -> Mapping[str, Any]:
    path = folder / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data.get("hydra", {}) if isinstance(data, Mapping) else {}


def _choices(folder: Path) -> Mapping[str, Any]:
    """The config-group options Hydra chose (defaults included), e.g. {'model': 'fcn_paper000'}."""
    choices = _hydra_runtime(folder).get("runtime", {}).get("choices", {})
    return choices if isinstance(choices, Mapping) else {}


def _job_name(folder: Path) -> str | None:
    """'train', 'evaluate', 'segment', or None when the folder does not say."""
    name = _hydra_runtime(folder).get("job", {}).get("name")
    if name:
        return str(name)
    if (folder / "summary.json").is_file() or (folder / "segmentation.json").is_file():
        return "evaluate"  # evaluate.py / segment.py results, not a training run
    return None


def _logged_error(folder: Path) -> str:
    """The last 'mitoseg: error:' line of the job's log (a multirun job stopped on bad input)."""
    for log in sorted(folder.glob("*.log")):
        try:
            with open(log, "rb") as stream:
                stream.seek(max(0, log.stat().st_size - 65536))
                lines = stream.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        errors = [line[line.index(ERROR_MARK) + len(ERROR_MARK):].strip()
                  for line in lines if ERROR_MARK in line]
        if errors:
            return errors[-1]
    return ""
