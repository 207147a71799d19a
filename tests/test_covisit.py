"""The covisit term: item-to-follower counts, their weight chosen on validation, exact parts."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from funnelrec.config import SplitConfig
from funnelrec.evaluate import make_split
from funnelrec.models import FunnelModel
from funnelrec.sequences import load_sequences, transition_counts


def _journey(customer: str, items: list[str], start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": customer,
            "item_id": items,
            "action": "view",
            "timestamp": [1e9 + start + 60 * i for i in range(len(items))],
        }
    )


def test_transition_counts_follow_order_distance_and_journeys() -> None:
    events = pd.concat([_journey("u", ["a", "b", "c", "a"]), _journey("v", ["b", "c"])])
    seqs = load_sequences(events)[0]
    ix = {str(x): i for i, x in enumerate(seqs.vocab.item_ids)}
    c = transition_counts(seqs, window=2, top=100).toarray()
    # a -> b (distance 1) and a -> c (distance 2) in u; b -> c in both journeys; c -> a once.
    assert c[ix["a"], ix["b"]] == pytest.approx(np.log1p(1.0))
    assert c[ix["a"], ix["c"]] == pytest.approx(np.log1p(0.5))
    assert c[ix["b"], ix["c"]] == pytest.approx(np.log1p(2.0))
    assert c[ix["b"], ix["a"]] == pytest.approx(np.log1p(0.5))  # b .. a two events later
    assert c[ix["c"], ix["b"]] == 0.0  # never in that order
    assert np.diag(c).sum() == 0.0  # an item does not vote for itself
    assert c[ix["a"]].sum() > 0 and c[:, ix["a"]].sum() > 0


def test_transition_counts_keep_each_rows_top_followers() -> None:
    events = _journey("u", ["a", "b", "a", "b", "a", "c", "a", "d"])
    seqs = load_sequences(events)[0]
    ix = {str(x): i for i, x in enumerate(seqs.vocab.item_ids)}
    full = transition_counts(seqs, window=1, top=0).toarray()
    cut = transition_counts(seqs, window=1, top=1).toarray()
    assert (full[ix["a"]] > 0).sum() == 3
    assert (cut[ix["a"]] > 0).sum() == 1 and cut[ix["a"], ix["b"]] == full[ix["a"], ix["b"]]
    np.testing.assert_array_equal(cut[ix["b"]], full[ix["b"]])  # rows under the cut stay


@pytest.fixture(scope="module")
def fitted(seqs):
    split = make_split(seqs, SplitConfig(protocol="loo", target="purchase"))
    valid = (split.valid.contexts(split.full), split.valid.targets)
    return split, FunnelModel(n_traits=4, epochs=2, seed=0).fit(split.train, valid=valid)


def test_weight_is_chosen_on_validation_from_a_grid_with_zero(fitted) -> None:
    split, model = fitted
    grid = model.covisit_valid_
    assert "0" in grid and len(grid) > 5
    best = max(grid.values())
    chosen = float(model.net_.co_scale)
    assert grid[f"{chosen:g}"] == best
    assert len(model.net_.co_idx) > 0  # counts are kept whatever the weight
    off = FunnelModel(n_traits=4, epochs=2, seed=0, covisit_window=0).fit(
        split.train, valid=(split.valid.contexts(split.full), split.valid.targets)
    )
    assert off.covisit_valid_ == {} and float(off.net_.co_scale) == 0.0


def test_epochs_are_judged_with_the_covisit_term_at_their_best_weight(fitted) -> None:
    _, model = fitted
    history = model.history_
    assert all("covisit_weight" in h for h in history)
    kept = history[model.best_epoch_ - 1]
    assert kept["valid_NDCG@10"] == max(h["valid_NDCG@10"] for h in history)
    # The kept network is the one validated at that epoch, and the final grid holds the
    # weight it was validated with: the same figure there, and nothing in the grid below it.
    assert model.covisit_valid_[f"{kept['covisit_weight']:g}"] == pytest.approx(
        kept["valid_NDCG@10"], abs=1e-5
    )
    assert max(model.covisit_valid_.values()) >= round(kept["valid_NDCG@10"], 5)


def test_covisit_parts_are_exact_and_survive_save_load(fitted, tmp_path) -> None:
    split, model = fitted
    m = copy.deepcopy(model)
    m.net_.co_scale.fill_(0.5)
    m.net_.train(False)  # drop cached item vectors
    ctx = split.test.contexts(split.full, slice(0, 8))
    scores = m.score(ctx)
    assert not np.allclose(scores, model.score(ctx))
    seen_covisit = 0.0
    for j in range(len(ctx)):
        one = ctx.select(np.array([j]))
        item = int(np.argmax(scores[j]))
        d = m.decompose(one, item)
        parts = d["events"][["repeat", "neighbour", "covisit"]].to_numpy().sum()
        assert d["bias"] + d["traits"].sum() + parts == pytest.approx(d["score"], abs=1e-3)
        seen_covisit += float(np.abs(d["events"]["covisit"]).sum())
    assert seen_covisit > 0
    m.save(tmp_path / "m")
    back = FunnelModel.load(tmp_path / "m")
    np.testing.assert_allclose(back.score(ctx), scores, rtol=1e-5, atol=1e-4)
