"""Behavioural traits: transparent statistics of each customer's journey, each put in [0, 1].

Why: learned traits are only as readable as the evidence beside them. These statistics have
documented formulas, so a learned trait can be described by how it correlates with them, and
a user gets them next to the learned traits in every profile.

Raw statistics (NaN where a customer has no evidence for one):

    cart_rate          distinct items carted / distinct items viewed (capped at 1) *
    abandonment        share of carted items never purchased afterwards *
    removal_rate       removals / add-to-carts (capped at 1) *
    impulse            -median seconds from an item's first view to its purchase (higher = faster)
    browsing_depth     view events per session (low = decides after few looks)
    deliberation       mean log(1 + seconds) between consecutive events of a session (higher =
                       slower, more deliberate steps; needs timestamps)
    price_level        mean within-category price percentile of the distinct items viewed
    price_sensitivity  price level of the distinct items viewed minus that of those bought
    exploration        entropy of the categories of the customer's sessions (each category
                       counted once per session it appears in), divided by its largest
                       possible value log(min(session-category pairs, categories))
    loyalty            repeat-purchase rate: share of purchases of an item bought before *
    frequency          sessions per active week (first to last event)
    recency            -days since the customer's last event, up to `now` (default: the
                       last event of the data given)

The rates marked * are shrunk towards the pooled rate p0 of a population (empirical Bayes
with a fixed strength): (k + 2 p0) / (n + 2) for k events out of n. Why: a raw rate ranks one
removal in one add-to-cart above eight in ten; with two pseudo-events at the population rate
the evidence counts, and on the built-in generator every rate follows its planted trait more
closely (docs/benchmarks.md, "Sharper behavioural statistics"). p0 comes from the histories
given, or from `priors` (saved in the behaviour reference, so one live customer is shrunk
towards the training population, not towards itself).

Each is turned into [0, 1] by its percentile rank among the customers given (ties share their
mean rank); a customer without evidence gets 0.5, the neutral middle. Everything is computed
from the histories passed in, so computing it on training histories never sees the evaluation
period.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from funnelrec.schema import ADD_CART, PURCHASE, REMOVE_CART, VIEW
from funnelrec.sequences import Sequences, Vocabulary

BEHAVIOURS: tuple[str, ...] = (
    "cart_rate",
    "abandonment",
    "removal_rate",
    "impulse",
    "browsing_depth",
    "deliberation",
    "price_level",
    "price_sensitivity",
    "exploration",
    "loyalty",
    "frequency",
    "recency",
)
PREFIX = "behaviour_"
RATES: tuple[str, ...] = ("cart_rate", "abandonment", "removal_rate", "loyalty")
PRIOR_STRENGTH = 2.0  # pseudo-events at the population rate added to every rate
_PRIOR_KEY = "prior_"  # reference entries holding the training population's pooled rates


def _shrink(k: np.ndarray | float, n: np.ndarray | float, p0: float) -> np.ndarray | float:
    """Posterior-mean rate: k events of n plus PRIOR_STRENGTH pseudo-events at rate p0."""
    return (k + PRIOR_STRENGTH * p0) / (n + PRIOR_STRENGTH)


def priors_of(reference: dict[str, list[float]] | None) -> dict[str, float] | None:
    """The pooled rates saved in a behaviour reference (None for a reference without them)."""
    if not reference:
        return None
    found = {r: reference[_PRIOR_KEY + r][0] for r in RATES if reference.get(_PRIOR_KEY + r)}
    return found or None


_PRICE_PCT: dict[int, tuple[Vocabulary, np.ndarray]] = {}


def price_percentile(vocab: Vocabulary) -> np.ndarray:
    """(n_items,) price percentile of each item within its category (NaN = no price).

    Cached per vocabulary: a live profile read should not re-rank the whole catalogue.
    """
    hit = _PRICE_PCT.get(id(vocab))
    if hit is not None and hit[0] is vocab:
        return hit[1]
    out = _price_percentile(vocab)
    _PRICE_PCT[id(vocab)] = (vocab, out)
    return out


def _price_percentile(vocab: Vocabulary) -> np.ndarray:
    price = vocab.item_price.astype(np.float64)
    out = np.full(vocab.n_items, np.nan)
    known = ~np.isnan(price)
    if known.any():
        cat = vocab.item_category[known]
        out[known] = pd.Series(price[known]).groupby(cat).rank(pct=True).to_numpy()
    return out


def behaviour_stats(
    seqs: Sequences,
    now: float | None = None,
    priors: dict[str, float] | None = None,
    shrink: bool = True,
) -> pd.DataFrame:
    """Raw statistics, one row per history (index = row), columns = BEHAVIOURS.

    The rates are shrunk towards `priors` (pooled rates, from `priors_of`), or, without
    them, towards the pooled rates of the histories given, which `.attrs["priors"]` holds.
    `shrink=False` gives the plain rates (what models saved before the shrinkage ranked).
    """
    if len(seqs) == 1:  # one customer (a live read): numpy only, ~100x faster
        one = stats_one(seqs, now, priors if shrink else None)
        out = pd.DataFrame([one], columns=list(BEHAVIOURS), dtype=float)
        out.attrs["priors"] = dict(priors or {})  # alone, a customer is its own population
        return out
    vocab = seqs.vocab
    n = len(seqs)
    ev = pd.DataFrame(
        {
            "row": seqs.row_of_events(),
            "item": seqs.items,
            "action": seqs.actions.astype(np.int64),
            "t": seqs.timestamps,
            "session": seqs.sessions,
        }
    )
    ev["pos"] = np.arange(len(ev))
    ev["cat"] = vocab.item_category[ev["item"].to_numpy()] if len(ev) else []
    ev["brand"] = vocab.item_brand[ev["item"].to_numpy()] if len(ev) else []
    ev["price_pct"] = price_percentile(vocab)[ev["item"].to_numpy()] if len(ev) else []
    out = pd.DataFrame(index=pd.RangeIndex(n), columns=list(BEHAVIOURS), dtype=float)

    views = ev[ev.action == VIEW]
    carts = ev[ev.action == ADD_CART]
    buys = ev[ev.action == PURCHASE]
    removes = ev[ev.action == REMOVE_CART]
    # Rates as (events, out of) counts, shrunk below once the pooled rates are known.
    n_viewed = views.groupby("row").item.nunique()
    n_carted = carts.groupby("row").item.nunique().reindex(n_viewed.index, fill_value=0)
    counts = {"cart_rate": (np.minimum(n_carted, n_viewed), n_viewed)}

    # Abandonment: a carted item with no purchase of it after the (first) add-to-cart.
    first_cart = carts.groupby(["row", "item"]).pos.min().rename("cart")
    last_buy = buys.groupby(["row", "item"]).pos.max().rename("buy")
    joined = pd.concat([first_cart, last_buy], axis=1).dropna(subset=["cart"])
    abandoned = ~(joined["buy"] > joined["cart"])
    by_row = abandoned.groupby(level="row")
    counts["abandonment"] = (by_row.sum(), by_row.size())
    n_carts = carts.groupby("row").size()
    n_removes = removes.groupby("row").size().reindex(n_carts.index, fill_value=0)
    counts["removal_rate"] = (np.minimum(n_removes, n_carts), n_carts)

    first_view = views.groupby(["row", "item"]).t.min().rename("view")
    first_buy = buys.groupby(["row", "item"]).t.min().rename("buy")
    vb = pd.concat([first_view, first_buy], axis=1).dropna()
    vb = vb[vb["buy"] >= vb["view"]]
    out["impulse"] = -(vb["buy"] - vb["view"]).groupby(level="row").median()

    n_sessions = ev.groupby("row").session.nunique()
    n_views = views.groupby("row").size().reindex(n_sessions.index, fill_value=0)
    out["browsing_depth"] = n_views / n_sessions

    if vocab.has_time and len(ev):
        # Steps inside a session: the previous event is the same customer's, same session.
        step = ev.t.diff()
        same = ev.row.eq(ev.row.shift()) & ev.session.eq(ev.session.shift())
        out["deliberation"] = np.log1p(step[same].clip(lower=0.0)).groupby(ev.row[same]).mean()

    # Each distinct item once: looking at one item five times is not five price choices.
    distinct_views = views.drop_duplicates(["row", "item"])
    out["price_level"] = distinct_views.groupby("row").price_pct.mean()
    bought = buys.drop_duplicates(["row", "item"]).groupby("row").price_pct.mean()
    out["price_sensitivity"] = out["price_level"] - bought

    known = ev[ev.cat >= 0].drop_duplicates(["row", "session", "cat"])
    if len(known):
        # Per session, not per event: a long session in one category is one choice.
        p = known.groupby(["row", "cat"]).size()
        pairs = p.groupby(level="row").transform("sum")
        entropy = -((p / pairs) * np.log(p / pairs)).groupby(level="row").sum()
        n_cats = len(np.unique(vocab.item_category[vocab.item_category >= 0]))
        most = np.log(np.minimum(pairs.groupby(level="row").first(), n_cats))
        out["exploration"] = (entropy / most.where(most > 0)).clip(0.0, 1.0)

    if len(buys):
        b = buys.sort_values("pos")
        repeat = b.duplicated(["row", "item"]).groupby(b.row)
        counts["loyalty"] = (repeat.sum(), repeat.size())

    pooled = {}
    for name, (k, m) in counts.items():
        k, m = k.astype(float), m.astype(float)
        pooled[name] = float(k.sum() / m.sum()) if m.sum() > 0 else 0.5
        p0 = priors[name] if priors and name in priors else pooled[name]
        out[name] = (_shrink(k, m, p0) if shrink else k / m).where(m > 0)

    if vocab.has_time and len(ev):
        span_weeks = (ev.groupby("row").t.max() - ev.groupby("row").t.min()) / (7 * 86400.0)
        # Sessions present, not the largest session number: a window cut from a longer
        # history does not start at session 0.
        out["frequency"] = n_sessions / span_weeks.clip(lower=1.0)
        end = ev.t.max() if now is None else now
        out["recency"] = -(end - ev.groupby("row").t.max()) / 86400.0
    out = out.astype(float)
    out.attrs["priors"] = dict(priors or {}) or pooled
    return out


def stats_one(
    seqs: Sequences, now: float | None, priors: dict[str, float] | None = None
) -> dict[str, float]:
    """The same statistics for one history with numpy only (a live read: ~100x faster than
    the pandas path; `tests/test_profiles.py` checks they agree). Without `priors` the
    rates are not shrunk (the only population is the customer)."""
    vocab = seqs.vocab
    items, actions, t = seqs.items.astype(np.int64), seqs.actions, seqs.timestamps
    nan = float("nan")
    out = dict.fromkeys(BEHAVIOURS, nan)
    if len(items) == 0:
        return out
    view, cart = actions == VIEW, actions == ADD_CART
    buy, remove = actions == PURCHASE, actions == REMOVE_CART
    viewed, carted = np.unique(items[view]), np.unique(items[cart])
    counts: dict[str, tuple[float, float]] = {}
    if len(viewed):
        counts["cart_rate"] = (min(len(carted), len(viewed)), len(viewed))
    if len(carted):
        pos = np.arange(len(items))
        first_cart = np.array([pos[cart & (items == i)].min() for i in carted])
        bought_after = np.array(
            [
                (buy & (items == i) & (pos > p)).any()
                for i, p in zip(carted, first_cart, strict=True)
            ]
        )
        counts["abandonment"] = (float((~bought_after).sum()), len(carted))
        counts["removal_rate"] = (min(remove.sum(), cart.sum()), cart.sum())
    if buy.any():
        b = items[buy]
        counts["loyalty"] = (len(b) - len(np.unique(b)), len(b))
    for name, (k, m) in counts.items():
        p0 = priors[name] if priors and name in priors else k / m
        out[name] = float(_shrink(k, m, p0))
    delays = []
    for i in np.intersect1d(viewed, np.unique(items[buy])):
        d = t[buy & (items == i)].min() - t[view & (items == i)].min()
        if d >= 0:
            delays.append(d)
    if delays:
        out["impulse"] = -float(np.median(delays))
    n_sessions = len(np.unique(seqs.sessions))
    out["browsing_depth"] = float(view.sum() / n_sessions)
    if vocab.has_time:
        same = seqs.sessions[1:] == seqs.sessions[:-1]
        if same.any():
            out["deliberation"] = float(np.log1p(np.diff(t)[same].clip(min=0.0)).mean())
    pct = price_percentile(vocab)
    seen, bought = pct[viewed], pct[np.unique(items[buy])]
    if np.isfinite(seen).any():
        out["price_level"] = float(np.nanmean(seen))
        if np.isfinite(bought).any():
            out["price_sensitivity"] = out["price_level"] - float(np.nanmean(bought))
    cat = vocab.item_category[items]
    known = cat >= 0
    if known.any():
        pairs = np.unique(np.stack([seqs.sessions[known], cat[known]]), axis=1)
        _, counts = np.unique(pairs[1], return_counts=True)
        p = counts / counts.sum()
        n_cats = len(np.unique(vocab.item_category[vocab.item_category >= 0]))
        most = np.log(min(counts.sum(), n_cats))
        if most > 0:
            out["exploration"] = float(np.clip(-(p * np.log(p)).sum() / most, 0.0, 1.0))
    if vocab.has_time:
        span_weeks = (t.max() - t.min()) / (7 * 86400.0)
        out["frequency"] = n_sessions / max(span_weeks, 1.0)
        end = t.max() if now is None else now
        out["recency"] = -(end - t.max()) / 86400.0
    return out


def behaviour_reference(raw: pd.DataFrame, n: int = 101) -> dict[str, list[float]]:
    """Quantiles of each raw statistic: what later customers are ranked against; with the
    pooled rates the rates were shrunk towards (`prior_<rate>`), so later ones are too."""
    q = np.linspace(0, 1, n)
    ref = {
        c: [float(v) for v in np.quantile(raw[c].dropna(), q)] if raw[c].notna().any() else []
        for c in raw.columns
    }
    for name, p0 in raw.attrs.get("priors", {}).items():
        ref[_PRIOR_KEY + name] = [float(p0)]
    return ref


def rank_against(raw: dict[str, float], reference: dict[str, list[float]]) -> dict[str, float]:
    """One customer's raw statistics -> [0, 1] against saved quantiles (0.5 = no evidence).

    The same ranking as `behaviour_block(..., reference)`, without pandas (live updates).
    """
    out = {}
    for name in BEHAVIOURS:
        q = np.asarray(reference.get(name) or [], dtype=np.float64)
        x = raw.get(name, float("nan"))
        if len(q) < 2 or not np.isfinite(x):
            out[PREFIX + name] = 0.5
            continue
        lo, hi = np.searchsorted(q, x, side="left"), np.searchsorted(q, x, side="right")
        out[PREFIX + name] = float(np.clip((lo + hi) / 2 / len(q), 0.0, 1.0))
    return out


def behaviour_block(
    seqs: Sequences, reference: dict[str, list[float]] | None = None, now: float | None = None
) -> pd.DataFrame:
    """Percentile ranks in [0, 1] (0.5 without evidence), one row per history.

    Ranked among the histories given, or, with `reference` (from `behaviour_reference` on
    the training customers), against that saved population, so one new customer can be
    placed without the others. Index: raw customer ids; columns: `behaviour_<name>`.
    """
    priors = priors_of(reference)
    # A reference saved before the shrinkage holds no priors: rank plain rates against it.
    raw = behaviour_stats(seqs, now, priors, shrink=reference is None or priors is not None)
    if reference is None:
        ranked = raw.rank(pct=True, method="average")
        # rank(pct=True) puts the smallest at 1/n; shift so the range is [0, 1].
        counts = raw.notna().sum()
        for col in raw.columns:
            m = counts[col]
            ranked[col] = (ranked[col] * m - 1) / (m - 1) if m > 1 else ranked[col] * 0 + 0.5
    else:
        ranked = pd.DataFrame(index=raw.index)
        for col in raw.columns:
            q = np.asarray(reference.get(col) or [], dtype=np.float64)
            x = raw[col].to_numpy()
            if len(q) < 2:
                ranked[col] = np.full(len(x), np.nan)
                continue
            # Position within the saved quantiles; ties sit in the middle of their run.
            lo = np.searchsorted(q, x, side="left")
            hi = np.searchsorted(q, x, side="right")
            ranked[col] = np.where(np.isnan(x), np.nan, (lo + hi) / 2 / len(q))
            ranked[col] = ranked[col].clip(0.0, 1.0)
    ranked = ranked.fillna(0.5)
    ids = seqs.vocab.customer_ids
    ranked.index = pd.Index(
        [str(ids[c]) if c >= 0 else f"new_{j}" for j, c in enumerate(seqs.customers)],
        name="customer_id",
    )
    ranked.columns = [PREFIX + c for c in raw.columns]
    return ranked
