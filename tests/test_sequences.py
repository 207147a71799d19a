"""Compact sequences: offsets, sessionization, truncation, prefixes, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from funnelrec.config import IngestConfig
from funnelrec.sequences import Sequences, encode_histories, load_sequences


def _events(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "action", "item_id"])


def test_offsets_and_arrays_are_compact(seqs: Sequences) -> None:
    assert seqs.offsets[0] == 0 and seqs.offsets[-1] == len(seqs.items)
    assert np.all(np.diff(seqs.offsets) >= 1)
    for name in ("items", "actions", "timestamps", "gaps", "sessions"):
        arr = getattr(seqs, name)
        assert isinstance(arr, np.ndarray) and arr.dtype != object and len(arr) == seqs.n_events
    rows = seqs.row_of_events()
    same = rows[1:] == rows[:-1]
    assert np.all(np.diff(seqs.timestamps)[same] >= 0)  # time order within customer


def test_sessionization_by_gap_and_gaps_kept() -> None:
    t0 = 1_700_000_000
    ev = _events(
        [
            ("a", t0, "view", "x"),
            ("a", t0 + 60, "view", "y"),
            ("a", t0 + 60 + 31 * 60, "view", "z"),
            ("b", t0, "view", "x"),
        ]
    )
    seqs, _, rep = load_sequences(ev)
    a = seqs.history(seqs.vocab.customer_index("a"))
    assert list(a["sessions"]) == [0, 0, 1]
    assert list(a["gaps"]) == [0, 60, 31 * 60]
    assert rep.n_sessions == 3
    seqs2, _, _ = load_sequences(ev, IngestConfig(session_gap_minutes=45))
    assert list(seqs2.history(seqs2.vocab.customer_index("a"))["sessions"]) == [0, 0, 0]


def test_sessionization_by_session_ids() -> None:
    t0 = 1_700_000_000
    ev = _events([("a", t0, "view", "x"), ("a", t0 + 10, "view", "y"), ("a", t0 + 20, "view", "z")])
    ev["session_id"] = ["s1", "s2", "s2"]
    seqs, _, rep = load_sequences(ev)
    assert list(seqs.sessions) == [0, 1, 1]
    assert rep.session_source == "session ids in the data"


def test_max_history_keeps_most_recent_and_counts() -> None:
    t0 = 1_700_000_000
    ev = _events([("a", t0 + i, "view", f"i{i}") for i in range(10)] + [("b", t0, "view", "i0")])
    seqs, _, rep = load_sequences(ev, IngestConfig(max_history=4))
    assert rep.truncated_events == 6 and rep.truncated_customers == 1
    a = seqs.history(seqs.vocab.customer_index("a"))
    assert [seqs.vocab.item_ids[i] for i in a["items"]] == ["i6", "i7", "i8", "i9"]
    assert a["gaps"][0] == 0


def test_prefix_and_select(seqs: Sequences) -> None:
    rows = np.array([3, 0, 5])
    ends = np.array([2, 1, 0])
    p = seqs.prefix(rows, ends)
    assert list(p.lengths) == [2, 1, 0]
    np.testing.assert_array_equal(p.items[:2], seqs.history(3)["items"][:2])
    assert p.items[2] == seqs.history(0)["items"][0]
    whole = seqs.select(rows)
    assert list(whole.lengths) == list(seqs.lengths[rows])


def test_save_load_roundtrip_without_pickle(seqs: Sequences, tmp_path: Path) -> None:
    seqs.save(tmp_path / "s")
    files = sorted(f.name for f in (tmp_path / "s").iterdir())
    assert files == ["sequences.safetensors", "vocab.json"]
    back = Sequences.load(tmp_path / "s")
    for name in ("offsets", "items", "actions", "timestamps", "gaps", "sessions"):
        np.testing.assert_array_equal(getattr(back, name), getattr(seqs, name))
    assert list(back.vocab.item_ids) == list(seqs.vocab.item_ids)
    assert back.vocab.action_names == seqs.vocab.action_names


def test_encode_histories_for_new_customer(seqs: Sequences) -> None:
    item = seqs.vocab.item_ids[0]
    raw = pd.DataFrame(
        {
            "customer_id": ["new", "new", "new"],
            "item_id": [item, "never-seen", item],
            "action": ["view", "view", "cart"],
            "timestamp": [
                "2024-01-01 10:00:00 UTC",
                "2024-01-01 10:01:00 UTC",
                "2024-01-01 10:02:00 UTC",
            ],
        }
    )
    h, dropped = encode_histories(seqs.vocab, raw)
    assert dropped["unknown item"] == 1
    assert list(h.lengths) == [2] and h.customers[0] == -1
    assert [seqs.vocab.action_names[a] for a in h.actions] == ["view", "add_cart"]
    assert h.gaps[1] == 120.0
