"""funnelrec's own models as contenders, run exactly like a peer (own process, same files out).

    python -m benchmarks.peers.funnelrec_peer HANDOFF funnel|sasrec|gru4rec OUT_DIR --dataset NAME

The funnel model needs what the hand-off leaves out on purpose for item-only peers (actions,
time gaps, sessions), so this runner rebuilds the split from the data set with the same code
and checks it against the hand-off's fingerprint before training.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.peers import handoff
from funnelrec.models import MODELS, FunnelModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("handoff")
    ap.add_argument("model", choices=["funnel", "sasrec", "gru4rec"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from benchmarks.compare import load_split, split_fingerprint

    h = handoff.load(args.handoff)
    sp, mask = load_split(args.dataset, args.data)
    if split_fingerprint(sp) != h.meta["fingerprint"]:
        raise SystemExit("the rebuilt split differs from the hand-off; rebuild the hand-off")
    args.out.mkdir(parents=True, exist_ok=True)
    model = MODELS[args.model](seed=args.seed)
    started = time.perf_counter()
    valid = (sp.valid.contexts(sp.full), sp.valid.targets) if len(sp.valid) else None
    if isinstance(model, FunnelModel):
        model.fit(sp.train, valid=valid, mask_history=mask)
    else:
        model.fit(sp.train)
    fit_seconds = time.perf_counter() - started
    extra = {}
    if getattr(model, "history_", None):
        best = model.best_epoch_
        extra = {
            "best_epoch": best,
            "seconds_to_best_epoch": model.seconds_to_best_,
            "covisit_seconds": model.covisit_seconds_,
            "covisit_weight": float(model.net_.co_scale),
            "epochs_run": len(model.history_),
        }

    n = len(sp.test)
    scores, commit = handoff.score_writer(args.out / "scores.npy", n, sp.full.n_items)
    started = time.perf_counter()
    for lo in range(0, n, 512):
        sl = slice(lo, min(lo + 512, n))
        scores[sl] = model.score(sp.test.contexts(sp.full, sl))
    score_seconds = time.perf_counter() - started
    commit()
    handoff.write_result(
        args.out / "result.json",
        {
            "library": "funnelrec",
            "model": args.model,
            "fit_seconds": fit_seconds,
            "seconds_to_best_epoch": fit_seconds,
            **extra,
            "score_seconds": score_seconds,
            "params": {
                k: v
                for k, v in model.get_params().items()
                if isinstance(v, int | float | str | bool)
            },
        },
    )


if __name__ == "__main__":
    main()
