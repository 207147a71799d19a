"""Dense ids and compact per-customer event arrays (offsets + flat arrays), sessionized.

A `Sequences` holds many customers' ordered journeys the way CSR matrices hold rows: customer i's
events are `items[offsets[i]:offsets[i+1]]` (same for actions, timestamps, gaps, sessions). It
is what every model reads; models never see raw files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from funnelrec.config import IngestConfig
from funnelrec.ingest import EventTable, IngestReport, read_events
from funnelrec.schema import (
    ACTION_SYNONYMS,
    CANONICAL_ACTIONS,
    PURCHASE,
    FunnelrecError,
    InputError,
)

ARRAYS = ("offsets", "customers", "items", "actions", "timestamps", "gaps", "sessions")


@dataclass
class Vocabulary:
    """Dense id <-> raw id maps and per-item metadata, shared by every slice of one data set."""

    customer_ids: np.ndarray  # (C,) raw ids as str, index = dense id
    item_ids: np.ndarray  # (I,)
    action_names: list[str]
    item_category: np.ndarray  # (I,) int32, -1 = unknown
    item_brand: np.ndarray  # (I,) int32, -1 = unknown
    item_price: np.ndarray  # (I,) float32, NaN = unknown
    category_names: list[str] = field(default_factory=list)
    brand_names: list[str] = field(default_factory=list)
    has_time: bool = True
    # Item tags (several per item: attributes, category paths, labels), CSR-style: item i's
    # tag ids are `item_tag_ids[item_tag_offsets[i]:item_tag_offsets[i + 1]]`. None = no tags.
    item_tag_offsets: np.ndarray | None = None  # (I + 1,) int64
    item_tag_ids: np.ndarray | None = None  # int32, index into tag_names
    tag_names: list[str] = field(default_factory=list)
    _item_index: dict[str, int] | None = field(default=None, repr=False)
    _customer_index: dict[str, int] | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_actions(self) -> int:
        return len(self.action_names)

    def item_index(self, raw: str) -> int:
        """Dense id of a raw item id, or -1 when unknown."""
        if self._item_index is None:
            self._item_index = {str(v): i for i, v in enumerate(self.item_ids)}
        return self._item_index.get(str(raw), -1)

    def customer_index(self, raw: str) -> int:
        """Dense id of a raw customer id, or -1 when unknown."""
        if self._customer_index is None:
            self._customer_index = {str(v): i for i, v in enumerate(self.customer_ids)}
        return self._customer_index.get(str(raw), -1)

    def action_index(self, name: str) -> int:
        try:
            return self.action_names.index(name)
        except ValueError:
            return -1

    def tags_of(self, item: int) -> np.ndarray:
        """Tag ids of one item (dense id); empty without tags."""
        if self.item_tag_offsets is None or self.item_tag_ids is None:
            return np.zeros(0, dtype=np.int32)
        return self.item_tag_ids[self.item_tag_offsets[item] : self.item_tag_offsets[item + 1]]

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_ids": [str(x) for x in self.customer_ids],
            "item_ids": [str(x) for x in self.item_ids],
            "action_names": list(self.action_names),
            "category_names": list(self.category_names),
            "brand_names": list(self.brand_names),
            "tag_names": list(self.tag_names),
            "has_time": bool(self.has_time),
        }


@dataclass
class Sequences:
    """Ordered event histories of many customers in flat arrays.

    Attributes
    ----------
    offsets : (n + 1,) int64. Row i's events are `[offsets[i], offsets[i + 1])`.
    customers : (n,) int32 dense customer id of each row (-1 for an unknown customer).
    items, actions : (E,) int32 / int8 dense item and action ids.
    timestamps : (E,) float64 seconds since the epoch (positions for order-only data).
    gaps : (E,) float32 seconds since the customer's previous event (0 for the first).
    sessions : (E,) int32 session index within the customer's history.
    target_actions : action ids that count as targets for the data this was cut for.
    """

    offsets: np.ndarray
    customers: np.ndarray
    items: np.ndarray
    actions: np.ndarray
    timestamps: np.ndarray
    gaps: np.ndarray
    sessions: np.ndarray
    vocab: Vocabulary
    target_actions: tuple[int, ...] = (PURCHASE,)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return self.vocab.n_items

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1] - self.offsets[0]) if len(self.offsets) else 0

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_of_events(self) -> np.ndarray:
        """(E,) row index of every event."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def history(self, row: int) -> dict[str, np.ndarray]:
        """One row's events as a dict of array views."""
        lo, hi = self.offsets[row], self.offsets[row + 1]
        return {k: getattr(self, k)[lo:hi] for k in ARRAYS[2:]}

    def prefix(self, rows: np.ndarray, ends: np.ndarray) -> Sequences:
        """For each selected row keep its first `ends[j]` events (the context before a cut)."""
        rows = np.asarray(rows, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        if np.any(ends > self.lengths[rows]) or np.any(ends < 0):
            raise ValueError("prefix ends must lie within each row's length")
        starts = self.offsets[rows]
        new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(ends, out=new_offsets[1:])
        idx = np.repeat(starts - new_offsets[:-1], ends) + np.arange(new_offsets[-1])
        return self.gather(new_offsets, idx, self.customers[rows])

    def gather(self, offsets: np.ndarray, idx: np.ndarray, customers: np.ndarray) -> Sequences:
        """New rows of the events at `idx` (row i: `idx[offsets[i]:offsets[i + 1]]`).

        Gaps and session indices are kept as they are: a row that starts mid-history stays a
        window into it (prefixes, training windows).
        """
        return Sequences(
            offsets=offsets,
            customers=customers,
            items=self.items[idx],
            actions=self.actions[idx],
            timestamps=self.timestamps[idx],
            gaps=self.gaps[idx],
            sessions=self.sessions[idx],
            vocab=self.vocab,
            target_actions=self.target_actions,
        )

    def select(self, rows: np.ndarray) -> Sequences:
        """Whole histories of the selected rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.prefix(rows, self.lengths[rows])

    def suffix(self, keep: np.ndarray | int, restart: bool = False) -> Sequences:
        """Each row's last `keep[i]` events.

        With `restart` the kept events become the whole history (session indices start at 0
        and the first gap is 0), as after a truncation; without, they stay a window into a
        longer history.
        """
        keep = np.minimum(
            np.broadcast_to(np.asarray(keep, dtype=np.int64), (len(self),)), self.lengths
        )
        starts = self.offsets[1:] - keep
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(keep, out=offsets[1:])
        idx = np.repeat(starts - offsets[:-1], keep) + np.arange(offsets[-1])
        sessions, gaps = self.sessions[idx], self.gaps[idx]
        if restart:
            firsts = offsets[:-1][keep > 0]
            sessions = sessions - np.repeat(sessions[firsts], keep[keep > 0])
            gaps = gaps.copy()
            gaps[firsts] = 0.0
        return Sequences(
            offsets=offsets,
            customers=self.customers,
            items=self.items[idx],
            actions=self.actions[idx],
            timestamps=self.timestamps[idx],
            gaps=gaps,
            sessions=sessions,
            vocab=self.vocab,
            target_actions=self.target_actions,
        )

    def keep_events(self, keep: np.ndarray) -> Sequences:
        """Only the events where `keep` (E,) is True; every row stays (possibly empty).

        Gaps are re-measured between kept events, so no trace of a dropped event remains
        (ablations without an action type, items held out of training).
        """
        keep = np.asarray(keep, dtype=bool)
        rows = self.row_of_events()
        lengths = np.bincount(rows[keep], minlength=len(self))
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ts = self.timestamps[keep]
        gaps = np.zeros(len(ts), dtype=np.float32)
        gaps[1:] = np.diff(ts)
        gaps[offsets[:-1][lengths > 0]] = 0.0
        return Sequences(
            offsets=offsets,
            customers=self.customers,
            items=self.items[keep],
            actions=self.actions[keep],
            timestamps=ts,
            gaps=np.maximum(gaps, 0.0),
            sessions=self.sessions[keep],
            vocab=self.vocab,
            target_actions=self.target_actions,
        )

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per event: its row, its position in the row, and where its session starts."""
        rows = self.row_of_events()
        idx = np.arange(self.n_events)
        pos = idx - self.offsets[rows]
        boundary = pos == 0
        boundary[1:] |= self.sessions[1:] != self.sessions[:-1]
        session_start = np.maximum.accumulate(np.where(boundary, idx, 0)) - self.offsets[rows]
        return rows, pos, session_start

    def save(self, directory: str | Path) -> None:
        """Write arrays (safetensors) and vocabulary (JSON) atomically into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(getattr(self, k)) for k in ARRAYS}
        tensors["item_category"] = self.vocab.item_category.astype(np.int32)
        tensors["item_brand"] = self.vocab.item_brand.astype(np.int32)
        tensors["item_price"] = self.vocab.item_price.astype(np.float32)
        if self.vocab.item_tag_offsets is not None and self.vocab.item_tag_ids is not None:
            tensors["item_tag_offsets"] = self.vocab.item_tag_offsets.astype(np.int64)
            tensors["item_tag_ids"] = self.vocab.item_tag_ids.astype(np.int32)
        tensors["target_actions"] = np.asarray(self.target_actions, dtype=np.int32)
        atomic_write(directory / "sequences.safetensors", lambda p: save_file(tensors, p))
        atomic_write(
            directory / "vocab.json", lambda p: Path(p).write_text(json.dumps(self.vocab.to_json()))
        )

    @classmethod
    def load(cls, directory: str | Path) -> Sequences:
        """Read what `save` wrote. No code is executed (safetensors + JSON)."""
        directory = Path(directory)
        try:
            arrays = load_file(str(directory / "sequences.safetensors"))
            meta = json.loads((directory / "vocab.json").read_text())
        except (OSError, ValueError, SafetensorError) as exc:
            raise FunnelrecError(f"cannot load sequences from {directory}: {exc}") from exc
        vocab = Vocabulary(
            customer_ids=np.asarray(meta["customer_ids"], dtype=object),
            item_ids=np.asarray(meta["item_ids"], dtype=object),
            action_names=meta["action_names"],
            item_category=arrays["item_category"],
            item_brand=arrays["item_brand"],
            item_price=arrays["item_price"],
            category_names=meta["category_names"],
            brand_names=meta["brand_names"],
            has_time=meta["has_time"],
            item_tag_offsets=arrays.get("item_tag_offsets"),
            item_tag_ids=arrays.get("item_tag_ids"),
            tag_names=meta.get("tag_names", []),
        )
        return cls(
            **{k: arrays[k] for k in ARRAYS},
            vocab=vocab,
            target_actions=tuple(int(a) for a in arrays["target_actions"]),
        )


def count_matrix(seqs: Sequences, n_rows: int | None = None, rows: np.ndarray | None = None) -> Any:
    """(rows, n_items) scipy CSR matrix of event counts per history (or per given row ids)."""
    from scipy import sparse

    r = seqs.row_of_events() if rows is None else rows
    n = len(seqs) if n_rows is None else n_rows
    m = sparse.csr_matrix(
        (np.ones(seqs.n_events, np.float32), (r, seqs.items)), shape=(n, seqs.n_items)
    )
    m.sum_duplicates()
    return m


def transition_counts(seqs: Sequences, window: int = 3, top: int = 100) -> Any:
    """(n_items, n_items) scipy CSR: how often item j followed item i within `window` events
    of one history (weight 1/distance), as log(1 + count), each row cut to its `top` largest.

    Why: the item-to-item evidence of a log at full rank (a 64-dimensional product cannot
    hold every rare item's successors); cut rows keep memory and scoring time bounded.
    """
    from scipy import sparse

    rows, items = seqs.row_of_events(), seqs.items
    src, dst, val = [], [], []
    for d in range(1, window + 1):
        same = (rows[d:] == rows[:-d]) & (items[d:] != items[:-d])
        src.append(items[:-d][same])
        dst.append(items[d:][same])
        val.append(np.full(int(same.sum()), 1.0 / d, np.float32))
    n = seqs.n_items
    m = sparse.csr_matrix(
        (np.concatenate(val), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)
    )
    m.sum_duplicates()
    m.data = np.log1p(m.data)
    lengths = np.diff(m.indptr)
    if top and (lengths > top).any():
        keep = np.ones(m.nnz, bool)
        for i in np.flatnonzero(lengths > top):
            lo, hi = m.indptr[i], m.indptr[i + 1]
            keep[lo + np.argsort(-m.data[lo:hi], kind="stable")[top:]] = False
        r = np.repeat(np.arange(n), lengths)
        m = sparse.csr_matrix((m.data[keep], (r[keep], m.indices[keep])), shape=(n, n))
    return m


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # as a plain open() would (some writers make 0600)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class SequenceReport:
    """Counts from turning events into sequences."""

    n_customers: int
    n_items: int
    n_events: int
    n_sessions: int
    session_source: str
    truncated_events: int = 0
    truncated_customers: int = 0
    max_history: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_sequences(
    table: EventTable, config: IngestConfig | None = None
) -> tuple[Sequences, SequenceReport]:
    """Turn validated events (an `EventTable`) into sessionized `Sequences`.

    Dense ids follow the sorted raw ids, so they carry no information about time or frequency.
    Ties in time keep file order.
    """
    config = config or IngestConfig()
    con = table.con
    con.execute(
        "CREATE OR REPLACE TEMP TABLE cmap AS SELECT customer_id, "
        "(row_number() OVER (ORDER BY TRY_CAST(customer_id AS BIGINT) NULLS LAST, customer_id)"
        " - 1)::INTEGER AS cid FROM (SELECT DISTINCT customer_id FROM events)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE imap AS SELECT item_id, "
        "(row_number() OVER (ORDER BY TRY_CAST(item_id AS BIGINT) NULLS LAST, item_id)"
        " - 1)::INTEGER AS iid FROM (SELECT DISTINCT item_id FROM events)"
    )
    counts = con.execute(
        "SELECT action, count(*) AS n FROM events GROUP BY action ORDER BY n DESC, action"
    ).fetchall()
    extra = [a for a, _ in counts if a not in CANONICAL_ACTIONS]
    action_names = list(CANONICAL_ACTIONS) + extra
    con.register(
        "amap_df",
        pd.DataFrame({"action": action_names, "aid": np.arange(len(action_names), dtype=np.int8)}),
    )
    cols = con.execute(
        "SELECT c.cid, i.iid, a.aid, e.ts, hash(e.session_id) AS sh FROM events e "
        "JOIN cmap c USING (customer_id) JOIN imap i USING (item_id) "
        "JOIN amap_df a USING (action) ORDER BY c.cid, e.ts, e.row_no"
    ).fetchnumpy()
    cid = np.asarray(cols["cid"], dtype=np.int32)
    items = np.asarray(cols["iid"], dtype=np.int32)
    actions = np.asarray(cols["aid"], dtype=np.int8)
    ts = np.asarray(cols["ts"], dtype=np.float64)
    session_hash = np.asarray(cols["sh"], dtype=np.uint64) if table.has_session_ids else None

    customer_ids = np.asarray(
        [r[0] for r in con.execute("SELECT customer_id FROM cmap ORDER BY cid").fetchall()],
        dtype=object,
    )
    item_ids = np.asarray(
        [r[0] for r in con.execute("SELECT item_id FROM imap ORDER BY iid").fetchall()],
        dtype=object,
    )
    vocab = _vocabulary(con, customer_ids, item_ids, action_names, table.has_time)

    n_customers = len(customer_ids)
    offsets = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(cid, minlength=n_customers), out=offsets[1:])
    first = np.zeros(len(cid), dtype=bool)
    first[offsets[:-1]] = True

    gaps = np.zeros(len(ts), dtype=np.float32)
    if table.has_time:
        gaps[1:] = np.diff(ts).astype(np.float32)
        gaps[first] = 0.0
    if not table.has_time:
        boundary = np.ones(len(ts), dtype=bool)  # order only: every event stands alone
        source = "none (order-only data: one event per session)"
    elif session_hash is not None:
        boundary = first.copy()
        boundary[1:] |= session_hash[1:] != session_hash[:-1]
        source = "session ids in the data"
    else:
        boundary = first | (gaps > config.session_gap_minutes * 60.0)
        source = f"{config.session_gap_minutes:g}-minute inactivity gap"
    running = np.cumsum(boundary)
    sessions = (running - running[offsets[:-1]].repeat(np.diff(offsets))).astype(np.int32)

    seqs = Sequences(
        offsets=offsets,
        customers=np.arange(n_customers, dtype=np.int32),
        items=items,
        actions=actions,
        timestamps=ts,
        gaps=gaps,
        sessions=sessions,
        vocab=vocab,
    )
    report = SequenceReport(
        n_customers=n_customers,
        n_items=len(item_ids),
        n_events=len(ts),
        n_sessions=int(boundary.sum()),
        session_source=source,
        max_history=config.max_history,
    )
    if config.max_history and config.max_history > 0:
        lengths = seqs.lengths
        keep = np.minimum(lengths, config.max_history)
        report.truncated_events = int((lengths - keep).sum())
        report.truncated_customers = int((lengths > keep).sum())
        if report.truncated_events:
            seqs = seqs.suffix(keep, restart=True)
            report.n_events = seqs.n_events
    return seqs, report


def _vocabulary(con, customer_ids, item_ids, action_names, has_time) -> Vocabulary:
    meta = con.execute(
        "SELECT i.iid, arg_min(e.category, e.ts) FILTER (WHERE e.category IS NOT NULL) AS cat, "
        "arg_min(e.brand, e.ts) FILTER (WHERE e.brand IS NOT NULL) AS brand, "
        "median(e.price) AS price FROM events e JOIN imap i USING (item_id) GROUP BY i.iid "
        "ORDER BY i.iid"
    ).df()
    n = len(item_ids)

    def encode(values) -> tuple[np.ndarray, list[str]]:
        codes = np.full(n, -1, dtype=np.int32)
        mask = values.notna().to_numpy()
        names = sorted({str(v) for v in values[mask]})
        index = {v: k for k, v in enumerate(names)}
        codes[meta["iid"].to_numpy()[mask]] = [index[str(v)] for v in values[mask]]
        return codes, names

    category, category_names = encode(meta["cat"])
    brand, brand_names = encode(meta["brand"])
    price = np.full(n, np.nan, dtype=np.float32)
    price[meta["iid"].to_numpy()] = meta["price"].to_numpy(dtype=np.float32, na_value=np.nan)
    return Vocabulary(
        customer_ids=customer_ids,
        item_ids=item_ids,
        action_names=action_names,
        item_category=category,
        item_brand=brand,
        item_price=price,
        category_names=category_names,
        brand_names=brand_names,
        has_time=has_time,
    )


def load_sequences(
    source: str | Path | pd.DataFrame,
    config: IngestConfig | None = None,
    rejects_path: str | Path | None = None,
) -> tuple[Sequences, IngestReport, SequenceReport]:
    """Read a file (any supported layout) straight to sequences.

    Returns `(sequences, ingest_report, sequence_report)`.

    Examples
    --------
    >>> seqs, ingest, rep = load_sequences("events.csv")  # doctest: +SKIP
    """
    config = config or IngestConfig()
    table = read_events(source, config, rejects_path=rejects_path)
    try:
        seqs, rep = build_sequences(table, config)
    finally:
        table.con.close()
    if seqs.n_events == 0:
        raise InputError("no events left after ingestion", path=table.report.path)
    return seqs, table.report, rep


def _event_codes(
    vocab: Vocabulary, df: pd.DataFrame, after: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item and action codes (-1 = unknown) and seconds (NaN = unusable) of raw events."""
    if "timestamp" in _column_names(df):
        ts = to_seconds(df["timestamp"])
    else:
        ts = (0.0 if after is None else after) + 1.0 + np.arange(len(df), dtype=np.float64)
    items = np.fromiter((vocab.item_index(x) for x in df["item_id"]), np.int64, len(df))
    actions = np.fromiter(
        (
            vocab.action_index(ACTION_SYNONYMS.get(str(a).lower(), str(a).lower()))
            for a in df["action"]
        ),
        np.int64,
        len(df),
    )
    return items, actions, ts


def _column_names(df: pd.DataFrame) -> list[Hashable]:
    """The column names as a plain list: a test like `"x" in df.columns` on a frame just
    made from a few events costs tens of microseconds each (a live update makes five)."""
    return df.columns.tolist()


_UNUSABLE = ("unknown item", "unknown action", "bad timestamp")


def _unusable(items: np.ndarray, actions: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per event: why a fitted model cannot use it ("" = it can)."""
    return np.select([items < 0, actions < 0, np.isnan(ts)], list(_UNUSABLE), default="")


def unusable_events(vocab: Vocabulary, events: pd.DataFrame) -> np.ndarray:
    """Per row of `events` (canonical columns): why a model with `vocab` cannot use it, or
    "" where it can - what `encode_histories` drops, row by row (to write them aside)."""
    return _unusable(*_event_codes(vocab, events.reset_index(drop=True)))


def encode_histories(
    vocab: Vocabulary,
    events: pd.DataFrame,
    session_gap_minutes: float = 30.0,
    after: float | None = None,
) -> tuple[Sequences, dict[str, int]]:
    """Encode raw-id histories (canonical columns) with an existing vocabulary.

    This is how a new customer's journey, or new events of a known one, reach a fitted model.
    Without a `customer_id` column the events are one customer's. `timestamp` is optional:
    without it events follow `after` (the time of the customer's last known event) in row
    order. Events whose item, action or timestamp cannot be used are dropped and counted in
    the returned dict.

    Examples
    --------
    >>> hist, dropped = encode_histories(vocab, pd.DataFrame(
    ...     {"customer_id": ["new"], "item_id": ["i00001"], "action": ["view"]}))  # doctest: +SKIP
    """
    columns = _column_names(events)
    for col in ("item_id", "action"):
        if col not in columns:
            raise InputError(
                "history events lack a required column", column=col, found=f"columns {columns}"
            )
    df = events  # everything below is positional: the index is never read
    items, actions, ts = _event_codes(vocab, df, after)
    if (items < 0).any() or (actions < 0).any() or np.isnan(ts).any():
        why = _unusable(items, actions, ts)
        dropped = {r: int((why == r).sum()) for r in _UNUSABLE}
        sub = np.flatnonzero(why == "")
    else:  # every event usable (the usual case): no per-event reasons to build
        dropped, sub = dict.fromkeys(_UNUSABLE, 0), np.arange(len(items))
    if "customer_id" in columns:
        order_keys, uniq = pd.factorize(df["customer_id"].astype(str).to_numpy())
        order = sub[np.lexsort((sub, ts[sub], order_keys[sub]))]
        counts = np.bincount(order_keys[order], minlength=len(uniq))
    else:  # one customer (a live update): no grouping to do
        uniq = np.array([None], dtype=object)
        order = sub[np.argsort(ts[sub], kind="stable")]
        counts = np.array([len(order)])
    offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    t = ts[order]
    first = np.zeros(len(order), dtype=bool)
    first[offsets[:-1][counts > 0]] = True
    gaps = np.zeros(len(order), dtype=np.float32)
    if len(order):
        gaps[1:] = np.diff(t)
    gaps[first] = 0.0
    boundary = (
        first | (gaps > session_gap_minutes * 60.0)
        if vocab.has_time
        else np.ones(len(order), dtype=bool)
    )
    running = np.cumsum(boundary)
    sessions = (running - np.repeat(running[offsets[:-1][counts > 0]], counts[counts > 0])).astype(
        np.int32
    )
    seqs = Sequences(
        offsets=offsets,
        customers=np.array(
            [-1 if c is None else vocab.customer_index(c) for c in uniq], dtype=np.int32
        ),
        items=items[order].astype(np.int32),
        actions=actions[order].astype(np.int8),
        timestamps=t,
        gaps=gaps,
        sessions=sessions,
        vocab=vocab,
    )
    return seqs, dropped


_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def to_seconds(values: pd.Series) -> np.ndarray:
    """Seconds since the epoch from date-times, numbers (s/ms/us/ns by magnitude) or strings.

    Values that cannot be read become NaN one by one (never the whole column).
    """
    if not isinstance(values, pd.Series):
        values = pd.Series(values)
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf":
        # Plain numbers (a live update's usual case): pandas' dtype tests cost more than
        # the conversion itself.
        return _numeric_seconds(values.to_numpy(dtype=np.float64))
    if pd.api.types.is_datetime64_any_dtype(values):
        v = values if getattr(values.dt, "tz", None) is not None else values.dt.tz_localize("UTC")
        # pandas picks s/ms/us/ns resolution: go through a Timedelta, never assume ns.
        return ((v - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    num = values if is_num else pd.to_numeric(values, errors="coerce")
    if is_num or num.notna().sum() >= values.notna().sum():  # every present value is a number
        return _numeric_seconds(num.to_numpy(dtype=np.float64, na_value=np.nan))
    text = values.astype("string").str.replace(r"\s*(UTC|GMT)$", "+00:00", regex=True)
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    return ((parsed - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def _numeric_seconds(x: np.ndarray) -> np.ndarray:
    """Numbers as seconds: s, ms, us or ns told apart by their typical magnitude."""
    present = np.abs(x[np.isfinite(x)])
    # (np.median of one value costs more than the rest of a one-event update's timestamps)
    mag = np.median(present) if len(present) > 1 else present.sum()
    div = 1e9 if mag >= 1e17 else 1e6 if mag >= 1e14 else 1e3 if mag >= 1e11 else 1.0
    return x / div


def concat_sequences(parts: list[Sequences]) -> Sequences:
    """Rows of several Sequences (same vocabulary) one after another."""
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("nothing to concatenate")
    lengths = np.concatenate([p.lengths for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name)[p.offsets[0] : p.offsets[-1]] for p in parts])

    return Sequences(
        offsets=offsets,
        customers=np.concatenate([p.customers for p in parts]),
        items=cat("items"),
        actions=cat("actions"),
        timestamps=cat("timestamps"),
        gaps=cat("gaps"),
        sessions=cat("sessions"),
        vocab=parts[0].vocab,
        target_actions=parts[0].target_actions,
    )
