"""Recommenders. One explicit registry; every entry implements `Recommender`."""

from collections.abc import Callable

from funnelrec.models.base import Recommender, top_k
from funnelrec.models.baselines import (
    Markov,
    Popularity,
    RecentItems,
    RecentPopularity,
    RepeatPurchase,
    SessionItemKNN,
)
from funnelrec.models.funnel import FunnelModel, GRU4Rec, SASRec
from funnelrec.models.matrix_factorization import ALS, BPR

MODELS: dict[str, Callable[[], Recommender]] = {
    "pop": Popularity,
    "recent_pop": RecentPopularity,
    "recent_items": RecentItems,
    "repeat": RepeatPurchase,
    "itemknn": SessionItemKNN,
    "markov": Markov,
    "als": ALS,
    "bpr": BPR,
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "funnel": FunnelModel,
}

__all__ = [
    "ALS",
    "BPR",
    "MODELS",
    "FunnelModel",
    "GRU4Rec",
    "Markov",
    "Popularity",
    "RecentItems",
    "RecentPopularity",
    "Recommender",
    "RepeatPurchase",
    "SASRec",
    "SessionItemKNN",
    "top_k",
]
