"""Time-ordered splits that cannot leak: leave-one-out by time and a global temporal cut.

An evaluation case is (customer row, context length, target item): the model sees the first
`end` events of the customer's history and must rank the target item among all items.

- Next interaction (`target="any"`): the context ends right before the target event.
- Conversion (`target="purchase"`, or add_cart where purchases are too rare): the context ends
  before the *session* of the target event, because inside that session the same item was
  usually just viewed and carted, which gives the answer away.

Training data for every customer stops before its earliest evaluation context ends, so no
validation or test event (or anything after it) is ever learned from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnelrec.config import SplitConfig
from funnelrec.schema import ADD_CART, PURCHASE, FunnelrecError
from funnelrec.sequences import Sequences


@dataclass
class Cases:
    """Evaluation cases: `rows[j]` sees its first `ends[j]` events and should rank `targets[j]`."""

    rows: np.ndarray
    ends: np.ndarray
    targets: np.ndarray
    target_times: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def contexts(self, full: Sequences, sl: slice | None = None) -> Sequences:
        sl = sl or slice(None)
        return full.prefix(self.rows[sl], self.ends[sl])


@dataclass
class Split:
    """Training sequences plus validation and test cases, all cut from `full`."""

    full: Sequences
    train: Sequences
    valid: Cases
    test: Cases
    protocol: str
    target: str
    target_actions: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        names = [self.full.vocab.action_names[a] for a in self.target_actions]
        return {
            "protocol": self.protocol,
            "target": self.target,
            "target_actions": names,
            "train_events": self.train.n_events,
            "valid_cases": len(self.valid),
            "test_cases": len(self.test),
            **self.info,
        }


def resolve_target(
    seqs: Sequences, target: str, config: SplitConfig | None = None
) -> tuple[str, tuple[int, ...], str]:
    """Which action ids count as targets. Returns (resolved name, action ids, note)."""
    config = config or SplitConfig()
    vocab = seqs.vocab
    if target == "any":
        return "any", tuple(range(vocab.n_actions)), ""
    if target != "purchase":
        a = vocab.action_index(target)
        if a < 0:
            raise FunnelrecError(
                f"unknown target action '{target}'; the data has "
                f"{', '.join(vocab.action_names)} (or use 'any')"
            )
        return target, (a,), ""
    rows = seqs.row_of_events()
    for a in (PURCHASE, ADD_CART):
        mask = seqs.actions == a
        share = mask.mean() if len(mask) else 0.0
        n_cust = len(np.unique(rows[mask]))
        if share >= config.min_target_share and n_cust >= config.min_target_customers:
            note = (
                ""
                if a == PURCHASE
                else (
                    f"purchases too rare ({(seqs.actions == PURCHASE).mean():.2%} of events); "
                    "target falls back to add_cart"
                )
            )
            return vocab.action_names[a], (a,), note
    return (
        "any",
        tuple(range(vocab.n_actions)),
        ("purchases and add-to-carts too rare for a conversion target; using next interaction"),
    )


def make_split(seqs: Sequences, config: SplitConfig | None = None) -> Split:
    """Cut `seqs` into training sequences and validation / test cases.

    Examples
    --------
    >>> split = make_split(seqs, SplitConfig(protocol="loo", target="purchase"))  # doctest: +SKIP
    """
    config = config or SplitConfig()
    target, t_actions, note = resolve_target(seqs, config.target, config)
    rows, pos, session_start = seqs.positions()
    conversion = target != "any"
    ctx_end = session_start if conversion else pos
    candidate = np.isin(seqs.actions, t_actions) & (ctx_end >= 1)
    info: dict[str, Any] = {"note": note} if note else {}
    if config.protocol == "loo":
        valid, test, train_end = _leave_one_out(seqs, rows, ctx_end, candidate)
    elif config.protocol == "temporal":
        if not seqs.vocab.has_time:
            raise FunnelrecError(
                "a temporal split needs timestamps; this data has order only (use --split loo)"
            )
        valid, test, train_end, cuts = _temporal(seqs, rows, ctx_end, candidate, config)
        info.update(cuts)
    else:
        raise FunnelrecError(f"unknown split protocol '{config.protocol}' (loo or temporal)")
    all_rows = np.arange(len(seqs))
    train = seqs.prefix(all_rows, train_end)
    train.target_actions = t_actions
    info["customers_without_cases"] = int(len(seqs) - len(np.union1d(valid.rows, test.rows)))
    return Split(
        full=seqs,
        train=train,
        valid=valid,
        test=test,
        protocol=config.protocol,
        target=target,
        target_actions=t_actions,
        info=info,
    )


def _cases(seqs: Sequences, event_idx: np.ndarray, rows: np.ndarray, ctx_end: np.ndarray) -> Cases:
    return Cases(
        rows=rows[event_idx],
        ends=ctx_end[event_idx],
        targets=seqs.items[event_idx].astype(np.int64),
        target_times=seqs.timestamps[event_idx],
    )


def _leave_one_out(
    seqs: Sequences, rows: np.ndarray, ctx_end: np.ndarray, candidate: np.ndarray
) -> tuple[Cases, Cases, np.ndarray]:
    """Test = first target event of the last target context; validation = the one before."""
    idx = np.flatnonzero(candidate)
    r, e = rows[idx], ctx_end[idx]
    # Sort candidates by (row, context end desc, event asc) to pick per row.
    order = np.lexsort((idx, -e, r))
    idx, r, e = idx[order], r[order], e[order]
    first_of_row = np.ones(len(r), dtype=bool)
    first_of_row[1:] = r[1:] != r[:-1]
    test_idx = idx[first_of_row]
    test_end = np.zeros(len(seqs), dtype=np.int64) - 1
    test_end[r[first_of_row]] = e[first_of_row]
    earlier = e < test_end[r]  # strictly earlier context: an earlier session for conversion
    r2, e2, idx2 = r[earlier], e[earlier], idx[earlier]
    first2 = np.ones(len(r2), dtype=bool)
    first2[1:] = r2[1:] != r2[:-1]
    valid_idx = idx2[first2]
    train_end = seqs.lengths.astype(np.int64).copy()
    has_test = test_end >= 0
    train_end[has_test] = test_end[has_test]
    train_end[r2[first2]] = e2[first2]
    return (
        _cases(seqs, valid_idx, rows, ctx_end),
        _cases(seqs, test_idx, rows, ctx_end),
        train_end,
    )


def _temporal(
    seqs: Sequences,
    rows: np.ndarray,
    ctx_end: np.ndarray,
    candidate: np.ndarray,
    config: SplitConfig,
) -> tuple[Cases, Cases, np.ndarray, dict[str, float]]:
    """Train before t_valid; validation / test = first target event after each cut."""
    t_valid, t_test = np.quantile(seqs.timestamps, [config.valid_quantile, config.test_quantile])
    ts = seqs.timestamps
    train_end = np.bincount(rows[ts < t_valid], minlength=len(seqs)).astype(np.int64)

    def first_per_row(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = rows[idx][1:] != rows[idx][:-1]
        return idx[keep]

    valid_idx = first_per_row(candidate & (ts >= t_valid) & (ts < t_test))
    test_idx = first_per_row(candidate & (ts >= t_test))
    # A conversion context ends at its session's start, which may lie before the cut time:
    # training must stop there too, or it would hold the first half of that session.
    for idx in (valid_idx, test_idx):
        r = rows[idx]
        train_end[r] = np.minimum(train_end[r], ctx_end[idx])
    return (
        _cases(seqs, valid_idx, rows, ctx_end),
        _cases(seqs, test_idx, rows, ctx_end),
        train_end,
        {"t_valid": float(t_valid), "t_test": float(t_test)},
    )
