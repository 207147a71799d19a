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
    train: Sequences, max_len: int, conversion: bool, max_windows: int = 0
) -> tuple[Sequences, np.ndarray, np.ndarray, np.ndarray]:
    """Windows of `max_len + 1` events that cover every customer's whole history.

    A history of L events gets ceil((L - 1) / max_len) windows, the last ending at its last
    event and each earlier one ending where the next begins, so every next event is a label
    exactly once (a long journey is learned from whole, not only its last `max_len` events;
    `max_windows` > 0 keeps each customer's last n). Returns (windows, next-item labels per
    input position, conversion labels per input position, the index in `train` of each
    window event). Labels are 1-based items, 0 = no label. Input position t predicts the
    event at t + 1; for the conversion task, the last event of a session predicts the first
    target event of any later session, which may lie in a later window.
    """
    nxt_all, conv_all = _event_labels(train, conversion)
    keep = np.flatnonzero(train.lengths >= 2)
    L = train.lengths[keep].astype(np.int64)
    n_win = -(-(L - 1) // max_len)
    if max_windows > 0:
        n_win = np.minimum(n_win, max_windows)
    row = np.repeat(keep, n_win)
    j = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = last
    ends = np.repeat(L, n_win) - j * max_len
    starts = np.maximum(ends - max_len - 1, 0)
    lengths = ends - starts
    offsets = np.zeros(len(row) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    src = np.repeat(train.offsets[row] + starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    w = train.gather(offsets, src, train.customers[row])
    # A window's last event is the next window's first: its labels are learned there.
    last = np.zeros(w.n_events, dtype=bool)
    last[offsets[1:] - 1] = True
    nxt = np.where(last, 0, nxt_all[src])
    conv = np.where(last, 0, conv_all[src])
    return w, nxt, conv, src


def _event_labels(train: Sequences, conversion: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per event of `train`: the next event's item, and (for a conversion target, at a
    session's last event) the first target item of a later session; 1-based, 0 = none."""
    n = train.n_events
    rows = train.row_of_events()
    last = np.zeros(n, dtype=bool)
    last[train.offsets[1:][train.lengths > 0] - 1] = True
    nxt = np.zeros(n, dtype=np.int64)
    nxt[~last] = train.items[1:][~last[:-1]].astype(np.int64) + 1
    conv = np.zeros(n, dtype=np.int64)
    if conversion and n:
        is_target = np.isin(train.actions, train.target_actions)
        session_end = last.copy()
        session_end[:-1] |= train.sessions[1:] != train.sessions[:-1]
        # The first target event at or after each position (n = none); one in another
        # row means none in this one.
        t = np.where(is_target, np.arange(n), n)
        next_target = np.append(np.minimum.accumulate(t[::-1])[::-1], n)
        cand = np.flatnonzero(session_end & ~last)
        j = next_target[cand + 1]
        ok = (j < n) & (rows[np.minimum(j, n - 1)] == rows[cand])
        conv[cand[ok]] = train.items[j[ok]].astype(np.int64) + 1
    return nxt, conv


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
