"""Readable profiles: behavioural formulas, trait cards, explanations, segments, similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from funnelrec.models import FunnelModel
from funnelrec.profiles import (
    BEHAVIOURS,
    behaviour_block,
    behaviour_stats,
    customer_profile,
    describe,
    explain,
    faithfulness,
    fit_segments,
    similar_customers,
    similar_items,
)
from funnelrec.profiles.explain import drop_events, explain_items
from funnelrec.sequences import Sequences, load_sequences


@pytest.fixture(scope="module")
def model(seqs: Sequences) -> FunnelModel:
    return FunnelModel(n_traits=6, epochs=3, seed=2).fit(seqs)


@pytest.fixture(scope="module")
def described(model: FunnelModel):
    return describe(model, seed=0)


def _events(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(
        rows,
        columns=["customer_id", "timestamp", "action", "item_id", "category", "brand", "price"],
    )
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    return df


def test_behaviour_formulas_on_a_known_journey() -> None:
    rows = [
        # a: views x, y; carts x and y; removes y; buys x 100 s after first viewing it.
        ("a", 0, "view", "x", "c1", "b1", 1.0),
        ("a", 10, "view", "y", "c1", "b2", 3.0),
        ("a", 20, "add_cart", "x", "c1", "b1", 1.0),
        ("a", 30, "add_cart", "y", "c1", "b2", 3.0),
        ("a", 40, "remove_cart", "y", "c1", "b2", 3.0),
        ("a", 100, "purchase", "x", "c1", "b1", 1.0),
        # b: views three categories, buys z twice (a repeat purchase), never carts.
        ("b", 0, "view", "x", "c1", "b1", 1.0),
        ("b", 5, "view", "z", "c2", "b3", 2.0),
        ("b", 6, "view", "w", "c3", "b4", 5.0),
        ("b", 50, "purchase", "z", "c2", "b3", 2.0),
        ("b", 90000, "purchase", "z", "c2", "b3", 2.0),
    ]
    seqs = load_sequences(_events(rows))[0]
    raw = behaviour_stats(seqs)
    raw.index = seqs.vocab.customer_ids[seqs.customers]
    a, b = raw.loc["a"], raw.loc["b"]
    # Rates are shrunk by two pseudo-events towards the pair's pooled rate.
    pooled = raw.attrs["priors"]
    assert pooled["cart_rate"] == pytest.approx(2 / 5)  # a carts 2 of 2 viewed, b 0 of 3
    assert a.cart_rate == pytest.approx((2 + 2 * 0.4) / (2 + 2))
    assert b.cart_rate == pytest.approx((0 + 2 * 0.4) / (3 + 2))
    assert a.abandonment == pytest.approx(0.5)  # y carted, never bought: 1 of 2, p0 = 1/2
    assert a.removal_rate == pytest.approx(0.5)  # 1 removal / 2 carts, p0 = 1/2
    assert pooled["loyalty"] == pytest.approx(1 / 3)  # b's second purchase repeats its first
    assert b.loyalty == pytest.approx((1 + 2 / 3) / (2 + 2))
    assert a.loyalty == pytest.approx((0 + 2 / 3) / (1 + 2))
    assert a.impulse == pytest.approx(-100.0)
    assert b.impulse == pytest.approx(-45.0)
    # Steps inside a session (b's 90,000 s gap starts a new one).
    assert a.deliberation == pytest.approx(np.log1p([10, 10, 10, 10, 60]).mean())
    assert b.deliberation == pytest.approx(np.log1p([5, 1, 44]).mean())
    # Session-category pairs: a has one (no evidence of breadth), b has c1, c2, c3 then c2.
    assert np.isnan(a.exploration)
    p = np.array([1, 2, 1]) / 4
    assert b.exploration == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
    block = behaviour_block(seqs)
    assert list(block.columns) == [f"behaviour_{n}" for n in BEHAVIOURS]
    assert block.to_numpy().min() >= 0.0 and block.to_numpy().max() <= 1.0
    assert block.loc["a", "behaviour_exploration"] == 0.5  # no evidence: the neutral middle
    assert block.loc["a", "behaviour_cart_rate"] == 1.0  # ranked above b (no carts)


def test_reference_ranking_matches_population_ranking(seqs: Sequences) -> None:
    from funnelrec.profiles.behaviour import behaviour_reference, priors_of

    pop = behaviour_block(seqs)
    raw = behaviour_stats(seqs)
    saved = behaviour_reference(raw)
    assert priors_of(saved) == raw.attrs["priors"]  # later customers shrink towards these
    ref = behaviour_block(seqs, saved)
    # Same customers, ranked against their own saved quantiles: the same order, near values.
    for col in pop.columns:
        assert np.abs(pop[col] - ref[col]).max() < 0.06, col


def test_a_reference_saved_before_the_shrinkage_ranks_plain_rates(seqs: Sequences) -> None:
    from funnelrec.profiles.behaviour import behaviour_reference

    plain = behaviour_stats(seqs, shrink=False)
    saved = behaviour_reference(plain)
    old = {k: v for k, v in saved.items() if not k.startswith("prior_")}  # an older model's
    block = behaviour_block(seqs, old)
    for rate in ("cart_rate", "removal_rate"):
        x, y = plain[rate].to_numpy(), block[f"behaviour_{rate}"].to_numpy()
        ok = ~np.isnan(x)
        # Ranked in the plain rates' order (shrunk rates would swap some pairs).
        assert (np.diff(y[ok][np.argsort(x[ok], kind="stable")]) >= -1e-12).all(), rate


def test_trait_cards(model: FunnelModel, described) -> None:
    desc, profiles, _ = described
    assert [c["trait"] for c in desc.cards] == model.trait_names()
    load = model.trait_loadings()
    for k, card in enumerate(desc.cards):
        top = model.vocab_.item_ids[np.argsort(-load[:, k])[:3]]
        assert [x["item_id"] for x in card["top_items"][:3]] == [str(t) for t in top]
        assert set(card["behaviour_correlations"]) <= set(BEHAVIOURS)
        assert all(-1 <= r <= 1 for r in card["behaviour_correlations"].values())
        assert card["exemplars"][0]["value"] == pytest.approx(profiles.iloc[:, k].max())
    assert len({c["name"] for c in desc.cards}) == len(desc.cards)
    assert list(profiles.columns[:6]) == model.trait_names()


def test_explanation_is_exact_and_attributions_are_real_drops(model: FunnelModel) -> None:
    hist = model.history_of(model.vocab_.customer_ids[0])
    ids, scores = model.recommend(hist, k=1)
    item = int(ids[0, 0])
    e = explain(model, hist, item)
    parts = sum(t["contribution"] for t in e["traits"]) + e["bias"] + e["history_terms"]
    assert parts == pytest.approx(e["score"], abs=1e-4)
    assert e["score"] == pytest.approx(float(scores[0, 0]), abs=1e-4)
    top = e["events"][0]
    edited = drop_events(hist, [np.array([top["position"]])])
    drop = e["score"] - float(model.score_items(edited, np.array([item]))[0, 0])
    assert drop == pytest.approx(top["attribution"], abs=1e-4)
    assert e["text"].startswith(f"Recommended: {e['item_id']}")


def test_explaining_several_items_at_once_matches_one_by_one(model: FunnelModel) -> None:
    hist = model.history_of(model.vocab_.customer_ids[1])
    ids, _ = model.recommend(hist, k=5)
    items = [int(j) for j in ids[0]]
    together = explain_items(model, hist, items)
    for item, e in zip(items, together, strict=True):
        alone = explain(model, hist, item)
        assert e["text"] == alone["text"]
        assert e["score"] == pytest.approx(alone["score"], abs=1e-5)
        got = [(x["position"], x["attribution"]) for x in e["events"]]
        want = [(x["position"], x["attribution"]) for x in alone["events"]]
        assert [p for p, _ in got] == [p for p, _ in want]
        assert [a for _, a in got] == pytest.approx([a for _, a in want], abs=1e-5)


def test_drop_events_remeasures_gaps(seqs: Sequences) -> None:
    h = seqs.select(np.array([0]))
    edited = drop_events(h, [np.array([1])])
    assert edited.n_events == h.n_events - 1
    assert edited.gaps[1] == pytest.approx(h.timestamps[2] - h.timestamps[0])


def test_faithfulness_top_events_beat_random(model: FunnelModel, seqs: Sequences) -> None:
    res = faithfulness(model, seqs, n_cases=40, seed=0)
    assert res["cases"] == 40
    assert res["share_top_beats_random"] >= 0.8, res


def test_segments_find_planted_blobs() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1, 0.9], [0.9, 0.1, 0.1], [0.5, 0.9, 0.5]])
    truth = rng.integers(0, 3, 600)
    x = centres[truth] + rng.normal(0, 0.05, (600, 3))
    seg = fit_segments(pd.DataFrame(x, columns=["a", "b", "c"]), seed=0)
    assert seg["n_segments"] == 3
    assert adjusted_rand_score(truth, seg["labels"]) > 0.95
    sizes = np.bincount(seg["labels"])
    assert (np.diff(sizes) <= 0).all()  # numbered by size
    fixed = fit_segments(pd.DataFrame(x, columns=["a", "b", "c"]), n_segments=5, seed=0)
    assert fixed["n_segments"] == 5


def test_segment_cards(described) -> None:
    desc, profiles, _labels = described
    assert sum(s["size"] for s in desc.segments) == len(profiles)
    for s in desc.segments:
        assert 0 <= s["conversion_rate"] <= 1 and 0 <= s["removal_rate"] <= 1
        assert s["examples"] and set(s["examples"]) <= set(profiles.index)
        assert s["dominant_traits"] and s["name"]


def test_similar_customers_and_items(model: FunnelModel, described) -> None:
    _, profiles, _ = described
    c = profiles.index[0]
    sim = similar_customers(profiles, c, k=5)
    assert len(sim) == 5 and c not in set(sim.customer_id)
    assert (np.diff(sim.distance) >= 0).all()
    d = np.sqrt(((profiles - profiles.loc[c]) ** 2).sum(axis=1)).drop(c).sort_values()
    assert sim.distance.iloc[0] == pytest.approx(d.iloc[0], abs=1e-5)
    items = similar_items(model, model.vocab_.item_ids[0], k=4)
    assert len(items) == 4 and model.vocab_.item_ids[0] not in set(items.item_id)


def test_cold_start_profiles(model: FunnelModel, described) -> None:
    desc = described[0]
    empty = customer_profile(model, desc, "nobody-at-all")
    assert empty["cold_start"] and empty["segment"] == 0
    assert list(empty["profile"]) == desc.columns
    item = model.vocab_.item_ids[3]
    one = pd.DataFrame(
        {
            "customer_id": ["new"],
            "item_id": [item],
            "action": ["view"],
            "timestamp": [pd.Timestamp("2030-01-01", tz="UTC")],
        }
    )
    p = customer_profile(model, desc, one)
    assert not p["cold_start"]
    vals = np.array(list(p["profile"].values()))
    assert vals.shape == (len(desc.columns),) and ((vals >= 0) & (vals <= 1)).all()


def test_explain_takes_ids_and_zero_event_customers_get_popular_items(
    model: FunnelModel,
) -> None:
    from funnelrec.profiles import popular_items, recommend_customer

    cid = str(model.vocab_.customer_ids[1])
    rec = recommend_customer(model, cid, k=3)
    assert rec["fallback"] is None and len(rec["items"]) == 3
    e = explain(model, cid, rec["items"][0])
    assert e["item_id"] == rec["items"][0]
    cold = recommend_customer(model, "never-seen", k=3)
    top, _ = popular_items(model, 3)
    assert cold["fallback"] == "popularity"
    assert cold["items"] == list(model.vocab_.item_ids[top])
    counts = np.bincount(model.histories_.items, minlength=model.n_items_)
    assert counts[top[0]] >= np.sort(counts)[-3]  # training counts: the holdout moves a few


def test_similar_customers_ann_path_agrees_with_exact(described) -> None:
    pytest.importorskip("faiss")
    _, profiles, _ = described
    c = profiles.index[3]
    exact = similar_customers(profiles, c, k=5)
    ann = similar_customers(profiles, c, k=5, exact_limit=10)  # force the HNSW index
    assert len(set(ann.customer_id) & set(exact.customer_id)) >= 4
    assert ann.distance.iloc[0] == pytest.approx(exact.distance.iloc[0], rel=1e-3)


def test_single_history_fast_path_matches_the_batch_path(seqs: Sequences) -> None:
    end = float(seqs.timestamps.max())
    batch = behaviour_stats(seqs)
    priors = batch.attrs["priors"]  # shrunk towards the same pooled rates
    for row in range(0, len(seqs), 13):
        one = behaviour_stats(seqs.select(np.array([row])), now=end, priors=priors).iloc[0]
        np.testing.assert_allclose(
            one.to_numpy(), batch.iloc[row].to_numpy(), rtol=1e-9, err_msg=f"row {row}"
        )


def test_window_statistics_count_the_sessions_it_holds(seqs: Sequences) -> None:
    """A window cut from a longer history (session ids not starting at 0): the batch and
    the one-customer paths agree, and frequency counts the sessions present."""
    w = seqs.select(np.arange(6)).suffix(8)
    assert (w.sessions[w.offsets[:-1]] > 0).any()
    batch = behaviour_stats(w)
    for r in range(len(w)):
        one = w.select([r])
        alone = behaviour_stats(one)
        for col in ("frequency", "browsing_depth"):
            assert batch.loc[r, col] == pytest.approx(alone.loc[0, col], nan_ok=True)
        weeks = max((one.timestamps.max() - one.timestamps.min()) / (7 * 86400.0), 1.0)
        assert alone.loc[0, "frequency"] == pytest.approx(len(np.unique(one.sessions)) / weeks)


def test_a_trait_name_does_not_say_its_price_twice() -> None:
    from funnelrec.profiles.cards import _name

    card = {
        "top_categories": [{"name": "skincare", "z": 1.2}],
        "price_percentile": 0.3,
        "behaviour_correlations": {"price_level": 0.5, "abandonment": 0.2},
        "top_items": [{"item_id": "x"}],
        "spread": 0.2,
    }
    name, _ = _name(card)
    assert name == "skincare · budget · hesitant"  # not "budget · browses premium"
    card["price_percentile"] = 0.5  # no price word: the customers' price level names it
    assert _name(card)[0] == "skincare · browses premium"
