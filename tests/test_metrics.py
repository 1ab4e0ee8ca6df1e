"""ead.metrics: estimators against exact enumeration and hand-worked cases."""

import itertools
import math
import random

import pytest

from ead.metrics import (
    bootstrap_ci,
    expected_maj_at_k,
    maj_at_k,
    majority_vote,
    mean_at_k,
    pass_at_k,
    problem_metrics,
    worst_at_k,
)


def _enumerate(flags, k, reduce):
    subsets = list(itertools.combinations(flags, k))
    return sum(reduce(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("case", range(40))
def test_pass_and_worst_match_enumeration_over_all_k_subsets(case):
    rng = random.Random(case)
    n = rng.randint(1, 10)
    flags = [rng.random() < rng.random() for _ in range(n)]
    c = sum(flags)
    for k in range(1, n + 1):
        assert pass_at_k(n, c, k) == pytest.approx(_enumerate(flags, k, any), abs=1e-12)
        assert worst_at_k(n, c, k) == pytest.approx(_enumerate(flags, k, all), abs=1e-12)
        assert mean_at_k(n, c, k) == pytest.approx(_enumerate(flags, k, lambda s: sum(s) / k), abs=1e-12)


def test_pass_at_k_closed_forms_and_stability():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # only 4 wrong: every 5-subset has a correct one
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    # Binomials of this size overflow float64; the product form does not.
    n, c, k = 2000, 3, 1000
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


def test_worst_at_k_hand_worked():
    # n = k: 1 iff all correct.
    assert worst_at_k(16, 16, 16) == 1.0
    assert worst_at_k(16, 15, 16) == 0.0
    # 3 of 4 correct, k = 2: C(3,2)/C(4,2) = 3/6.
    assert worst_at_k(4, 3, 2) == pytest.approx(0.5)
    assert worst_at_k(5, 1, 2) == 0.0


@pytest.mark.parametrize("bad", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_estimators_reject_bad_counts(bad):
    with pytest.raises(ValueError):
        pass_at_k(*bad)


def test_majority_vote_rule():
    assert majority_vote(["a", "b", "b", "a", "c"]) == 0  # tie a/b: earliest (a) wins
    assert majority_vote(["b", "a", "a"]) == 1
    assert majority_vote([None, None, "x"]) == 2  # None never wins, even as the most common
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_maj_at_k_hand_worked():
    keys = ["7", "5", "5", None, "7", "7"]
    correct = [True, False, False, False, True, True]
    assert maj_at_k(keys, correct, 1) == 1.0  # "7"
    assert maj_at_k(keys, correct, 2) == 1.0  # tie 7/5 -> 7 appears first
    assert maj_at_k(keys, correct, 3) == 0.0  # "5" has two votes
    assert maj_at_k(keys, correct, 4) == 0.0  # None does not count
    assert maj_at_k(keys, correct, 5) == 1.0  # tie 7/5 at two each -> "7" appears first
    assert maj_at_k(keys, correct, 6) == 1.0


def test_maj_at_k_tie_goes_to_earliest_answer():
    # Two votes each: the answer seen first wins, whichever it is.
    keys = ["5", "7", "7", "5"]
    assert maj_at_k(keys, [False, True, True, False], 4) == 0.0
    assert maj_at_k(["7", "5", "5", "7"], [True, False, False, True], 4) == 1.0
    assert maj_at_k([None, None], [False, False], 2) == 0.0


def test_expected_maj_matches_brute_force_enumeration():
    rng = random.Random(0)
    for _ in range(30):
        n = rng.randint(1, 8)
        keys = [rng.choice(["a", "b", "c", None]) for _ in range(n)]
        correct = [key == "a" for key in keys]
        for k in range(1, n + 1):
            brute = sum(
                maj_at_k([keys[i] for i in s], [correct[i] for i in s], k)
                for s in itertools.combinations(range(n), k)
            ) / math.comb(n, k)
            assert expected_maj_at_k(keys, correct, k) == pytest.approx(brute, abs=1e-12)


def test_expected_maj_sampled_is_seeded_and_close():
    keys = ["a"] * 10 + ["b"] * 8 + [None] * 6
    correct = [k == "a" for k in keys]
    exact = expected_maj_at_k(keys, correct, 7, max_subsets=10**9)
    sampled = expected_maj_at_k(keys, correct, 7, max_subsets=4000, seed=3)
    assert sampled == expected_maj_at_k(keys, correct, 7, max_subsets=4000, seed=3)
    assert sampled == pytest.approx(exact, abs=0.03)


def test_problem_metrics_keys_and_skips_large_k():
    out = problem_metrics([True, False, True, True], ["1", "2", "1", "1"], ks=[1, 4, 8])
    assert set(out) == {"pass@1", "worst@1", "mean@1", "maj@1", "pass@4", "worst@4", "mean@4", "maj@4"}
    assert out["pass@1"] == pytest.approx(0.75)
    assert out["worst@4"] == 0.0
    assert out["maj@4"] == 1.0


def test_bootstrap_ci_seeded_and_brackets_mean():
    values = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_ci(values, seed=1)
    assert (low, high) == bootstrap_ci(values, seed=1)
    assert low < 0.3 < high
    assert 0.15 < low and high < 0.45  # sd of the mean ~0.046: +-1.96 sd ~ [0.21, 0.39]
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def _brute_curve(correct, keys, size):
    """pass@N and maj@N by enumerating every N-subset (independent of ead.metrics' estimators)."""
    import itertools
    from collections import Counter

    passes, majs = [], []
    for subset in itertools.combinations(range(len(correct)), size):
        passes.append(any(correct[i] for i in subset))
        votes = Counter(keys[i] for i in subset if keys[i] is not None)
        if not votes:
            majs.append(False)
            continue
        top = max(votes.values())
        winner = next(keys[i] for i in subset if keys[i] is not None and votes[keys[i]] == top)  # earliest wins ties
        majs.append(next(correct[i] for i in subset if keys[i] == winner))
    return sum(passes) / len(passes), sum(majs) / len(majs)


def test_metric_curves_match_brute_force_over_subsets():
    from ead.metrics import metric_curves

    groups = [([True, False, False, True, False], ["1", "2", "2", "1", None]),
              ([False, False, True, False, False], ["3", "3", "4", None, "3"]),
              ([False] * 5, [None] * 5)]
    sizes = [1, 2, 3, 4, 5]
    curves = metric_curves(groups, sizes, ("pass", "maj", "worst", "mean"))
    for j, size in enumerate(sizes):
        brute = [_brute_curve(c, k, size) for c, k in groups]
        assert curves["pass"]["mean"][j] == pytest.approx(sum(b[0] for b in brute) / 3)
        assert curves["maj"]["mean"][j] == pytest.approx(sum(b[1] for b in brute) / 3)
    assert curves["mean"]["mean"] == pytest.approx([(2 / 5 + 1 / 5) / 3] * 5)
    assert curves["worst"]["mean"][0] == pytest.approx((2 / 5 + 1 / 5) / 3)  # worst@1 = mean@1
    assert curves["worst"]["mean"][1] == pytest.approx((1 / 10) / 3)  # C(2,2)/C(5,2) for the first problem only
    assert "low" not in curves["pass"]


def test_metric_curves_intervals_bracket_the_mean_and_empty_is_nan():
    import math

    from ead.metrics import metric_curves

    groups = [([i % 3 == 0, False, True], ["a", "b", "a"]) for i in range(12)]
    curve = metric_curves(groups, [1, 3], ("pass",), confidence=0.9)["pass"]
    assert all(lo <= m <= hi for lo, m, hi in zip(curve["low"], curve["mean"], curve["high"]))
    assert math.isnan(metric_curves([], [1], ("maj",))["maj"]["mean"][0])
    with pytest.raises(ValueError, match="unknown curve metric"):
        metric_curves(groups, [1], ("best",))
