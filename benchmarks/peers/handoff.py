"""The files that cross between funnelrec's environment and each peer's (stdlib + numpy only).

Why: peers such as RecBole only import with old pins (numpy<2, ...), so they run in their own
virtual environments. The split is made once by funnelrec's harness and handed over as NPY
arrays; each peer hands back a full-catalogue score matrix (NPY) and a small JSON of timings.
Test targets never cross: the parent keeps them and scores every peer with one metric code.

Layout of a hand-off folder:
    meta.json                                 n_items, n_customers, action names, target, ...
    {train,valid,test}_{offsets,items,actions,times}.npy   ragged sequences (CSR-style)
    {valid,test}_rows.npy                     customer row of each case (row in train)
    valid_targets.npy                         validation targets (peers may early-stop on them)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARTS = ("train", "valid", "test")
FIELDS = ("offsets", "items", "actions", "times")


@dataclass
class Ragged:
    """Sequences as flat arrays: events of row r are `items[offsets[r]:offsets[r + 1]]`."""

    offsets: np.ndarray
    items: np.ndarray
    actions: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, r: int) -> np.ndarray:
        return self.items[self.offsets[r] : self.offsets[r + 1]]

    def rows(self, lo: int, hi: int) -> Ragged:
        """Rows lo..hi-1 as their own Ragged (views, offsets restarted at 0)."""
        a, b = self.offsets[lo], self.offsets[hi]
        return Ragged(
            self.offsets[lo : hi + 1] - a, self.items[a:b], self.actions[a:b], self.times[a:b]
        )

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))


@dataclass
class Handoff:
    meta: dict
    train: Ragged
    valid: Ragged
    test: Ragged
    valid_rows: np.ndarray
    valid_targets: np.ndarray
    test_rows: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])


def load(folder: str | Path) -> Handoff:
    folder = Path(folder)
    parts = {
        p: Ragged(*(np.load(folder / f"{p}_{f}.npy", allow_pickle=False) for f in FIELDS))
        for p in PARTS
    }
    return Handoff(
        meta=json.loads((folder / "meta.json").read_text()),
        **parts,
        valid_rows=np.load(folder / "valid_rows.npy", allow_pickle=False),
        valid_targets=np.load(folder / "valid_targets.npy", allow_pickle=False),
        test_rows=np.load(folder / "test_rows.npy", allow_pickle=False),
    )


def save_array(path: Path, array: np.ndarray) -> None:
    """Atomic NPY write (temp file + rename)."""
    with atomic(path) as tmp:
        np.save(tmp, array, allow_pickle=False)


@contextmanager
def atomic(path: Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def score_writer(path: Path, n_rows: int, n_items: int):
    """A float32 (n_rows, n_items) memory-mapped NPY to fill batch by batch, then `commit()`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_rows, n_items))

    def commit() -> None:
        mm.flush()
        os.replace(tmp, path)

    return mm, commit


def write_result(path: Path, result: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)


class EpochClock:
    """Wall-clock seconds since fit start at each validation, to find time-to-best-epoch."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.epochs: list[dict] = []

    def record(self, score: float) -> None:
        self.epochs.append(
            {"epoch": len(self.epochs) + 1, "valid": score, "seconds": self.elapsed()}
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def best(self) -> dict | None:
        """First epoch with the highest validation score (what early stopping keeps)."""
        if not self.epochs:
            return None
        return max(self.epochs, key=lambda e: (e["valid"], -e["epoch"]))
