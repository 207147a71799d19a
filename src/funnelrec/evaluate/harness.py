"""The judge: every model, baselines included, is scored here the same way.

Full ranking over the whole catalogue, random tie-breaking, results per history-length bucket,
fit and scoring times measured around the model's own calls.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from funnelrec.evaluate.metrics import HISTORY_BUCKETS, bucket_of, ranking_metrics, target_ranks
from funnelrec.evaluate.splits import Cases, Split
from funnelrec.models.base import Recommender, top_k
from funnelrec.sequences import Sequences


def evaluate(
    model: Recommender,
    split: Split,
    part: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    mask_history: bool = False,
    batch_size: int = 512,
    seed: int = 0,
    keep_ranks: bool = False,
) -> dict[str, Any]:
    """Rank every item for each case of `split.valid` or `split.test` and summarise.

    History items are not masked by default: in funnels, coming back to an item is real
    behaviour. `mask_history=True` removes the customer's context items from the ranking.
    """
    return evaluate_scores(
        lambda ctx, _: model.score(ctx),
        split,
        part=part,
        ks=ks,
        mask_history=mask_history,
        batch_size=batch_size,
        seed=seed,
        keep_ranks=keep_ranks,
    )


def evaluate_scores(
    score: Callable[[Sequences, slice], np.ndarray],
    split: Split,
    part: str = "test",
    ks: tuple[int, ...] = (5, 10, 20),
    mask_history: bool = False,
    batch_size: int = 512,
    seed: int = 0,
    keep_ranks: bool = False,
) -> dict[str, Any]:
    """`evaluate` for scores from anywhere: `score(contexts, case_slice)` -> (n, n_items).

    Why: other libraries' models (benchmarks.compare) run in their own environments and hand
    back score files; reading them through this function keeps one metric code for everyone.
    """
    cases: Cases = split.valid if part == "valid" else split.test
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(cases), dtype=np.int64)
    top10: list[np.ndarray] = []
    started = time.perf_counter()
    for lo in range(0, len(cases), batch_size):
        sl = slice(lo, min(lo + batch_size, len(cases)))
        ctx = cases.contexts(split.full, sl)
        scores = score(ctx, sl)
        if not (isinstance(scores, np.ndarray) and scores.flags.writeable):
            scores = np.array(scores, dtype=np.float32)  # a memory-mapped score file
        if mask_history:
            scores[ctx.row_of_events(), ctx.items] = -np.inf
        ranks[sl] = target_ranks(scores, cases.targets[sl], rng)
        top10.append(top_k(scores, 10)[0])
    seconds = time.perf_counter() - started
    metrics = ranking_metrics(ranks, ks)
    items_shown = np.unique(np.concatenate(top10)) if top10 else np.array([])
    metrics["coverage@10"] = float(len(items_shown) / max(split.full.n_items, 1))
    buckets = bucket_of(cases.ends)
    by_bucket = {}
    for name, _, _ in HISTORY_BUCKETS:
        sel = buckets == name
        if sel.any():
            by_bucket[name] = {"n": int(sel.sum()), **ranking_metrics(ranks[sel], (10,))}
    extra = {"ranks": ranks} if keep_ranks else {}
    return {
        **extra,
        "n": len(cases),
        "metrics": metrics,
        "by_history_length": by_bucket,
        "score_seconds": seconds,
        "score_ms_per_1000": 1000.0 * seconds / max(len(cases), 1) * 1000.0,
    }


def compare(
    models: dict[str, Callable[[], Recommender]],
    split: Split,
    mask_history: bool = False,
    progress: Callable[[str], None] | None = None,
    parts: Iterable[str] = ("valid", "test"),
    fitted: dict[str, Recommender] | None = None,
) -> dict[str, Any]:
    """Fit each model on `split.train` and evaluate it on validation and test cases.

    Pass a dict as `fitted` to keep the fitted models (by name).
    """
    out: dict[str, Any] = {}
    for name, make in models.items():
        if progress:
            progress(name)
        model = make()
        started = time.perf_counter()
        params = inspect.signature(model.fit).parameters
        if "valid" in params and len(split.valid):
            # Models that early-stop get the validation cases (never the test cases),
            # scored under the same protocol as the test.
            extra = {"mask_history": mask_history} if "mask_history" in params else {}
            valid = (split.valid.contexts(split.full), split.valid.targets)
            model.fit(split.train, valid=valid, **extra)
        else:
            model.fit(split.train)
        fit_s = time.perf_counter() - started
        entry: dict[str, Any] = {"fit_seconds": fit_s, "params": _jsonable(model.get_params())}
        for part in parts:
            entry[part] = evaluate(model, split, part=part, mask_history=mask_history)
        out[name] = entry
        if fitted is not None:
            fitted[name] = model
    return out


def bootstrap_ci(
    ranks: np.ndarray, metric: str = "NDCG@10", n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of a metric over evaluation cases."""
    rng = np.random.default_rng(seed)
    k = int(metric.split("@")[1]) if "@" in metric else None
    r = np.asarray(ranks, dtype=np.float64)
    if k is None:
        per_case = 1.0 / (r + 1.0)
    elif metric.startswith("NDCG"):
        per_case = np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)
    else:
        per_case = (r < k).astype(np.float64)
    idx = rng.integers(0, len(r), size=(n_boot, len(r)))
    means = per_case[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _jsonable(params: dict) -> dict:
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
        for k, v in params.items()
    }
