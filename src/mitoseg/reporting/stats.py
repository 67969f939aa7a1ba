"""The project's statistics over repeated results: pure functions, numbers in, numbers out.

Paper 002 judges a configuration by mean +- std over repeated runs (10 seeds), not by its
best run; these are the numbers of its tables plus a test against a baseline. Paper 000's
study (``mitoseg.study``) takes its two-sample tests from here too (``two_sample_test`` on
unit means, ``mitoseg.study.units``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats

from mitoseg.errors import InputError

TESTS = ("welch", "student", "mannwhitney")


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """mean, std (sample, ddof=1; nan for fewer than 2 values), min, max and n."""
    array = np.asarray(values, dtype=float)
    n = int(array.size)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if n > 1 else math.nan,
            "min": float(array.min()), "max": float(array.max()), "n": n}


def per_seed(runs: Sequence[tuple[Hashable | None, float]]) -> list[float]:
    """One value per unit from (unit, value) of a configuration's runs: the seed (with
    report.py, the ``collect.replicate_unit``: seed, data_seed, ...) is the unit across
    runs, so several finished runs of one unit (a rerun, a copy) are averaged into one
    value instead of counting as independent samples. A run of unknown unit (None) is its
    own unit. Order: first appearance.

    Example: [(0, 0.8), (1, 0.9), (0, 0.7)] -> [0.75, 0.9].
    """
    groups: dict[object, list[float]] = {}
    for index, (seed, value) in enumerate(runs):
        groups.setdefault(("seed", seed) if seed is not None else ("run", index), []).append(value)
    return [float(np.mean(values)) for values in groups.values()]


def two_sample_test(values: Sequence[float], baseline: Sequence[float],
                    test: str = "welch") -> dict[str, float]:
    """Two-sided two-sample test of ``values`` against ``baseline``: {"t", "p"}.

    ``welch``: Welch's t-test (scipy.stats.ttest_ind, equal_var=False); ``student``: the
    classic two-sample Student t-test (equal_var=True). ``mannwhitney``: Mann-Whitney U, its
    p exact over every split of the pooled values (``mann_whitney_exact``; "t" is the U
    statistic of ``values``). nan where ``untested_reason`` gives a reason (too few values,
    or two t-test samples without any variance).
    """
    if test not in TESTS:
        raise InputError(f"option '--test': unknown test '{test}'; expected one of {TESTS}")
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if untested_reason(a, b, test):
        return {"t": math.nan, "p": math.nan}
    if test == "mannwhitney":
        return mann_whitney_exact(a, b)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=test == "student")
    return {"t": float(result.statistic), "p": float(result.pvalue)}


def untested_reason(values: Sequence[float], baseline: Sequence[float], test: str) -> str:
    """Why ``two_sample_test`` gives no p ("" when it gives one): a t-test needs 2 values on
    each side and some variance (two constant samples give t = +-inf, p = 0 from scipy, a
    "difference" no data supports); Mann-Whitney needs 1 value on each side."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if test == "mannwhitney":
        return "" if min(a.size, b.size) >= 1 else "no value on a side"
    if min(a.size, b.size) < 2:
        return "fewer than 2 values on a side"
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return "no variance: every value of each side is the same"
    return ""


def mann_whitney_exact(values: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Two-sided Mann-Whitney U with its exact permutation p, ties included: twice the
    smaller share of the C(n1 + n2, n1) splits of the pooled values whose rank sum of the
    first sample is at most, or at least, the observed one (capped at 1; with ties the
    distribution need not be symmetric). The splits are counted, not drawn (a count per rank sum,
    built value by value), so the p is deterministic and equals scipy's
    ``mannwhitneyu(method=PermutationMethod())`` wherever that one enumerates. scipy's
    default falls back to the normal approximation on ties, too small at a few seeds."""
    n1, pooled = values.size, np.concatenate([values, baseline])
    doubled = np.rint(2 * stats.rankdata(pooled)).astype(int)  # midranks are halves
    total = int(doubled.sum())
    counts = np.zeros((n1 + 1, total + 1))  # counts[k, s]: k values whose doubled ranks sum to s
    counts[0, 0] = 1.0
    for rank in doubled:
        counts[1:, rank:] = counts[1:, rank:] + counts[:-1, :total + 1 - rank]
    observed = int(doubled[:n1].sum())
    ways = counts[n1] / counts[n1].sum()
    p = 2 * min(ways[:observed + 1].sum(), ways[observed:].sum())
    return {"t": observed / 2 - n1 * (n1 + 1) / 2, "p": float(min(1.0, p))}


def p_value(values: Sequence[float], baseline: Sequence[float], test: str = "welch") -> float:
    """The two-sided p-value of ``two_sample_test``."""
    return two_sample_test(values, baseline, test)["p"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m finite p-values sorted ascending, p_(i) (i = 1..m) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)). nan inputs stay nan and do not count in m.
    Example: [0.01, 0.04, 0.03] -> [0.03, 0.06, 0.06].
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def is_unstable(std: float, threshold: float) -> bool:
    """True when the spread over runs exceeds ``threshold`` (False when std is nan)."""
    return bool(std > threshold)
