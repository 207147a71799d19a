"""Trait cards: what each learned trait is, computed from the fitted model and the data.

A trait raises the score of item j by value x loading[j]; so the items, categories, brands and
tags it favours are read off the loadings, and who has it is read off the customers' profiles
(Spearman correlation with the behavioural statistics, exemplar customers). The name is made
from the strongest of that evidence; nothing is typed in by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from funnelrec.profiles.behaviour import BEHAVIOURS, behaviour_stats, price_percentile
from funnelrec.sequences import Sequences

# Words for a behavioural statistic that rises (first) or falls (second) with a trait.
WORDS: dict[str, tuple[str, str]] = {
    "cart_rate": ("carts often", "rarely carts"),
    "abandonment": ("hesitant", "decisive"),
    "removal_rate": ("removes from cart", "keeps cart"),
    "impulse": ("impulsive", "deliberate"),
    "browsing_depth": ("browses at length", "decides after few looks"),
    "deliberation": ("slow-paced", "fast-paced"),
    "price_level": ("browses premium", "browses budget"),
    "price_sensitivity": ("price-sensitive", "price-insensitive"),
    "exploration": ("explorer", "focused"),
    "loyalty": ("loyal", "switcher"),
    "frequency": ("frequent", "occasional"),
    "recency": ("recently active", "lapsed"),
}
MIN_RHO = 0.15  # weaker correlations are shown but not used in a name
MIN_CATEGORY_Z = 0.5  # a category names a trait when its mean loading stands out this much


def _label(names: list[str], code: int) -> str:
    return names[code] if 0 <= code < len(names) else str(code)


def _group_lift(
    codes: np.ndarray,
    loading: np.ndarray,
    names: list[str],
    top: int,
    min_items: int = 3,
    scale: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Groups (categories, brands, tags) whose items' mean loading stands out, in std units
    of `scale` (default: the loadings given)."""
    known = codes >= 0
    if not known.any():
        return []
    df = pd.DataFrame({"g": codes[known], "l": loading[known]})
    agg = df.groupby("g").l.agg(["mean", "size"])
    agg = agg[agg["size"] >= min(min_items, int(agg["size"].max()))]
    scale = loading if scale is None else scale
    sd = float(scale.std()) or 1.0
    agg["z"] = (agg["mean"] - float(scale.mean())) / sd
    agg = agg.sort_values("z", ascending=False).head(top)
    return [
        {"name": _label(names, int(g)), "z": float(r.z), "n_items": int(r["size"])}
        for g, r in agg.iterrows()
    ]


def _tag_lift(vocab, loading: np.ndarray, top: int) -> list[dict[str, Any]]:
    """Tags whose items' mean loading stands out (an item counts once for each tag it has),
    in the std units of the items' loadings, as for categories."""
    if vocab.item_tag_offsets is None or not len(vocab.item_tag_ids):
        return []
    items = np.repeat(np.arange(vocab.n_items), np.diff(vocab.item_tag_offsets))
    return _group_lift(vocab.item_tag_ids, loading[items], vocab.tag_names, top, scale=loading)


def _journey(seqs: Sequences, row: int, n: int = 12) -> list[str]:
    h = seqs.history(row)
    names, items = seqs.vocab.action_names, seqs.vocab.item_ids
    return [
        f"{names[a]} {items[i]}" for i, a in zip(h["items"][-n:], h["actions"][-n:], strict=True)
    ]


def trait_cards(
    loadings: np.ndarray,
    profiles: pd.DataFrame,
    histories: Sequences,
    top: int = 10,
    n_exemplars: int = 3,
) -> list[dict[str, Any]]:
    """One card per trait.

    loadings : (n_items, k) from `FunnelModel.trait_loadings()`.
    profiles : customers x k learned trait values, rows aligned with `histories`.
    histories : the customers' events (for behaviour statistics and exemplar journeys).
    """
    vocab = histories.vocab
    stats = behaviour_stats(histories)
    pct = price_percentile(vocab)
    values = profiles.to_numpy()
    cards = []
    for k, trait in enumerate(profiles.columns):
        load = loadings[:, k]
        order = np.argsort(-load)[:top]
        v = values[:, k]
        rhos: dict[str, float] = {}
        for name in BEHAVIOURS:
            s = stats[name].to_numpy()
            ok = ~np.isnan(s)
            if ok.sum() >= 10 and np.ptp(s[ok]) > 0 and np.ptp(v[ok]) > 0:
                rhos[name] = float(spearmanr(v[ok], s[ok]).statistic)
        fav = np.argsort(-load)[: max(top * 5, 50)]
        fav_pct = pct[fav]
        price = float(np.nanmean(fav_pct)) if np.isfinite(fav_pct).any() else None
        cats = _group_lift(vocab.item_category, load, vocab.category_names, 5)
        brands = _group_lift(vocab.item_brand, load, vocab.brand_names, 5)
        tags = _tag_lift(vocab, load, 5)
        ex_rows = np.argsort(-v)[:n_exemplars]
        card = {
            "trait": trait,
            "index": k,
            "mean": float(v.mean()) if len(v) else 0.0,
            "share_above_half": float((v > 0.5).mean()) if len(v) else 0.0,
            "spread": float(v.std()) if len(v) else 0.0,
            "top_items": [
                {
                    "item_id": str(vocab.item_ids[j]),
                    "loading": float(load[j]),
                    "category": _label(vocab.category_names, int(vocab.item_category[j])),
                    "brand": _label(vocab.brand_names, int(vocab.item_brand[j])),
                }
                for j in order
            ],
            "top_categories": cats,
            "top_brands": brands,
            "top_tags": tags,
            "price_percentile": price,
            "behaviour_correlations": rhos,
            "exemplars": [
                {
                    "customer_id": str(profiles.index[r]),
                    "value": float(v[r]),
                    "journey": _journey(histories, int(r)),
                }
                for r in ex_rows
            ],
        }
        card["name"], card["description"] = _name(card)
        cards.append(card)
    _dedupe_names(cards)
    return cards


def _name(card: dict[str, Any]) -> tuple[str, str]:
    """A short name from the strongest evidence, and a one-line description."""
    parts, said = [], []
    # The strongest group that stands out names the trait: its category, else its tag.
    for kind, groups in (("", card["top_categories"]), ("tag ", card.get("top_tags", []))):
        if groups and groups[0]["z"] >= MIN_CATEGORY_Z:
            parts.append(groups[0]["name"])
            said.append(f"raises {kind}{groups[0]['name']} items (+{groups[0]['z']:.1f} sd)")
            break
    price = card["price_percentile"]
    if price is not None and (price < 0.4 or price > 0.6):
        parts.append("budget" if price < 0.4 else "premium")
        said.append(f"favours items at the {100 * price:.0f}th price percentile of their category")
    rhos = card["behaviour_correlations"]
    if parts and parts[-1] in ("budget", "premium"):
        # The items' price already names it: "budget · browses budget" says it twice, and
        # "budget · browses premium" (cheap items, customers who browse dear ones) reads
        # as a contradiction; name the strongest other behaviour.
        rhos = {k: v for k, v in rhos.items() if k != "price_level"}
    if rhos:
        stat, rho = max(rhos.items(), key=lambda kv: abs(kv[1]))
        if abs(rho) >= MIN_RHO:
            parts.append(WORDS[stat][0 if rho > 0 else 1])
            said.append(
                f"higher in customers with {'higher' if rho > 0 else 'lower'} "
                f"{stat.replace('_', ' ')} (Spearman {rho:+.2f})"
            )
    if not parts:
        top = card["top_items"][0]["item_id"] if card["top_items"] else "?"
        parts.append(f"item {top} and similar")
        said.append(f"raises item {top} most; no category, price or behaviour stands out")
    if card["spread"] < 0.02:
        said.append("almost constant across customers (inactive)")
    text = "; ".join(said)
    return " · ".join(parts), text[:1].upper() + text[1:] + "."


def _dedupe_names(cards: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for c in cards:
        n = seen.get(c["name"], 0)
        seen[c["name"]] = n + 1
        if n:
            c["name"] = f"{c['name']} ({n + 1})"
