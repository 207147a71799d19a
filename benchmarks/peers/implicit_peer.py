"""implicit's ALS and BPR on a hand-off folder, with the library's default hyperparameters.

    python benchmarks/peers/implicit_peer.py HANDOFF als|bpr OUT_DIR

Each customer's training events become a count matrix (the "flattened" view). ALS re-solves a
test customer's factors from the full test context (`recalculate_user`), as a user of the
library would for fresh events; BPR cannot, so it scores with the customer's trained factors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handoff


def counts(r: handoff.Ragged, n_rows: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(len(r.items), dtype=np.float32), (r.row_ids(), r.items)), shape=(n_rows, n_items)
    )
    m.sum_duplicates()
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("handoff")
    ap.add_argument("model", choices=["als", "bpr"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    h = handoff.load(args.handoff)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    user_items = counts(h.train, len(h.train), h.n_items)
    cls = AlternatingLeastSquares if args.model == "als" else BayesianPersonalizedRanking
    model = cls(random_state=args.seed)
    model.fit(user_items, show_progress=False)
    fit_seconds = time.perf_counter() - started

    n = len(h.test)
    scores, commit = handoff.score_writer(args.out / "scores.npy", n, h.n_items)
    started = time.perf_counter()
    batch = 1024
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        rows = h.test_rows[lo:hi]
        if args.model == "als":
            part = h.test.rows(lo, hi)
            ctx = counts(part, hi - lo, h.n_items)
            users = model.recalculate_user(np.arange(hi - lo), ctx)
        else:
            users = model.user_factors[rows]
        scores[lo:hi] = np.asarray(users @ model.item_factors.T, dtype=np.float32)
    score_seconds = time.perf_counter() - started
    commit()
    params = {k: getattr(model, k) for k in ("factors", "regularization", "iterations")}
    handoff.write_result(
        args.out / "result.json",
        {
            "library": "implicit",
            "model": args.model,
            "fit_seconds": fit_seconds,
            "seconds_to_best_epoch": fit_seconds,  # no validation: a fixed number of iterations
            "score_seconds": score_seconds,
            "params": {k: v for k, v in params.items() if isinstance(v, int | float)},
        },
    )


if __name__ == "__main__":
    main()
