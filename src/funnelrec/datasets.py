"""Built-in generator of synthetic funnel logs with planted, recoverable structure.

What is planted (and kept as ground truth, so tests can check that models find it):

- customer archetypes, each with its own category preferences and typical behaviour;
- continuous behavioural traits per customer: impulsiveness (few views, fast purchases),
  hesitancy (cart abandonment and removals), price sensitivity (cheap items within a
  category), exploration (breadth of categories) and loyalty (repeat purchases and brands);
- cart removals followed by a cheaper substitute from the same category;
- order-dependent rules: each item has a follow-up item in a complementary category that the
  customer tends to look at and buy in the session after buying it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRAITS = ("impulsiveness", "hesitancy", "price_sensitivity", "exploration", "loyalty")


@dataclass
class SyntheticFunnel:
    """Events in the canonical layout plus the ground truth that produced them."""

    events: pd.DataFrame  # customer_id, timestamp, action, item_id, category, brand, price
    customers: pd.DataFrame  # customer_id, archetype, one column per planted trait
    items: pd.DataFrame  # item_id, category, brand, price, price_level, follow_up


def generate_funnel(
    n_customers: int = 2000,
    n_items: int = 500,
    n_categories: int = 12,
    n_brands: int = 40,
    n_archetypes: int = 5,
    mean_sessions: float = 6.0,
    seed: int = 0,
    start: str = "2024-01-01",
) -> SyntheticFunnel:
    """Generate funnel journeys.

    Examples
    --------
    >>> data = generate_funnel(n_customers=50, seed=1)
    >>> sorted(data.events["action"].unique())[:2]
    ['add_cart', 'purchase']
    """
    rng = np.random.default_rng(seed)
    items = _make_items(rng, n_items, n_categories, n_brands)
    cat_items = [np.flatnonzero(items["category"].to_numpy() == c) for c in range(n_categories)]
    price_level = items["price_level"].to_numpy()
    brand = items["brand_id"].to_numpy()
    follow_up = items["follow_up"].to_numpy()
    popularity = rng.pareto(1.5, n_items) + 1.0

    arche_pref = rng.dirichlet(np.full(n_categories, 0.3), size=n_archetypes)
    arche_traits = rng.uniform(0.15, 0.85, size=(n_archetypes, len(TRAITS)))
    archetype = rng.integers(0, n_archetypes, n_customers)
    # Traits: archetype mean plus individual spread, kept in (0, 1).
    conc = 6.0
    a = arche_traits[archetype] * conc
    traits = rng.beta(a, conc - a)
    t0 = pd.Timestamp(start, tz="UTC").timestamp()

    rows: list[tuple] = []
    for c in range(n_customers):
        imp, hes, price_sens, expl, loyal = traits[c]
        pref = rng.dirichlet(arche_pref[archetype[c]] * 30 + 0.05)
        n_sessions = 1 + rng.poisson(mean_sessions * rng.uniform(0.3, 1.7))
        t = t0 + rng.uniform(0, 30 * 86400)
        bought: list[int] = []
        brands_bought: set[int] = set()
        last_purchase = -1
        for _ in range(n_sessions):
            t += rng.exponential(2.5 * 86400) + 3600
            session: list[tuple[int, int]] = []  # (item, action)
            if bought and rng.random() < 0.45 * loyal:
                # Loyal repeat: come back to something bought before.
                item = bought[rng.integers(len(bought))]
                session += [(item, 0), (item, 1)]
                if rng.random() < 0.8:
                    session.append((item, 3))
                    last_purchase = item
            else:
                if last_purchase >= 0 and rng.random() < 0.6:
                    cat = int(items.at[follow_up[last_purchase], "category"])
                    first_view = int(follow_up[last_purchase])
                elif rng.random() < expl:
                    cat, first_view = int(rng.integers(n_categories)), -1
                else:
                    cat, first_view = int(rng.choice(n_categories, p=pref)), -1
                pool = cat_items[cat]
                w = popularity[pool] * np.exp(-4.0 * price_sens * price_level[pool])
                w = w * np.where(np.isin(brand[pool], list(brands_bought)), 1 + 4 * loyal, 1.0)
                w = w / w.sum()
                n_views = 1 + rng.geometric(1.0 / (1.0 + 6.0 * (1.0 - imp)))
                viewed = [first_view] if first_view >= 0 else []
                while len(viewed) < n_views:
                    if viewed and rng.random() < 0.3:
                        viewed.append(viewed[rng.integers(len(viewed))])  # repeat view = interest
                    else:
                        viewed.append(int(pool[rng.choice(len(pool), p=w)]))
                session += [(v, 0) for v in viewed]
                if rng.random() < 0.35 + 0.45 * imp:
                    counts = np.bincount(viewed)
                    target = int(np.argmax(counts)) if rng.random() < 0.7 else viewed[-1]
                    session.append((target, 1))
                    if rng.random() < 0.7 * hes:
                        session.append((target, 2))  # removal ...
                        cheaper = pool[price_level[pool] < price_level[target]]
                        if len(cheaper) and rng.random() < 0.75:
                            sub = int(cheaper[rng.integers(len(cheaper))])  # ... then substitute
                            session += [(sub, 0), (sub, 1)]
                            target = sub
                        else:
                            target = -1
                    if target >= 0 and rng.random() < 0.85 - 0.6 * hes:
                        session.append((target, 3))
                        last_purchase = target
                        bought.append(target)
                        brands_bought.add(int(brand[target]))
            mean_gap = 40.0 * (1.0 + 4.0 * hes) / (1.0 + 3.0 * imp)
            for item, act in session:
                rows.append((c, t, act, item))
                t += rng.exponential(mean_gap) + 2.0
    return _frame(rows, items, archetype, traits)


def _make_items(
    rng: np.random.Generator, n_items: int, n_categories: int, n_brands: int
) -> pd.DataFrame:
    category = rng.integers(0, n_categories, n_items)
    category[:n_categories] = np.arange(n_categories)  # every category has an item
    brand_cat = rng.integers(0, n_categories, n_brands)
    brand = np.empty(n_items, dtype=np.int64)
    for i, c in enumerate(category):
        own = np.flatnonzero(brand_cat == c)
        brand[i] = rng.choice(own) if len(own) and rng.random() < 0.85 else rng.integers(n_brands)
    base = np.exp(rng.uniform(np.log(5), np.log(500), n_categories))
    price = np.round(base[category] * rng.lognormal(0.0, 0.5, n_items), 2)
    level = pd.Series(price).groupby(category).rank(pct=True).to_numpy()
    complement = rng.permutation(n_categories)
    follow = np.empty(n_items, dtype=np.int64)
    for i in range(n_items):
        pool = np.flatnonzero(category == complement[category[i]])
        follow[i] = rng.choice(pool)
    return pd.DataFrame(
        {
            "item_id": [f"i{i:05d}" for i in range(n_items)],
            "category": category,
            "category_name": [f"cat_{c:02d}" for c in category],
            "brand_id": brand,
            "brand": [f"brand_{b:03d}" for b in brand],
            "price": price,
            "price_level": level,
            "follow_up": follow,
        }
    )


def _frame(
    rows: list[tuple], items: pd.DataFrame, archetype: np.ndarray, traits: np.ndarray
) -> SyntheticFunnel:
    arr = np.asarray(rows, dtype=np.float64)
    cust = arr[:, 0].astype(np.int64)
    item = arr[:, 3].astype(np.int64)
    actions = np.array(["view", "add_cart", "remove_cart", "purchase"])
    events = pd.DataFrame(
        {
            "customer_id": [f"c{c:05d}" for c in cust],
            "timestamp": pd.to_datetime(np.round(arr[:, 1]), unit="s", utc=True).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            ),
            "action": actions[arr[:, 2].astype(np.int64)],
            "item_id": items["item_id"].to_numpy()[item],
            "category": items["category_name"].to_numpy()[item],
            "brand": items["brand"].to_numpy()[item],
            "price": items["price"].to_numpy()[item],
        }
    )
    customers = pd.DataFrame(
        {"customer_id": [f"c{c:05d}" for c in range(len(archetype))], "archetype": archetype}
    )
    for k, name in enumerate(TRAITS):
        customers[name] = traits[:, k]
    return SyntheticFunnel(events=events, customers=customers, items=items)
