"""The one contract every recommender implements, baselines and the funnel model alike.

Modelled on implicit's tiny surface: `fit`, then `score` / `recommend` for a batch of
histories. Histories are `Sequences` (flat arrays), so a new customer's raw journey is scored
the same way as a known customer's: encode it with `Sequences.from_events`, then call `score`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np

from funnelrec.schema import NotFittedError
from funnelrec.sequences import Sequences


class Recommender(ABC):
    """Base class: `fit(train)` learns from training sequences only; `score` ranks all items."""

    name: str = "base"

    @abstractmethod
    def fit(self, train: Sequences) -> Self:
        """Learn from training sequences (and only from them). Returns self."""

    @abstractmethod
    def _score(self, histories: Sequences) -> np.ndarray:
        """(n, n_items) scores; higher is better."""

    def score(self, histories: Sequences) -> np.ndarray:
        """Score every catalogue item for each history. Returns (n, n_items) float32."""
        self._check_fitted()
        if histories.n_items != self.n_items_:
            raise ValueError(f"histories use {histories.n_items} items, model has {self.n_items_}")
        out = np.asarray(self._score(histories), dtype=np.float32)
        return np.nan_to_num(out, nan=-np.inf)

    def recommend(
        self, histories: Sequences, k: int = 10, exclude_seen: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and scores per history, best first: `(ids, scores)`, each (n, k)."""
        scores = self.score(histories)
        if exclude_seen:
            rows = histories.row_of_events()
            scores[rows, histories.items] = -np.inf
        return top_k(scores, k)

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def get_params(self) -> dict:
        """Constructor arguments (hyperparameters), for saving beside results."""
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self" and hasattr(self, n)}

    @classmethod
    def params_from_text(cls, raw: dict[str, str]) -> dict[str, Any]:
        """Constructor arguments from text (`{"dropout": "0.5"}`), typed like their defaults.

        Why: the CLI passes any hyperparameter through (`--param dropout=0.5`) without one
        option per argument; a misspelt name or a value of the wrong type is an error that
        lists what is accepted, never a silently ignored setting.
        """
        import inspect

        sig = inspect.signature(cls.__init__).parameters
        known = {n: p.default for n, p in sig.items() if n != "self"}
        out: dict[str, Any] = {}
        for name, text in raw.items():
            if name not in known:
                raise ValueError(
                    f"unknown parameter '{name}' for {cls.__name__}; accepted: "
                    + ", ".join(sorted(known))
                )
            out[name] = _typed(name, text, known[name])
        return out


def _typed(name: str, text: str, default: Any) -> Any:
    """`text` as the type of `default`: bool, int, float, str, or comma-separated tuple
    (a None default: a float where the text is a number, else the text)."""
    value = text.strip()
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if default is None:  # "decide for me" defaults: a number where the text is one
            try:
                return float(value)
            except ValueError:
                return value
    except ValueError:
        kind = type(default).__name__
        raise ValueError(f"parameter '{name}' expects {kind}, got '{text}'") from None
    return value


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries per row, sorted descending."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
