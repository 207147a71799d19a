"""Metrics checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from funnelrec.evaluate.metrics import bucket_of, ranking_metrics, target_ranks


def test_ranks_hand_computed() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [1.0, 0.0, 0.2, 0.1]])
    ranks = target_ranks(scores, np.array([2, 0]), np.random.default_rng(0))
    assert list(ranks) == [1, 0]


def test_ties_are_broken_at_random_not_optimistically() -> None:
    scores = np.zeros((2000, 100))  # a model with no opinion
    ranks = target_ranks(scores, np.zeros(2000, dtype=int), np.random.default_rng(0))
    assert ranks.min() >= 0 and ranks.max() <= 99
    assert ranks.mean() == pytest.approx(49.5, abs=3)  # chance, not rank 0
    m = ranking_metrics(ranks, (10,))
    assert m["HR@10"] == pytest.approx(0.1, abs=0.03)


def test_metric_values() -> None:
    m = ranking_metrics(np.array([0, 1, 9, 10, 30]), (5, 10))
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["HR@5"] == pytest.approx(2 / 5)
    ndcg = (1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5
    assert m["NDCG@10"] == pytest.approx(ndcg)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 31) / 5)


def test_nan_scores_rank_last() -> None:
    scores = np.array([[np.nan, 0.5, 0.1]])
    assert target_ranks(scores, np.array([0]), np.random.default_rng(0))[0] == 2


def test_buckets() -> None:
    assert list(bucket_of(np.array([1, 3, 4, 10, 11, 50, 51, 600]))) == [
        "1-3",
        "1-3",
        "4-10",
        "4-10",
        "11-50",
        "11-50",
        "50+",
        "50+",
    ]
