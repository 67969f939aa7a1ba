"""``write_report``: the files of ``report.py`` -- report.md, summary.csv, runs.csv and a box
plot per metric -- written once into a new folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mitoseg.errors import InputError
from mitoseg.reporting.boxplots import boxplot_png, plot_name
from mitoseg.reporting.collect import Collection, collect_runs
from mitoseg.reporting.tables import (default_metrics, markdown, run_rows, summarize_runs,
                                      summary_rows)
from mitoseg.runs.files import write_new_bytes, write_new_csv, write_new_text
from mitoseg.runs.paths import display_path


def write_report(roots: Sequence[str | Path], out: str | Path, metrics: Sequence[str] = (),
                 baseline: str | None = None, test: str = "welch", unstable_std: float = 0.01,
                 unstable_std_by_metric: Mapping[str, float] | None = None,
                 ignore: Sequence[str] = (), mixed_protocols: bool = False,
                 mixed_configs: bool = False) -> dict[str, Path]:
    """Collect the runs under ``roots`` and write report.md, summary.csv, runs.csv and
    boxplot_<metric>.png into ``out``; refuses if any of them exists. ``metrics`` defaults to
    the runs' own ``optimized_metric`` (``default_metrics``). Returns the written paths by
    name."""
    collection: Collection = collect_runs(roots, ignore)
    if not collection.runs:
        skipped = "; ".join(f"{display_path(folder)} ({why})"
                            for folder, why in collection.skipped[:5])
        raise InputError(f"no training run under {', '.join(map(str, roots))}: "
                         f"{len(collection.skipped)} folder(s) found and skipped: {skipped}"
                         + ("; ..." if len(collection.skipped) > 5 else ""))
    metrics = list(metrics) or default_metrics(collection.runs)
    report = summarize_runs(collection.runs, metrics, baseline, test, unstable_std,
                            unstable_std_by_metric, mixed_protocols, mixed_configs)
    out = Path(out)
    names = ["report.md", "summary.csv", "runs.csv", *map(plot_name, metrics)]
    taken = [n for n in names if (out / n).exists()]
    if taken:
        raise InputError(f"option '--out': '{out}' already holds {', '.join(taken)}; refusing "
                         "to overwrite -- choose another folder")
    text = markdown(report, title=f"Run report: {out.name}")
    text += "".join(f"\n![{m}]({plot_name(m)})\n" for m in metrics)
    text += "\n## Sources\n\n" + "".join(f"- `{display_path(root)}`\n" for root in roots)
    if collection.skipped:
        text += "\nFolders skipped (not training runs):\n\n" + "".join(
            f"- `{display_path(folder)}`: {why}\n" for folder, why in collection.skipped)
    written = {"report.md": write_new_text(out / "report.md", text),
               "summary.csv": write_new_csv(out / "summary.csv", summary_rows(report)),
               "runs.csv": write_new_csv(out / "runs.csv", run_rows(report))}
    for metric in metrics:
        written[plot_name(metric)] = write_new_bytes(out / plot_name(metric),
                                                     boxplot_png(report, metric))
    return written
