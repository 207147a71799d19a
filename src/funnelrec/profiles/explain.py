"""Explanations that are true: the exact split of a score, and the events that drove it.

Two views of one recommendation:

- the exact decomposition of the item's score (bias + one part per trait + per-event repeat,
  neighbour and covisit parts), from `FunnelModel.decompose`;
- event attributions by leave-one-event-out re-scoring: how much the item's score drops when
  one event is taken out of the journey (the encoder sees the edited journey, so attention,
  traits and history terms all move). This is what "you viewed Y twice" is built from.

`faithfulness` checks the second view: taking out the 3 most-attributed events should lower
the score more than taking out 3 random events.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from funnelrec.schema import FunnelrecError
from funnelrec.sequences import Sequences

VERBS = {
    "view": "viewed",
    "add_cart": "added {} to your cart",
    "remove_cart": "removed {} from your cart",
    "purchase": "bought",
}


def drop_events(history: Sequences, drops: list[np.ndarray]) -> Sequences:
    """One edited copy of a single history per entry of `drops` (event positions removed).

    Gaps are re-measured between the kept events, so no trace of a removed event remains.
    """
    n = history.n_events
    copies = history.select(np.zeros(len(drops), dtype=np.int64))
    keep = np.ones(len(drops) * n, dtype=bool)
    for j, d in enumerate(drops):
        keep[j * n + np.asarray(d, dtype=np.int64)] = False
    return copies.keep_events(keep)


def event_attributions(model, history: Sequences, item, window: int | None = None):
    """(positions, score drop when each event is removed, full score) for the last `window`
    events. `item` may be several items: then drops are (events, items) and one set of
    edited journeys is re-scored for all of them."""
    n = history.n_events
    window = window or max(model.max_len, model.history_len)
    pos = np.arange(max(0, n - window), n)
    items = np.atleast_1d(np.asarray(item, dtype=np.int64))
    full = model.score_items(history, items)[0]
    if len(pos) == 0:
        drops = np.zeros((0, len(items)))
    else:
        edited = drop_events(history, [np.array([p]) for p in pos])
        drops = full[None, :] - model.score_items(edited, items)
    if np.ndim(item) == 0:
        return pos, drops[:, 0], float(full[0])
    return pos, drops, full


def explain(
    model,
    history: Sequences | str,
    item: int | str,
    trait_names: list[str] | None = None,
    top_events: int = 3,
) -> dict[str, Any]:
    """Exact score decomposition plus the journey events that mattered most for `item`.

    `history` is a one-row Sequences or a known customer id; `item` a dense id or a raw id.
    """
    return explain_items(model, history, [item], trait_names, top_events)[0]


def explain_items(
    model,
    history: Sequences | str,
    items: list[int | str],
    trait_names: list[str] | None = None,
    top_events: int = 3,
) -> list[dict[str, Any]]:
    """`explain` for several items of one journey.

    Why not a loop over `explain`: the leave-one-event-out journeys are the costly part and
    are the same for every item, so they are encoded once and scored for all items together.
    """
    if isinstance(history, str):
        history = model.history_of(history)
    vocab = history.vocab
    dense = []
    for item in items:
        if isinstance(item, str):
            raw, item = item, vocab.item_index(item)
            if item < 0:
                raise FunnelrecError(f"unknown item '{raw}'")
        dense.append(int(item))
    pos, drops, _ = event_attributions(model, history, np.asarray(dense, dtype=np.int64))
    names = trait_names or model.trait_names()
    pairs = list(zip(history.items.tolist(), history.actions.tolist(), strict=True))
    times = {p: pairs.count(p) for p in set(pairs)}
    split = model.decompose_items(history, dense)
    return [
        _explain_one(history, item, d, drops[:, j], pos, names, times, pairs, top_events)
        for j, (item, d) in enumerate(zip(dense, split, strict=True))
    ]


def _explain_one(history, item, d, drop, pos, names, times, pairs, top_events) -> dict:
    vocab = history.vocab
    parts = [
        {
            "trait": names[k] if k < len(names) else f"part_{k}",
            "value": float(v),
            "contribution": float(c),
        }
        for k, (c, v) in enumerate(
            zip(d["traits"], np.resize(d["trait_values"], len(d["traits"])), strict=True)
        )
    ]
    events = []
    for p, delta in zip(pos, drop, strict=True):
        events.append(
            {
                "position": int(p),
                "item_id": str(vocab.item_ids[history.items[p]]),
                "action": vocab.action_names[history.actions[p]],
                "times_in_journey": times[pairs[p]],
                "attribution": float(delta),
            }
        )
    events.sort(key=lambda e: -abs(e["attribution"]))
    ev = d["events"]
    terms = [c for c in ("repeat", "neighbour", "covisit") if c in ev]
    exact_events = float(ev[terms].to_numpy().sum()) if len(ev) else 0.0
    positive = sum(max(p["contribution"], 0.0) for p in parts) + max(exact_events, 0.0)
    for p in parts:
        p["share"] = max(p["contribution"], 0.0) / positive if positive > 0 else 0.0
    parts.sort(key=lambda p: -p["contribution"])
    out = {
        "item_id": str(vocab.item_ids[item]),
        "score": d["score"],
        "bias": d["bias"],
        "traits": parts,
        "history_terms": exact_events,
        "history_share": max(exact_events, 0.0) / positive if positive > 0 else 0.0,
        "events": events[: max(top_events, 0) * 3],
    }
    out["text"] = explanation_text(out, top_events)
    return out


def explanation_text(e: dict[str, Any], top_events: int = 3) -> str:
    bits = []
    if e["traits"] and e["traits"][0]["contribution"] > 0 and e["traits"][0]["share"] > 0:
        t = e["traits"][0]
        bits.append(f"trait '{t['trait']}' ({t['value']:.2f}) contributes {100 * t['share']:.0f}%")
    if e["history_share"] >= 0.05:
        bits.append(f"your own events contribute {100 * e['history_share']:.0f}%")
    said, done = [], set()
    for ev in e["events"]:
        key = (ev["action"], ev["item_id"])
        if len(said) >= top_events or ev["attribution"] <= 0 or key in done:
            continue
        done.add(key)
        verb = VERBS.get(ev["action"], ev["action"] + " {}")
        phrase = verb.format(ev["item_id"]) if "{}" in verb else f"{verb} {ev['item_id']}"
        n = ev["times_in_journey"]
        if n > 1:
            phrase += " twice" if n == 2 else f" {n} times"
        said.append(phrase)
    if said:
        bits.append("you " + ", ".join(said))
    return f"Recommended: {e['item_id']} — " + ("; ".join(bits) if bits else "popular item")


def faithfulness(
    model, histories: Sequences, n_cases: int = 200, k: int = 3, seed: int = 0
) -> dict[str, float]:
    """Share of cases where removing the top-k attributed events lowers the top-1 item's
    score more than removing k random events (histories with at least 2k events)."""
    rng = np.random.default_rng(seed)
    window = max(model.max_len, model.history_len)
    eligible = np.flatnonzero(np.minimum(histories.lengths, window) >= 2 * k)
    rows = rng.choice(eligible, size=min(n_cases, len(eligible)), replace=False)
    wins, gaps = [], []
    for r in rows:
        h = histories.select(np.array([r]))
        ids, _ = model.recommend(h, k=1)
        item = int(ids[0, 0])
        pos, drop, full = event_attributions(model, h, item)
        top = pos[np.argsort(-drop)[:k]]
        rand = rng.choice(pos, size=k, replace=False)
        s = model.score_items(drop_events(h, [top, rand]), np.array([item]))[:, 0]
        wins.append((full - s[0]) > (full - s[1]))
        gaps.append((full - s[0]) - (full - s[1]))
    return {
        "cases": len(wins),
        "share_top_beats_random": float(np.mean(wins)) if wins else float("nan"),
        "mean_extra_drop": float(np.mean(gaps)) if gaps else float("nan"),
    }
