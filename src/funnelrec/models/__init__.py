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
}

__all__ = ["ALS", "BPR", "MODELS", "Markov", "Popularity", "RecentItems", "RecentPopularity",
           "Recommender", "RepeatPurchase", "SessionItemKNN", "top_k"]
