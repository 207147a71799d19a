"""Real public data sets from ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from funnelrec.config import SplitConfig
from funnelrec.evaluate import evaluate, make_split
from funnelrec.models import RepeatPurchase
from funnelrec.sequences import load_sequences

SHARED_DATA = Path(
    os.environ.get("FUNNELREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

pytestmark = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not present")


def test_beauty_matches_published_counts() -> None:
    seqs, rep, _ = load_sequences(SHARED_DATA / "amazon_s3rec" / "Beauty.txt.gz")
    assert rep.layout == "sequence_lines"
    # S3-Rec's Beauty: 22,363 users, 12,101 items, 198,502 interactions
    assert (len(seqs), seqs.n_items, seqs.n_events) == (22363, 12101, 198502)


def test_taobao_sample() -> None:
    seqs, rep, _ = load_sequences(SHARED_DATA / "taobao_userbehavior" / "UserBehavior_head.csv.gz")
    assert rep.layout == "taobao" and rep.n_rejected == 0
    assert {"view", "add_cart", "purchase", "fav"} <= set(rep.actions)
    sp = make_split(seqs, SplitConfig(protocol="loo", target="purchase"))
    res = evaluate(RepeatPurchase().fit(sp.train), sp)
    assert res["n"] > 100 and 0 <= res["metrics"]["NDCG@10"] <= 1


def test_jdata_keeps_removals() -> None:
    path = SHARED_DATA / "jdata2016_action_heads" / "JData_Action_201602_head.csv.gz"
    _, rep, _ = load_sequences(path)
    assert rep.layout == "jdata"
    assert rep.actions["remove_cart"] > 0
    assert rep.rows_read == rep.rows_used + rep.n_rejected + rep.duplicates_dropped
