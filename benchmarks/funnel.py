"""The funnel model against item-only SASRec, GRU4Rec, every baseline and its own ablations.

Why: issue 3's figures (docs/benchmarks.md) - quality with bootstrap intervals on funnel data,
Beauty under the published protocol, training time to the best validation epoch, and the
latency of `update()`.

    python -m benchmarks.funnel --only generator,taobao,jdata --out benchmarks/results/funnel.json
    python -m benchmarks.funnel --only beauty --models funnel,sasrec
    python -m benchmarks.funnel --only beauty --models funnel,sasrec --dropout 0.5
    python -m benchmarks.funnel --latency
    python -m benchmarks.funnel --latency --latency-items 100000 --latency-customers 40000
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from funnelrec.config import SplitConfig
from funnelrec.evaluate import bootstrap_ci, evaluate, make_split
from funnelrec.models import MODELS, FunnelModel
from funnelrec.sequences import load_sequences

from .baselines import DEFAULT_DATA, ROOT, datasets, load_dataset

ABLATIONS = {
    "funnel_no_actions": partial(FunnelModel, use_actions=False),
    "funnel_no_gaps": partial(FunnelModel, use_gaps=False),
    "funnel_no_removals": partial(FunnelModel, drop_actions=("remove_cart",)),
    "funnel_no_bottleneck": partial(FunnelModel, bottleneck=False),
    "funnel_no_neighbours": partial(FunnelModel, neighbours=False),
    "funnel_no_history": partial(FunnelModel, history=False),
    "funnel_no_covisit": partial(FunnelModel, covisit_window=0),
}
# Amazon review sets are scored like the published numbers: history items excluded.
MASKED = {"beauty", "sports", "toys", "video_games"}


def split_with_valid(seqs, target: str) -> tuple:
    """Leave-one-out split and its validation (contexts, targets), None without cases."""
    sp = make_split(seqs, SplitConfig(protocol="loo", target=target))
    valid = (sp.valid.contexts(sp.full), sp.valid.targets) if len(sp.valid) else None
    return sp, valid


def run_dataset(
    name: str, data: Path, targets: list[str], models: list[str], dropout: float | None = None
) -> dict:
    seqs = load_dataset(name, data)
    out = {}
    for target in targets:
        sp, valid = split_with_valid(seqs, target)
        rows = {}
        for m in models:
            make = ABLATIONS.get(m) or MODELS[m]
            model = make()
            if dropout is not None and isinstance(model, FunnelModel):
                model = make(dropout=dropout)
                m = f"{m}[dropout={dropout}]"
            started = time.perf_counter()
            if isinstance(model, FunnelModel):
                model.fit(sp.train, valid=valid, mask_history=name in MASKED)
            else:
                model.fit(sp.train)
            fit_s = time.perf_counter() - started
            res = evaluate(model, sp, mask_history=name in MASKED, keep_ranks=True)
            lo, hi = bootstrap_ci(res["ranks"])
            row = {**res["metrics"], "NDCG@10_ci95": [lo, hi], "fit_seconds": fit_s}
            if isinstance(model, FunnelModel):
                best = model.best_epoch_
                row["best_epoch"] = best
                row["seconds_to_best_epoch"] = model.seconds_to_best_
                row["covisit_weight"] = float(model.net_.co_scale)
                row["epochs_run"] = len(model.history_)
                if m == "funnel":
                    row["action_weights"] = model.action_weights()
            rows[m] = row
            print(
                f"{name}/{sp.target} {m}: NDCG@10 {row['NDCG@10']:.4f} "
                f"[{lo:.4f}, {hi:.4f}] HR@10 {row['HR@10']:.4f} fit {fit_s:.0f}s",
                flush=True,
            )
        out[f"{name}/{sp.target}"] = {
            "split": sp.describe(),
            "masked": name in MASKED,
            "models": rows,
        }
    return out


def latency(n_updates: int = 10_000, n_items: int = 500, n_customers: int = 2000) -> dict:
    """p50 / p99 of `update()` (one customer, one event) on a model fitted to generated data.

    The vocabulary holds the items with events: more customers touch more of `n_items`.
    """
    from funnelrec.datasets import generate_funnel

    data = generate_funnel(n_customers=n_customers, n_items=n_items, seed=0)
    seqs = load_sequences(data.events)[0]
    sp = make_split(seqs, SplitConfig(target="purchase"))
    model = FunnelModel(epochs=2).fit(sp.train)
    # Time the worst case: the covisit term on (validation may have picked weight 0 here).
    if float(model.net_.co_scale) == 0.0:
        model.net_.co_scale.fill_(1.0)
        model.net_.train(False)
    rng = np.random.default_rng(0)
    items = seqs.vocab.item_ids
    customers = seqs.vocab.customer_ids
    actions = np.array(["view", "add_cart", "remove_cart", "purchase"])
    times = np.empty(n_updates)
    t0 = 2.0e9
    for i in range(n_updates):
        ev = pd.DataFrame(
            {
                "item_id": [items[rng.integers(len(items))]],
                "action": [actions[rng.integers(4)]],
                "timestamp": [t0 + i],
            }
        )
        cid = str(customers[rng.integers(len(customers))])
        started = time.perf_counter()
        model.update(cid, ev, k=10)
        times[i] = (time.perf_counter() - started) * 1000
    return {
        "n_updates": n_updates,
        "n_items": int(seqs.n_items),
        "n_customers": n_customers,
        "history_len": model.history_len,
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
    }


def split_heading(name: str, sp: dict, masked: bool) -> str:
    """The '#### name — N test cases ...' line above each results table."""
    return f"#### {name} — {sp['test_cases']:,} test cases, LOO, target {sp['target']}" + (
        ", history items excluded" if masked else ""
    )


def markdown(results: dict) -> str:
    """Tables for docs/benchmarks.md from the results file."""
    lines = []
    for key, r in results.items():
        if key.startswith("update_latency"):
            continue
        sp = r["split"]
        lines += [
            split_heading(key, sp, r["masked"]),
            "",
            "| model | HR@10 | NDCG@10 | NDCG@10 95% CI | MRR | fit s | best epoch |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, v in sorted(r["models"].items(), key=lambda kv: -kv[1]["NDCG@10"]):
            lo, hi = v["NDCG@10_ci95"]
            lines.append(
                f"| {m} | {v['HR@10']:.4f} | {v['NDCG@10']:.4f} | [{lo:.4f}, {hi:.4f}] "
                f"| {v['MRR']:.4f} | {v['fit_seconds']:.0f} | "
                f"{v.get('best_epoch', '')} |"
            )
        w = r["models"].get("funnel", {}).get("action_weights")
        if w:
            lines += [
                "",
                "Learned action weights (funnel): "
                + ", ".join(
                    f"{a} gate {x['input_gate']:+.2f} / history {x['history_weight']:+.2f}"
                    for a, x in w.items()
                ),
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--only", default="generator,taobao,jdata")
    ap.add_argument(
        "--models",
        default="funnel,sasrec,gru4rec,pop,recent_items,repeat,"
        "itemknn,markov,als,bpr,funnel_no_actions,funnel_no_gaps,"
        "funnel_no_removals,funnel_no_bottleneck",
    )
    ap.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout of the neural models (named in results)",
    )
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--latency-items", type=int, default=500)
    ap.add_argument("--latency-customers", type=int, default=2000)
    ap.add_argument("--markdown", action="store_true", help="print tables from --out and stop")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "funnel.json")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.markdown:
        print(markdown(results))
        return
    if args.latency:
        key = "update_latency" + (f"_{args.latency_items}" if args.latency_items != 500 else "")
        key += f"_c{args.latency_customers}" if args.latency_customers != 2000 else ""
        results[key] = latency(n_items=args.latency_items, n_customers=args.latency_customers)
        print(results[key])
    else:
        only = [s for s in args.only.split(",") if s]
        models = [m for m in args.models.split(",") if m]
        for name, (_, targets) in datasets(args.data).items():
            if name in only:
                runs = run_dataset(name, args.data, targets[:1], models, args.dropout)
                for key, new in runs.items():
                    if key in results:  # keep models measured earlier, replace re-measured
                        new["models"] = {**results[key]["models"], **new["models"]}
                    results[key] = new
                # written after every data set, so an interrupted run keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
