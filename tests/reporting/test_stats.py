"""Statistics of repeated runs: exact values, scipy's tests, Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mitoseg.errors import InputError
from mitoseg.reporting.stats import describe, holm, is_unstable, p_value, untested_reason

A = [0.900, 0.905, 0.910]
B = [0.80, 0.85, 0.78, 0.83]


def test_describe_is_exact() -> None:
    d = describe([1.0, 2.0, 3.0, 4.0])
    assert d == {"mean": 2.5, "std": pytest.approx(math.sqrt(5 / 3), abs=1e-15),
                 "min": 1.0, "max": 4.0, "n": 4}  # sample std: sum of squares 5, over n - 1
    one = describe([0.7])
    assert one["n"] == 1 and one["mean"] == one["min"] == one["max"] == 0.7
    assert math.isnan(one["std"])
    assert describe([])["n"] == 0 and math.isnan(describe([])["mean"])


def test_p_values_are_scipys() -> None:
    welch = scipy_stats.ttest_ind(A, B, equal_var=False).pvalue
    assert p_value(A, B, "welch") == pytest.approx(welch, rel=1e-12)
    assert p_value(A, B) == p_value(A, B, "welch")
    mann = scipy_stats.mannwhitneyu(A, B, alternative="two-sided").pvalue
    assert p_value(A, B, "mannwhitney") == pytest.approx(mann, rel=1e-12)
    assert 0 < welch < 0.05 and welch != mann


def test_tests_need_enough_runs_and_a_known_name() -> None:
    assert math.isnan(p_value([0.9], B, "welch"))  # no variance from one run
    assert not math.isnan(p_value([0.9], B, "mannwhitney"))
    assert math.isnan(p_value([], B, "mannwhitney"))
    with pytest.raises(InputError, match="'--test'.*'ttest'"):
        p_value(A, B, "ttest")


@pytest.mark.parametrize("raw, adjusted", [
    ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),       # 3*0.01, max(2*0.03, .), max(1*0.04, 0.06)
    ([0.001, 0.01, 0.02, 0.5], [0.004, 0.03, 0.04, 0.5]),
    ([0.5, 0.6], [1.0, 1.0]),                       # capped at 1, then kept monotone
    ([0.02, math.nan, 0.01], [0.02, math.nan, 0.02]),  # nan stays nan, m = 2
    ([], []),
])
def test_holm_by_hand(raw: list[float], adjusted: list[float]) -> None:
    assert holm(raw) == pytest.approx(adjusted, nan_ok=True)


def test_unstable_flag() -> None:
    assert is_unstable(0.02, 0.01) and not is_unstable(0.01, 0.01)
    assert not is_unstable(math.nan, 0.01)


def test_per_seed_averages_the_runs_of_one_seed() -> None:
    from mitoseg.reporting.stats import per_seed

    assert per_seed([(0, 0.8), (1, 0.9), (0, 0.7)]) == pytest.approx([0.75, 0.9])
    assert per_seed([(None, 0.8), (None, 0.6), (2, 0.5)]) == pytest.approx([0.8, 0.6, 0.5])
    assert per_seed([]) == []


def test_one_two_sample_test_for_runs_and_study_units() -> None:
    """report.py's p-values and the study's unit t-tests are the same function."""
    from mitoseg.reporting.stats import two_sample_test
    from mitoseg.study.units import unit_t_test

    student = scipy_stats.ttest_ind(A, B, equal_var=True)
    got = two_sample_test(A, B, "student")
    assert got["t"] == pytest.approx(student.statistic, rel=1e-12)
    assert got["p"] == pytest.approx(student.pvalue, rel=1e-12)
    assert p_value(A, B, "student") == got["p"] != p_value(A, B, "welch")
    pairs_a = [(v, f"a{i}") for i, v in enumerate(A)]
    pairs_b = [(v, f"b{i}") for i, v in enumerate(B)]
    for equal_var, test in ((True, "student"), (False, "welch")):
        unit = unit_t_test(pairs_a, pairs_b, equal_var)
        assert (unit["t"], unit["p"]) == tuple(two_sample_test(A, B, test).values())
    assert math.isnan(two_sample_test([0.9], B, "student")["t"])


def test_mann_whitney_is_exact_with_ties() -> None:
    """3 baseline seeds tied at 0 against 3 others: the smallest p any split of 3 vs 3 can
    give is 2/20 = 0.1; scipy's default falls back to the normal approximation on ties
    (0.064). The exact p equals scipy's permutation test over all splits."""
    tied, other = [0.0, 0.0, 0.0], [0.61, 0.64, 0.70]
    assert p_value(other, tied, "mannwhitney") == pytest.approx(0.1, rel=1e-12)
    rng = np.random.default_rng(3)
    for n1, n2 in [(4, 5), (5, 3), (2, 4), (6, 6)]:  # tied values; (4, 5) is asymmetric
        a, b = np.round(rng.random(n1), 1), np.round(rng.random(n2), 1)
        exact = scipy_stats.mannwhitneyu(a, b, method=scipy_stats.PermutationMethod()).pvalue
        assert p_value(a, b, "mannwhitney") == pytest.approx(exact, rel=1e-12)
    assert p_value(a, b, "mannwhitney") == p_value(a, b, "mannwhitney")  # deterministic
    assert p_value([0.5] * 3, [0.5] * 4, "mannwhitney") == 1.0  # every split ties


@pytest.mark.parametrize("test", ["welch", "student"])
def test_t_tests_of_two_constant_groups_are_nan_with_a_reason(test: str) -> None:
    """Every seed gives one value on each side (0 and 1/30 empty predictions): t = -inf and
    p = 0 from scipy; no variance means no t-test."""
    constant, other = [0.0] * 3, [1 / 30] * 3
    assert math.isnan(p_value(other, constant, test))
    assert "no variance" in untested_reason(other, constant, test)
    assert untested_reason(A, B, test) == "" and untested_reason([0.9], B, test) != ""
    assert untested_reason(other, constant, "mannwhitney") == ""
    assert p_value(other, constant, "mannwhitney") == pytest.approx(0.1, rel=1e-12)
