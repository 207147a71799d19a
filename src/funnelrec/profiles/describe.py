"""Everything that makes a fitted model's profiles readable, computed once and saved with it.

`describe(model)` computes the full profiles (learned traits + behavioural block), the trait
cards, the segments and their cards, and the behaviour reference quantiles; `save` writes them
beside the model as JSON (`traits.json`, `segments.json`), `load` reads them back. The rest of
this module answers questions with them: a customer's full profile, similar customers and
items, and the fallback for a customer with no events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnelrec.profiles.behaviour import behaviour_block, behaviour_reference, behaviour_stats
from funnelrec.profiles.cards import trait_cards
from funnelrec.profiles.segments import assign_segments, fit_segments, segment_cards
from funnelrec.schema import FunnelrecError
from funnelrec.sequences import Sequences, atomic_write

EXACT_LIMIT = 200_000  # above this many customers, similar_customers uses an ANN index


@dataclass
class Description:
    """Trait cards, segments and the behaviour reference of one fitted model."""

    cards: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    centers: np.ndarray  # (n_segments, n_columns) in profile space
    columns: list[str]  # profile columns the centres live in
    reference: dict[str, list[float]]  # behaviour quantiles of the fitted customers
    silhouette: dict[int, float] = field(default_factory=dict)

    def trait_names(self) -> dict[str, str]:
        return {c["trait"]: c["name"] for c in self.cards}

    def prior_profile(self) -> pd.Series:
        """Profile for a customer with no events: the centre of the largest segment."""
        return pd.Series(self.centers[0], index=self.columns)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        traits = {"cards": self.cards, "behaviour_reference": self.reference}
        segs = {
            "columns": self.columns,
            "centers": self.centers.tolist(),
            "silhouette": {str(k): v for k, v in self.silhouette.items()},
            "segments": self.segments,
        }
        for name, obj in (("traits.json", traits), ("segments.json", segs)):
            text = json.dumps(obj, indent=2, allow_nan=False)
            atomic_write(directory / name, lambda p, t=text: Path(p).write_text(t))

    @classmethod
    def load(cls, directory: str | Path) -> Description:
        directory = Path(directory)
        try:
            traits = json.loads((directory / "traits.json").read_text())
            segs = json.loads((directory / "segments.json").read_text())
        except (OSError, ValueError) as exc:
            raise FunnelrecError(
                f"no trait cards in {directory} ({exc}); run `funnelrec traits {directory}`"
            ) from exc
        return cls(
            cards=traits["cards"],
            segments=segs["segments"],
            centers=np.asarray(segs["centers"], dtype=np.float64),
            columns=segs["columns"],
            reference=traits["behaviour_reference"],
            silhouette={int(k): v for k, v in segs.get("silhouette", {}).items()},
        )


def full_profiles(
    model,
    histories: Sequences | None = None,
    reference: dict | None = None,
    journey: bool = False,
) -> pd.DataFrame:
    """Learned traits (`trait_01`...) then the behavioural block (`behaviour_*`).

    `journey=True` averages the learned traits over the journey (see `FunnelModel.profiles`).
    """
    histories = histories if histories is not None else model.current_histories()
    learned = model.profiles(histories, journey=journey)
    block = behaviour_block(histories, reference)
    block.index = learned.index
    return pd.concat([learned, block], axis=1)


def describe(
    model, histories: Sequences | None = None, n_segments: int | None = None, seed: int = 0
) -> tuple[Description, pd.DataFrame, np.ndarray]:
    """(description, journey profiles, segment labels) of the model's customers.

    Cards and segments are built on journey profiles (traits averaged over the journey plus
    the behavioural block): archetypes describe who customers are, not their last click.
    """
    histories = histories if histories is not None else model.current_histories()
    profiles = full_profiles(model, histories, journey=True)
    learned = profiles[model.trait_names()]
    cards = trait_cards(model.trait_loadings(), learned, histories)
    seg = fit_segments(profiles, n_segments=n_segments, seed=seed)
    names = {c["trait"]: c["name"] for c in cards}
    names.update(
        {
            c: c.removeprefix("behaviour_").replace("_", " ")
            for c in profiles.columns
            if c.startswith("behaviour_")
        }
    )
    seg_cards = segment_cards(profiles, seg["labels"], histories, names)
    desc = Description(
        cards=cards,
        segments=seg_cards,
        centers=seg["centers"],
        columns=list(profiles.columns),
        reference=behaviour_reference(behaviour_stats(histories)),
        silhouette=seg["silhouette"],
    )
    return desc, profiles, seg["labels"]


def customer_profile(
    model, desc: Description, customer: str | pd.DataFrame, now: float | None = None
) -> dict[str, Any]:
    """Full profile of one customer (known id or raw events); no events -> segment prior.

    `now` anchors recency (default: the latest event the model holds).
    """
    from funnelrec.sequences import encode_histories

    if isinstance(customer, pd.DataFrame):
        hist = (
            encode_histories(model.vocab_, customer, model.session_gap_minutes)[0]
            if len(customer)
            else None
        )
        cid = (
            str(customer["customer_id"].iloc[0])
            if "customer_id" in customer and len(customer)
            else "new"
        )
    else:
        cid = str(customer)
        try:
            hist = model.history_of(cid)
        except FunnelrecError:
            hist = None
    if hist is None or hist.n_events == 0:
        prior = desc.prior_profile()
        return {
            "customer_id": cid,
            "cold_start": True,
            "segment": 0,
            "profile": prior.to_dict(),
            "note": "no events: profile of the largest segment; recommendations are popular items",
        }
    return {**customer_profiles(model, desc, hist, now)[0], "customer_id": cid}


def customer_profiles(
    model, desc: Description, histories: Sequences, now: float | None = None
) -> list[dict[str, Any]]:
    """Batch form of `customer_profile` for histories with events (one dict per row)."""
    if now is None:
        now = float(model.histories_.timestamps.max()) if model.histories_.n_events else None
        if histories.n_events:
            now = max(now or -np.inf, float(histories.timestamps.max()))
    block = behaviour_block(histories, desc.reference, now)
    current = model.profiles(histories)
    block.index = current.index
    steady = pd.concat([model.profiles(histories, journey=True), block], axis=1)
    segs = assign_segments(steady[desc.columns], desc.centers)
    full = pd.concat([current, block], axis=1)
    cols = list(full.columns)
    return [
        {
            "customer_id": str(cid),
            "cold_start": False,
            "segment": int(seg),
            "profile": dict(zip(cols, map(float, row), strict=True)),
        }
        for cid, seg, row in zip(full.index, segs, full.to_numpy(), strict=True)
    ]


def recommend_customer(model, customer: str | pd.DataFrame, k: int = 10) -> dict[str, Any]:
    """Top-k for a known customer id or raw events; no events at all -> popular items.

    The output says which: `"fallback": "popularity"` for a customer without events.
    """
    from funnelrec.sequences import encode_histories

    hist = None
    if isinstance(customer, pd.DataFrame):
        if len(customer):
            hist = encode_histories(model.vocab_, customer, model.session_gap_minutes)[0]
    else:
        try:
            hist = model.history_of(str(customer))
        except FunnelrecError:
            hist = None
    if hist is None or hist.n_events == 0:
        ids, scores = popular_items(model, k)
        return {
            "items": list(model.vocab_.item_ids[ids]),
            "scores": scores.tolist(),
            "fallback": "popularity",
        }
    ids, scores = model.recommend(hist, k=k)
    return {
        "items": list(model.vocab_.item_ids[ids[0]]),
        "scores": scores[0].tolist(),
        "fallback": None,
    }


def popular_items(model, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k items with the most training events (dense ids, event shares)."""
    share = np.exp(model.log_q_.cpu().numpy().astype(np.float64))
    top = np.argsort(-share, kind="stable")[:k]
    return top, share[top]


def similar_customers(
    profiles: pd.DataFrame, customer: str, k: int = 10, exact_limit: int = EXACT_LIMIT
) -> pd.DataFrame:
    """The k customers with the nearest profiles (Euclidean): exact up to `exact_limit`
    customers, an HNSW index (faiss, optional extra `funnelrec[ann]`) above."""
    if customer not in profiles.index:
        raise FunnelrecError(f"unknown customer '{customer}'")
    x = profiles.to_numpy(dtype=np.float32)
    q = profiles.loc[[customer]].to_numpy(dtype=np.float32)
    if len(x) > exact_limit:
        ids, dist = _ann(x, q, k + 1)
    else:
        d = ((x - q) ** 2).sum(1)
        ids = np.argsort(d, kind="stable")[: k + 1]
        dist = d[ids]
    keep = profiles.index[ids] != customer
    return pd.DataFrame(
        {"customer_id": profiles.index[ids][keep][:k], "distance": np.sqrt(dist[keep][:k])}
    )


def _ann(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise FunnelrecError(
            f"{len(x):,} customers: similar_customers needs an ANN index; "
            "install the optional extra `pip install funnelrec[ann]` (faiss-cpu)"
        ) from exc
    index = faiss.IndexHNSWFlat(x.shape[1], 32)
    index.add(np.ascontiguousarray(x))
    dist, ids = index.search(np.ascontiguousarray(q), k)
    return ids[0], dist[0]


def similar_items(model, item_id: str, k: int = 10) -> pd.DataFrame:
    """Nearest items by cosine similarity of the model's item vectors."""
    vocab = model.vocab_
    j = vocab.item_index(str(item_id))
    if j < 0:
        raise FunnelrecError(f"unknown item '{item_id}'")
    v = model.item_embeddings()
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)
    sims = v @ v[j]
    sims[j] = -np.inf
    top = np.argsort(-sims)[:k]
    return pd.DataFrame({"item_id": vocab.item_ids[top], "similarity": sims[top]})
