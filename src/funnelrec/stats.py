"""Descriptive statistics of a funnel: what `funnelrec inspect` shows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from funnelrec.schema import ADD_CART, PURCHASE, REMOVE_CART, VIEW
from funnelrec.sequences import Sequences


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    q = np.percentile(x, [0, 25, 50, 75, 95, 100])
    return {
        k: float(v) for k, v in zip(("min", "p25", "median", "p75", "p95", "max"), q, strict=True)
    }


def funnel_stats(seqs: Sequences) -> dict[str, Any]:
    """Customers, items, actions, funnel conversion, removals, sessions and history lengths."""
    rows = seqs.row_of_events()
    names = seqs.vocab.action_names
    action_counts = np.bincount(seqs.actions, minlength=len(names))

    def customers_with(a: int) -> int:
        return len(np.unique(rows[seqs.actions == a]))

    n_view, n_cart, n_buy = (customers_with(a) for a in (VIEW, ADD_CART, PURCHASE))
    df = pd.DataFrame(
        {"row": rows, "item": seqs.items, "action": seqs.actions, "t": np.arange(seqs.n_events)}
    )
    carts = df[df.action == ADD_CART].groupby(["row", "item"]).t.min()
    removes = df[df.action == REMOVE_CART].groupby(["row", "item"]).t.max()
    joined = pd.concat([carts.rename("cart"), removes.rename("remove")], axis=1).dropna()
    removed_after = int((joined["remove"] > joined["cart"]).sum())
    lengths = seqs.lengths
    sess_per_customer = np.zeros(len(seqs), dtype=np.int64)
    if seqs.n_events:
        np.maximum.at(sess_per_customer, rows, seqs.sessions + 1)
    boundary = np.ones(seqs.n_events, dtype=bool)
    boundary[1:] = (rows[1:] != rows[:-1]) | (seqs.sessions[1:] != seqs.sessions[:-1])
    session_id = np.cumsum(boundary) - 1
    events_per_session = np.bincount(session_id) if seqs.n_events else np.zeros(0)
    buckets = {
        "1-3": int(((lengths >= 1) & (lengths <= 3)).sum()),
        "4-10": int(((lengths >= 4) & (lengths <= 10)).sum()),
        "11-50": int(((lengths >= 11) & (lengths <= 50)).sum()),
        "50+": int((lengths > 50).sum()),
    }
    return {
        "customers": len(seqs),
        "items": seqs.n_items,
        "events": seqs.n_events,
        "actions": {n: int(c) for n, c in zip(names, action_counts, strict=True)},
        "funnel_customers": {"view": n_view, "add_cart": n_cart, "purchase": n_buy},
        "funnel_conversion": {
            "view_to_cart": n_cart / n_view if n_view else None,
            "cart_to_purchase": n_buy / n_cart if n_cart else None,
            "view_to_purchase": n_buy / n_view if n_view else None,
        },
        "remove_after_cart_rate": removed_after / len(carts) if len(carts) else None,
        "sessions": int(boundary.sum()),
        "sessions_per_customer": _quantiles(sess_per_customer),
        "events_per_session": _quantiles(events_per_session),
        "history_length": _quantiles(lengths),
        "history_length_buckets": buckets,
        "has_time": seqs.vocab.has_time,
    }
