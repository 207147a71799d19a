"""Full-ranking metrics: every catalogue item is a candidate, ties broken at random."""

from __future__ import annotations

import numpy as np

HISTORY_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1-3", 1, 3),
    ("4-10", 4, 10),
    ("11-50", 11, 50),
    ("50+", 51, 10**12),
)


def target_ranks(scores: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-based rank of each target among all items.

    Ties are broken uniformly at random, so a model that gives many items the same score gets
    the rank it would get by chance, not the best one (a common way metrics flatter baselines).
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    t = scores[np.arange(len(targets)), targets][:, None]
    greater = (scores > t).sum(axis=1)
    equal = (scores == t).sum(axis=1) - 1
    return greater + rng.integers(0, equal + 1)


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """HR@K, NDCG@K for each K and MRR from 0-based target ranks (one target per case)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if len(ranks) == 0:
        return {
            **{f"HR@{k}": float("nan") for k in ks},
            **{f"NDCG@{k}": float("nan") for k in ks},
            "MRR": float("nan"),
        }
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["MRR"] = float((1.0 / (ranks + 1.0)).mean())
    return out


def bucket_of(lengths: np.ndarray) -> np.ndarray:
    """History-length bucket label of each case."""
    labels = np.empty(len(lengths), dtype=object)
    for name, lo, hi in HISTORY_BUCKETS:
        labels[(lengths >= lo) & (lengths <= hi)] = name
    return labels
