"""Evaluation: leak-free splits, full-ranking metrics, one harness for every model."""

from funnelrec.evaluate.harness import bootstrap_ci, compare, evaluate, evaluate_scores
from funnelrec.evaluate.metrics import ranking_metrics, target_ranks
from funnelrec.evaluate.splits import Cases, Split, make_split, resolve_target

__all__ = [
    "Cases",
    "Split",
    "bootstrap_ci",
    "compare",
    "evaluate",
    "evaluate_scores",
    "make_split",
    "ranking_metrics",
    "resolve_target",
    "target_ranks",
]
