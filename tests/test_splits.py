"""Splits cannot leak: nothing at or after an evaluation cut is trained on or shown."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funnelrec.config import SplitConfig
from funnelrec.evaluate import make_split
from funnelrec.schema import ADD_CART, PURCHASE, FunnelrecError
from funnelrec.sequences import Sequences, load_sequences


def _train_len(split) -> np.ndarray:
    return split.train.lengths


def test_loo_any_is_last_and_second_last(seqs: Sequences) -> None:
    sp = make_split(seqs, SplitConfig(protocol="loo", target="any"))
    n = seqs.lengths
    assert np.all(sp.test.ends == n[sp.test.rows] - 1)
    assert np.all(sp.valid.ends == n[sp.valid.rows] - 2)
    last = seqs.offsets[sp.test.rows + 1] - 1
    assert np.all(sp.test.targets == seqs.items[last])
    assert np.all(_train_len(sp)[sp.valid.rows] == sp.valid.ends)


def test_loo_purchase_context_stops_before_target_session(seqs: Sequences) -> None:
    sp = make_split(seqs, SplitConfig(protocol="loo", target="purchase"))
    assert sp.target == "purchase" and len(sp.test) > 50
    for cases in (sp.valid, sp.test):
        for r, e, t in zip(cases.rows[:200], cases.ends[:200], cases.targets[:200], strict=True):
            h = seqs.history(r)
            # the target is a purchase of that item in a later session than the whole context
            later = np.flatnonzero(
                (h["items"] == t) & (h["actions"] == PURCHASE) & (np.arange(len(h["items"])) >= e)
            )
            assert len(later) > 0
            assert h["sessions"][later[0]] > h["sessions"][e - 1]
            assert h["sessions"][e] == h["sessions"][later[0]]  # cut = start of its session


def test_training_never_reaches_an_evaluation_cut(seqs: Sequences) -> None:
    for target in ("any", "purchase"):
        sp = make_split(seqs, SplitConfig(protocol="loo", target=target))
        tl = _train_len(sp)
        assert np.all(tl[sp.valid.rows] <= sp.valid.ends)
        assert np.all(tl[sp.test.rows] <= sp.test.ends)
        vrows = set(sp.valid.rows.tolist())
        # validation context strictly before test context for the same customer
        v_end = dict(zip(sp.valid.rows.tolist(), sp.valid.ends.tolist(), strict=True))
        for r, e in zip(sp.test.rows.tolist(), sp.test.ends.tolist(), strict=True):
            if r in vrows:
                assert v_end[r] < e


def test_temporal_split(seqs: Sequences) -> None:
    sp = make_split(seqs, SplitConfig(protocol="temporal", target="purchase"))
    t_valid, t_test = sp.info["t_valid"], sp.info["t_test"]
    assert sp.train.timestamps.max() < t_valid
    assert np.all(sp.test.target_times >= t_test)
    assert np.all((sp.valid.target_times >= t_valid) & (sp.valid.target_times < t_test))
    # first target event after the cut, per customer
    for r, tt in zip(sp.test.rows[:100], sp.test.target_times[:100], strict=True):
        h = seqs.history(r)
        buys = h["timestamps"][(h["actions"] == PURCHASE) & (h["timestamps"] >= t_test)]
        assert tt == buys.min()


def test_temporal_needs_time() -> None:
    ev = pd.DataFrame({"customer_id": ["a"] * 4, "item_id": list("wxyz")})
    ev["timestamp"] = range(4)
    seqs, _, _ = load_sequences(ev.assign(action="view"))
    seqs.vocab.has_time = False
    with pytest.raises(FunnelrecError, match="temporal split needs timestamps"):
        make_split(seqs, SplitConfig(protocol="temporal", target="any"))


def test_conversion_falls_back_to_add_cart_when_purchases_are_rare() -> None:
    rows = []
    for c in range(60):
        for s in range(3):
            t = 1_700_000_000 + s * 86_400
            rows += [
                (f"c{c}", t, "view", f"i{(c + s) % 9}"),
                (f"c{c}", t + 5, "add_cart", f"i{(c + s) % 9}"),
            ]
    rows.append(("c0", 1_700_500_000, "purchase", "i1"))
    ev = pd.DataFrame(rows, columns=["customer_id", "timestamp", "action", "item_id"])
    seqs, _, _ = load_sequences(ev)
    sp = make_split(seqs, SplitConfig(target="purchase"))
    assert sp.target == "add_cart" and sp.target_actions == (ADD_CART,)
    assert "falls back to add_cart" in sp.info["note"]


def test_temporal_conversion_training_stops_before_the_target_session() -> None:
    t0 = 1_700_000_000
    rows = []
    for c in range(40):
        rows += [
            (f"c{c}", t0 + c * 1000, "view", "a"),
            (f"c{c}", t0 + c * 1000 + 30, "purchase", "a"),
        ]
    # customer z: a session straddling the validation cut - view y before it, buy y after it
    rows += [
        ("z", t0, "view", "q"),
        ("z", t0 + 20_000, "purchase", "q"),
        ("z", t0 + 38_000, "view", "y"),
        ("z", t0 + 38_100, "add_cart", "y"),
        ("z", t0 + 39_100, "purchase", "y"),
    ]
    ev = pd.DataFrame(rows, columns=["customer_id", "timestamp", "action", "item_id"])
    seqs, _, _ = load_sequences(ev)
    cfg = SplitConfig(
        protocol="temporal",
        target="purchase",
        valid_quantile=0.96,
        test_quantile=0.999,
        min_target_customers=1,
    )
    sp = make_split(seqs, cfg)
    tl = sp.train.lengths
    assert np.all(tl[sp.valid.rows] <= sp.valid.ends)
    assert np.all(tl[sp.test.rows] <= sp.test.ends)
