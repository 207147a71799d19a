"""funnelrec side by side with the libraries a user would pick instead: same split, same metrics.

Why: issue 6. A user choosing funnelrec compares it with RecBole, RecTools, implicit and a plain
SASRec; this answers with quality and cost measured on one machine, one split, one metric code.

    python -m benchmarks.compare --dataset generator --runs 3
    python -m benchmarks.compare --dataset beauty --peers funnel,recbole_sasrec --runs 1 \
        --max-seconds 5400
    python -m benchmarks.compare --markdown          # tables for docs/benchmarks.md
    python -m benchmarks.compare --plots             # redraw the plots from the results

Plots need matplotlib: `pip install -e '.[bench]'`. Peer environments are made on first use.

How:
* The split is made once with funnelrec's harness (`make_split`, leave-one-out) and handed to
  every contender as NPY files (benchmarks/peers/handoff.py). Test targets never leave this
  process.
* Each contender trains in its own process, in its own virtual environment where its pins need
  one (RecBole 1.2.1 only imports with numpy<2, pandas<3, scipy<1.12, setuptools<81; these
  environments are made here under .bench/venvs, torch==2.13.0 first so no CUDA build is
  pulled). It writes a full-catalogue score matrix for the test contexts; this process ranks
  it with `funnelrec.evaluate.evaluate_scores`, the function every funnelrec model goes through.
* Cost: wall-clock training time and time to the best validation epoch (as the contender
  reports it), scoring time per 1,000 customers, and the whole process's peak RSS (from
  `os.wait4`). Runs are interleaved (run 1 of every contender, then run 2, ...) and each
  figure is the median over runs; the ratio contender / funnel is taken within each run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import DEFAULT_DATA, ROOT, load_dataset
from benchmarks.funnel import MASKED, split_heading
from benchmarks.peers import handoff

WORK = ROOT / ".bench" / "compare"
VENVS = ROOT / ".bench" / "venvs"
RESULTS = ROOT / "benchmarks" / "results" / "compare"
PEERS_DIR = Path(__file__).resolve().parent / "peers"
TORCH = "torch==2.13.0"

# Each environment: pip steps run in order in a fresh venv (torch first: no CUDA build).
ENVS: dict[str, list[list[str]]] = {
    "recbole": [
        ["setuptools<81", "wheel"],
        [TORCH],
        ["recbole==1.2.1", "numpy<2", "pandas<3", "scipy<1.12"],
    ],
    "rectools": [["setuptools<81", "wheel"], [TORCH], ["rectools[torch]==0.19.0"]],
}


@dataclass(frozen=True)
class Contender:
    label: str
    library: str
    env: str | None  # None: funnelrec's own environment (this interpreter)
    argv: tuple[str, ...]  # script or module and its model argument

    def command(self, python: str, hand: Path, out: Path, dataset: str, extra: list[str]):
        if self.library == "funnelrec":
            return [
                python,
                "-m",
                "benchmarks.peers.funnelrec_peer",
                str(hand),
                *self.argv,
                str(out),
                "--dataset",
                dataset,
                *extra,
            ]
        script = str(PEERS_DIR / self.argv[0])
        return [python, script, str(hand), *self.argv[1:], str(out), *extra]


CONTENDERS = {
    c.label: c
    for c in (
        Contender("funnel", "funnelrec", None, ("funnel",)),
        Contender("funnelrec_sasrec", "funnelrec", None, ("sasrec",)),
        Contender("recbole_sasrec", "recbole", "recbole", ("recbole_peer.py", "SASRec")),
        Contender("recbole_bert4rec", "recbole", "recbole", ("recbole_peer.py", "BERT4Rec")),
        Contender("recbole_gru4rec", "recbole", "recbole", ("recbole_peer.py", "GRU4Rec")),
        Contender("implicit_als", "implicit", None, ("implicit_peer.py", "als")),
        Contender("implicit_bpr", "implicit", None, ("implicit_peer.py", "bpr")),
        Contender("rectools_sasrec", "rectools", "rectools", ("rectools_peer.py", "sasrec")),
    )
}
# The conversion target where the data has one worth ranking. JD's slices are 0.5-3 hour
# windows: its purchase target falls back to add-to-cart and leaves 45 test cases and no
# validation case (no early stopping for anyone), so the side-by-side ranks its next event.
TARGETS = {"generator": "purchase", "taobao": "purchase", "jdata": "any"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------ the split
def load_split(name: str, data: Path | None = None):
    """The split every contender gets: leave-one-out, the data set's usual target."""
    from funnelrec.config import SplitConfig
    from funnelrec.evaluate import make_split

    seqs = load_dataset(name, data)
    target = TARGETS.get(name, "any")
    return make_split(seqs, SplitConfig(protocol="loo", target=target)), name in MASKED


def split_fingerprint(sp) -> str:
    h = hashlib.sha256()
    for a in (sp.train.offsets, sp.train.items, sp.test.rows, sp.test.ends, sp.test.targets):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def write_handoff(sp, name: str, folder: Path) -> str:
    """Write the hand-off folder (atomically per file); returns the split's fingerprint."""
    fp = split_fingerprint(sp)
    meta_path = folder / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
        return fp
    folder.mkdir(parents=True, exist_ok=True)
    parts = {
        "train": sp.train,
        "valid": sp.valid.contexts(sp.full),
        "test": sp.test.contexts(sp.full),
    }
    for part, s in parts.items():
        arrays = {
            "offsets": s.offsets,
            "items": s.items,
            "actions": s.actions,
            "times": s.timestamps,
        }
        for field, a in arrays.items():
            handoff.save_array(folder / f"{part}_{field}.npy", np.asarray(a))
    handoff.save_array(folder / "valid_rows.npy", sp.valid.rows)
    handoff.save_array(folder / "valid_targets.npy", sp.valid.targets)
    handoff.save_array(folder / "test_rows.npy", sp.test.rows)
    meta = {
        "dataset": name,
        "fingerprint": fp,
        "n_items": int(sp.full.n_items),
        "n_customers": len(sp.full),
        "action_names": list(sp.full.vocab.action_names),
        **sp.describe(),
    }
    handoff.write_result(meta_path, meta)
    return fp


# ------------------------------------------------------------------------------ environments
def python_for(env: str | None) -> str:
    if env is None:
        return sys.executable
    venv = VENVS / env
    marker = venv / ".ok"
    want = json.dumps(ENVS[env])
    if not (marker.exists() and marker.read_text() == want):
        log(f"making the {env} environment in {venv} (once)")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        for step in ENVS[env]:
            subprocess.run([*pip, *step], check=True)
        marker.write_text(want)
    return str(venv / "bin" / "python")


# ------------------------------------------------------------------------------ one run
def run_one(
    c: Contender,
    name: str,
    hand: Path,
    out: Path,
    extra: list[str],
    timeout: float,
    threads: int | None = None,
):
    """Train and score one contender in its own process; wall time and peak RSS from wait4."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = c.command(python_for(c.env), hand, out, name, extra)
    # This checkout first, so a copy of the repository (a git worktree) benchmarks its own code.
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    started = time.perf_counter()
    with open(out / "log.txt", "w") as logf:
        # Peers run in their run folder: RecBole writes log/ and log_tensorboard/ into its cwd.
        cwd = ROOT if c.library == "funnelrec" else out
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not (out / "result.json").exists():
        tail = (out / "log.txt").read_text()[-3000:]
        raise RuntimeError(f"{c.label} failed (exit {code}); log tail:\n{tail}")
    result = json.loads((out / "result.json").read_text())
    result["wall_seconds"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    return result


def score_file(sp, mask: bool, path: Path) -> dict:
    from funnelrec.evaluate import bootstrap_ci, evaluate_scores

    scores = np.load(path, mmap_mode="r")
    if scores.shape != (len(sp.test), sp.full.n_items):
        raise ValueError(
            f"{path}: shape {scores.shape}, expected {(len(sp.test), sp.full.n_items)}"
        )
    res = evaluate_scores(lambda _, sl: scores[sl], sp, mask_history=mask, keep_ranks=True)
    lo, hi = bootstrap_ci(res.pop("ranks"))
    return {**res["metrics"], "NDCG@10_ci95": [lo, hi]}


# ------------------------------------------------------------------------------ summary
def median(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def median_run_ci(per_run: list[dict], ndcg: float) -> list[float]:
    """The bootstrap interval of the run whose NDCG@10 is the median (nearest to it)."""
    run = min(per_run, key=lambda r: abs(r["metrics"]["NDCG@10"] - ndcg))
    return run["metrics"]["NDCG@10_ci95"]


def summarise(runs: dict[str, list[dict]], n_test: int) -> dict[str, dict]:
    out = {}
    for label, rs in runs.items():
        s: dict[str, Any] = {"runs": len(rs)}
        for key in ("HR@10", "NDCG@10", "MRR"):
            s[key] = median([r["metrics"][key] for r in rs])
        s["NDCG@10_ci95"] = median_run_ci(rs, s["NDCG@10"])
        for key in ("fit_seconds", "seconds_to_best_epoch", "wall_seconds", "peak_rss_mb"):
            s[key] = median([r.get(key) for r in rs])
        s["score_ms_per_1000"] = median([1e6 * r["score_seconds"] / n_test for r in rs])
        s["best_epoch"] = median([r.get("best_epoch") for r in rs])
        s["epochs_run"] = median([r.get("epochs_run") for r in rs])
        s["stopped_by"] = sorted({r.get("stopped_by", "") for r in rs} - {""})
        s["library"] = rs[0]["library"]
        s["params"] = rs[0].get("params", {})
        out[label] = s
    base = runs.get("funnel")
    if base:
        # How many times the funnel model's figure the contender needs, run by run.
        for label, rs in runs.items():
            pairs = list(zip(base, rs, strict=False))
            for key in ("seconds_to_best_epoch", "fit_seconds", "peak_rss_mb"):
                ratios = [r[key] / b[key] for b, r in pairs if b.get(key) and r.get(key)]
                out[label][f"peer_over_funnel_{key}"] = median(ratios)
    return out


def plot(name: str, summary: dict[str, dict], path: Path, threads: int | None) -> None:
    """Quality against training time to the best epoch (log scale), one point per contender."""
    try:
        import matplotlib
    except ImportError:
        log("no plot: matplotlib is missing (pip install -e '.[bench]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, s in summary.items():
        x, y = s["seconds_to_best_epoch"], s["NDCG@10"]
        colour = "tab:red" if s["library"] == "funnelrec" else "tab:blue"
        ax.scatter([x], [y], color=colour, s=40)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training time to best validation epoch, s (log)")
    ax.set_ylabel("NDCG@10 (test, full ranking)")
    cpu = f"{threads} thread(s) each" if threads else "2-core CPU"
    ax.set_title(f"{name}: quality vs training time ({cpu})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    plt.close(fig)


def replot() -> list[Path]:
    """Redraw every data set's plot from its results file, without training anything.

    Why: a results file is also updated by hand-run invocations on a machine without
    matplotlib; its plot should not stay behind the table."""
    drawn = []
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        threads = {run.get("threads") for c in r["contenders"].values() for run in c["per_run"]}
        one = threads.pop() if len(threads) == 1 else None
        plot(r["dataset"], r["contenders"], path.with_suffix(".png"), one)
        drawn.append(path.with_suffix(".png"))
    return drawn


def markdown() -> str:
    lines = []
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        sp = r["split"]
        lines += [
            split_heading(r["dataset"], sp, r["masked"]),
            "",
            "Commands (each row is the median over its runs, made by one or more of them):",
            "",
            *sorted(
                {
                    f"- `{cmd}` ({c['date']})"
                    for c in r["contenders"].values()
                    for cmd in commands_of(c)
                }
            ),
            "",
            "| contender | runs | HR@10 | NDCG@10 | 95% CI (median run) | MRR | s to best epoch "
            "| × funnel's time | fit s | ms / 1k scored | peak RSS MB | epochs (best) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, s in sorted(r["contenders"].items(), key=lambda kv: -kv[1]["NDCG@10"]):
            lo, hi = s["NDCG@10_ci95"]
            ratio = s.get("peer_over_funnel_seconds_to_best_epoch")
            ratio_s = "" if ratio is None else f"{ratio:.2g}"
            if s.get("ratio_across_invocations"):
                ratio_s += "*"
            ep = f"{s['epochs_run']:.0f} ({s['best_epoch']:.0f})" if s.get("epochs_run") else ""
            if s.get("stopped_by") and s["stopped_by"] != ["early stop"]:
                ep += f", {'/'.join(s['stopped_by'])}"
            lines.append(
                f"| {label} | {s['runs']} | {s['HR@10']:.4f} | {s['NDCG@10']:.4f} "
                f"| [{lo:.4f}, {hi:.4f}] "
                f"| {s['MRR']:.4f} | {s['seconds_to_best_epoch']:.0f} "
                f"| {ratio_s} | {s['fit_seconds']:.0f} "
                f"| {s['score_ms_per_1000']:.0f} | {s['peak_rss_mb']:.0f} | {ep} |"
            )
        lines += (
            [
                "",
                "\\* ratio of medians from separate invocations (not paired within one run).",
            ]
            if any(c.get("ratio_across_invocations") for c in r["contenders"].values())
            else []
        )
        lines += ["", f"![{r['dataset']}](../benchmarks/results/compare/{path.stem}.png)", ""]
    return "\n".join(lines)


def stored_runs(entry: dict | None, new: list[dict]) -> list[dict]:
    """The stored runs of a results entry whose seeds are not among `new`'s.

    Runs stored before seeds were recorded used seeds 0, 1, ... in order.
    """
    if not entry:
        return []
    seeds = {r["seed"] for r in new}
    pairs = enumerate(zip(entry["per_run"], entry["epochs"], strict=True))
    return [
        {**r, "seed": r.get("seed", j), "epochs": e}
        for j, (r, e) in pairs
        if r.get("seed", j) not in seeds
    ]


def commands_of(entry: dict) -> list[str]:
    """The commands whose runs a results entry holds (older files keep one `command`)."""
    return entry.get("commands") or [entry["command"]]


def save(args: argparse.Namespace, sp, mask: bool, runs: dict[str, list[dict]]) -> Path:
    """Merge this invocation's runs into the data set's results file (after every run)."""
    runs = {k: v for k, v in runs.items() if v}
    command = "python -m benchmarks.compare " + " ".join(sys.argv[1:])
    path = RESULTS / f"{args.dataset}.json"
    # Contenders accumulate across invocations (RecBole on Beauty is one run of an hour).
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("split_fingerprint") != split_fingerprint(sp):
        old = {}
    contenders = old.get("contenders", {})
    if args.first_seed:  # more seeds for entries made before: summarise over all runs
        runs = {label: stored_runs(contenders.get(label), rs) + rs for label, rs in runs.items()}
    summary = summarise(runs, len(sp.test))
    for label, rs in runs.items():
        earlier = commands_of(contenders[label]) if args.first_seed and label in contenders else []
        contenders[label] = {
            **summary[label],
            "commands": [c for c in earlier if c != command] + [command],
            "date": time.strftime("%Y-%m-%d"),
            "per_run": [{k: v for k, v in r.items() if k != "epochs"} for r in rs],
            "epochs": [r.get("epochs") for r in rs],
        }
    funnel = contenders.get("funnel")
    for label, c in contenders.items():
        key = "peer_over_funnel_seconds_to_best_epoch"
        rerun = "funnel" in runs and label not in runs  # its pairing is gone
        if funnel and (key not in c or c.get("ratio_across_invocations") or rerun):
            # Not measured in the same invocation as the funnel model: ratio of medians.
            c[key] = c["seconds_to_best_epoch"] / funnel["seconds_to_best_epoch"]
            c["ratio_across_invocations"] = label not in runs or "funnel" not in runs
    result = {
        "dataset": args.dataset,
        "masked": mask,
        "split": sp.describe(),
        "split_fingerprint": split_fingerprint(sp),
        "machine": f"{os.cpu_count()} cores",
        "contenders": contenders,
    }
    handoff.write_result(path, result)
    plot(args.dataset, contenders, path.with_suffix(".png"), args.threads)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="generator")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--peers",
        default="funnel,funnelrec_sasrec,recbole_sasrec,recbole_bert4rec,recbole_gru4rec,"
        "implicit_als,implicit_bpr,rectools_sasrec",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first run; above 0, the runs are added to the stored ones",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="training budget per RecBole run (then its best checkpoint is used)",
    )
    ap.add_argument("--timeout", type=float, default=4 * 3600.0, help="kill a run after this")
    ap.add_argument(
        "--recbole-salvage",
        type=Path,
        default=None,
        help="run folder of a killed RecBole run: score its best checkpoint, no training",
    )
    ap.add_argument(
        "--recbole-resume",
        type=Path,
        default=None,
        help="run folder of a killed or budget-stopped RecBole run: go on training it",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS/torch threads per contender (default: the libraries' own choice)",
    )
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--plots", action="store_true", help="redraw the plots from the results")
    args = ap.parse_args()
    if args.plots:
        for path in replot():
            log(f"drew {path}")
        return
    if args.markdown:
        print(markdown())
        return
    labels = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(labels) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; known: {sorted(CONTENDERS)}")

    log(f"{args.dataset}: making the split")
    sp, mask = load_split(args.dataset, args.data)
    hand = WORK / args.dataset / "handoff"
    write_handoff(sp, args.dataset, hand)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {label: [] for label in labels}
    for i in range(args.first_seed, args.first_seed + args.runs):
        for label in labels:
            c = CONTENDERS[label]
            extra = ["--seed", str(i)]
            if c.library == "recbole" and args.max_seconds:
                extra += ["--max-seconds", str(args.max_seconds)]
            if c.library == "recbole" and args.recbole_salvage:
                extra += ["--salvage", str(args.recbole_salvage.resolve())]
            if c.library == "recbole" and args.recbole_resume:
                extra += ["--resume", str(args.recbole_resume.resolve())]
            if c.library == "funnelrec" and args.data != DEFAULT_DATA:
                extra += ["--data", str(args.data)]
            out = WORK / args.dataset / "runs" / f"{label}-{i}-{os.getpid()}"
            log(f"{args.dataset} seed {i} ({args.runs} run(s) from {args.first_seed}): {label}")
            r = run_one(c, args.dataset, hand, out, extra, args.timeout, args.threads)
            r["threads"] = args.threads
            r["seed"] = i
            r["metrics"] = score_file(sp, mask, out / "scores.npy")
            (out / "scores.npy").unlink()  # up to ~1 GB each; the metrics are kept
            runs[label].append(r)
            save(args, sp, mask, runs)
            log(
                f"  NDCG@10 {r['metrics']['NDCG@10']:.4f} HR@10 {r['metrics']['HR@10']:.4f} "
                f"to best {r['seconds_to_best_epoch']:.0f}s fit {r['fit_seconds']:.0f}s "
                f"RSS {r['peak_rss_mb']:.0f} MB"
            )
    path = save(args, sp, mask, runs)
    log(f"wrote {path} and {path.with_suffix('.png')}")
    print(markdown())


if __name__ == "__main__":
    main()
