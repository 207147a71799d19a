"""Issue 4's measured interpretability: planted-trait recovery, stability, sparsity, segments,
faithfulness of explanations, item-space purity, trait coherence and cold start.

    python -m benchmarks.interpret                       # every part on the built-in generator
    python -m benchmarks.interpret --only purity,coherence --dataset taobao
    python -m benchmarks.interpret --only stability --kw '{"item_init": "svd", "anchor": 10}'
    python -m benchmarks.interpret --markdown            # tables for docs/benchmarks.md

Results go to benchmarks/results/interpret.json (one key per part and data set).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import RidgeCV
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_score

from funnelrec.config import SplitConfig
from funnelrec.datasets import TRAITS, generate_funnel
from funnelrec.evaluate import make_split
from funnelrec.evaluate.metrics import ranking_metrics, target_ranks
from funnelrec.models import MODELS, FunnelModel
from funnelrec.profiles import behaviour_block, behaviour_stats, faithfulness, fit_segments
from funnelrec.sequences import Sequences, count_matrix, load_sequences

from .baselines import DEFAULT_DATA, ROOT, load_dataset

OUT = ROOT / "benchmarks" / "results" / "interpret.json"
N_CUSTOMERS = 3000


def _generator(seed: int = 0, **gen: Any) -> tuple[Sequences, pd.DataFrame]:
    data = generate_funnel(**{"n_customers": N_CUSTOMERS, "seed": seed, **gen})
    seqs = load_sequences(data.events)[0]
    return seqs, data.customers.set_index("customer_id")


def _fit(seqs: Sequences, seed: int = 0, **kw: Any) -> FunnelModel:
    return FunnelModel(seed=seed, **kw).fit(seqs)


def _recovery_scores(x: np.ndarray, truth: pd.DataFrame) -> dict[str, Any]:
    per = {}
    for name in TRAITS:
        y = truth[name].to_numpy()
        rhos = [abs(spearmanr(x[:, j], y).statistic) for j in range(x.shape[1]) if np.ptp(x[:, j])]
        r2 = cross_val_score(RidgeCV(alphas=np.logspace(-3, 3, 13)), x, y, cv=5, scoring="r2")
        per[name] = {"best_abs_spearman": float(np.nanmax(rhos)), "ridge_r2": float(r2.mean())}
    return {
        "per_trait": per,
        "mean_best_abs_spearman": float(np.mean([v["best_abs_spearman"] for v in per.values()])),
        "mean_ridge_r2": float(np.mean([v["ridge_r2"] for v in per.values()])),
    }


def recovery(model: FunnelModel, seqs: Sequences, truth: pd.DataFrame) -> dict[str, Any]:
    """Planted traits against: learned traits, behavioural block, both, and an SVD view."""
    learned = model.profiles(seqs)
    journey = model.profiles(seqs, journey=True).to_numpy()
    block = behaviour_block(seqs)
    truth = truth.loc[learned.index]
    svd = TruncatedSVD(model.n_traits, random_state=0).fit_transform(
        count_matrix(seqs).astype(np.float64)
    )
    views = {
        "learned traits (current)": learned.to_numpy(),
        "learned traits (journey)": journey,
        "behavioural block": block.to_numpy(),
        "full profile (journey traits + behavioural)": np.hstack([journey, block.to_numpy()]),
        f"SVD-{model.n_traits} of customer x item counts": svd,
    }
    out = {name: _recovery_scores(x, truth) for name, x in views.items()}
    out["supervised probe (trained on the planted values; a reference, not a profile)"] = (
        supervised_probe(seqs, truth)
    )
    return out


def _category_shares(seqs: Sequences) -> np.ndarray:
    """(customers, categories) share of each customer's events in each category."""
    rows = seqs.row_of_events()
    cat = seqs.vocab.item_category[seqs.items]
    shares = np.zeros((len(seqs), max(int(cat.max()) + 1, 1)))
    np.add.at(shares, (rows[cat >= 0], cat[cat >= 0]), 1.0)
    return shares / shares.sum(1, keepdims=True).clip(min=1.0)


def supervised_probe(seqs: Sequences, truth: pd.DataFrame) -> dict[str, Any]:
    """How much of each planted trait the logs carry, as far as a supervised model finds it.

    Gradient-boosted trees see the planted values (5-fold, out-of-fold predictions) and a
    customer's raw behavioural statistics, category shares and event counts per action. No
    unsupervised profile is expected to beat this; a target above it asks for more than
    these features hold (a stronger learner could still find more).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import cross_val_predict

    shares = _category_shares(seqs)
    acts = np.zeros((len(seqs), seqs.vocab.n_actions))
    np.add.at(acts, (seqs.row_of_events(), seqs.actions), 1.0)
    x = np.hstack([behaviour_stats(seqs).to_numpy(), shares, acts])
    per = {}
    for name in TRAITS:
        y = truth[name].to_numpy()
        gbr = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=0)
        pred = cross_val_predict(gbr, x, y, cv=5)
        r2 = 1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        rho = abs(spearmanr(pred, y).statistic)
        per[name] = {"best_abs_spearman": float(rho), "ridge_r2": float(r2)}
    return {
        "per_trait": per,
        "mean_best_abs_spearman": float(np.mean([v["best_abs_spearman"] for v in per.values()])),
        "mean_ridge_r2": float(np.mean([v["ridge_r2"] for v in per.values()])),
    }


def stability(seqs: Sequences, seeds: tuple[int, ...] = (0, 1, 2), **kw: Any) -> dict[str, Any]:
    """Retrain with several seeds; match traits (Hungarian on correlation); mean matched r."""
    models = [_fit(seqs, seed=s, **kw) for s in seeds]
    profs = [m.profiles(seqs, journey=True).to_numpy() for m in models]
    pairs = []
    for i in range(len(profs)):
        for j in range(i + 1, len(profs)):
            a, b = profs[i], profs[j]
            k = a.shape[1]
            c = np.corrcoef(a.T, b.T)[:k, k:]
            c = np.nan_to_num(c)
            r, col = linear_sum_assignment(-c)
            pairs.append(
                {
                    "seeds": [seeds[i], seeds[j]],
                    "mean_matched_r": float(c[r, col].mean()),
                    "matched_r": [float(v) for v in c[r, col]],
                }
            )
    return {
        "pairs": pairs,
        "mean_matched_r": float(np.mean([p["mean_matched_r"] for p in pairs])),
        # How far each fit trained: traits drift from their start with every step.
        "best_epochs": [int(m.best_epoch_) for m in models],
        "epochs_run": [len(m.history_) for m in models],
    }


def sparsity(model: FunnelModel, seqs: Sequences) -> dict[str, Any]:
    x = model.profiles(seqs).to_numpy()  # the current profile, as a user gets it
    top3 = np.sort(x, axis=1)[:, -3:].sum(1) / x.sum(1).clip(min=1e-9)
    p = x / x.sum(1, keepdims=True).clip(min=1e-9)
    ent = -(p * np.log(p.clip(min=1e-12))).sum(1) / np.log(x.shape[1])
    return {
        "traits": x.shape[1],
        "mean_traits_above_half": float((x > 0.5).sum(1).mean()),
        "mean_top3_share": float(top3.mean()),
        "mean_normalised_entropy": float(ent.mean()),
        "mean_value": float(x.mean()),
    }


def tfidf_recipe(seqs: Sequences, k: int, seed: int = 0) -> np.ndarray:
    """The usual clickstream recipe: TF-IDF of action-and-category n-grams + k-means."""
    vocab = seqs.vocab
    docs = []
    for r in range(len(seqs)):
        h = seqs.history(r)
        cats = vocab.item_category[h["items"]]
        docs.append(
            " ".join(
                f"{vocab.action_names[a]}_{c}" for a, c in zip(h["actions"], cats, strict=True)
            )
        )
    x = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+").fit_transform(docs)
    return KMeans(k, n_init=4, random_state=seed).fit_predict(x)


def segments(model: FunnelModel, seqs: Sequences, truth: pd.DataFrame) -> dict[str, Any]:
    learned = model.profiles(seqs, journey=True)
    full = pd.concat([learned, behaviour_block(seqs).set_axis(learned.index)], axis=1)
    arche = truth.loc[learned.index, "archetype"].to_numpy()
    k = len(np.unique(arche))
    out: dict[str, Any] = {"planted_archetypes": k}
    auto = fit_segments(full, seed=0)
    out["funnelrec segments (full profile, k by silhouette)"] = {
        "k": auto["n_segments"],
        "ARI": float(adjusted_rand_score(arche, auto["labels"])),
    }
    for name, prof in (("full profile", full), ("journey traits", learned)):
        lab = fit_segments(prof, n_segments=k, seed=0)["labels"]
        out[f"funnelrec segments ({name}, k = {k})"] = {
            "k": k,
            "ARI": float(adjusted_rand_score(arche, lab)),
        }
    out[f"TF-IDF action-category n-grams + k-means (k = {k})"] = {
        "k": k,
        "ARI": float(adjusted_rand_score(arche, tfidf_recipe(seqs, k))),
    }
    out["supervised reference (trained on the planted archetypes; not a segmentation)"] = {
        "k": k,
        "ARI": float(adjusted_rand_score(arche, _supervised_archetypes(seqs, arche))),
    }
    return out


def _supervised_archetypes(seqs: Sequences, arche: np.ndarray) -> np.ndarray:
    """Out-of-fold archetype predictions of a classifier that sees the planted labels.

    From category shares and the standardised raw behavioural statistics: how well the
    archetypes can be told apart at all from these logs, the ceiling a clustering faces.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    shares = _category_shares(seqs)
    raw = behaviour_stats(seqs)
    stats = StandardScaler().fit_transform(raw.fillna(raw.median()).fillna(0.0).to_numpy())
    clf = LogisticRegression(max_iter=2000)
    return cross_val_predict(clf, np.hstack([shares, stats]), arche, cv=5)


def purity(model: FunnelModel, seqs: Sequences, k: int = 10) -> dict[str, Any]:
    """Share of each item's 10 nearest items (cosine) in its own category: funnel vs ALS."""
    cat = seqs.vocab.item_category
    counts = np.bincount(seqs.items, minlength=seqs.n_items)
    als = MODELS["als"]().fit(seqs)
    views = {"funnel item vectors": model.item_embeddings(), "ALS item factors": als.item_factors_}
    known = np.flatnonzero((cat >= 0) & (counts > 0))
    rng = np.random.default_rng(0)
    probe = rng.choice(known, size=min(2000, len(known)), replace=False)
    out = {"items_probed": len(probe)}
    for name, v in views.items():
        v = v[known] / (np.linalg.norm(v[known], axis=1, keepdims=True) + 1e-9)
        pos = np.searchsorted(known, probe)
        sims = v[pos] @ v.T
        sims[np.arange(len(probe)), pos] = -np.inf
        nn = np.argpartition(-sims, k, axis=1)[:, :k]
        out[name] = float((cat[known][nn] == cat[probe][:, None]).mean())
    # What random neighbours would give: the chance two items share a category.
    share = np.bincount(cat[known]) / len(known)
    out["random neighbours"] = float((share**2).sum())
    return out


def coherence(model: FunnelModel, seqs: Sequences, top: int = 20) -> dict[str, Any]:
    """Share of each trait's top-20 items in its most common category vs random item sets."""
    cat = seqs.vocab.item_category
    counts = np.bincount(seqs.items, minlength=seqs.n_items)
    load = model.trait_loadings()
    rng = np.random.default_rng(0)
    seen = np.flatnonzero((counts > 0) & (cat >= 0))

    def share(items: np.ndarray) -> float:
        return float(np.bincount(cat[items]).max() / len(items))

    traits = []
    for j in range(load.shape[1]):
        order = seen[np.argsort(-load[seen, j])[:top]]
        traits.append(share(order))
    rand = [share(rng.choice(seen, size=top, replace=False)) for _ in range(1000)]
    return {
        "per_trait": traits,
        "mean_trait_share": float(np.mean(traits)),
        "random_sets_share": float(np.mean(rand)),
    }


AMAZON_ATTRIBUTES = {
    "beauty": "Beauty_item2attributes.json.gz",
    "sports": "Sports_and_Outdoors_item2attributes.json.gz",
    "toys": "Toys_and_Games_item2attributes.json.gz",
}


def item_attributes(data: Path, dataset: str, seqs: Sequences) -> list[set[int]] | None:
    """S3-Rec item attributes (categories and brand, as integer ids) aligned with the vocab.

    Attributes carried by more than half of the items are left out: Toys and Sports give
    every item their root category, and an attribute that every item shares says nothing
    about which items are alike (it would make every neighbour "pure").
    """
    import gzip

    name = AMAZON_ATTRIBUTES.get(dataset)
    if name is None:
        return None
    with gzip.open(data / "amazon_s3rec" / name, "rt") as f:
        raw = json.load(f)
    attrs = [set(raw.get(str(i), [])) for i in seqs.vocab.item_ids]
    counts = Counter(x for a in attrs for x in a)
    common = {x for x, n in counts.items() if n > len(attrs) / 2}
    return [a - common for a in attrs]


def attribute_measures(
    model: FunnelModel, seqs: Sequences, attrs: list[set[int]], top: int = 20, k: int = 10
) -> dict[str, Any]:
    """Coherence and item-space purity where items carry several attribute ids (no names).

    Coherence: share of a trait's top-20 items that carry its most common attribute, against
    random 20-item sets. Purity@10: share of an item's 10 nearest items sharing an attribute
    with it, funnel item vectors against ALS item factors.
    """
    counts = np.bincount(seqs.items, minlength=seqs.n_items)
    seen = np.flatnonzero((counts > 0) & np.array([len(a) > 0 for a in attrs]))
    rng = np.random.default_rng(0)

    def share(items: np.ndarray) -> float:
        c: dict[int, int] = {}
        for i in items:
            for a in attrs[i]:
                c[a] = c.get(a, 0) + 1
        return max(c.values()) / len(items) if c else 0.0

    load = model.trait_loadings()
    traits = [share(seen[np.argsort(-load[seen, j])[:top]]) for j in range(load.shape[1])]
    rand = [share(rng.choice(seen, size=top, replace=False)) for _ in range(300)]
    out: dict[str, Any] = {
        "coherence": {
            "per_trait": traits,
            "mean_trait_share": float(np.mean(traits)),
            "random_sets_share": float(np.mean(rand)),
        },
    }
    als = MODELS["als"]().fit(seqs)
    probe = rng.choice(seen, size=min(2000, len(seen)), replace=False)
    purity = {"items_probed": len(probe)}
    for name, v in (
        ("funnel item vectors", model.item_embeddings()),
        ("ALS item factors", als.item_factors_),
    ):
        v = v[seen] / (np.linalg.norm(v[seen], axis=1, keepdims=True) + 1e-9)
        pos = np.searchsorted(seen, probe)
        sims = v[pos] @ v.T
        sims[np.arange(len(probe)), pos] = -np.inf
        nn = seen[np.argpartition(-sims, k, axis=1)[:, :k]]
        purity[name] = float(
            np.mean(
                [[bool(attrs[p] & attrs[q]) for q in row] for p, row in zip(probe, nn, strict=True)]
            )
        )
    pairs = rng.choice(seen, size=(5000, 2))
    purity["random neighbours"] = float(np.mean([bool(attrs[a] & attrs[b]) for a, b in pairs]))
    out["purity"] = purity
    return out


def cold_start(
    seqs: Sequences, target: str, mask: bool = False, kw: dict[str, Any] | None = None
) -> dict[str, Any]:
    """HR@10 / NDCG@10 of funnel, pop and item-KNN for customers with 1-3 events.

    Two views: the natural 1-3-event contexts of the test split, and every test case cut to
    its last 1, 2 or 3 events (what a newcomer who did only that would get).
    """
    split = make_split(seqs, SplitConfig(protocol="loo", target=target))
    valid = (split.valid.contexts(split.full), split.valid.targets)
    models = {
        "funnel": FunnelModel(**(kw or {})),
        "pop": MODELS["pop"](),
        "itemknn": MODELS["itemknn"](),
    }
    ctx = split.test.contexts(split.full)
    targets = split.test.targets
    lengths = ctx.lengths
    rng = np.random.default_rng(0)
    keep = rng.integers(1, 4, len(ctx))
    short = ctx.suffix(np.minimum(keep, lengths), restart=True)
    natural = np.flatnonzero(lengths <= 3)
    out: dict[str, Any] = {"natural_cases": len(natural), "cut_cases": len(ctx)}
    for name, m in models.items():
        if isinstance(m, FunnelModel):
            m.fit(split.train, valid=valid, mask_history=mask)
        else:
            m.fit(split.train)
        res = {}
        for view, c, rows in (("natural 1-3", ctx, natural), ("cut to last 1-3", short, None)):
            sel = c.select(rows) if rows is not None else c
            t = targets[rows] if rows is not None else targets
            if len(t) == 0:
                continue
            s = m.score(sel)
            if mask:
                s[sel.row_of_events(), sel.items] = -np.inf
            r = target_ranks(s, t, np.random.default_rng(0))
            res[view] = ranking_metrics(r, (10,))
        out[name] = res
    return out


def cold_items(
    seqs: Sequences,
    target: str,
    frac: float = 0.1,
    seed: int = 0,
    kw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Items held out of training but known by their metadata: how well are they ranked?

    A random `frac` of the items loses every training event; test cases whose target is one
    of them are ranked over the whole catalogue by the funnel model with and without item
    metadata, and by popularity.
    """
    split = make_split(seqs, SplitConfig(protocol="loo", target=target))
    rng = np.random.default_rng(seed)
    held = rng.choice(seqs.n_items, size=int(frac * seqs.n_items), replace=False)
    train = split.train.keep_events(~np.isin(split.train.items, held))
    rows = np.flatnonzero(np.isin(split.test.targets, held))
    ctx = split.test.contexts(split.full).select(rows)
    targets = split.test.targets[rows]
    vrows = np.flatnonzero(~np.isin(split.valid.targets, held))
    valid = (split.valid.contexts(split.full).select(vrows), split.valid.targets[vrows])
    out: dict[str, Any] = {"held_out_items": len(held), "cases": len(rows)}
    models = {
        "funnel (metadata)": FunnelModel(**(kw or {})),
        "funnel (no metadata)": FunnelModel(**{**(kw or {}), "use_metadata": False}),
        "pop": MODELS["pop"](),
    }
    for name, m in models.items():
        if isinstance(m, FunnelModel):
            m.fit(train, valid=valid)
        else:
            m.fit(train)
        r = target_ranks(m.score(ctx), targets, np.random.default_rng(0))
        out[name] = {**ranking_metrics(r, (10, 100)), "median_rank": float(np.median(r))}
    out["random"] = {"median_rank": seqs.n_items / 2}
    return out


def run(
    parts: list[str],
    dataset: str,
    data: Path,
    kw: dict[str, Any] | None = None,
    generator_seed: int = 0,
    generator_kw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure `parts` on one data set; `kw` = FunnelModel settings other than the defaults.

    `generator_seed` draws another generated data set (other archetypes, items and traits);
    `generator_kw` changes its design (e.g. longer journeys), to tell what the method misses
    from what the default draw's logs do not carry.
    """
    kw = kw or {}
    results: dict[str, Any] = {}
    if dataset == "generator":
        seqs, truth = _generator(generator_seed, **(generator_kw or {}))
    else:
        # Without the item tags: the S3-Rec attributes are what purity and coherence are
        # judged against, so the model must not read them.
        seqs, truth = load_dataset(dataset, data, tags=False), None
    started = time.perf_counter()
    needs_model = {"recovery", "sparsity", "segments", "faithfulness", "purity", "coherence"}
    masked = dataset in AMAZON_ATTRIBUTES
    # Sparse review data: dropout 0.5, the SASRec paper's setting for such sets.
    if masked:
        kw = {"dropout": 0.5, **kw}
    model = _fit(seqs, **kw) if needs_model & set(parts) else None
    attrs = item_attributes(data, dataset, seqs)
    by_attr = (
        attribute_measures(model, seqs, attrs)
        if attrs is not None and {"purity", "coherence"} & set(parts)
        else None
    )
    if model is not None:
        results["fit_seconds"] = time.perf_counter() - started
        results["covisit_weight"] = float(model.net_.co_scale)  # picked on held-out events
    for part in parts:
        t0 = time.perf_counter()
        if part == "recovery" and truth is not None:
            results[part] = recovery(model, seqs, truth)
        elif part == "stability":
            results[part] = stability(seqs, **kw)
        elif part == "sparsity":
            results[part] = sparsity(model, seqs)
        elif part == "segments" and truth is not None:
            results[part] = segments(model, seqs, truth)
        elif part == "faithfulness":
            results[part] = faithfulness(model, seqs, n_cases=200, seed=0)
        elif part in ("purity", "coherence") and by_attr is not None:
            results[part] = by_attr[part]
            results[part]["by"] = "S3-Rec item attributes (several per item)"
        elif part == "purity":
            results[part] = purity(model, seqs)
        elif part == "coherence":
            results[part] = coherence(model, seqs)
        elif part == "colditems":
            target = "purchase" if dataset in ("generator", "taobao", "jdata") else "any"
            # Held-out items are known by their metadata: here the review sets' tags count.
            tagged = seqs if dataset == "generator" else load_dataset(dataset, data)
            results[part] = cold_items(tagged, target, kw=kw)
        elif part == "coldstart":
            target = "purchase" if dataset in ("generator", "taobao", "jdata") else "any"
            masked_cs = dataset in ("beauty", "sports", "toys")
            results[part] = cold_start(seqs, target, mask=masked_cs, kw=kw)
        else:
            continue
        print(
            f"{dataset}/{part} ({time.perf_counter() - t0:.0f} s):",
            json.dumps(results[part])[:600],
            flush=True,
        )
    return results


def markdown(results: dict[str, Any]) -> str:
    """Tables for docs/benchmarks.md from the results file."""
    out = []
    for ds, r in results.items():
        out.append(f"#### {ds}\n")
        if "recovery" in r:
            out += [
                "Planted-trait recovery (best single-dimension abs. Spearman rho / 5-fold ridge "
                "R^2; target >= 0.6 / >= 0.5):",
                "",
                "| profile view | " + " | ".join(TRAITS) + " | mean best abs rho | mean R^2 |",
                "|---|" + "---|" * (len(TRAITS) + 2),
            ]
            for view, v in r["recovery"].items():
                cells = [
                    f"{v['per_trait'][t]['best_abs_spearman']:.2f} / "
                    f"{v['per_trait'][t]['ridge_r2']:.2f}"
                    for t in TRAITS
                ]
                out.append(
                    f"| {view} | "
                    + " | ".join(cells)
                    + f" | {v['mean_best_abs_spearman']:.3f} | {v['mean_ridge_r2']:.3f} |"
                )
            out.append("")
        if "stability" in r:
            st = r["stability"]
            pairs = ", ".join(f"{p['seeds']}: {p['mean_matched_r']:.3f}" for p in st["pairs"])
            out += [
                f"Stability over seeds (journey traits, Hungarian-matched Pearson r; target "
                f">= 0.85): mean {st['mean_matched_r']:.3f} ({pairs}).",
                "",
            ]
        if "sparsity" in r:
            sp_ = r["sparsity"]
            out += [
                f"Sparsity (current profile, {sp_['traits']} traits): "
                f"{sp_['mean_traits_above_half']:.2f} traits above 0.5 per customer on "
                f"average; top-3 traits hold {100 * sp_['mean_top3_share']:.0f}% of the "
                f"profile mass; normalised entropy {sp_['mean_normalised_entropy']:.2f}.",
                "",
            ]
        if "segments" in r:
            out += [
                "Segments against the planted archetypes (adjusted Rand index):",
                "",
                "| method | k | ARI |",
                "|---|---|---|",
            ]
            for name, v in r["segments"].items():
                if isinstance(v, dict):
                    out.append(f"| {name} | {v['k']} | {v['ARI']:.3f} |")
            out.append("")
        if "faithfulness" in r:
            f = r["faithfulness"]
            out += [
                f"Faithfulness: removing the 3 most-attributed events lowers the top "
                f"item's score more than removing 3 random events in "
                f"{100 * f['share_top_beats_random']:.1f}% of {f['cases']} cases "
                f"(target >= 80%).",
                "",
            ]
        if "purity" in r:
            p = r["purity"]
            what = "attribute" if "by" in p else "category"
            out += [
                f"Item space, {what} purity@10 over {p['items_probed']} items: funnel "
                f"{p['funnel item vectors']:.3f}, ALS {p['ALS item factors']:.3f}, random "
                f"{p['random neighbours']:.3f}.",
                "",
            ]
        if "coherence" in r:
            c = r["coherence"]
            what = "attribute" if "by" in c else "category"
            out += [
                f"Trait coherence: share of a trait's top-20 items in its most common "
                f"{what} {c['mean_trait_share']:.3f} (random 20-item sets "
                f"{c['random_sets_share']:.3f}).",
                "",
            ]
        if "coldstart" in r:
            cs = r["coldstart"]
            out += [
                f"Cold start ({cs['natural_cases']} test cases with 1-3 events; "
                f"{cs['cut_cases']} cases cut to their last 1-3 events), HR@10 / NDCG@10:",
                "",
                "| model | natural 1-3 | cut to last 1-3 |",
                "|---|---|---|",
            ]
            for m in ("funnel", "pop", "itemknn"):
                cells = [
                    f"{cs[m][v]['HR@10']:.4f} / {cs[m][v]['NDCG@10']:.4f}" if v in cs[m] else "-"
                    for v in ("natural 1-3", "cut to last 1-3")
                ]
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out.append("")
        if "colditems" in r:
            ci = r["colditems"]
            out += [
                f"Items held out of training ({ci['held_out_items']} items, "
                f"{ci['cases']} test cases whose target is one of them):",
                "",
                "| model | HR@10 | NDCG@10 | HR@100 | median rank |",
                "|---|---|---|---|---|",
            ]
            for m, v in ci.items():
                if isinstance(v, dict) and "HR@10" in v:
                    out.append(
                        f"| {m} | {v['HR@10']:.4f} | {v['NDCG@10']:.4f} | "
                        f"{v['HR@100']:.4f} | {v['median_rank']:.0f} |"
                    )
            out.append(f"| random | | | | {ci['random']['median_rank']:.0f} |")
            out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--dataset", default="generator")
    ap.add_argument(
        "--only",
        default="recovery,stability,sparsity,segments,faithfulness,purity,coherence,coldstart,"
        "colditems",
    )
    ap.add_argument("--kw", default="", help="JSON FunnelModel settings (results keyed by them)")
    ap.add_argument(
        "--generator-seed",
        type=int,
        default=0,
        help="another draw of the built-in generator (results keyed 'generator seed=N')",
    )
    ap.add_argument(
        "--generator-kw",
        default="",
        help="JSON generate_funnel settings such as mean_sessions (results keyed by them)",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--markdown", action="store_true", help="print tables from --out and stop")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.markdown:
        print(markdown(results))
        return
    kw = json.loads(args.kw) if args.kw else {}
    parts = [p for p in args.only.split(",") if p]
    gen = json.loads(args.generator_kw) if args.generator_kw else {}
    new = run(parts, args.dataset, args.data, kw, args.generator_seed, gen)
    key = args.dataset
    if args.dataset == "generator" and args.generator_seed:
        key += f" seed={args.generator_seed}"
    if args.dataset == "generator" and gen:
        key += f" {json.dumps(gen)}"
    key = f"{key} {json.dumps(kw)}" if kw else key
    results[key] = {**results.get(key, {}), **new}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
