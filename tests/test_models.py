"""One contract test runs over every registered model; each model then says what it must do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funnelrec.config import SplitConfig
from funnelrec.evaluate import evaluate, make_split
from funnelrec.models import MODELS, Markov, Popularity, RepeatPurchase
from funnelrec.schema import NotFittedError
from funnelrec.sequences import Sequences, encode_histories, load_sequences

# Neural models train for two epochs here: the contract, not the quality, is under test.
FAST = {"funnel": {"epochs": 2}, "sasrec": {"epochs": 2}, "gru4rec": {"epochs": 2}}


def build(name: str):
    return MODELS[name](**FAST.get(name, {}))


@pytest.fixture(scope="module")
def split(seqs: Sequences):
    return make_split(seqs, SplitConfig(protocol="loo", target="purchase"))


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, split):
    return request.param, build(request.param).fit(split.train)


def test_unfitted_model_says_so(seqs: Sequences) -> None:
    for name in MODELS:
        with pytest.raises(NotFittedError):
            build(name).score(seqs.select(np.arange(2)))


def test_contract_scores_and_topk(fitted, split) -> None:
    name, model = fitted
    ctx = split.test.contexts(split.full, slice(0, 40))
    scores = model.score(ctx)
    assert scores.shape == (40, split.full.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all(), name
    ids, vals = model.recommend(ctx, k=10)
    assert ids.shape == (40, 10)
    assert np.all(np.diff(vals, axis=1) <= 0)
    np.testing.assert_allclose(vals, np.take_along_axis(scores, ids, axis=1))
    assert np.array_equal(model.score(ctx), scores), "scoring must be deterministic"


def test_contract_batch_equals_alone(fitted, split) -> None:
    """A history scores the same alone as inside a batch of histories of other lengths."""
    _, model = fitted
    ctx = split.test.contexts(split.full, slice(0, 30))
    together = model.score(ctx)
    for j in (0, 7, 29):
        alone = model.score(ctx.select(np.array([j])))[0]
        np.testing.assert_allclose(alone, together[j], rtol=1e-4, atol=1e-4)


def test_contract_exclude_seen(fitted, split) -> None:
    _, model = fitted
    ctx = split.test.contexts(split.full, slice(0, 20))
    ids, _ = model.recommend(ctx, k=10, exclude_seen=True)
    for j in range(len(ctx)):
        seen = set(ctx.history(j)["items"].tolist())
        assert not seen & set(ids[j].tolist())


def test_contract_new_customer_raw_history(fitted, seqs: Sequences) -> None:
    _, model = fitted
    items = list(seqs.vocab.item_ids[:3])
    raw = pd.DataFrame(
        {
            "customer_id": ["new"] * 3,
            "item_id": items,
            "action": ["view", "add_cart", "view"],
            "timestamp": [1_700_000_000, 1_700_000_010, 1_700_000_020],
        }
    )
    hist, _ = encode_histories(seqs.vocab, raw)
    assert model.score(hist).shape == (1, seqs.n_items)
    empty, _ = encode_histories(seqs.vocab, raw.assign(item_id="unknown"))
    assert model.score(empty).shape == (1, seqs.n_items)


def test_contract_has_params(fitted) -> None:
    _, model = fitted
    assert isinstance(model.get_params(), dict)


def test_every_model_beats_chance_on_next_interaction(seqs: Sequences) -> None:
    sp = make_split(seqs, SplitConfig(protocol="loo", target="any"))
    chance = 10 / seqs.n_items
    for name in MODELS:
        hr = evaluate(build(name).fit(sp.train), sp, part="valid")["metrics"]["HR@10"]
        assert hr > chance, f"{name}: HR@10 {hr:.3f} <= chance {chance:.3f}"


def test_repeat_rule_beats_popularity_on_purchases(split) -> None:
    pop = evaluate(Popularity().fit(split.train), split, part="valid")["metrics"]["NDCG@10"]
    rep = evaluate(RepeatPurchase().fit(split.train), split, part="valid")["metrics"]["NDCG@10"]
    assert rep > 1.5 * pop


def _tiny() -> Sequences:
    t = 1_700_000_000
    rows = [
        ("a", t, "view", "x"),
        ("a", t + 1, "purchase", "x"),
        ("a", t + 2, "view", "y"),
        ("b", t, "view", "x"),
        ("b", t + 1, "view", "y"),
        ("c", t, "purchase", "z"),
        ("c", t + 1, "purchase", "z"),
        ("c", t + 2, "view", "y"),
    ]
    ev = pd.DataFrame(rows, columns=["customer_id", "timestamp", "action", "item_id"])
    return load_sequences(ev)[0]


def test_popularity_counts_target_actions() -> None:
    s = _tiny()
    top = Popularity().fit(s).recommend(s.select([0]), k=1)[0][0, 0]
    assert s.vocab.item_ids[top] == "z"  # most purchased, although y is most viewed


def test_repeat_puts_purchases_first() -> None:
    s = _tiny()
    ids = RepeatPurchase().fit(s).recommend(s.select([0]), k=2)[0][0]
    assert [s.vocab.item_ids[i] for i in ids] == ["x", "y"]


def test_markov_follows_transitions() -> None:
    s = _tiny()
    m = Markov(n_recent=1).fit(s)
    hist, _ = encode_histories(
        s.vocab, pd.DataFrame({"customer_id": ["n"], "item_id": ["x"], "action": ["view"]})
    )
    assert s.vocab.item_ids[m.recommend(hist, k=1)[0][0, 0]] == "y"  # x -> y seen twice
