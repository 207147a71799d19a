"""Live state behind the service: a fitted model, its description, and every stored event.

On start (and on reload) every customer's live history is rebuilt from the event store, so a
restart loses nothing that was acknowledged. Each accepted event refreshes that customer's
profile and top-k in memory (`FunnelModel.update`), so the next read reflects it.
"""

from __future__ import annotations

import gc
import hashlib
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funnelrec.ingest.reader import FUTURE_TOLERANCE_S
from funnelrec.models import FunnelModel
from funnelrec.profiles import (
    customer_profile,
    explain_items,
    recommend_customer,
    similar_items,
)
from funnelrec.profiles.behaviour import priors_of, rank_against, stats_one
from funnelrec.profiles.describe import customer_profiles
from funnelrec.schema import ACTION_SYNONYMS, FunnelrecError
from funnelrec.serve.store import EventStore


def model_version(model_dir: Path) -> str:
    """Content hash of the saved weights and config: changes exactly when the model does."""
    h = hashlib.sha256()
    for name in ("model.json", "model.safetensors"):
        h.update((model_dir / name).read_bytes())
    return h.hexdigest()[:12]


class Live:
    """Model + description + store, behind one lock (the model's live state is mutable)."""

    def __init__(self, model_dir: str | Path, store: EventStore, k: int = 10) -> None:
        self.model_dir = Path(model_dir)
        self.store = store
        self.k = k
        self._lock = threading.RLock()  # the live state
        self._write_lock = threading.Lock()  # one writer at a time (store order = live order)
        self.started = time.time()
        self._load()

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        from funnelrec.pipeline import load_description

        model = FunnelModel.load(self.model_dir)
        desc = load_description(self.model_dir, model)
        version = model_version(self.model_dir)
        state = _State(model, desc, version, self.k)
        state.replay(self.store.events())
        with self._lock:
            self.state = state
        # The warm caches are hundreds of thousands of long-lived objects; a full garbage
        # collection walking them all is a pause of tens of milliseconds under load.
        gc.collect()
        gc.freeze()

    def reload(self) -> str:
        """Load the model folder again (a new version), replay the store, swap atomically.

        Reads keep being served from the old state until the swap; writes wait, so that no
        event is committed between the replay and the swap without reaching the new state.
        """
        with self._write_lock:
            self._load()
        return self.state.version

    # ------------------------------------------------------------------ writes
    def add_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Validate, commit, then apply. Returns one result per event, in order.

        Writers take turns (so the live order is the stored order); reads wait only while
        the events are applied, not during the commit's fsync.
        """
        with self._write_lock:
            st = self.state
            results, accepted = [], []
            for e in events:
                reason = st.reject_reason(e)
                if reason is None:
                    accepted.append(e)
                    results.append({"accepted": True})
                    if st.vocab.item_index(str(e["item_id"])) < 0:
                        # Stored, but the model has no vector for it until it is refitted.
                        results[-1]["note"] = (
                            "new item: stored for the next model version, not yet in the "
                            "customer's profile or recommendations"
                        )
                else:
                    results.append({"accepted": False, "reason": reason})
            ids = self.store.append(accepted)  # acknowledged only after this commit
            it = iter(ids)
            for r in results:
                if r["accepted"]:
                    r["id"] = next(it)
            with self._lock:
                self.state.apply(accepted)
            return results

    # ------------------------------------------------------------------ reads
    def profile(self, cid: str) -> dict[str, Any]:
        # Cached entries are read without the lock (a dict lookup is atomic), so reads do
        # not wait while a write recomputes another customer.
        hit = self.state.profiles.get(cid)
        if hit is not None:
            return hit
        with self._lock:
            return self.state.profile(cid)

    def recommendations(self, cid: str, k: int, with_explanations: bool) -> dict[str, Any]:
        st = self.state
        hit = st.top.get(cid) if not with_explanations and k <= st.k else None
        if hit is not None:
            return {**hit, "items": hit["items"][:k]}
        with self._lock:
            return self.state.recommendations(cid, k, with_explanations)

    def __getattr__(self, name: str):
        # Reads go to the current state under the lock (see _State for each one).
        attr = getattr(_State, name, None)
        if attr is None or name.startswith("_"):
            raise AttributeError(name)

        def call(*args, **kwargs):
            with self._lock:
                return getattr(self.state, name)(*args, **kwargs)

        return call


class _State:
    def __init__(self, model: FunnelModel, desc, version: str, k: int) -> None:
        self.model, self.desc, self.version, self.k = model, desc, version, k
        self.vocab = model.vocab_
        self.actions = set(self.vocab.action_names)
        self.categories = set(self.vocab.category_names)
        self.events_applied = 0
        # Reads are served from these caches; an event for a customer refreshes their entry.
        self.top: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.new_items: int = 0
        hist = model.current_histories()
        self.clock = float(hist.timestamps.max()) if hist.n_events else 0.0
        self._warm(hist)
        # Current learned traits of every known customer (the similar-customers index),
        # taken from the warm profiles rather than encoding everyone a second time.
        self.ids: list[str] = list(self.profiles)
        self.row = {c: i for i, c in enumerate(self.ids)}
        self.traits = np.array(
            [[t["value"] for t in self.profiles[c]["traits"]] for c in self.ids], dtype=np.float32
        ).reshape(len(self.ids), model.n_traits)

    def _warm(self, hist) -> None:
        """Profiles and top-k of every known customer, in batches, before the first request."""
        for lo in range(0, len(hist), 2048):
            part = hist.select(np.arange(lo, min(lo + 2048, len(hist))))
            part = part.select(np.flatnonzero(part.lengths > 0))
            for p in customer_profiles(self.model, self.desc, part, now=self.clock):
                self.profiles[p["customer_id"]] = _split_profile(p, self.desc)
            ids, scores = self.model.recommend(part, k=self.k)
            for row, cid in enumerate(self.vocab.customer_ids[part.customers]):
                self.top[str(cid)] = {
                    "customer_id": str(cid),
                    "fallback": None,
                    "items": [
                        {"item_id": str(self.vocab.item_ids[j]), "score": _num(v)}
                        for j, v in zip(ids[row], scores[row], strict=True)
                    ],
                }

    def reject_reason(self, e: dict[str, Any]) -> str | None:
        action = ACTION_SYNONYMS.get(str(e["action"]).lower(), str(e["action"]).lower())
        if action not in self.actions:
            return f"unknown action '{e['action']}'; the model knows {sorted(self.actions)}"
        e["action"] = action
        if self.vocab.item_index(str(e["item_id"])) < 0:
            cat = e.get("category")
            if cat is None or str(cat) not in self.categories:
                return (
                    f"unknown item '{e['item_id']}' without a known category: the model cannot "
                    "place it (send its category to store it for the next model version)"
                )
        return None

    def replay(self, df: pd.DataFrame) -> None:
        if len(df):
            self.apply(df.to_dict(orient="records"), refresh=False)
            for cid in df["customer_id"].astype(str).unique():
                self._refresh(cid)

    def apply(self, events: list[dict[str, Any]], refresh: bool = True) -> None:
        """Append accepted events to the live histories (new items are stored only)."""
        if not events:
            return
        # The clock that recency is measured to follows the events (replayed history runs in
        # its own time), but never past tomorrow: one event dated years ahead would otherwise
        # make every other customer look long gone.
        latest = max(float(e["timestamp"]) for e in events)
        self.clock = max(self.clock, min(latest, time.time() + FUTURE_TOLERANCE_S))
        by_customer: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            if self.vocab.item_index(str(e["item_id"])) < 0:
                self.new_items += 1  # stored for the next model version only
                continue
            by_customer.setdefault(str(e["customer_id"]), []).append(e)
        for cid, part in by_customer.items():
            self.model.append_events(
                cid,
                pd.DataFrame(
                    {
                        "item_id": [str(e["item_id"]) for e in part],
                        "action": [e["action"] for e in part],
                        "timestamp": [float(e["timestamp"]) for e in part],
                    }
                ),
            )
            if refresh:
                self._refresh(cid)
        self.events_applied += len(events)

    def _refresh(self, cid: str) -> None:
        profile, top, scores, journey = self.model.refresh(
            cid, k=self.k, with_scores=True, with_journey=True
        )
        row = self.row.get(cid)
        if row is None:
            self.row[cid] = row = len(self.ids)
            self.ids.append(cid)
            self.traits = np.vstack([self.traits, profile[None].astype(np.float32)])
        else:
            self.traits[row] = profile
        self.top[cid] = {
            "customer_id": cid,
            "fallback": None,
            "items": [
                {"item_id": str(self.vocab.item_ids[j]), "score": _num(v)}
                for j, v in zip(top, scores, strict=True)
            ],
        }
        # Computed here, in the write, so that reads never wait for it; numpy only.
        self.profiles[cid] = self._live_profile(cid, profile, journey)

    def _live_profile(self, cid: str, current: np.ndarray, journey: np.ndarray) -> dict[str, Any]:
        """The same profile as `customer_profile`, from the traits `refresh` just computed
        plus the journey traits and the behavioural block of this one customer."""
        hist = self.model.history_of(cid)
        ref = self.desc.reference
        block = rank_against(stats_one(hist, self.clock, priors_of(ref)), ref)
        names = self.model.trait_names()
        steady = dict(zip(names, journey, strict=True)) | block
        x = np.array([steady[c] for c in self.desc.columns])
        seg = int(((self.desc.centers - x) ** 2).sum(1).argmin())
        prof = dict(zip(names, map(float, current), strict=True)) | block
        out = {"customer_id": cid, "cold_start": False, "segment": seg, "profile": prof}
        return _split_profile(out, self.desc)

    # reads --------------------------------------------------------------------
    def profile(self, cid: str) -> dict[str, Any]:
        hit = self.profiles.get(cid)
        if hit is None:
            hit = self._profile(cid)
            # Only customers with events are kept: anyone may read any id, and caching
            # every unknown one would grow memory without bound.
            if not hit["cold_start"]:
                self.profiles[cid] = hit
        return hit

    def _profile(self, cid: str) -> dict[str, Any]:
        return _split_profile(customer_profile(self.model, self.desc, cid, self.clock), self.desc)

    def recommendations(self, cid: str, k: int, with_explanations: bool) -> dict[str, Any]:
        if not with_explanations and k <= self.k:
            cached = self.top.get(cid)
            if cached is None:
                cached = self._recommendations(cid, self.k, False)
                if cached["fallback"] is None:  # unknown ids are not kept (see `profile`)
                    self.top[cid] = cached
            return {**cached, "items": cached["items"][:k]}
        return self._recommendations(cid, k, with_explanations)

    def _recommendations(self, cid: str, k: int, with_explanations: bool) -> dict[str, Any]:
        rec = recommend_customer(self.model, cid, k=k)
        out = {"customer_id": cid, "fallback": rec["fallback"], "items": []}
        names = [self.desc.trait_names().get(t, t) for t in self.model.trait_names()]
        why = [None] * len(rec["items"])
        if with_explanations and rec["fallback"] is None:
            why = explain_items(self.model, cid, [str(i) for i in rec["items"]], names)
        for item, score, e in zip(rec["items"], rec["scores"], why, strict=True):
            entry: dict[str, Any] = {"item_id": str(item), "score": _num(score)}
            if e is not None:
                entry["explanation"] = e["text"]
                entry["traits"] = e["traits"][:3]
                entry["events"] = e["events"][:3]
            out["items"].append(entry)
        return out

    def similar(self, cid: str, k: int) -> list[dict[str, Any]]:
        row = self.row.get(cid)
        if row is None:
            raise FunnelrecError(f"unknown customer '{cid}'")
        d = ((self.traits - self.traits[row]) ** 2).sum(1)
        d[row] = np.inf
        top = np.argsort(d, kind="stable")[:k]
        return [{"customer_id": self.ids[i], "distance": _num(math.sqrt(d[i]))} for i in top]

    def similar_items(self, item: str, k: int) -> list[dict[str, Any]]:
        df = similar_items(self.model, item, k)
        return [
            {"item_id": str(r.item_id), "similarity": _num(r.similarity)} for r in df.itertuples()
        ]

    def segment_map(self, n: int = 3000) -> dict[str, Any]:
        """2-D map of customer profiles (PCA of traits + behavioural block), by segment."""
        ids = [c for c in self.ids if c in self.profiles][:n]
        if len(ids) < 3:
            return {"customer_id": ids, "x": [], "y": [], "segment": []}
        rows = [self.profiles[c] for c in ids]
        x = np.array(
            [
                [t["value"] or 0.0 for t in p["traits"]]
                + [v or 0.0 for v in p["behaviour"].values()]
                for p in rows
            ]
        )
        x = x - x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T
        return {
            "customer_id": ids,
            "x": xy[:, 0].round(4).tolist(),
            "y": xy[:, 1].round(4).tolist(),
            "segment": [p["segment"] for p in rows],
        }

    def traits_cards(self) -> list[dict[str, Any]]:
        return self.desc.cards

    def segments(self) -> list[dict[str, Any]]:
        return self.desc.segments

    def journey(self, cid: str, n: int = 50) -> list[dict[str, Any]]:
        try:
            h = self.model.history_of(cid)
        except FunnelrecError:
            return []
        names = self.vocab.action_names
        return [
            {"item_id": str(self.vocab.item_ids[i]), "action": names[a], "timestamp": float(t)}
            for i, a, t in zip(h.items[-n:], h.actions[-n:], h.timestamps[-n:], strict=True)
        ]

    def overview(self) -> dict[str, Any]:
        from funnelrec.stats import funnel_stats

        stats = funnel_stats(self.model.current_histories())
        return {
            "customers": stats["customers"],
            "items": stats["items"],
            "events": stats["events"],
            "funnel_customers": stats["funnel_customers"],
            "actions": stats["actions"],
            "action_weights": self.model.action_weights(),
        }

    def health(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "customers": len(self.ids),
            "events_applied": self.events_applied,
            "new_items_stored": self.new_items,
        }


def _split_profile(out: dict[str, Any], desc) -> dict[str, Any]:
    """{"profile": {col: v}} -> named learned traits and the behavioural block, apart."""
    names = desc.trait_names()
    prof = out.pop("profile")
    out["traits"] = [
        {"trait": t, "name": names.get(t, t), "value": _num(v)}
        for t, v in prof.items()
        if t.startswith("trait_")
    ]
    out["behaviour"] = {
        t.removeprefix("behaviour_"): _num(v) for t, v in prof.items() if t.startswith("behaviour_")
    }
    return out


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
