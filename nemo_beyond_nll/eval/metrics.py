"""What a benchmark's graded records add up to: first-sample accuracy, mean@k, pass@k, figfont's
graded metrics and accuracy per source.

A record answers one problem with k generations (`corrects`, or the single `correct` when k = 1):

- first-sample accuracy: the fraction of problems whose first generation is right (with greedy
  decoding, the accuracy);
- mean@k: the fraction right over all k generations of all problems (the authors' `mean_acc`,
  the mean over the k columns of per-sample accuracy);
- pass@k': the chance that at least one of k' generations drawn from the k is right, with the
  unbiased estimator 1 - C(k - c, k') / C(k, k') per problem (c right of k), averaged; pass@1 is
  mean@k, pass@k the fraction of problems with any right generation.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..domains.figfont.similarity import FIGFONT_METRICS, figfont_metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `c` right among `n` generations: 1 - C(n-c, k) / C(n, k)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not 1 <= k <= n or c > n:
        raise ValueError(f"pass@k needs 1 <= k <= n and c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k holds a right one
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i), without large binomials
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def sample_verdicts(record: Mapping[str, Any]) -> List[bool]:
    """The verdicts of one record's k generations, first first."""
    if "corrects" in record:
        return [bool(v) for v in record["corrects"]]
    return [bool(record["correct"])]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def benchmark_metrics(records: Sequence[Mapping[str, Any]], k: int) -> Dict[str, Any]:
    """{"first_sample", "mean_at_k", "pass_at_k": {"1": .., "<k>": ..}} over `records` (k generations each)."""
    if not records:
        raise ValueError("no records to summarise")
    verdicts = [sample_verdicts(r) for r in records]
    if any(len(v) != k for v in verdicts):
        raise ValueError(f"every record must hold {k} graded generations")
    passes = {str(j): _mean([pass_at_k(k, sum(v), j) for v in verdicts]) for j in sorted({1, k})}
    return {
        "first_sample": _mean([v[0] for v in verdicts]),
        "mean_at_k": _mean([sum(v) / k for v in verdicts]),
        "pass_at_k": passes,
    }


def figfont_summary(records: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """Exact match, case-insensitive match and Jaro-Winkler similarity of the first generations, averaged."""
    scores = [figfont_metrics(r["output"], r["gold"]) for r in records]
    return {name: _mean([s[name] for s in scores]) for name in FIGFONT_METRICS}


def source_summary(records: Sequence[Mapping[str, Any]], k: int) -> Optional[Dict[str, Any]]:
    """Accuracy per source for records that name one: ({source: {"accuracy", "mean_at_k",
    "num_samples"}}, macro average of the per-source first-sample accuracies), or None."""
    if not records or not all(isinstance(r.get("source"), str) for r in records):
        return None
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["source"], []).append(record)
    by_source = {}
    for source, group in groups.items():
        metrics = benchmark_metrics(group, k)
        by_source[source] = {"accuracy": metrics["first_sample"], "mean_at_k": metrics["mean_at_k"],
                             "num_samples": len(group)}
    return {"by_source": by_source, "average": _mean([s["accuracy"] for s in by_source.values()])}
