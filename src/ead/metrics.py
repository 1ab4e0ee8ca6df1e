"""Sample-based evaluation metrics: pass@k, worst@k, mean@k, maj@k and bootstrap intervals.

All functions are small and pure. Per-problem estimators take the number of samples
``n`` drawn for one problem, the number ``c`` of them that are correct and the budget
``k <= n``; benchmark scores are the mean of the per-problem values.

The estimators answer "what would this metric be for a fresh draw of ``k`` samples",
using all ``n >= k`` samples to lower the variance:

* pass@k  - probability that at least one of ``k`` samples is correct,
  ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021, "Evaluating Large Language Models
  Trained on Code", Eq. 1), computed as a product to avoid huge binomials.
* worst@k - probability that *all* ``k`` samples are correct, ``C(c, k) / C(n, k)``
  (the "Worst@16" of Yang et al. 2025, arXiv 2510.05251). With ``n == k`` it is 1 iff
  every sample is correct.
* mean@k  - expected fraction of correct samples among ``k``: ``c / n`` for any k.
* maj@k   - correctness of the majority-voted answer among ``k`` samples; see
  :func:`maj_at_k` for the voting rule and :func:`expected_maj_at_k` for the
  version averaged over random subsets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "pass_at_k",
    "worst_at_k",
    "mean_at_k",
    "majority_vote",
    "maj_at_k",
    "expected_maj_at_k",
    "problem_metrics",
    "bootstrap_ci",
    "metric_curves",
]


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct (Chen et al. 2021, Eq. 1).

    ``1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)``: the product form never
    builds a binomial coefficient, so it is exact in float64 for any ``n``.
    """
    _check(n, c, k)
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def worst_at_k(n: int, c: int, k: int) -> float:
    """Probability that all ``k`` samples drawn without replacement are correct.

    ``C(c, k) / C(n, k) = prod_{i=0}^{k-1} (c - i) / (n - i)``; 0 when ``c < k``.
    """
    _check(n, c, k)
    if c < k:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    return float(np.prod((c - i) / (n - i)))


def mean_at_k(n: int, c: int, k: int) -> float:
    """Expected fraction correct among ``k`` samples: ``c / n`` (unbiased for every ``k <= n``)."""
    _check(n, c, k)
    return c / n


def majority_vote(answer_keys: Sequence[str | None]) -> int | None:
    """Index of the sample whose answer wins the vote, or None if no sample has an answer.

    Rule: count samples per answer key, ignoring ``None`` (no answer found, which never
    wins). Among the keys with the highest count, the one that appears *earliest* wins,
    and the returned index is that key's first occurrence. Deterministic and
    independent of hash order.
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(answer_keys):
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None
    # max() keeps the first maximal element; iterate in order of first appearance.
    winner = max(sorted(counts, key=first.__getitem__), key=counts.__getitem__)
    return first[winner]


def maj_at_k(answer_keys: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """maj@k over the *first* ``k`` samples: 1.0 if the voted answer is correct, else 0.0.

    Samples are i.i.d., so the first ``k`` are a fair draw of ``k``. The voted answer's
    correctness is that of the winning key's first sample (see :func:`majority_vote`); if no
    sample among the ``k`` has an answer, maj@k is 0.
    """
    if len(answer_keys) != len(correct):
        raise ValueError(f"{len(answer_keys)} answer keys but {len(correct)} correctness flags")
    _check(len(correct), 0, k)
    winner = majority_vote(answer_keys[:k])
    return float(winner is not None and bool(correct[winner]))


def expected_maj_at_k(
    answer_keys: Sequence[str | None],
    correct: Sequence[bool],
    k: int,
    max_subsets: int = 2000,
    seed: int = 0,
) -> float:
    """maj@k averaged over k-subsets of the ``n`` samples (lower variance than the first k).

    Each subset keeps the samples' original order, so the rule of :func:`majority_vote`
    (most votes, ties to the earliest answer, ``None`` never wins) applies inside it.
    Exact (all ``C(n, k)`` subsets) when there are at most ``max_subsets`` of them;
    otherwise the mean over ``max_subsets`` uniformly drawn subsets from
    ``numpy.random.default_rng(seed)``, so the result is reproducible.
    """
    n = len(correct)
    if len(answer_keys) != n:
        raise ValueError(f"{len(answer_keys)} answer keys but {n} correctness flags")
    _check(n, 0, k)
    ids: dict[str, int] = {}
    key_ids = np.array([-1 if a is None else ids.setdefault(a, len(ids)) for a in answer_keys])  # (n,)
    if not ids:
        return 0.0
    ok = np.asarray(correct, dtype=bool)  # (n,)
    if math.comb(n, k) <= max_subsets:
        subsets = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)  # (R, k)
    else:
        rng = np.random.default_rng(seed)
        subsets = np.sort(np.argsort(rng.random((max_subsets, n)), axis=1)[:, :k], axis=1)  # (R, k)
    sub_keys = key_ids[subsets]  # (R, k)
    one_hot = sub_keys[:, :, None] == np.arange(len(ids))[None, None, :]  # (R, k, G)
    counts = one_hot.sum(axis=1)  # (R, G)
    first_pos = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), k)  # (R, G): k = absent
    # Most votes first, then earliest first appearance; absent keys have count 0 and lose.
    score = counts * (k + 1) - first_pos  # (R, G)
    winner = score.argmax(axis=1)  # (R,)
    rows = np.arange(len(subsets))
    has_answer = counts[rows, winner] > 0  # (R,)
    win_pos = np.minimum(first_pos[rows, winner], k - 1)  # (R,)
    win_ok = ok[subsets[rows, win_pos]] & has_answer  # (R,)
    return float(win_ok.mean())


def problem_metrics(
    correct: Sequence[bool], answer_keys: Sequence[str | None], ks: Sequence[int]
) -> dict[str, float]:
    """All metrics of one problem for each ``k`` in ``ks`` (those with ``k <= n``).

    Keys are ``"pass@k"``, ``"worst@k"``, ``"mean@k"`` and ``"maj@k"``; maj@k is the
    subset-averaged :func:`expected_maj_at_k` with its default seed.
    """
    n, c = len(correct), int(sum(bool(x) for x in correct))
    out: dict[str, float] = {}
    for k in ks:
        if k > n:
            continue
        out[f"pass@{k}"] = pass_at_k(n, c, k)
        out[f"worst@{k}"] = worst_at_k(n, c, k)
        out[f"mean@{k}"] = mean_at_k(n, c, k)
        out[f"maj@{k}"] = expected_maj_at_k(answer_keys, correct, k)
    return out


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, num_resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-problem ``values``.

    Problems are resampled with replacement ``num_resamples`` times with
    ``numpy.random.default_rng(seed)``; returns the ``(1-confidence)/2`` and
    ``(1+confidence)/2`` quantiles of the resampled means. An empty input gives (nan, nan).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)  # (P,)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(num_resamples, x.size))  # (R, P)
    means = x[idx].mean(axis=1)  # (R,)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def metric_curves(
    groups: Sequence[tuple[Sequence[bool], Sequence[str | None]]],
    sizes: Sequence[int],
    metrics: Sequence[str] = ("pass", "maj"),
    *,
    max_subsets: int = 2000,
    seed: int = 0,
    confidence: float | None = None,
    num_resamples: int = 1000,
) -> dict[str, dict[str, list[float]]]:
    """Benchmark curves: for each metric and each budget ``N`` in ``sizes``, the mean over problems.

    ``groups`` holds one ``(correct, answer_keys)`` pair per problem (its ``n`` samples).
    ``metrics`` names any of ``pass`` (:func:`pass_at_k`), ``maj`` (:func:`expected_maj_at_k`
    with ``max_subsets`` and ``seed``), ``worst`` and ``mean``. Returns
    ``{metric: {"mean": [...]}}`` with one value per size, plus ``"low"`` / ``"high"``
    (:func:`bootstrap_ci` over problems, seed 0) when ``confidence`` is given. No problems: NaN.
    """
    unknown = sorted(set(metrics) - {"pass", "maj", "worst", "mean"})
    if unknown:
        raise ValueError(f"unknown curve metric(s) {unknown}; choose from pass, maj, worst, mean")

    def value(name: str, correct: Sequence[bool], keys: Sequence[str | None], size: int) -> float:
        n, c = len(correct), int(sum(bool(x) for x in correct))
        if name == "maj":
            return expected_maj_at_k(keys, correct, size, max_subsets=max_subsets, seed=seed)
        return {"pass": pass_at_k, "worst": worst_at_k, "mean": mean_at_k}[name](n, c, size)

    out: dict[str, dict[str, list[float]]] = {}
    for name in metrics:
        entry: dict[str, list[float]] = {"mean": []}
        if confidence is not None:
            entry["low"], entry["high"] = [], []
        for size in sizes:
            per_problem = [value(name, correct, keys, size) for correct, keys in groups]  # (P,)
            entry["mean"].append(float(np.mean(per_problem)) if per_problem else float("nan"))
            if confidence is not None:
                low, high = bootstrap_ci(per_problem, confidence, num_resamples)
                entry["low"].append(low)
                entry["high"].append(high)
        out[name] = entry
    return out
