"""The generator plants what it says it plants, and keeps the ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from funnelrec.datasets import TRAITS, generate_funnel


def _per_customer(events: pd.DataFrame) -> pd.DataFrame:
    counts = events.pivot_table(
        index="customer_id", columns="action", values="item_id", aggfunc="size", fill_value=0
    )
    return counts


def test_ground_truth_shapes(funnel) -> None:
    assert set(TRAITS) <= set(funnel.customers.columns)
    assert funnel.customers[list(TRAITS)].apply(lambda c: c.between(0, 1).all()).all()
    assert set(funnel.events["action"]) == {"view", "add_cart", "remove_cart", "purchase"}


def test_hesitant_customers_remove_more(funnel) -> None:
    c = _per_customer(funnel.events).join(funnel.customers.set_index("customer_id"))
    rate = c["remove_cart"] / c["add_cart"].clip(lower=1)
    rho, _ = spearmanr(c["hesitancy"], rate)
    assert rho > 0.3


def test_impulsive_customers_view_less_per_cart(funnel) -> None:
    c = _per_customer(funnel.events).join(funnel.customers.set_index("customer_id"))
    views_per_cart = c["view"] / c["add_cart"].clip(lower=1)
    rho, _ = spearmanr(c["impulsiveness"], views_per_cart)
    assert rho < -0.3


def test_price_sensitive_customers_buy_cheaper(funnel) -> None:
    items = funnel.items.set_index("item_id")
    buys = funnel.events[funnel.events.action == "purchase"]
    level = buys["item_id"].map(items["price_level"]).groupby(buys["customer_id"]).mean()
    gt = funnel.customers.set_index("customer_id").loc[level.index]
    rho, _ = spearmanr(gt["price_sensitivity"], level)
    assert rho < -0.2


def test_removal_followed_by_cheaper_substitute(funnel) -> None:
    ev = funnel.events.reset_index(drop=True)
    price = ev["price"].to_numpy()
    same_cust = ev["customer_id"].to_numpy()
    idx = np.flatnonzero(ev["action"].to_numpy() == "remove_cart")
    idx = idx[idx + 2 < len(ev)]
    nxt = idx + 2  # view sub, add_cart sub
    ok = (same_cust[nxt] == same_cust[idx]) & (ev["action"].to_numpy()[nxt] == "add_cart")
    assert ok.mean() > 0.4
    assert (price[nxt][ok] < price[idx][ok]).mean() > 0.95


def test_deterministic_for_a_seed() -> None:
    a = generate_funnel(n_customers=30, seed=3).events
    b = generate_funnel(n_customers=30, seed=3).events
    pd.testing.assert_frame_equal(a, b)
