"""ALS and BPR from `implicit` on the flattened customer x item count matrix.

These are the "throw the order away" baselines: one count per (customer, item), action types
merged. New or extended histories are folded in from their own counts (ALS: implicit's exact
least-squares recalculation; BPR: a ridge fit against the item factors).
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
from threadpoolctl import threadpool_limits

from funnelrec.models.base import Recommender
from funnelrec.sequences import Sequences, count_matrix


class _ImplicitMF(Recommender):
    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.seed = seed

    def _make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, train: Sequences) -> Self:
        # Rows are customers (dense ids); customers with no training events stay empty.
        n_customers = train.vocab.n_customers
        user_items = count_matrix(train, n_customers, train.customers[train.row_of_events()])
        user_items.data = np.log1p(user_items.data) * self.alpha
        with warnings.catch_warnings(), threadpool_limits(1, "blas"):
            warnings.simplefilter("ignore")
            self.model_ = self._make()
            self.model_.fit(user_items, show_progress=False)
        self.item_factors_ = np.asarray(self.model_.item_factors, dtype=np.float32)
        self.user_factors_ = np.asarray(self.model_.user_factors, dtype=np.float32)
        self.known_ = np.asarray(user_items.getnnz(axis=1) > 0)
        self.n_items_ = train.n_items
        return self


class ALS(_ImplicitMF):
    """implicit's AlternatingLeastSquares (Hu, Koren & Volinsky 2008) on log counts."""

    name = "als"

    def _make(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=0,
        )

    def _score(self, histories: Sequences) -> np.ndarray:
        rows = count_matrix(histories)
        rows.data = np.log1p(rows.data) * self.alpha
        with threadpool_limits(1, "blas"):
            users = self.model_.recalculate_user(np.arange(len(histories)), rows)
        return np.asarray(users, np.float32) @ self.item_factors_.T


class BPR(_ImplicitMF):
    """implicit's BayesianPersonalizedRanking; unseen histories are folded in by ridge fit."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 100,
        learning_rate: float = 0.05,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(factors, regularization, iterations, alpha, seed)
        self.learning_rate = learning_rate

    def _make(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=0,
        )

    def _score(self, histories: Sequences) -> np.ndarray:
        v = self.item_factors_  # (I, F + 1): implicit appends an item bias column
        rows = count_matrix(histories)
        rows.data = np.log1p(rows.data)
        # Ridge fold-in for every history: u = (V'V + lam I)^-1 V' r, bias column fixed to 1.
        gram = v.T @ v + 0.1 * np.eye(v.shape[1], dtype=np.float32)
        users = np.linalg.solve(gram, (rows @ v).T).T.astype(np.float32)
        known = histories.customers >= 0
        known[known] = self.known_[histories.customers[known]]
        users[known] = self.user_factors_[histories.customers[known]]
        return users @ v.T
