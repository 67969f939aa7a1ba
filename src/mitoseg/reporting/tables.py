"""Tables of many runs: per (model, dataset, inference protocol) and
configuration, mean +- std, min, max, n, a p-value against a baseline (raw and
Holm-adjusted) and an unstable flag; failed and unfinished runs listed, never dropped.

The seed is the unit across runs: each run contributes its own summary (its mean over test
images, never the images themselves), runs of one unit (``collect.replicate_unit``: seed,
data_seed and any key ``--ignore`` pools) are averaged into one value (``stats.per_seed``),
and n counts units.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitoseg.errors import InputError
from mitoseg.reporting.averaging import average_text, per_volume_text, short_text
from mitoseg.reporting.collect import (
    NO_PROTOCOL,
    RunRecord,
    available_metrics,
    metric_values,
    tested_on_several_volumes,
)
from mitoseg.reporting.formatting import cell, markdown_table, number_text, p_text
from mitoseg.reporting.protocol_cards import (
    NO_CARD,
    card_average,
    card_conflict,
    card_of,
    card_text,
    row_card_text,
)
from mitoseg.reporting.composed_configs import config_conflicts, merge_equivalent
from mitoseg.reporting.stats import (
    TESTS,
    describe,
    holm,
    is_unstable,
    p_value,
    per_seed,
    untested_reason,
)
from mitoseg.runs.identity import REPLICATE_KEYS, RESULT_NEUTRAL_KEYS
from mitoseg.runs.paths import display_path

TEST_NAMES = {"welch": "Welch's t-test", "student": "Student's t-test",
              "mannwhitney": "Mann-Whitney U"}
SUMMARY_COLUMNS = ("metric", "dataset", "protocol", "model", "configuration", "baseline", "n",
                   "runs", "failed", "running", "unfinished", "no_value", "mean", "std", "min",
                   "max", "test", "p_value", "p_holm", "untested", "unstable", "unstable_std",
                   "full_configuration")
ConfigKey = tuple[tuple[str, ...], str, str]  # (identity overrides, model, dataset)


@dataclass
class Report:
    """What ``summarize_runs`` found: one row per (metric, dataset, protocol, configuration)."""

    runs: list[RunRecord]
    metrics: list[str]
    rows: list[dict[str, Any]]
    labels: dict[ConfigKey, str]  # short configuration labels
    common: tuple[str, ...]  # overrides shared by every configuration
    missing: list[tuple[RunRecord, str]] = field(default_factory=list)  # finished, no value
    baseline: str | None = None
    test: str = "welch"
    unstable_std: float = 0.01
    unstable_std_by_metric: dict[str, float] = field(default_factory=dict)
    # comparisons whose runs hold different protocol cards, allowed by --mixed-protocols:
    # (metric, dataset, protocol, what differs)
    mixed: list[tuple[str, str, str, str]] = field(default_factory=list)
    # configurations whose runs hold different composed configs, allowed by --mixed-configs:
    # (label, what differs)
    mixed_configs: list[tuple[str, str]] = field(default_factory=list)
    # override lists that resolve to one config, reported under one: (kept, also written as)
    merged: list[tuple[str, str]] = field(default_factory=list)

    def threshold(self, metric: str) -> float:
        return self.unstable_std_by_metric.get(metric, self.unstable_std)


def config_key(run: RunRecord) -> ConfigKey:
    return run.overrides, run.model, run.dataset


def short_labels(keys: Iterable[ConfigKey]) -> tuple[dict[ConfigKey, str], tuple[str, ...]]:
    """Labels without the overrides that every configuration shares (those are returned
    apart); '(base)' for a configuration that has nothing else."""
    keys = list(dict.fromkeys(keys))
    common = set.intersection(*(set(k[0]) for k in keys)) if keys else set()
    labels = {k: " ".join(o for o in k[0] if o not in common) or "(base)" for k in keys}
    return labels, tuple(sorted(common))


def summarize_runs(runs: Sequence[RunRecord], metrics: Sequence[str], baseline: str | None = None,
                   test: str = "welch", unstable_std: float = 0.01,
                   unstable_std_by_metric: Mapping[str, float] | None = None,
                   mixed_protocols: bool = False, mixed_configs: bool = False) -> Report:
    """Group the runs by configuration (seed ignored) and compute the statistics.

    ``unstable_std``: flag configurations whose std over runs exceeds it;
    ``unstable_std_by_metric`` sets it per metric (a distance in px needs another scale).
    Each table (metric, dataset, protocol) is one comparison: its runs must hold one protocol
    card (``protocol_cards``); ``mixed_protocols`` compares them anyway and lists the
    differences in ``Report.mixed``. The runs of one configuration must hold one resolved
    config (``composed_configs``); ``mixed_configs`` pools them anyway and lists the
    differences in ``Report.mixed_configs``.
    """
    if test not in TESTS:
        raise InputError(f"option '--test': unknown test '{test}'; expected one of {TESTS}")
    by_metric = dict(unstable_std_by_metric or {})
    for name, value in [("--unstable-std", unstable_std), *(
            (f"--unstable-std-for {m}", v) for m, v in by_metric.items())]:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"option '{name}' must be a number >= 0, got {value!r}")
    unknown = sorted(set(by_metric) - set(metrics))
    if unknown:
        raise InputError(f"option '--unstable-std-for' names {unknown}, which are not among the "
                         f"reported metrics {list(metrics)}")
    runs, merged = merge_equivalent(runs)
    labels, common = short_labels(config_key(r) for r in runs)
    counts: dict[ConfigKey, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for run in runs:
        counts[config_key(run)][run.status] += 1
    baseline_keys = _baseline_keys(baseline, runs, labels)
    finished = [r for r in runs if r.status == "finished"]
    report = Report(list(runs), list(metrics), [], labels, common, baseline=baseline, test=test,
                    unstable_std=unstable_std, unstable_std_by_metric=by_metric,
                    merged=merged)
    for key, differs in config_conflicts(runs, config_key).items():
        if not mixed_configs:
            label = " ".join(key[0]) or "(defaults)"
            raise InputError(f"refusing to pool runs whose composed configs differ under one "
                             f"configuration '{label}' (the same overrides, other "
                             f"defaults: another commit or an edited conf/ file): {differs}; "
                             "report them apart, or pass --mixed-configs to pool them anyway")
        report.mixed_configs.append((labels[key], differs))
    for metric in metrics:
        groups: dict[tuple[str, str], dict[ConfigKey, list[tuple[Any, float]]]] = defaultdict(dict)
        members: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        # finished runs out of n, per table and configuration: a value that is not a number,
        # or (counted in every table of the run's dataset) no value at all
        no_value: dict[tuple[str, str], Counter[ConfigKey]] = defaultdict(Counter)
        unrecorded: list[RunRecord] = []
        recorded = False
        for run in finished:
            values = metric_values(run, metric)
            recorded = recorded or bool(values)
            if not values:
                report.missing.append((run, f"{metric} not recorded"))
                unrecorded.append(run)
            for protocol, value in values:
                if not math.isfinite(value):
                    report.missing.append((run, f"{metric} [{protocol}] is not a number"))
                    no_value[(run.dataset, protocol)][config_key(run)] += 1
                    groups[(run.dataset, protocol)].setdefault(config_key(run), [])
                    continue
                groups[(run.dataset, protocol)].setdefault(config_key(run), []).append(
                    (run.unit, value))
                members[(run.dataset, protocol)].append(run)
        if finished and not recorded:
            raise InputError(f"option '--metric': no finished run records '{metric}'; "
                             f"available: {', '.join(available_metrics(finished)) or 'none'}")
        for key in counts:  # configurations without a finished run still get their rows
            dataset_groups = [g for g in groups if g[0] == key[2]] or [(key[2], NO_PROTOCOL)]
            for group in dataset_groups:
                groups[group].setdefault(key, [])
        for run in unrecorded:
            for group in (g for g in groups if g[0] == run.dataset):
                no_value[group][config_key(run)] += 1
        for (dataset, protocol), found in members.items():
            # a split/key metric is the headline's (metrics.json's card); a protocols.csv
            # metric is its row's, under that row's own card
            conflict = card_conflict(found, card_text if "/" in metric else
                                     lambda run, protocol=protocol: row_card_text(run, protocol))
            if conflict and not mixed_protocols:
                where = f"{metric}, dataset '{dataset}'" + (
                    f", protocol '{protocol}'" if protocol != NO_PROTOCOL else "")
                raise InputError(f"refusing to compare runs measured under different test "
                                 f"protocols ({where}): {conflict}; report them apart, or pass "
                                 "--mixed-protocols to compare them anyway")
            if conflict:
                report.mixed.append((metric, dataset, protocol, conflict))
        for (dataset, protocol), by_config in groups.items():
            rows = _group_rows(metric, dataset, protocol, by_config, counts,
                               no_value[(dataset, protocol)], labels, baseline_keys, test,
                               report.threshold(metric))
            average = table_average(metric, protocol, members[(dataset, protocol)])
            report.rows += [row | {"average": average} for row in rows]
    return report


def table_average(metric: str, protocol: str, runs: Sequence[RunRecord]) -> str:
    """What a table's figures average (``averaging.average_text``): a headline metric
    (``split/key``) as the cards of the table's runs say, a protocols.csv column by its name;
    for runs tested on several volumes, each volume's figure averaged over the volumes."""
    texts = set()
    for run in runs:
        text = average_text(metric, protocol, card_average(run) if "/" in metric else None)
        texts.add(per_volume_text(text) if tested_on_several_volumes(run) else text)
    return " / ".join(sorted(text for text in texts if text))


def _baseline_keys(baseline: str | None, runs: Sequence[RunRecord],
                   labels: Mapping[ConfigKey, str]) -> set[ConfigKey]:
    if baseline is None:
        return set()
    keys = {config_key(r) for r in runs if baseline in (r.config, labels[config_key(r)])}
    if not keys:
        known = "; ".join(sorted(set(labels.values())))
        raise InputError(f"option '--baseline': no configuration '{baseline}'; expected one of: "
                         f"{known}")
    return keys


def _group_rows(metric: str, dataset: str, protocol: str,
                by_config: dict[ConfigKey, list[tuple[Any, float]]],
                counts: Mapping[ConfigKey, Mapping[str, int]], no_value: Mapping[ConfigKey, int],
                labels: Mapping[ConfigKey, str], baseline_keys: set[ConfigKey], test: str,
                unstable_std: float) -> list[dict]:
    base = [k for k in by_config if k in baseline_keys]
    if len(base) > 1:
        raise InputError(f"option '--baseline' matches {len(base)} configurations in dataset "
                         f"'{dataset}': {[labels[k] for k in base]}; give the full label")
    base_values = per_seed(by_config[base[0]]) if base else None
    order = sorted(by_config, key=lambda k: (k not in baseline_keys, k[1], labels[k]))
    rows = []
    for key in order:
        values = per_seed(by_config[key])
        stats = describe(values)
        compared = base_values is not None and key not in baseline_keys
        rows.append({
            "metric": metric, "dataset": dataset, "protocol": protocol, "model": key[1],
            "configuration": labels[key], "baseline": key in baseline_keys, **stats,
            "runs": len(by_config[key]),
            "failed": counts[key].get("failed", 0), "unfinished": counts[key].get("unfinished", 0),
            "no_value": no_value.get(key, 0), "running": counts[key].get("running", 0),
            "test": test if compared else "",
            "p_value": p_value(values, base_values, test) if compared else math.nan,
            "untested": untested_reason(values, base_values, test) if compared else "",
            "unstable": is_unstable(stats["std"], unstable_std), "unstable_std": unstable_std,
            "full_configuration": " ".join(key[0]) or "(defaults)", "values": list(values)})
    adjusted = holm([r["p_value"] for r in rows])
    for row, p in zip(rows, adjusted):
        row["p_holm"] = p
    return rows


# ---- rendering ---------------------------------------------------------------------------

def _mean_std(row: Mapping[str, Any]) -> str:
    if row["n"] == 0:
        return "no finished run"
    std = f" ± {number_text(row['std'])}" if row["n"] > 1 else ""
    return f"{number_text(row['mean'])}{std}"


def _n(row: Mapping[str, Any]) -> str:
    """Seeds, and the finished runs behind them when there are more runs than seeds."""
    return f"{row['n']}" + (f" ({row['runs']} runs)" if row["runs"] != row["n"] else "")


OUT_OF_N = ("failed", "running", "unfinished", "no_value")  # row counts of runs not in n


def _not_finished(row: Mapping[str, Any]) -> str:
    parts = [f"{row[s]} {s.replace('_', ' ')}" for s in OUT_OF_N if row[s]]
    return ", ".join(parts) or "0"


def _p(row: Mapping[str, Any]) -> str:
    """The p-value, or why there is none (``stats.untested_reason``)."""
    return f"n/a ({row['untested']})" if row["untested"] else p_text(row["p_value"])


def _unstable(row: Mapping[str, Any]) -> str:
    return "n/a" if row["n"] < 2 else ("**yes**" if row["unstable"] else "no")


def label_text(row: Mapping[str, Any]) -> str:
    mark = " †" if any(row[s] for s in OUT_OF_N) else ""
    return f"`{row['configuration']}`{' (baseline)' if row['baseline'] else ''}{mark}"


def markdown(report: Report, title: str = "Run report") -> str:
    """report.md: overview, one table per (metric, dataset, protocol), then every run that
    did not finish or gave no value."""
    status = defaultdict(int)
    for run in report.runs:
        status[run.status] += 1
    test = TEST_NAMES[report.test]
    offline = sum(r.source == "wandb-offline" for r in report.runs)
    unstarted = sum(not r.started for r in report.runs)
    lines = [f"# {title}", "",
             f"- Runs: {len(report.runs)} run folders"
             + (f" ({offline} of them W&B offline runs)" if offline else "")
             + (f" ({unstarted} of them a sweep job that never started)" if unstarted else "")
             + ": " + ", ".join(
                 f"{status[s]} {s}" for s in ("finished", "failed", "running", "unfinished")) + ".",
             "- Configuration = a job's command-line overrides without "
             f"{', '.join(REPLICATE_KEYS + RESULT_NEUTRAL_KEYS)}"
             " (so the seeds of one configuration group together).",
             "- Overrides shared by every configuration (left out of the labels): "
             + (" ".join(f"`{o}`" for o in report.common) or "none") + ".",
             "- Values: mean ± std (sample std, ddof 1) over seeds; n = independent seeds, the "
             "sample size of the tests (a unit is a (seed, data_seed) pair, and the values of "
             "the keys --ignore pools; each run gives its mean over test images; finished runs "
             "of one unit are averaged into one value, and the run count follows in brackets "
             "when it differs); min/max over seeds; † = the configuration has failed, running "
             "(a live run.lock) or unfinished runs, or finished runs without a value (nan, or "
             "not recorded: 'no value'), counted under 'not finished' and listed at the end, "
             "not in n.",
             (f"- p: {test}, two-sided, each configuration against the baseline "
              f"`{report.baseline}`; Holm = Holm-Bonferroni adjusted within each table."
              if report.baseline else "- p: no baseline given (--baseline), no tests."),
             f"- unstable: std > {report.unstable_std:g}" + "".join(
                 f", {m}: std > {v:g}" for m, v in report.unstable_std_by_metric.items())
             + " (n/a below 2 runs).", _cards_line(report), _configs_line(report), ""]
    lines += _overview(report)
    for metric in report.metrics:
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for row in (r for r in report.rows if r["metric"] == metric):
            groups[(row["dataset"], row["protocol"])].append(row)
        for (dataset, protocol), rows in groups.items():
            where = f"dataset `{dataset}`" + (f", protocol `{protocol}`"
                                              if protocol != NO_PROTOCOL else "")
            body = [(label_text(r), r["model"], _n(r), _not_finished(r), _mean_std(r),
                     number_text(r["min"]), number_text(r["max"]), _p(r),
                     p_text(r["p_holm"]), _unstable(r)) for r in rows]
            average = rows[0]["average"]
            named = f"{metric} ({average})" if average else metric
            lines += [f"## {named}: {where}", ""] + markdown_table(
                ("configuration", "model", "n (seeds)", "not finished", "mean ± std", "min",
                 "max", f"p ({test})", "p (Holm)", "unstable"), body)
    lines += _mixed(report) + _mixed_configs(report) + _problems(report)
    return "\n".join(lines).rstrip() + "\n"


def _cards_line(report: Report) -> str:
    finished = [r for r in report.runs if r.status == "finished"]
    without = sum(card_of(r) is None for r in finished)
    state = (f"{len(report.mixed)} table(s) mix cards (--mixed-protocols; listed at the end)"
             if report.mixed else "every table holds one card")
    return (f"- Protocol cards (metrics.json `protocol_card`: how the test numbers were made): "
            f"{state}; {without} of {len(finished)} finished runs have {NO_CARD}.")


def _configs_line(report: Report) -> str:
    state = (f"{len(report.mixed_configs)} configuration(s) pool runs whose .hydra/config.yaml "
             "differs (--mixed-configs; listed at the end)" if report.mixed_configs
             else "the runs of each configuration agree")
    merged = "".join(f"; `{kept}` also written as `{other}` (the same .hydra/config.yaml, reported "
                     f"as one configuration under the first)" for kept, other in report.merged)
    return f"- Composed configs (.hydra/config.yaml without the keys above): {state}{merged}."


def _mixed(report: Report) -> list[str]:
    if not report.mixed:
        return []
    return ["## Tables that mix protocol cards (--mixed-protocols)", ""] + markdown_table(
        ("metric", "dataset", "protocol", "what differs"), report.mixed)


def _mixed_configs(report: Report) -> list[str]:
    if not report.mixed_configs:
        return []
    return ["## Configurations that pool different composed configs (--mixed-configs)", ""
            ] + markdown_table(("configuration", "what differs (.hydra/config.yaml)"),
                               [(f"`{label}`", differs) for label, differs in report.mixed_configs])


def _overview(report: Report) -> list[str]:
    """Paper 002's Tables 4/5 layout: a row per configuration, a column per metric (and
    inference protocol); cells mean ± std (max)."""
    columns = list(dict.fromkeys((r["metric"], r["protocol"]) for r in report.rows))
    if not columns:
        return ["No finished run gave a value.", ""]
    cells: dict[tuple[str, str, str], dict[tuple[str, str], str]] = defaultdict(dict)
    marks, runs = {}, {}
    for r in report.rows:
        key = (r["configuration"], r["model"], r["dataset"])
        marks[key] = label_text(r)
        n = max(r["n"], runs.get(key, (0,))[0])
        runs[key] = (n, f"{n}" + (f" (+{_not_finished(r)})" if any(r[s] for s in OUT_OF_N)
                                   else ""))
        text = _mean_std(r) + (f" ({number_text(r['max'])})" if r["n"] > 1 else "")
        cells[key][(r["metric"], r["protocol"])] = text
    averages: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    for r in report.rows:  # one column may hold datasets of other averages (2D and 3D)
        if r["average"]:
            averages[(r["metric"], r["protocol"])][r["average"]] = None
    heads = [_column_head(m, p, list(averages[(m, p)])) for m, p in columns]
    body = [(marks[key], key[1], key[2], runs[key][1], *(by_column.get(c, "") for c in columns))
            for key, by_column in cells.items()]
    return ["## Overview: mean ± std (max) over runs", ""] + markdown_table(
        ("configuration", "model", "dataset", "runs", *heads), body)


def _column_head(metric: str, protocol: str, averages: Sequence[str]) -> str:
    """An overview column's heading: the metric, its protocol and, in a few words, each
    average its cells hold."""
    named = metric if protocol == NO_PROTOCOL else f"{metric} {protocol}"
    return cell(named + (f" ({' / '.join(short_text(a) for a in averages)})" if averages else ""))


def _problems(report: Report) -> list[str]:
    lines = []
    broken = [r for r in report.runs if r.status != "finished"]
    if broken:
        lines += ["## Runs that did not finish (not in n)", ""] + markdown_table(
            ("status", "configuration", "seed", "folder", "source", "error"),
            [(r.status, f"`{report.labels[config_key(r)]}`", r.seed, display_path(r.folder),
              r.source, r.error) for r in broken])
    if report.missing:
        lines += ["## Finished runs without a value (not in n)", ""] + markdown_table(
            ("configuration", "seed", "folder", "source", "problem"),
            [(f"`{report.labels[config_key(r)]}`", r.seed, display_path(r.folder), r.source,
              why) for r, why in report.missing])
    return lines


def summary_rows(report: Report) -> list[dict[str, Any]]:
    """summary.csv: one row per (metric, dataset, protocol, configuration), full precision."""
    return [{c: ("" if isinstance(r[c], float) and not math.isfinite(r[c]) else r[c])
             for c in SUMMARY_COLUMNS} for r in report.rows]


def run_rows(report: Report) -> list[dict[str, Any]]:
    """runs.csv: every run folder with its source (folder, wandb-offline), status, error and
    metric values."""
    rows = []
    for run in sorted(report.runs, key=lambda r: (report.labels[config_key(r)], r.seed or 0)):
        row = {"folder": display_path(run.folder), "source": run.source, "status": run.status,
               "configuration": report.labels[config_key(run)], "model": run.model,
               "dataset": run.dataset, "seed": run.seed, "error": run.error}
        if run.status == "finished":
            for metric in report.metrics:
                for protocol, value in metric_values(run, metric):
                    row[metric if protocol == NO_PROTOCOL else f"{metric} [{protocol}]"] = value
        row["protocol_card"] = card_text(run)
        row["full_configuration"] = run.config
        rows.append(row)
    return rows


def default_metrics(runs: Sequence[RunRecord]) -> list[str]:
    """The metric to report when ``--metric`` is not given: the runs' own ``optimized_metric``
    (metrics.json, else config.yaml; W&B runs: their logged identity). Refuses when the runs
    name several, or none, or when no finished run records the one they name."""
    by_metric: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        if run.optimized_metric:
            by_metric[str(run.optimized_metric)].append(run)
    if not by_metric:
        raise InputError("option '--metric' is needed: no run records an optimized_metric "
                         "(config.yaml or metrics.json)")
    if len(by_metric) > 1:
        named = "; ".join(f"'{name}' by {len(found)} run(s), e.g. {display_path(found[0].folder)}"
                          for name, found in sorted(by_metric.items()))
        raise InputError(f"option '--metric' is needed: the runs disagree on their "
                         f"optimized_metric ({named}); give --metric once per metric to report")
    (name,) = by_metric
    finished = [r for r in runs if r.status == "finished"]
    if finished and not any(metric_values(r, name) for r in finished):
        raise InputError(f"option '--metric' is needed: the runs' optimized_metric '{name}' is "
                         "recorded by no finished run; available: "
                         f"{', '.join(available_metrics(finished)) or 'none'}")
    return [name]
