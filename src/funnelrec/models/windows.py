"""Sequences -> padded tensors for the funnel network (training windows and scoring batches).

Kept apart from the network so that `funnel_net.py` only does tensor maths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from funnelrec.models.funnel_net import N_AGE_BUCKETS, N_GAP_BUCKETS
from funnelrec.sequences import Sequences, Vocabulary


def gap_bucket(gaps: np.ndarray, first: np.ndarray) -> np.ndarray:
    """0 for a history's first event, else 1 + floor(log2(1 + seconds)), capped."""
    b = 1 + np.floor(np.log2(1.0 + np.maximum(gaps, 0.0))).astype(np.int64)
    b = np.minimum(b, N_GAP_BUCKETS - 1)
    b[first] = 0
    return b


def age_bucket(age: np.ndarray) -> np.ndarray:
    """Events since: 0, 1, 2, 3, 4-7, 8-15, 16-31, 32+ -> 0..7."""
    age = np.asarray(age)
    b = np.where(age < 4, age, 2 + np.floor(np.log2(np.maximum(age, 1))).astype(np.int64))
    return np.minimum(b, N_AGE_BUCKETS - 1)


def item_metadata_codes(vocab: Vocabulary, n_bands: int = 10) -> tuple[np.ndarray, ...]:
    """1-based category, brand and price-band codes per item (0 = unknown).

    Price band = decile of the item's price within its category (so "cheap" means cheap for
    what it is), computed from item metadata only, never from events.
    """
    cat = vocab.item_category.astype(np.int64) + 1
    brand = vocab.item_brand.astype(np.int64) + 1
    price = vocab.item_price.astype(np.float64)
    band = np.zeros(vocab.n_items, dtype=np.int64)
    known = ~np.isnan(price)
    if known.any():
        import pandas as pd

        pct = pd.Series(price[known]).groupby(cat[known]).rank(pct=True).to_numpy()
        band[known] = 1 + np.minimum((pct * n_bands).astype(np.int64), n_bands - 1)
    return cat, brand, band


def item_tag_codes(vocab: Vocabulary) -> np.ndarray:
    """(n_items, most tags of an item) 1-based tag ids, 0 = none; (n_items, 0) without tags."""
    if vocab.item_tag_offsets is None or vocab.item_tag_ids is None:
        return np.zeros((vocab.n_items, 0), dtype=np.int64)
    counts = np.diff(vocab.item_tag_offsets)
    out = np.zeros((vocab.n_items, int(counts.max(initial=0))), dtype=np.int64)
    rows = np.repeat(np.arange(vocab.n_items), counts)
    cols = np.arange(len(vocab.item_tag_ids)) - np.repeat(vocab.item_tag_offsets[:-1], counts)
    out[rows, cols] = vocab.item_tag_ids.astype(np.int64) + 1
    return out


@dataclass
class Batch:
    """Left-padded event fields, (B, T) each; items are 1-based (0 = padding)."""

    items: torch.Tensor
    actions: torch.Tensor
    gaps: torch.Tensor
    starts: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return (self.items > 0).sum(1)


def pad_histories(h: Sequences, max_len: int) -> tuple[Batch, np.ndarray]:
    """The last `max_len` events of every history as a left-padded batch.

    Returns the batch and the true (truncated) lengths.
    """
    n = len(h)
    lengths = np.minimum(h.lengths, max_len)
    T = max(int(lengths.max()) if n else 1, 1)
    items = np.zeros((n, T), dtype=np.int64)
    actions = np.zeros((n, T), dtype=np.int64)
    gaps = np.zeros((n, T), dtype=np.int64)
    starts = np.zeros((n, T), dtype=np.int64)
    if h.n_events:
        rows = h.row_of_events()
        from_end = h.offsets[rows + 1] - 1 - np.arange(h.n_events)
        keep = from_end < max_len
        col = T - 1 - from_end[keep]
        r = rows[keep]
        row_start = np.zeros(h.n_events, dtype=bool)
        row_start[h.offsets[:-1][h.lengths > 0]] = True
        # A row may start mid-history (a training window, a truncated context): only a
        # customer's true first event gets the "first event" gap bucket, and a cut-off row
        # start opens a session only if its own gap says so - as when the full history is
        # scored.
        true_first = row_start & (h.sessions == 0) & (h.gaps == 0)
        items[r, col] = h.items[keep].astype(np.int64) + 1
        actions[r, col] = h.actions[keep]
        gb = gap_bucket(h.gaps, true_first)
        gaps[r, col] = gb[keep]
        opens = true_first | (h.gaps > 1800.0) | (not h.vocab.has_time)
        session_start = row_start & opens
        session_start[1:] |= (h.sessions[1:] != h.sessions[:-1]) & (rows[1:] == rows[:-1])
        starts[r, col] = session_start[keep]
    t = torch.from_numpy
    return Batch(t(items), t(actions), t(gaps), t(starts)), lengths


def history_at(
    batch: Batch, rows: torch.Tensor, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """History events visible at position (row, col): (N, T) items, actions and age buckets.

    Events after `col` are masked to padding, so nothing from the future enters the term.
    """
    T = batch.items.shape[1]
    items = batch.items[rows]
    actions = batch.actions[rows]
    pos = torch.arange(T).unsqueeze(0)
    age = cols.unsqueeze(1) - pos
    items = items.masked_fill(age < 0, 0)
    # A table lookup (every age from 32 on is the last bucket): no round trip through numpy.
    ages = _AGE_BUCKETS[age.clamp(min=0, max=len(_AGE_BUCKETS) - 1)]
    return items, actions, ages


# Every age from 2 ** (N_AGE_BUCKETS - 3) on falls in the last bucket: the table ends there.
_AGE_BUCKETS = torch.from_numpy(age_bucket(np.arange(2 ** (N_AGE_BUCKETS - 2))))


def training_windows(
    train: Sequences, max_len: int, conversion: bool
) -> tuple[Sequences, np.ndarray, np.ndarray]:
    """One window per customer: their last `max_len + 1` training events.

    Returns (window histories of `max_len + 1` events, next-item labels per input position,
    conversion labels per input position). Labels are 1-based items, 0 = no label. Input
    position t predicts the event at t + 1; for the conversion task, the last event of a
    session predicts the first target event of any later session.
    """
    keep = np.flatnonzero(train.lengths >= 2)
    w = train.select(keep).suffix(max_len + 1)  # a window into each longer history
    n_ev = w.n_events
    rows = w.row_of_events()
    last = np.zeros(n_ev, dtype=bool)
    last[w.offsets[1:] - 1] = True
    nxt = np.zeros(n_ev, dtype=np.int64)
    nxt[~last] = w.items[1:][~last[:-1]].astype(np.int64) + 1
    conv = np.zeros(n_ev, dtype=np.int64)
    if conversion:
        is_target = np.isin(w.actions, train.target_actions)
        session_end = last.copy()
        session_end[:-1] |= w.sessions[1:] != w.sessions[:-1]
        # For each event, the next target event at or after the next session's start.
        next_target = np.full(n_ev + 1, -1, dtype=np.int64)
        for i in range(n_ev - 1, -1, -1):  # one pass, O(E)
            next_target[i] = i if is_target[i] else next_target[i + 1]
            if last[i]:
                next_target[i] = i if is_target[i] else -1
        cand = np.flatnonzero(session_end & ~last)
        j = next_target[cand + 1]
        ok = (j >= 0) & (rows[np.maximum(j, 0)] == rows[cand])
        conv[cand[ok]] = w.items[j[ok]].astype(np.int64) + 1
    return w, nxt, conv


def holdout_last_target(
    train: Sequences, conversion: bool, actions: tuple[int, ...] | None = None
) -> tuple[Sequences, Sequences, np.ndarray]:
    """Carve a validation set out of training data when none is given.

    Each customer's last target event (an event of `actions`, by default the target
    actions) becomes a validation case (context = events before it, or before its session
    for a conversion target) and is removed, with everything after it, from what is trained
    on. Returns (trainable part, validation contexts, target items).
    """
    rows, pos, session_start = train.positions()
    ctx_end = session_start if conversion else pos
    wanted = train.target_actions if actions is None else actions
    cand = np.flatnonzero(np.isin(train.actions, wanted) & (ctx_end >= 1))
    # Per row: the candidate with the largest context end (first such event).
    order = np.lexsort((cand, -ctx_end[cand], rows[cand]))
    cand = cand[order]
    first = np.ones(len(cand), dtype=bool)
    first[1:] = rows[cand][1:] != rows[cand][:-1]
    picked = cand[first]
    ends = train.lengths.astype(np.int64).copy()
    ends[rows[picked]] = ctx_end[picked]
    part = train.prefix(np.arange(len(train)), ends)
    part.target_actions = train.target_actions
    contexts = train.prefix(rows[picked], ctx_end[picked])
    return part, contexts, train.items[picked].astype(np.int64)
