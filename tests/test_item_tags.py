"""Item tags: reading side files, attaching them to a vocabulary, and the model reading them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from funnelrec.item_tags import attach_item_tags, read_item_tags
from funnelrec.models import FunnelModel
from funnelrec.schema import InputError
from funnelrec.sequences import Sequences, load_sequences


def test_json_mapping_and_tables_read_alike(tmp_path: Path) -> None:
    mapping = {"i1": ["a", "b"], "i2": "b|c", "i3": [7]}
    js = tmp_path / "tags.json.gz"
    with gzip.open(js, "wt") as f:
        json.dump(mapping, f)
    long = tmp_path / "long.csv"
    long.write_text("item_id,tag\ni1,a\ni1,b\ni2,b\ni2,c\ni3,7\n")
    wide = tmp_path / "wide.tsv"
    wide.write_text("sku\ttags\ni1\ta | b\ni2\tb|c\ni3\t7\n")
    want = {"i1": ["a", "b"], "i2": ["b", "c"], "i3": ["7"]}
    for source in (js, long, wide, mapping, pd.read_csv(long, dtype=str)):
        tags, report = read_item_tags(source)
        assert tags == want
        assert report["items"] == 3 and report["tags"] == 4 and report["rows_rejected"] == {}


def test_lists_arrays_and_byte_order_marks_read_alike(tmp_path: Path) -> None:
    want = {"i1": ["a", "b"], "12": ["c|d"]}
    frame = pd.DataFrame({"item_id": ["i1", "12.0"], "tags": [["a", "b"], ["c|d"]]})
    frame.to_parquet(tmp_path / "t.parquet")
    lines = '{"item_id": "i1", "tags": ["a", "b"]}\n{"item_id": 12, "tags": ["c|d"]}\n'
    (tmp_path / "t.jsonl").write_text(lines)
    (tmp_path / "t.json").write_text("[\n" + ",\n".join(lines.strip().split("\n")) + "\n]")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(want).encode())
    for name in ("t.parquet", "t.jsonl", "t.json", "bom.json"):
        tags, report = read_item_tags(tmp_path / name)
        assert tags == want, name  # "12.0" is the id 12, as event files read it
        assert report["rows_rejected"] == {}, name


def test_unusable_rows_are_counted_and_written_aside(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text('item_id,tag\ni1,a\n,b\n\ni2,\ni2,"c\nd"\ni2,c\ni1,a\n')
    rejects = tmp_path / "rejects.csv"
    tags, report = read_item_tags(path, rejects_path=rejects)
    assert tags == {"i1": ["a"], "i2": ["c\nd", "c"]}
    assert report["rows_rejected"] == {"no item id": 1, "no tag": 1}
    assert report["duplicates_dropped"] == 1
    written = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    assert written["line"].tolist() == ["3", "5"]  # file lines: the header is line 1
    assert written["reason"].tolist() == ["no item id", "no tag"]
    mapping = tmp_path / "m.json"
    mapping.write_text('{"i1": {"colour": "red"}, "i2": null, "i3": "x"}')
    tags, report = read_item_tags(mapping, rejects_path=rejects)
    assert tags == {"i3": ["x"]}
    assert report["rows_rejected"] == {"tags are not a list of names": 1, "no tag": 1}
    assert "colour" in pd.read_csv(rejects, dtype=str)["raw"].tolist()[0]
    empty = tmp_path / "empty.csv"
    empty.write_text("item_id,tag\n")
    assert read_item_tags(empty)[0] == {}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "items.csv",
            "item_id,colour\ni1,red\n",
            r"lacks a column.*items\.csv.*tag or tags.*colour",
        ),
        ("broken.json", '{"i1": ["a"],\n "i2": [}\n', r"not valid JSON.*broken\.json, line 2"),
        ("both.csv", "item_id,tag,tags\ni1,a,b\n", r"more than one tag column.*both\.csv"),
        ("blank.csv", "", r"empty.*blank\.csv"),
        ("missing.csv", None, "not found"),
    ],
)
def test_bad_tag_files_name_file_and_place(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_item_tags(path)


def test_attach_reports_and_survives_a_save(seqs: Sequences, tmp_path: Path) -> None:
    seqs = Sequences.load(_copy(seqs, tmp_path / "a"))  # own vocabulary: the fixture is shared
    ids = seqs.vocab.item_ids
    tags = {ids[0]: ["x", "y", "z"], ids[1]: ["y"], "not-an-item": ["x"]}
    report = attach_item_tags(seqs, tags, max_tags=2)
    assert report == {
        "items_with_tags": 2,
        "items_without_tags": seqs.n_items - 2,
        "tags": 2,  # z was cut by max_tags
        "tagged_items_not_in_data": 1,
        "tags_cut_by_max_tags": 1,
    }
    back = Sequences.load(_copy(seqs, tmp_path / "b"))
    assert [back.vocab.tag_names[t] for t in back.vocab.tags_of(0)] == ["x", "y"]
    assert [back.vocab.tag_names[t] for t in back.vocab.tags_of(1)] == ["y"]
    assert len(back.vocab.tags_of(2)) == 0


def test_model_reads_tags_and_scores_unseen_items_from_them(funnel_csv: Path, tmp_path) -> None:
    """Items without training events get their vector from their tags: two such items with
    the same tags (and no other metadata) score alike, and a saved model scores the same."""
    events = pd.read_csv(funnel_csv).drop(columns=["category", "brand", "price"])
    seqs = load_sequences(events)[0]
    ids = seqs.vocab.item_ids
    # Two items are kept out of training; they share tags with each other only.
    cold = [ids[0], ids[1]]
    train = seqs.keep_events(~np.isin(seqs.items, [0, 1]))
    tags = {i: [f"t{k % 5}"] for k, i in enumerate(ids)}
    tags[cold[0]] = tags[cold[1]] = ["shared", "t1"]
    attach_item_tags(seqs, tags)
    model = FunnelModel(n_traits=4, epochs=2, seed=0).fit(train)
    net = model.net_
    assert net.cfg.n_tags == 6 and net.cfg.max_tags == 2
    with torch.no_grad():
        vec = net.item_vectors(torch.tensor([1, 2]))
        # Tag ids follow the sorted names "shared", "t0", ..., "t4" (1-based in the table);
        # no category, brand or price here: their "unknown" rows are added to every item.
        tag_mean = net.tag_emb.weight[[1, 3]].mean(0)
        unknown = net.cat_emb.weight[0] + net.brand_emb.weight[0] + net.price_emb.weight[0]
    assert torch.allclose(vec[0], vec[1])
    assert torch.allclose(vec[0], tag_mean + unknown, atol=1e-6)  # own vector zeroed
    hist = seqs.select(np.arange(5))
    model.save(tmp_path / "m")
    again = FunnelModel.load(tmp_path / "m")
    assert again.vocab_.tag_names == seqs.vocab.tag_names
    np.testing.assert_allclose(again.score(hist), model.score(hist), rtol=1e-5, atol=1e-5)


def _copy(seqs: Sequences, path: Path) -> Path:
    seqs.save(path)
    return path


def test_trait_cards_name_the_tags_a_trait_raises(seqs: Sequences, tmp_path: Path) -> None:
    from funnelrec.profiles.cards import trait_cards

    seqs = Sequences.load(_copy(seqs, tmp_path / "s"))
    seqs.vocab.item_category[:] = -1  # no category to name the trait by
    ids = seqs.vocab.item_ids
    hot = set(range(0, seqs.n_items, 7))
    attach_item_tags(
        seqs, {ids[i]: ["hot" if i in hot else "cold", "any"] for i in range(len(ids))}
    )
    loadings = np.zeros((seqs.n_items, 2))
    loadings[list(hot), 0] = 1.0
    rng = np.random.default_rng(0)
    profiles = pd.DataFrame(rng.random((len(seqs), 2)), columns=["trait_01", "trait_02"])
    profiles.index = seqs.vocab.customer_ids[seqs.customers]
    card = trait_cards(loadings, profiles, seqs)[0]
    assert card["top_tags"][0]["name"] == "hot" and card["top_tags"][0]["z"] > 2
    assert card["name"].startswith("hot") and card["description"].startswith("Raises tag hot items")
