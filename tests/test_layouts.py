"""Every known layout is detected, said, and mapped onto canonical events."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funnelrec.config import IngestConfig
from funnelrec.ingest import read_events
from funnelrec.ingest.layouts import detect_sequence_text
from funnelrec.sequences import load_sequences


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_rees46(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "rees.csv",
        (
            "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
            "user_session\n"
            "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,"
            "72d76fde\n"
            "2019-10-01 00:00:05 UTC,cart,44600062,2103807459595387724,,shiseido,35.79,541312140,"
            "72d76fde\n"
            "2019-10-01 00:01:00 UTC,remove_from_cart,44600062,2103807459595387724,,shiseido,35.79,"
            "541312140,72d76fde\n"
            "2019-10-01 00:02:00 UTC,purchase,3900821,2053013552326770905,appliances.water_heater,"
            "aqua,33.20,541312140,72d76fde\n"
        ),
    )
    t = read_events(p)
    assert t.report.layout == "rees46" and t.report.layout_detected
    assert t.report.actions == {"view": 1, "add_cart": 1, "remove_cart": 1, "purchase": 1}
    seqs, _, rep = load_sequences(p)
    assert rep.session_source == "session ids in the data"
    cats = seqs.vocab.category_names
    # category_code where present, category_id otherwise
    assert "appliances.water_heater" in cats and "2103807459595387724" in cats
    assert np.isclose(seqs.vocab.item_price[seqs.vocab.item_index("3900821")], 33.2)


def test_retailrocket_ms_timestamps(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "events.csv",
        (
            "timestamp,visitorid,event,itemid,transactionid\n"
            "1433221332117,257597,view,355908,\n"
            "1433224214164,257597,addtocart,355908,\n"
            "1433221999827,111016,transaction,248676,4000\n"
        ),
    )
    seqs, rep, _ = load_sequences(p)
    assert rep.layout == "retailrocket"
    assert "milliseconds" in rep.timestamps
    assert seqs.timestamps.min() == pytest.approx(1433221332.117)
    assert rep.actions == {"view": 1, "add_cart": 1, "purchase": 1}


@pytest.mark.parametrize("header", [True, False])
def test_taobao_with_and_without_header(tmp_path: Path, header: bool) -> None:
    rows = (
        "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,fav,1511561733\n"
        "1,2268318,2520377,cart,1511561800\n2,99,7,buy,1511561900\n2,98,7,pv,1511561000\n"
    )
    text = ("user_id,item_id,category_id,behavior_type,timestamp\n" if header else "") + rows
    seqs, rep, _ = load_sequences(_csv(tmp_path / "ub.csv", text))
    assert rep.layout == "taobao" and rep.layout_detected
    assert rep.rows_used == 5 and rep.n_rejected == 0  # a header is not a bad row
    assert rep.actions["fav"] == 1  # kept as its own type, not merged
    assert "fav" in seqs.vocab.action_names
    assert seqs.vocab.category_names == sorted(["2520377", "2520771", "7"])


def test_jdata_float_ids(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "jd.csv",
        (
            "user_id,sku_id,time,model_id,type,cate,brand\n"
            "266079.0,138778,2016-01-31 23:59:02,,1,8,403\n"
            "266079.0,138778,2016-01-31 23:59:03,0,2,8,403\n"
            "266079,138778,2016-01-31 23:59:09,0,3,8,403\n"
        ),
    )
    seqs, rep, _ = load_sequences(p)
    assert rep.layout == "jdata"
    assert list(seqs.vocab.customer_ids) == ["266079"]  # "266079.0" is the same customer
    assert rep.actions == {"view": 1, "add_cart": 1, "remove_cart": 1}


def test_sequence_lines_gz(tmp_path: Path) -> None:
    p = tmp_path / "Beauty.txt.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("1 1 2 3 4\n2 5 6 7\n10 3 1\n")
    seqs, rep, srep = load_sequences(p)
    assert rep.layout == "sequence_lines" and not rep.has_time
    assert len(seqs) == 3 and seqs.n_events == 9
    row = seqs.vocab.customer_index("1")
    assert [seqs.vocab.item_ids[i] for i in seqs.history(row)["items"]] == ["1", "2", "3", "4"]
    assert srep.session_source.startswith("none")


def test_sequence_pairs(tmp_path: Path) -> None:
    p = _csv(tmp_path / "Video.txt", "1 6393\n1 13504\n2 5\n1 14087\n")
    seqs, rep, _ = load_sequences(p)
    assert rep.layout == "sequence_pairs"
    row = seqs.vocab.customer_index("1")
    assert [seqs.vocab.item_ids[i] for i in seqs.history(row)["items"]] == [
        "6393",
        "13504",
        "14087",
    ]


def test_canonical_parquet_jsonl_dataframe_agree(tmp_path: Path, funnel) -> None:
    ev = funnel.events.head(2000)
    ev.to_parquet(tmp_path / "e.parquet")
    ev.to_json(tmp_path / "e.jsonl", orient="records", lines=True)
    ev.to_csv(tmp_path / "e.csv.gz", index=False)
    results = [
        load_sequences(src)[0]
        for src in (tmp_path / "e.parquet", tmp_path / "e.jsonl", tmp_path / "e.csv.gz", ev)
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].items, other.items)
        np.testing.assert_array_equal(results[0].actions, other.actions)
        np.testing.assert_allclose(results[0].timestamps, other.timestamps)


def test_explicit_map_and_action_map(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "shop.csv",
        (
            "who;when;what;sku;cost\n"
            "a;2024-01-01T10:00:00+02:00;looked;s1;3.5\n"
            "a;2024-01-01T10:05:00+02:00;basket;s1;3.5\n"
            "a;2024-01-01T10:06:00+02:00;paid;s1;3.5\n"
            "b;2024-01-01T11:00:00Z;wishlist;s2;1\n"
        ),
    )
    cfg = IngestConfig(
        column_map={
            "customer_id": "who",
            "timestamp": "when",
            "action": "what",
            "item_id": "sku",
            "price": "cost",
        },
        action_map={"looked": "view", "basket": "add_cart", "paid": "purchase"},
    )
    seqs, rep, _ = load_sequences(p, cfg)
    assert rep.actions == {"view": 1, "add_cart": 1, "purchase": 1, "wishlist": 1}
    # +02:00 is honoured: 10:00+02:00 is 08:00 UTC
    assert seqs.timestamps[0] == pd.Timestamp("2024-01-01 08:00:00", tz="UTC").timestamp()


def test_unsorted_input_is_sorted_and_said(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "u.csv",
        (
            "customer_id,timestamp,action,item_id\n"
            "c,2024-01-01 10:05:00,purchase,x\n"
            "c,2024-01-01 10:00:00,view,x\n"
            "c,2024-01-01 10:01:00,add_cart,x\n"
        ),
    )
    seqs, rep, _ = load_sequences(p)
    assert not rep.input_sorted
    assert [seqs.vocab.action_names[a] for a in seqs.actions] == ["view", "add_cart", "purchase"]


def test_ties_keep_file_order(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "t.csv",
        (
            "customer_id,timestamp,action,item_id\n"
            "c,1700000000,view,x\nc,1700000000,add_cart,x\nc,1700000000,purchase,x\n"
        ),
    )
    seqs, _, _ = load_sequences(p)
    assert list(seqs.actions) == [0, 1, 3]


def test_a_headerless_numeric_event_table_is_not_read_as_order_only_sequences() -> None:
    # customer, item, epoch seconds, action code: integers on every line, like sequence text.
    lines = ["1\t101\t1700000000\t1", "1\t102\t1700000060\t2", "2\t101\t1700000120\t4"]
    assert detect_sequence_text(lines) is None
    assert detect_sequence_text(["1 5 9 12", "2 7 3", "3 4 5 6 7 8"]) is not None
    # Long item ids, or lines of one length, are still order-only sequences.
    assert detect_sequence_text(["1 214536502 214536500", "2 214577561 214536502"]) is not None
    assert detect_sequence_text(["1 11 21 31", "2 12 22 32", "3 13 23 33"]) is not None


def test_one_stray_line_does_not_hide_a_sequence_layout(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("1 10\n1 11\n\n2 10\n4\n2 12\n3 10\n3 13\n")  # and a blank line
    rejects = tmp_path / "rejects.csv"
    report = read_events(path, rejects_path=rejects).report
    assert report.layout == "sequence_pairs" and report.rows_used == 6
    assert pd.read_csv(rejects)["line"].tolist() == [5]
    # Named by the user, the layout is used whatever the detection says.
    named = read_events(path, IngestConfig(layout="sequence_pairs")).report
    assert named.layout == "sequence_pairs" and named.rows_used == 6


def test_action_map_ignores_case_and_names_keys_that_match_nothing(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "shop.csv",
        "customer_id,timestamp,action,item_id\n"
        "a,1704067200,View,s1\na,1704067260,Checkout,s1\nb,1704067200,View,s2\n",
    )
    cfg = IngestConfig(action_map={"checkout": "purchase", "chekout": "purchase"})
    _, rep, _ = load_sequences(p, cfg)
    assert rep.actions == {"view": 2, "purchase": 1}
    note = next(n for n in rep.notes if "not in the action column" in n)
    assert "'chekout'" in note and "'Checkout'" in note and "'checkout'," not in note


@pytest.mark.parametrize("named", [False, True])
def test_headerless_taobao_variants(tmp_path: Path, named: bool) -> None:
    """Tabs, a byte-order mark, upper-case behaviours and a bad row do not hide the layout;
    naming it reads a header-less file by the layout's column order."""
    rows = [
        "1\t2268318\t2520377\tPV\t1511544070",
        "1\t2333346\t2520771\tpv\t1511561733",
        "1\t3830808\t4181361\tcart\txx",
        "2\t99\t7\tbuy\t1511561900",
        "2\t98\t7\tpv\t1511561000",
    ]
    p = tmp_path / "ub.tsv"
    p.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = IngestConfig(layout="taobao") if named else None
    rejects = tmp_path / "rejects.csv"
    seqs, rep, _ = load_sequences(p, cfg, rejects_path=rejects)
    assert rep.layout == "taobao" and rep.layout_detected is not named
    assert rep.rows_used == 4 and rep.rows_rejected == {"unparseable timestamp": 1}
    assert rejects.read_text().splitlines()[1].startswith("3,")
    assert sorted(map(str, seqs.vocab.customer_ids)) == ["1", "2"]


def test_named_taobao_with_its_own_header_names_is_read_by_map(tmp_path: Path) -> None:
    p = _csv(
        tmp_path / "ub.csv",
        "user_id,item_id,category_id,behavior,timestamp\n1,2,3,pv,1511544070\n1,2,3,buy,1511544090\n",
    )
    cfg = IngestConfig(layout="taobao", column_map={"action": "behavior"})
    _, rep, _ = load_sequences(p, cfg)
    assert rep.rows_used == 2 and rep.n_rejected == 0
