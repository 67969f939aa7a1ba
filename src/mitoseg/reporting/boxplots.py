"""Box plots of a run report: one panel per (dataset, protocol), one box per configuration,
each seed's value as a point."""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections import defaultdict

import numpy as np

from mitoseg.reporting.collect import NO_PROTOCOL
from mitoseg.reporting.tables import Report, label_text


def boxplot_png(report: Report, metric: str) -> bytes:
    """One panel per (dataset, protocol), one box per configuration, runs as points."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in (r for r in report.rows if r["metric"] == metric):
        groups[(row["dataset"], row["protocol"])].append(row)
    columns = max(1, math.ceil(math.sqrt(len(groups))))
    rows = max(1, math.ceil(len(groups) / columns))
    width = max(4.0, 1.1 * max((len(g) for g in groups.values()), default=1) + 1.5)
    figure = Figure(figsize=(width * columns, 4.2 * rows), layout="constrained")
    rng = np.random.default_rng(0)  # jitter of the points: the same picture every time
    for index, ((dataset, protocol), group) in enumerate(groups.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        shown = [r for r in group if r["n"]]
        if shown:
            axes.boxplot([r["values"] for r in shown], showfliers=False)
            for x, r in enumerate(shown, start=1):
                jitter = rng.uniform(-0.12, 0.12, len(r["values"]))
                axes.scatter(x + jitter, r["values"], s=14, alpha=0.7, zorder=3)
            axes.set_xticks(range(1, len(shown) + 1))
            axes.set_xticklabels(
                [_tick(label_text(r).replace("`", "")) + f"\nn={r['n']}" for r in shown],
                fontsize=7)
        else:
            axes.text(0.5, 0.5, "no finished run", ha="center", transform=axes.transAxes)
        axes.set_title(dataset + ("" if protocol == NO_PROTOCOL else f" · {protocol}"), fontsize=9)
        axes.set_ylabel(metric)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def _tick(label: str, width: int = 26, lines: int = 5) -> str:
    wrapped = textwrap.wrap(label, width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(wrapped[:lines - 1] + ["..."] if len(wrapped) > lines else wrapped)


def plot_name(metric: str) -> str:
    return "boxplot_" + re.sub(r"[^\w.\-]+", "-", metric) + ".png"
