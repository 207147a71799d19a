"""Simple, strong baselines. Each learns only from the training sequences it is given.

Every baseline adds a tiny popularity term so that items it has no opinion about are ordered by
popularity instead of tying (ties are broken at random by the evaluator anyway).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from funnelrec.models.base import Recommender
from funnelrec.schema import PURCHASE
from funnelrec.sequences import Sequences

_TIE = 1e-6  # weight of the popularity tie-breaker


def _popularity(train: Sequences, mask: np.ndarray | None = None) -> np.ndarray:
    """Event counts per item scaled to [0, 1]."""
    items = train.items if mask is None else train.items[mask]
    counts = np.bincount(items, minlength=train.n_items).astype(np.float64)
    return counts / max(counts.max(), 1.0)


def _age(h: Sequences) -> np.ndarray:
    """Per event: how many events of the same history come after it (0 = most recent)."""
    rows = h.row_of_events()
    return (h.offsets[rows + 1] - 1 - np.arange(h.n_events)).astype(np.int64)


def _history_matrix(h: Sequences, weights: np.ndarray) -> sp.csr_matrix:
    """(n, n_items) sparse matrix of per-event weights summed by item."""
    rows = h.row_of_events()
    return sp.csr_matrix((weights, (rows, h.items)), shape=(len(h), h.n_items))


class Popularity(Recommender):
    """Most frequent target items in training (all events break ties)."""

    name = "pop"

    def fit(self, train: Sequences) -> Self:
        target = np.isin(train.actions, train.target_actions)
        self.scores_ = _popularity(train, target) + 1e-3 * _popularity(train)
        self.n_items_ = train.n_items
        return self

    def _score(self, histories: Sequences) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(histories), self.n_items_)).copy()


class RecentPopularity(Recommender):
    """Popularity over the last `window_days` of training, decayed with `half_life_days`.

    For order-only data (no timestamps) the window is the last `recent_share` of events.
    """

    name = "recent_pop"

    def __init__(
        self, window_days: float = 14.0, half_life_days: float = 3.0, recent_share: float = 0.1
    ) -> None:
        self.window_days = window_days
        self.half_life_days = half_life_days
        self.recent_share = recent_share

    def fit(self, train: Sequences) -> Self:
        ts = train.timestamps
        target = np.isin(train.actions, train.target_actions)
        if len(ts) == 0:
            w = np.zeros(0)
        elif train.vocab.has_time:
            age_days = (ts.max() - ts) / 86400.0
            w = np.where(age_days <= self.window_days, 0.5 ** (age_days / self.half_life_days), 0)
        else:
            w = (ts >= np.quantile(ts, 1.0 - self.recent_share)).astype(np.float64)
        w = w * np.where(target, 1.0, 0.1)
        s = np.bincount(train.items, weights=w, minlength=train.n_items)
        self.scores_ = s / max(s.max(), 1e-12) + _TIE * _popularity(train)
        self.n_items_ = train.n_items
        return self

    def _score(self, histories: Sequences) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(histories), self.n_items_)).copy()


class RecentItems(Recommender):
    """The customer's own items, most recent first; then popularity."""

    name = "recent_items"

    def fit(self, train: Sequences) -> Self:
        self.pop_ = _popularity(train)
        self.n_items_ = train.n_items
        return self

    def _score(self, histories: Sequences) -> np.ndarray:
        scores = np.broadcast_to(_TIE * self.pop_, (len(histories), self.n_items_)).copy()
        recency = 1.0 / (1.0 + _age(histories))
        np.maximum.at(scores, (histories.row_of_events(), histories.items), recency)
        return scores


class RepeatPurchase(RecentItems):
    """The customer's past purchases first (most recent first), then recent items, then pop.

    Repeat buying is strong in shops; this rule is the bar a sequential model must clear.
    """

    name = "repeat"

    def _score(self, histories: Sequences) -> np.ndarray:
        scores = super()._score(histories)
        bought = histories.actions == PURCHASE
        recency = 1.0 / (1.0 + _age(histories))
        np.maximum.at(
            scores,
            (histories.row_of_events()[bought], histories.items[bought]),
            2.0 + recency[bought],
        )
        return scores


class _ItemToItem(Recommender):
    """Scores items through an item x item matrix `matrix_` from the recent history:
    score_j = sum over the last `n_recent` events h of decay^age(h) * matrix_[h, j]."""

    n_recent: int
    decay: float

    def _score(self, histories: Sequences) -> np.ndarray:
        age = _age(histories)
        w = np.where(age < self.n_recent, self.decay**age, 0.0)
        h = _history_matrix(histories, w)
        return np.asarray((h @ self.matrix_).todense()) + _TIE * self.pop_


class SessionItemKNN(_ItemToItem):
    """Item-item cosine similarity from co-occurrence within a session (within `window` steps).

    A history scores item j by sum_h decay^age(h) * sim(h, j) over its last `n_recent` events.
    Order-only data has no sessions; co-occurrence within `window` steps is used instead.
    """

    name = "itemknn"

    def __init__(self, window: int = 10, n_recent: int = 20, decay: float = 0.8) -> None:
        self.window = window
        self.n_recent = n_recent
        self.decay = decay

    def fit(self, train: Sequences) -> Self:
        rows = train.row_of_events()
        a_parts, b_parts = [], []
        for lag in range(1, self.window + 1):
            same = rows[lag:] == rows[:-lag]
            if train.vocab.has_time:
                same &= train.sessions[lag:] == train.sessions[:-lag]
            a_parts.append(train.items[:-lag][same])
            b_parts.append(train.items[lag:][same])
        a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int32)
        b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int32)
        keep = a != b
        a, b = a[keep], b[keep]
        n = train.n_items
        co = sp.coo_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()
        co.sum_duplicates()
        freq = np.bincount(train.items, minlength=n).astype(np.float64)
        inv = 1.0 / np.sqrt(np.maximum(freq, 1.0))
        self.matrix_ = (sp.diags(inv) @ co @ sp.diags(inv)).tocsr().astype(np.float32)
        self.pop_ = _popularity(train)
        self.n_items_ = n
        return self


class Markov(_ItemToItem):
    """First-order transitions P(next item | item), applied to the last `n_recent` events."""

    name = "markov"

    def __init__(self, n_recent: int = 3, decay: float = 0.5) -> None:
        self.n_recent = n_recent
        self.decay = decay

    def fit(self, train: Sequences) -> Self:
        rows = train.row_of_events()
        same = rows[1:] == rows[:-1]
        a, b = train.items[:-1][same], train.items[1:][same]
        n = train.n_items
        t = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)).tocsr()
        t.sum_duplicates()
        out = np.asarray(t.sum(axis=1)).ravel()
        self.matrix_ = (sp.diags(1.0 / np.maximum(out, 1.0)) @ t).tocsr().astype(np.float32)
        self.pop_ = _popularity(train)
        self.n_items_ = n
        return self
