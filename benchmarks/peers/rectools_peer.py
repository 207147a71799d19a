"""RecTools' SASRec on a hand-off folder, with the library's default hyperparameters.

    .bench/venvs/rectools/bin/python benchmarks/peers/rectools_peer.py HANDOFF sasrec OUT_DIR

RecTools' defaults train a fixed number of epochs (3) without validation, so training time is
the whole fit. Scores come from `recommend` on a data set of the test contexts (the model maps
their items to its own ids); it returns the top `--top` items per customer, and every other
item is left at -inf, which the parent breaks as ties at random. HR@10 and NDCG@10 are exact
with any top >= 10; MRR is exact for targets inside the top list. A test context RecTools
cannot score (none of its items known to the model: RecTools' SASRec leaves out training
sequences of one event, and their items) gets no list, so every item ties for it; how many
is reported as `unscored_customers`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import handoff


def frame(r: handoff.Ragged, users: np.ndarray):
    import pandas as pd
    from rectools import Columns

    # Event order within a customer is kept through strictly increasing synthetic times.
    return pd.DataFrame(
        {
            Columns.User: users[r.row_ids()],
            Columns.Item: r.items.astype(np.int64),
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(np.arange(len(r.items)), unit="s"),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("handoff")
    ap.add_argument("model", choices=["sasrec"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=200)
    args = ap.parse_args()
    import torch
    from rectools import Columns
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel

    torch.manual_seed(args.seed)
    h = handoff.load(args.handoff)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train = Dataset.construct(frame(h.train, np.arange(len(h.train))))
    model = SASRecModel()
    model.fit(train)
    fit_seconds = time.perf_counter() - started

    n = len(h.test)
    scores, commit = handoff.score_writer(args.out / "scores.npy", n, h.n_items)
    started = time.perf_counter()
    batch = 4096
    top = min(args.top, h.n_items)
    unscored = 0
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        part = h.test.rows(lo, hi)
        ds = Dataset.construct(frame(part, np.arange(hi - lo)))
        reco = model.recommend(
            users=np.arange(hi - lo),
            dataset=ds,
            k=top,
            filter_viewed=False,
            on_unsupported_targets="ignore",  # counted below, left unscored
        )
        unscored += (hi - lo) - reco[Columns.User].nunique()
        block = np.full((hi - lo, h.n_items), -np.inf, dtype=np.float32)
        block[reco[Columns.User].to_numpy(), reco[Columns.Item].to_numpy()] = reco[
            Columns.Score
        ].to_numpy()
        scores[lo:hi] = block
    score_seconds = time.perf_counter() - started
    commit()
    params = model.get_config(simple_types=True)
    handoff.write_result(
        args.out / "result.json",
        {
            "library": "rectools",
            "model": args.model,
            "fit_seconds": fit_seconds,
            "seconds_to_best_epoch": fit_seconds,  # fixed epochs, no validation by default
            "score_seconds": score_seconds,
            "scored_top": top,
            "unscored_customers": int(unscored),
            "params": {
                k: params[k]
                for k in (
                    "epochs",
                    "n_factors",
                    "n_blocks",
                    "batch_size",
                    "session_max_len",
                    "loss",
                    "lr",
                )
                if k in params
            },
        },
    )


if __name__ == "__main__":
    main()
