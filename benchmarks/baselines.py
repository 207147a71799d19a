"""Every baseline on every shared data set, through funnelrec's own harness.

Why: later models must beat these figures under the same splits and the same metric code, so
they are recorded (with the command that made them) in docs/benchmarks.md.

    python -m benchmarks.baselines --out benchmarks/results/baselines.json

Data come from ../shared/data (or --data DIR); nothing is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from funnelrec.config import SplitConfig
from funnelrec.datasets import generate_funnel
from funnelrec.item_tags import attach_item_tags, read_item_tags
from funnelrec.pipeline import evaluate_sequences
from funnelrec.sequences import Sequences, load_sequences

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("FUNNELREC_DATA", ROOT.parent / "shared" / "data"))


def _concat(paths: list[Path], folder: Path) -> pd.DataFrame:
    if not paths:
        raise FileNotFoundError(
            f"no data files found in {folder}: give the data folder with --data or "
            "FUNNELREC_DATA (default: ../shared/data beside the repository)"
        )
    return pd.concat([pd.read_csv(p, dtype=str) for p in paths], ignore_index=True)


def datasets(data: Path) -> dict[str, tuple[object, list[str]]]:
    """name -> (source for load_sequences, targets to evaluate)."""
    jd = data / "jdata2016_action_heads"
    tb = data / "taobao_userbehavior"
    return {
        "generator": (generate_funnel(n_customers=3000, seed=0).events, ["purchase", "any"]),
        "taobao": (
            lambda: _concat([tb / "UserBehavior_head.csv.gz", tb / "UserBehavior_tail.csv.gz"], tb),
            ["purchase", "any"],
        ),
        "jdata": (
            lambda: _concat(sorted(jd.glob("JData_Action_*_head.csv.gz")), jd),
            ["purchase", "any"],
        ),
        "beauty": (data / "amazon_s3rec" / "Beauty.txt.gz", ["any"]),
        "sports": (data / "amazon_s3rec" / "Sports_and_Outdoors.txt.gz", ["any"]),
        "toys": (data / "amazon_s3rec" / "Toys_and_Games.txt.gz", ["any"]),
        "video_games": (data / "amazon_video_games_sasrec" / "Video.txt.gz", ["any"]),
    }


# S3-Rec item attributes (categories and brand) of the Amazon review sets: the funnel model
# reads them as item tags (item-only SASRec and the baselines do not read metadata).
ITEM_TAGS = {
    "beauty": "Beauty_item2attributes.json.gz",
    "sports": "Sports_and_Outdoors_item2attributes.json.gz",
    "toys": "Toys_and_Games_item2attributes.json.gz",
}


def load_dataset(name: str, data: Path | None = None, tags: bool = True) -> Sequences:
    """A shared data set as sequences, with its item tags where it has them."""
    data = data or DEFAULT_DATA
    source, _ = datasets(data)[name]
    seqs = load_sequences(source() if callable(source) else source)[0]
    if tags and name in ITEM_TAGS:
        attach_item_tags(seqs, read_item_tags(data / "amazon_s3rec" / ITEM_TAGS[name])[0])
    return seqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--only", default="", help="comma-separated data set names")
    ap.add_argument("--models", default="pop,recent_pop,recent_items,repeat,itemknn,markov,als,bpr")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "baselines.json")
    args = ap.parse_args()
    only = {s for s in args.only.split(",") if s}
    results: dict[str, dict] = {}
    for name, (_, targets) in datasets(args.data).items():
        if only and name not in only:
            continue
        seqs = load_dataset(name, args.data)
        for target in targets:
            started = time.perf_counter()
            res = evaluate_sequences(
                seqs, args.models, SplitConfig(protocol="loo", target=target), dataset=name
            )
            key = f"{name}/{res['target']}"
            results[key] = {
                "split": res["split"],
                "seconds": time.perf_counter() - started,
                "n_items": seqs.n_items,
                "n_customers": len(seqs),
                "models": {
                    m: {
                        "test": r["test"]["metrics"],
                        "valid_NDCG@10": r["valid"]["metrics"]["NDCG@10"],
                        "fit_seconds": r["fit_seconds"],
                    }
                    for m, r in res["models"].items()
                },
            }
            print(markdown_block(key, results[key]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(
        "\n".join(markdown_block(k, v) for k, v in results.items())
    )


def markdown_block(key: str, r: dict) -> str:
    sp = r["split"]
    lines = [
        f"#### {key} — {r['n_customers']:,} customers, {r['n_items']:,} items, "
        f"{sp['test_cases']:,} test cases (LOO, target {sp['target']})",
        "",
        "| model | HR@10 | NDCG@10 | MRR | valid NDCG@10 | fit s |",
        "|---|---|---|---|---|---|",
    ]
    rows = sorted(r["models"].items(), key=lambda kv: -kv[1]["test"]["NDCG@10"])
    for m, v in rows:
        t = v["test"]
        lines.append(
            f"| {m} | {t['HR@10']:.4f} | {t['NDCG@10']:.4f} | {t['MRR']:.4f} | "
            f"{v['valid_NDCG@10']:.4f} | {v['fit_seconds']:.2f} |"
        )
    if sp.get("note"):
        lines.append(f"\nNote: {sp['note']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
