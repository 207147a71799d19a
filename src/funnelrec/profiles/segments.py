"""Segments (archetypes): k-means on profiles, k chosen by silhouette, and a card per segment.

Why k-means on the profile: traits and behavioural statistics are already in [0, 1] and
meaningful, so a centroid *is* a readable archetype ("high on trait 3, hesitant"). The number
of segments is the one with the best silhouette on a sample (overridable).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from funnelrec.profiles.behaviour import behaviour_stats
from funnelrec.schema import PURCHASE, REMOVE_CART
from funnelrec.sequences import Sequences


def fit_segments(
    profiles: pd.DataFrame,
    n_segments: int | None = None,
    k_range: tuple[int, int] = (2, 10),
    sample: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Cluster customers; returns {"labels", "centers", "n_segments", "silhouette"}.

    `silhouette` maps each tried k to its score (on a sample of at most `sample` customers).
    """
    x = profiles.to_numpy(dtype=np.float64)
    n = len(x)
    if n < 3:
        return {
            "labels": np.zeros(n, np.int64),
            "centers": x.mean(0, keepdims=True) if n else np.zeros((1, x.shape[1])),
            "n_segments": 1,
            "silhouette": {},
        }
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=min(n, sample), replace=False)
    scores: dict[int, float] = {}
    if n_segments is None:
        hi = min(k_range[1], len(idx) - 1)
        for k in range(k_range[0], hi + 1):
            km = KMeans(k, n_init=4, random_state=seed).fit(x[idx])
            if len(np.unique(km.labels_)) > 1:
                scores[k] = float(silhouette_score(x[idx], km.labels_))
        n_segments = max(scores, key=scores.get) if scores else 1
    km = KMeans(min(n_segments, n), n_init=4, random_state=seed).fit(x)
    # Segments numbered by size, largest first, so "segment 0" is the most common archetype.
    order = np.argsort(-np.bincount(km.labels_, minlength=km.n_clusters), kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    return {
        "labels": relabel[km.labels_],
        "centers": km.cluster_centers_[order],
        "n_segments": int(km.n_clusters),
        "silhouette": scores,
    }


def segment_cards(
    profiles: pd.DataFrame,
    labels: np.ndarray,
    histories: Sequences,
    trait_names: dict[str, str] | None = None,
    n_examples: int = 5,
) -> list[dict[str, Any]]:
    """Size, dominant traits, conversion and removal rates, top categories, examples."""
    vocab = histories.vocab
    x = profiles.to_numpy(dtype=np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-9
    rows = histories.row_of_events()
    bought = np.bincount(rows[histories.actions == PURCHASE], minlength=len(histories)) > 0
    removed = np.bincount(rows[histories.actions == REMOVE_CART], minlength=len(histories)) > 0
    stats = behaviour_stats(histories, shrink=False)  # a segment's own rate, not shrunk
    cats = vocab.item_category[histories.items]
    names = trait_names or {}
    cards = []
    for s in range(int(labels.max()) + 1 if len(labels) else 0):
        members = np.flatnonzero(labels == s)
        z = (x[members].mean(0) - mu) / sd
        dominant = np.argsort(-np.abs(z))[:4]
        ev_cats = cats[np.isin(rows, members)]
        ev_cats = ev_cats[ev_cats >= 0]
        top_cats = np.bincount(ev_cats).argsort()[::-1][:3] if len(ev_cats) else []
        share = np.bincount(ev_cats) / max(len(ev_cats), 1) if len(ev_cats) else []
        cards.append(
            {
                "segment": s,
                "size": len(members),
                "share": len(members) / max(len(labels), 1),
                "dominant_traits": [
                    {
                        "trait": profiles.columns[j],
                        "name": names.get(profiles.columns[j], profiles.columns[j]),
                        "mean": float(x[members, j].mean()),
                        "z": float(z[j]),
                    }
                    for j in dominant
                ],
                "conversion_rate": float(bought[members].mean()),
                "removal_rate": float(removed[members].mean()),
                "cart_abandonment": _nanmean(stats["abandonment"].to_numpy()[members]),
                "top_categories": [
                    {
                        "category": vocab.category_names[c]
                        if c < len(vocab.category_names)
                        else str(c),
                        "share": float(share[c]),
                    }
                    for c in top_cats
                ],
                "examples": [str(profiles.index[m]) for m in members[:n_examples]],
            }
        )
        cards[-1]["name"] = " · ".join(
            f"{'high' if t['z'] > 0 else 'low'} {t['name']}"
            for t in cards[-1]["dominant_traits"][:2]
        )
    return cards


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else None


def assign_segments(profiles: pd.DataFrame, centers: np.ndarray) -> np.ndarray:
    """Nearest saved centre for new profiles (same columns as at fitting)."""
    x = profiles.to_numpy(dtype=np.float64)
    d = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    return d.argmin(1)
