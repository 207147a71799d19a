"""Quality of several `FunnelModel` settings x seeds, each run in its own process.

Why: a candidate default (say `anchor=10.0`) must beat the current one as a median over
seeds on every data set before it becomes the default; on a machine with many cores (or a
GPU) the runs go side by side. Quality only: timings from a shared GPU are not comparable
with the CPU tables.

    python -m benchmarks.sweep --datasets beauty,toys --seeds 0,1,2 \\
        --settings '{"default": {}, "anchor10": {"anchor": 10.0}}' --device cuda --jobs 12
    python -m benchmarks.sweep --markdown          # tables from --out

Each run: the leave-one-out split of `benchmarks.baselines.datasets` (first target), early
stopping on validation NDCG@10, test metrics with funnelrec's evaluator (history items
excluded on the Amazon sets, as in the other tables). Finished runs are added to `--out` as
they end, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from funnelrec.sequences import atomic_write

from .baselines import DEFAULT_DATA, ROOT
from .funnel import MASKED


def one_run(
    dataset: str, setting: str, kw: dict, seed: int, device: str, data: Path, target: str = ""
) -> dict:
    """Fit one setting with one seed and score its test split (runs in a child process)."""
    import torch

    from funnelrec.evaluate import evaluate
    from funnelrec.models import FunnelModel

    from .baselines import datasets, load_dataset
    from .funnel import split_with_valid

    seqs = load_dataset(dataset, data)
    targets = datasets(data)[dataset][1]
    sp, valid = split_with_valid(seqs, target or targets[0])
    masked = dataset in MASKED
    model = FunnelModel(**{**kw, "seed": seed, "device": device})
    started = time.perf_counter()
    model.fit(sp.train, valid=valid, mask_history=masked)
    fit_s = time.perf_counter() - started
    metrics = evaluate(model, sp, mask_history=masked)["metrics"]
    return {
        "dataset": dataset,
        "target": sp.target,
        "setting": setting,
        "kw": kw,
        "seed": seed,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "best_epoch": model.best_epoch_,
        "valid_NDCG@10": [round(h.get("valid_NDCG@10", float("nan")), 5) for h in model.history_],
        "fit_seconds": fit_s,
        "seconds_to_best_epoch": model.seconds_to_best_,
        "covisit_weight": float(model.net_.co_scale),
        "covisit_seconds": model.covisit_seconds_,
        **{k: metrics[k] for k in ("HR@10", "NDCG@10", "MRR")},
    }


def sweep(args: argparse.Namespace) -> None:
    settings = json.loads(args.settings)
    jobs = [
        (d, name, kw, s)
        for d in args.datasets.split(",")
        for name, kw in settings.items()
        for s in (int(x) for x in args.seeds.split(","))
    ]
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, min(args.jobs, len(jobs))))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    pending, running = list(jobs), []
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            d, name, kw, s = pending.pop(0)
            cmd = [sys.executable, "-m", "benchmarks.sweep", "--one", json.dumps([d, name, kw, s])]
            cmd += ["--device", args.device, "--data", str(args.data), "--target", args.target]
            running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        time.sleep(2)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            lines = (p.stdout.read() if p.stdout else "").strip().splitlines()
            if p.returncode == 0 and lines:
                run = json.loads(lines[-1])
                _store(args.out, run)
                print(
                    f"{time.perf_counter() - started:6.0f}s {run['dataset']} {run['setting']} "
                    f"seed {run['seed']}: NDCG@10 {run['NDCG@10']:.4f} "
                    f"HR@10 {run['HR@10']:.4f} best epoch {run['best_epoch']}",
                    flush=True,
                )
            else:
                print(f"a run failed (exit {p.returncode})", flush=True)


def _store(out: Path, run: dict) -> None:
    """Add one run, replacing an earlier one of the same data set, setting and seed."""
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    key = (run["dataset"], run["setting"], run["seed"])
    runs = [r for r in runs if (r["dataset"], r["setting"], r["seed"]) != key] + [run]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda p: Path(p).write_text(json.dumps({"runs": runs}, indent=1)))


def markdown(out: Path) -> str:
    """One table per data set: median test NDCG@10 / HR@10 over seeds, per setting."""
    runs = json.loads(out.read_text())["runs"]
    lines = []
    for d, target in dict.fromkeys((r["dataset"], r.get("target", "")) for r in runs):
        mine = [r for r in runs if (r["dataset"], r.get("target", "")) == (d, target)]
        lines += [
            f"#### {d}" + (f" (target {target})" if target else ""),
            "",
            "| setting | runs | NDCG@10 median | per seed | HR@10 median | best epochs |",
            "|---|---|---|---|---|---|",
        ]
        for name in dict.fromkeys(r["setting"] for r in mine):
            rs = sorted((r for r in mine if r["setting"] == name), key=lambda r: r["seed"])
            per_seed = ", ".join(f"{r['NDCG@10']:.4f}" for r in rs)
            lines.append(
                f"| {name} `{json.dumps(rs[0]['kw'])}` | {len(rs)} "
                f"| {median(r['NDCG@10'] for r in rs):.4f} "
                f"| {per_seed} "
                f"| {median(r['HR@10'] for r in rs):.4f} "
                f"| {', '.join(str(r['best_epoch']) for r in rs)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="beauty")
    ap.add_argument("--settings", default='{"default": {}}', help="JSON: name -> FunnelModel kw")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--target", default="", help="split target (default: the data set's first)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side")
    ap.add_argument("--threads", type=int, default=0, help="per run (default: cores / jobs)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep.json")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        d, name, kw, seed = json.loads(args.one)
        print(json.dumps(one_run(d, name, kw, seed, args.device, args.data, args.target)))
    elif args.markdown:
        print(markdown(args.out))
    else:
        sweep(args)


if __name__ == "__main__":
    main()
