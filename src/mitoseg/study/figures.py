"""Figures of paper 000's study, drawn from the tidy per-image rows (PNG and SVG).

Layouts follow paper 000: Figure 2 (robustness: AS and ABD vs level per family, one line per
method, SEM error bars, SNR from 8 down to 1), Figure 3 (sensitivity: DAS and DDS per
deformation level, bars with SEM, and the paper's two summaries), Figure 4 (mixture vs
single-condition training), Supplementary Figure S2 (trained-at x tested-at grids) and S5
(the spatially correlated families drawn like Figure 2, the uncorrelated ones dashed).

Every function writes ``<name>.png`` and ``<name>.svg`` into ``out_dir``, refuses to overwrite
either (InputError, nothing written), returns the two paths, and returns [] when its part of
the study has no rows. Matplotlib is used through the Agg canvas only, never pyplot, so no
global backend state is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mitoseg.errors import InputError
from mitoseg.runs.files import write_new_bytes
from mitoseg.study.statistics import (
    METHODS,
    cross_condition_table,
    format_level,
    level_order,
    mixture_table,
    normalize_rows,
    ordered_methods,
    robustness_table,
    sensitivity_table,
)

__all__ = ["figure2_robustness", "figure3_sensitivity", "figure4_mixture", "figure_s2_cross",
           "figure_s5_correlated", "example_panel", "write_figures"]

Rows = Iterable[Mapping[str, Any]]
PathLike = Union[str, Path]

METHOD_LABELS = {"fcn": "FCN", "unet": "U-Net", "aam": "AAM", "otsu": "Otsu", "local": "Local threshold"}
METRIC_LABELS = {"as": "Area similarity", "abd_px": "Boundary distance (px)", "das": "DAS", "dds": "DDS"}
FAMILY_LABELS = {"snr": "SNR", "sib": "Space-invariant blur (sigma, px)",
                 "svb": "Space-variant blur (1~M)", "snr_corr": "SNR, correlated",
                 "sib_corr": "Space-invariant blur, correlated", "svb_corr": "Space-variant blur, correlated",
                 "deformation": "Deformation (px; < 0 erosion)"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def method_label(method: str) -> str:
    base, plus, rest = method.partition("+")
    return METHOD_LABELS.get(base, base) + (f" + {rest}" if plus else "")


def _color(method: str, methods: Sequence[str]) -> str:
    """The paper's three methods keep their colour in every figure; others follow in order."""
    if method in METHODS:
        return _PALETTE[METHODS.index(method)]
    extras = [m for m in methods if m not in METHODS]
    return _PALETTE[(len(METHODS) + extras.index(method)) % len(_PALETTE)]


def _zero_nan(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, 0.0)


# ----------------------------------------------------------------------------- saving

def _save(fig: Figure, out_dir: PathLike, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise InputError(f"refusing to overwrite existing figure(s) {taken}; choose another folder")
    FigureCanvasAgg(fig)
    blobs = []
    for path, fmt in zip(paths, ("png", "svg")):
        buffer = io.BytesIO()
        # no date in the SVG, so the same rows give the same file
        fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight",
                    metadata={"Date": None} if fmt == "svg" else None)
        blobs.append(buffer.getvalue())
    return [write_new_bytes(path, blob) for path, blob in zip(paths, blobs)]


def _figure(rows_n: int, cols_n: int, width: float = 3.4, height: float = 2.9) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * cols_n, height * rows_n), layout="constrained")
    axes = np.asarray(fig.subplots(rows_n, cols_n, squeeze=False))
    return fig, axes


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- Figure 2 / S5

def _accuracy_lines(ax, table: list[dict], family: str, metric: str, methods: Sequence[str],
                    positions: dict[float, int], linestyle: str = "-", alpha: float = 1.0,
                    suffix: str = "") -> None:
    for entry in table:
        if entry["family"] != family or entry["metric"] != metric:
            continue
        x = [positions[lv] for lv in entry["levels"]]
        ax.errorbar(x, entry["means"], yerr=_zero_nan(entry["sems"]), marker="o", ms=4, capsize=3,
                    linestyle=linestyle, alpha=alpha, color=_color(entry["method"], methods),
                    label=method_label(entry["method"]) + suffix)


def _accuracy_grid(rows: Rows, families: Sequence[str], name: str, out_dir: PathLike,
                   overlay: Mapping[str, str] = {}) -> list[Path]:
    table = robustness_table(rows)
    present = {e["family"] for e in table}
    if not present & set(families):
        return []
    methods = ordered_methods(e["method"] for e in table)
    fig, axes = _figure(2, len(families))
    for col, family in enumerate(families):
        base = overlay.get(family)
        levels = level_order(family, [lv for e in table if e["family"] in (family, base) for lv in e["levels"]])
        positions = {lv: i for i, lv in enumerate(levels)}
        for row, metric in enumerate(("as", "abd_px")):
            ax = axes[row, col]
            if family not in present:
                _empty(ax, f"{family}: no robustness rows (not run)")
                continue
            _accuracy_lines(ax, table, family, metric, methods, positions)
            if base in present:
                _accuracy_lines(ax, table, base, metric, methods, positions, "--", 0.5, f" ({base})")
            ax.set_xticks(range(len(levels)), [format_level(family, lv) for lv in levels])
            ax.set_xlim(-0.4, len(levels) - 0.6)
            ax.set_ylabel(METRIC_LABELS[metric])
            ax.set_xlabel(FAMILY_LABELS.get(family, family))
            if row == 0:
                ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_dir, name)


def figure2_robustness(rows: Rows, out_dir: PathLike, *, families: Sequence[str] = ("snr", "sib", "svb"),
                       name: str = "figure2") -> list[Path]:
    """Figure 2 B-G: mean AS (top) and ABD in px (bottom) vs level for each family, one line per
    method, error bars = SEM; SNR runs 8 -> 4 -> 1 left to right, blur 2 -> 3 -> 4."""
    return _accuracy_grid(rows, families, name, out_dir)


def figure_s5_correlated(rows: Rows, out_dir: PathLike, *,
                         families: Sequence[str] = ("sib_corr", "svb_corr"),
                         name: str = "figure_s5") -> list[Path]:
    """Supplementary Figure S5 C-H: the spatially correlated families drawn like Figure 2, with
    the matching uncorrelated family (sib for sib_corr, ...) dashed where it was run."""
    table_families = {r["family"] for r in normalize_rows(rows) if r["part"] == "robustness"}
    wanted = list(families)
    if "snr_corr" in table_families and "snr_corr" not in wanted:
        wanted.insert(0, "snr_corr")
    overlay = {f: f[: -len("_corr")] for f in wanted if f.endswith("_corr")}
    return _accuracy_grid(rows, wanted, name, out_dir, overlay)


# ----------------------------------------------------------------------------- Figure 3

def _grouped_bars(ax, entries: list[dict], metric: str, methods: Sequence[str]) -> None:
    levels = level_order("deformation", [lv for e in entries for lv in e["levels"]])
    width = 0.8 / max(len(entries), 1)
    for i, entry in enumerate(entries):
        x = [levels.index(lv) - 0.4 + width * (i + 0.5) for lv in entry["levels"]]
        ax.bar(x, _zero_nan(entry[f"{metric}_mean"]), width, yerr=_zero_nan(entry[f"{metric}_sem"]),
               capsize=2, color=_color(entry["method"], methods), label=method_label(entry["method"]))
    ax.set_xticks(range(len(levels)), [f"{lv:+g}" for lv in levels])
    ax.set_xlabel(FAMILY_LABELS["deformation"])
    ax.set_ylabel(METRIC_LABELS[metric])


def figure3_sensitivity(rows: Rows, out_dir: PathLike, *, name: str = "figure3") -> list[Path]:
    """Figure 3 B-C: mean DAS and DDS per deformation level and method (bars, SEM), plus a
    third panel with the paper's summaries: DAS averaged over dilation 2-3 px and DDS averaged
    over all levels."""
    table = sensitivity_table(rows)
    if not table:
        return []
    methods = [e["method"] for e in table]
    fig, axes = _figure(1, 3)
    _grouped_bars(axes[0, 0], table, "das", methods)
    _grouped_bars(axes[0, 1], table, "dds", methods)
    axes[0, 1].axhline(1.0, color="purple", lw=1, ls=":", label="ground truth")
    axes[0, 0].legend(fontsize=7, frameon=False)
    ax = axes[0, 2]
    width = 0.8 / len(table)
    for i, entry in enumerate(table):
        values = [entry["das_dilation_2_3"], entry["dds_all_levels"]]
        ax.bar(np.arange(2) - 0.4 + width * (i + 0.5), _zero_nan(values), width,
               color=_color(entry["method"], methods), label=method_label(entry["method"]))
    ax.set_xticks([0, 1], ["DAS, dilation 2-3 px", "DDS, all levels"])
    ax.set_ylabel("Sensitivity summary")
    return _save(fig, out_dir, name)


# ----------------------------------------------------------------------------- Figure 4

def figure4_mixture(rows: Rows, out_dir: PathLike, *, name: str = "figure4") -> list[Path]:
    """Figure 4: AS (top) and ABD (bottom) per test level for networks trained on a mixture of
    conditions (solid) vs on the single test condition (dashed), one colour per method, SEM."""
    table = mixture_table(rows)
    if not table:
        return []
    families = list(dict.fromkeys(e["family"] for e in table))
    methods = ordered_methods(e["method"] for e in table)
    fig, axes = _figure(2, len(families))
    for col, family in enumerate(families):
        levels = level_order(family, [e["level"] for e in table if e["family"] == family])
        for row, metric in enumerate(("as", "abd_px")):
            ax = axes[row, col]
            for method in methods:
                mine = [e for e in table if e["family"] == family and e["method"] == method
                        and e["metric"] == metric]
                if not mine:
                    continue
                x = [levels.index(e["level"]) for e in mine]
                for kind, style in (("mixture", "-"), ("single", "--")):
                    ax.errorbar(x, [e[f"{kind}_mean"] for e in mine],
                                yerr=_zero_nan([e[f"{kind}_sem"] for e in mine]), marker="o", ms=4,
                                capsize=3, ls=style, color=_color(method, methods),
                                label=f"{method_label(method)}, {kind}")
            ax.set_xticks(range(len(levels)), [format_level(family, lv) for lv in levels])
            ax.set_xlabel(FAMILY_LABELS.get(family, family) + " (test)")
            ax.set_ylabel(METRIC_LABELS[metric])
            if row == 0:
                ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_dir, name)


# ----------------------------------------------------------------------------- Figure S2

def figure_s2_cross(rows: Rows, out_dir: PathLike, *, name: str = "figure_s2") -> list[Path]:
    """Supplementary Figure S2 as grids: for each family with cross-condition rows, mean AS and
    ABD with the network trained at one level (rows) and tested at another (columns), one panel
    per method; the diagonal is the matching-condition reference."""
    table = cross_condition_table(rows)
    if not table:
        return []
    families = list(dict.fromkeys(e["family"] for e in table))
    methods = ordered_methods(e["method"] for e in table)
    fig, axes = _figure(2 * len(families), len(methods), width=3.2, height=3.0)
    for f_index, family in enumerate(families):
        fam = [e for e in table if e["family"] == family]
        trains = level_order(family, [e["train_level"] for e in fam])
        tests = level_order(family, [e["test_level"] for e in fam])
        for m_index, metric in enumerate(("as", "abd_px")):
            for col, method in enumerate(methods):
                ax = axes[2 * f_index + m_index, col]
                grid = np.full((len(trains), len(tests)), math.nan)
                for e in fam:
                    if e["method"] == method and e["metric"] == metric:
                        grid[trains.index(e["train_level"]), tests.index(e["test_level"])] = e["mean"]
                if not np.isfinite(grid).any():
                    _empty(ax, f"{method_label(method)}: no {family} cross rows")
                    continue
                cmap = colormaps["viridis" if metric == "as" else "magma_r"].with_extremes(bad="0.85")
                image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap)
                for (i, j), value in np.ndenumerate(grid):
                    if np.isfinite(value):
                        r, g, b, _ = image.cmap(image.norm(value))
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                                color="k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w")
                ax.set_xticks(range(len(tests)), [format_level(family, lv) for lv in tests])
                ax.set_yticks(range(len(trains)), [format_level(family, lv) for lv in trains])
                ax.set_xlabel(f"tested at ({family})")
                ax.set_ylabel(f"trained at ({family})")
                ax.set_title(f"{method_label(method)}: {METRIC_LABELS[metric]}", fontsize=9)
                fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, out_dir, name)


# ----------------------------------------------------------------------------- examples

def example_panel(image: np.ndarray, truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                  path: PathLike) -> list[Path]:
    """Image, ground truth and each method's mask side by side (Figures 2A, 3A), titled with
    the AS against the truth. ``path`` names the files: ``path`` with suffix .png and .svg."""
    from mitoseg.metrics.segmentation import area_similarity  # noqa: PLC0415 (keeps import light)

    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise InputError(f"example_panel: image must be 2D (H, W), got shape {img.shape}")
    masks = {"ground truth": np.asarray(truth)} | {k: np.asarray(v) for k, v in predictions.items()}
    for label, mask in masks.items():
        if mask.shape != img.shape:
            raise InputError(f"example_panel: mask '{label}' has shape {mask.shape}, expected the "
                             f"image's {img.shape}")
    fig, axes = _figure(1, 1 + len(masks), width=2.6, height=2.8)
    low, high = np.percentile(img, [1, 99.5])
    axes[0, 0].imshow(img, cmap="gray", vmin=low, vmax=high)
    axes[0, 0].set_title("image", fontsize=9)
    for ax, (label, mask) in zip(axes[0, 1:], masks.items()):
        ax.imshow(mask.astype(bool), cmap="gray", interpolation="nearest")
        title = label if label == "ground truth" else \
            f"{method_label(label)} (AS {area_similarity(masks['ground truth'], mask):.3f})"
        ax.set_title(title, fontsize=9)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    return _save(fig, stem.parent, stem.name)


def write_figures(rows: Rows, out_dir: PathLike) -> dict[str, list[Path]]:
    """All study figures into ``out_dir``: name -> written paths ([] = skipped, no rows)."""
    rows = normalize_rows(rows)
    return {"figure2": figure2_robustness(rows, out_dir), "figure3": figure3_sensitivity(rows, out_dir),
            "figure4": figure4_mixture(rows, out_dir), "figure_s2": figure_s2_cross(rows, out_dir),
            "figure_s5": figure_s5_correlated(rows, out_dir)}
