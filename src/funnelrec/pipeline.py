"""End-to-end jobs that the CLI (and notebooks) call: evaluate a file, run the demo."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from funnelrec.config import IngestConfig, SplitConfig
from funnelrec.datasets import generate_funnel
from funnelrec.evaluate import compare, make_split
from funnelrec.models import MODELS
from funnelrec.schema import FunnelrecError, InputError
from funnelrec.sequences import Sequences, atomic_write, load_sequences
from funnelrec.stats import funnel_stats


def resolve_models(names: str | list[str]) -> dict[str, Callable]:
    """Registry entries for a comma-separated list (or "all")."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:
        return dict(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise FunnelrecError(
            f"unknown model(s) {', '.join(unknown)}; available: {', '.join(MODELS)}"
        )
    return {n: MODELS[n] for n in names}


def evaluate_sequences(
    seqs: Sequences,
    models: str | list[str],
    split: SplitConfig,
    dataset: str = "",
    mask_history: bool = False,
    progress: Callable[[str], None] | None = None,
    model_params: dict[str, dict[str, Any]] | None = None,
    fitted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split, fit every model on the training part and score validation and test cases.

    `fitted`, when given, receives the fitted models by name.
    """
    sp = make_split(seqs, split)
    if len(sp.test) == 0:
        raise FunnelrecError(
            "no test cases: no customer has a target event with history "
            "before it (try --target any)"
        )
    makers = resolve_models(models)
    for name, params in (model_params or {}).items():
        if name in makers:
            makers[name] = partial(makers[name], **params)
    results = compare(makers, sp, mask_history=mask_history, progress=progress, fitted=fitted)
    return {
        "dataset": dataset,
        "split": sp.describe(),
        "target": sp.target,
        "split_protocol": sp.protocol,
        "mask_history": mask_history,
        "models": results,
    }


def flat_results(results: dict[str, Any]) -> dict[str, Any]:
    """The documented results.json shape: {"dataset", "split", "target", "models": {NAME:
    {metric: value}}} with test metrics, plus details under "details"."""
    return {
        "dataset": results["dataset"],
        "split": results["split_protocol"],
        "target": results["target"],
        "models": {
            m: {
                **r["test"]["metrics"],
                "valid_NDCG@10": r["valid"]["metrics"]["NDCG@10"],
                "fit_seconds": r["fit_seconds"],
            }
            for m, r in results["models"].items()
        },
        "details": results,
    }


def _finite(obj: Any) -> Any:
    """NaN / inf -> None, so the file is strict JSON (NaN means "no cases" here)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    """Write strict JSON atomically."""
    obj = _finite(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(
        path, lambda p: Path(p).write_text(json.dumps(obj, indent=2, default=str, allow_nan=False))
    )
    return path


# The demo compares every baseline with the funnel model; `funnelrec evaluate --models all`
# adds the item-only SASRec and GRU4Rec (several minutes more on two cores).
DEMO_MODELS = "pop,recent_pop,recent_items,repeat,itemknn,markov,als,bpr,funnel"


def run_demo(
    out: str | Path,
    n_customers: int = 3000,
    seed: int = 0,
    epochs: int = 30,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate example funnels, ingest them, and compare every baseline on next purchase."""
    from funnelrec.report import metrics_chart

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = generate_funnel(n_customers=n_customers, seed=seed)
    events_path = out / "events.csv"
    atomic_write(events_path, lambda p: data.events.to_csv(p, index=False))
    write_json(data.customers.to_dict(orient="list"), out / "ground_truth_customers.json")
    cfg = IngestConfig()
    seqs, ingest, seq_report = load_sequences(events_path, cfg, rejects_path=out / "rejects.csv")
    seqs.save(out / "sequences")
    stats = funnel_stats(seqs)
    write_json(
        {"ingest": ingest.to_dict(), "sequences": seq_report.to_dict(), "funnel": stats},
        out / "inspect.json",
    )
    fitted: dict[str, Any] = {}
    results = evaluate_sequences(
        seqs,
        DEMO_MODELS,
        SplitConfig(protocol="loo", target="purchase"),
        model_params={"funnel": {"epochs": epochs, "seed": seed}},
        dataset="built-in generator",
        progress=progress,
        fitted=fitted,
    )
    write_json(flat_results(results), out / "results.json")
    metrics_chart(results, out / "results.html")
    # The funnel model, profiling every customer from all their events, with its trait
    # cards and segments, and the report that shows them.
    if progress:
        progress("profiles, segments and the report")
    model = fitted["funnel"]
    model.set_histories(seqs)
    model.save(out / "model")
    describe_model(model, out / "model", seed=seed)
    write_report(out / "model", out / "report.html", title="funnelrec demo: built-in generator")
    return {
        "out": str(out),
        "ingest": ingest,
        "sequences": seq_report,
        "stats": stats,
        "results": results,
        "seconds": time.perf_counter() - started,
    }


def fit_funnel(
    seqs: Sequences,
    out: str | Path,
    n_traits: int = 16,
    target: str = "purchase",
    epochs: int = 30,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    ingest_config: IngestConfig | None = None,
    trait_l2: float = 0.0,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit `FunnelModel` on a leave-one-out split, score the test cases, save to `out`.

    `ingest_config` (how the events were read) is saved too, so that more events for the
    model (`profiles --events`, `recommend --events`) are read the same way. `params`: any
    other constructor arguments (they win over the named ones).
    """
    from funnelrec.evaluate import evaluate
    from funnelrec.models import FunnelModel

    sp = make_split(seqs, SplitConfig(protocol="loo", target=target))
    kw = {"n_traits": n_traits, "epochs": epochs, "seed": seed, "trait_l2": trait_l2}
    model = FunnelModel(**{**kw, **(params or {})})
    valid = (sp.valid.contexts(sp.full), sp.valid.targets) if len(sp.valid) else None
    model.fit(sp.train, valid=valid, progress=progress)
    # The saved model keeps every customer's full history, so profiles and recommendations
    # use all their events (the weights were learned on the training part only).
    model.set_histories(seqs)
    report = {
        "split": sp.describe(),
        "test": evaluate(model, sp) if len(sp.test) else {},
        "best_epoch": model.best_epoch_,
        "epochs": model.history_,
        "action_weights": model.action_weights(),
        "covisit": {
            "weight": float(model.net_.co_scale),
            "valid_NDCG@10_by_weight": model.covisit_valid_,
        },
        "params": model.get_params(),
        "notes": [],
    }
    flat = model.flat_traits()
    if flat:
        report["notes"].append(
            f"{len(flat)} of {model.n_traits} traits hardly vary between customers (std < 0.01): "
            "they carry no information about anyone; fit again with --trait-l2 0.01"
            + (" (more of it)" if model.trait_l2 > 0 else "")
        )
    model.save(out)
    write_json(report, Path(out) / "fit_report.json")
    if ingest_config is not None:
        write_json(ingest_config.to_dict(), Path(out) / INGEST_CONFIG)
    describe_model(model, out, seed=model.seed)
    return report


def describe_model(
    model: Any, model_dir: str | Path, n_segments: int | None = None, seed: int = 0
) -> tuple[Any, Any, Any]:
    """Trait cards, segments and behaviour reference, saved beside the model."""
    from funnelrec.profiles import describe

    desc, profiles, labels = describe(model, n_segments=n_segments, seed=seed)
    desc.save(model_dir)
    return desc, profiles, labels


def load_description(model_dir: str | Path, model: Any = None) -> Any:
    """The saved description, computed (and saved) first for models fitted before it existed."""
    from funnelrec.models import FunnelModel
    from funnelrec.profiles import Description

    if (Path(model_dir) / "traits.json").exists():
        return Description.load(model_dir)
    return describe_model(model or FunnelModel.load(model_dir), model_dir)[0]


def segments_table(model_dir: str | Path, n_segments: int | None = None) -> tuple[Any, Any]:
    """(customer_id, segment) for every customer, and the segment description (re-saved)."""
    import pandas as pd

    from funnelrec.models import FunnelModel

    model = FunnelModel.load(model_dir)
    n_customers = len(model.current_histories())
    if n_segments is not None and not 1 <= n_segments <= n_customers:
        raise FunnelrecError(
            f"--n-segments {n_segments}: the model has {n_customers:,} customers; "
            f"give a number from 1 to {n_customers:,}"
        )
    desc, profiles, labels = describe_model(model, model_dir, n_segments=n_segments)
    table = pd.DataFrame({"customer_id": profiles.index, "segment": labels})
    return table, desc


INGEST_CONFIG = "ingest_config.json"


def append_file_events(
    model: Any,
    model_dir: str | Path,
    events: str | Path,
    rejects_path: str | Path | None = None,
    customer: str | None = None,
    reading: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append the events of a file (every customer's, or only `customer`'s) to the histories.

    Read with the settings the model's events were read with (saved at fit), except those
    in `reading` (IngestConfig fields: a file in another layout needs its own `layout`,
    `column_map`, `action_map`, `timestamp_unit` or `delimiter`). Returns what
    happened to them: the ingestion report (rejected rows go to `rejects_path`), how many
    events were appended, and the ones the model cannot use, by reason (an item it was not
    trained on, say). Histories keep their last `max(history_len, max_len)` events.
    """
    import pandas as pd

    from funnelrec.ingest import read_events
    from funnelrec.sequences import unusable_events

    saved = Path(model_dir) / INGEST_CONFIG
    cfg = IngestConfig(**json.loads(saved.read_text())) if saved.exists() else IngestConfig()
    if reading:
        cfg = dataclasses.replace(cfg, **reading)
    try:
        table = read_events(events, cfg, rejects_path=rejects_path)
    except InputError as exc:
        if reading or not cfg.column_map:
            raise
        raise InputError(
            f"{exc}. These are the settings the model's own events were read with (saved at "
            "fit); for a file in another layout pass --layout or --map (and --action, "
            "--timestamp-unit) with --events"
        ) from exc
    df = table.df().rename(columns={"ts": "timestamp"})
    table.con.close()
    if customer is not None:
        df = df.loc[df["customer_id"].astype(str) == str(customer)]
    why = unusable_events(model.vocab_, df)
    if rejects_path is not None and (why != "").any():
        bad = df.loc[why != ""]
        raw = bad[["customer_id", "timestamp", "action", "item_id"]].astype(str)
        table.add_rejects(
            pd.DataFrame(
                {
                    "line": table.file_lines(bad["row_no"].to_numpy()),
                    "reason": ["not usable by the model: " + r for r in why[why != ""]],
                    "raw": raw.agg(",".join, axis=1).to_numpy(),
                }
            ),
            rejects_path,
        )
    unused: dict[str, int] = {}
    for cid, part in df.groupby("customer_id", sort=False):
        model.append_events(str(cid), part[["item_id", "action", "timestamp"]], dropped=unused)
    return {
        "ingest": table.report,
        "events_appended": len(df) - sum(unused.values()),
        "events_not_used": {k: v for k, v in unused.items() if v},
    }


def recommendations(
    model_dir: str | Path,
    customer: str,
    k: int = 10,
    explain: bool = False,
    events: str | Path | None = None,
    rejects_path: str | Path | None = None,
    reading: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Top-k for a customer, with explanations if asked; `events` adds their events first
    (read as `append_file_events` reads them).

    A customer the model does not know and without usable events in `events` gets popular
    items, flagged (`"fallback": "popularity"`); one it does not know and no `events` is an
    error (most likely a mistyped id).
    """
    from funnelrec.models import FunnelModel
    from funnelrec.profiles import explain_items, recommend_customer

    model = FunnelModel.load(model_dir)
    added = (
        append_file_events(model, model_dir, events, rejects_path, customer, reading)
        if events
        else {}
    )
    if events is None:
        model.history_of(customer)  # an unknown id without events: an error, not popular items
    rec = recommend_customer(model, customer, k=k)
    items = [
        {"item_id": str(i), "score": float(sc)}
        for i, sc in zip(rec["items"], rec["scores"], strict=True)
    ]
    if explain and rec["fallback"] is None:
        hist = model.history_of(customer)
        desc = load_description(model_dir, model)
        names = [desc.trait_names().get(t, t) for t in model.trait_names()]
        why = explain_items(model, hist, [row["item_id"] for row in items], trait_names=names)
        for row, e in zip(items, why, strict=True):
            row.update(e)
    return {"customer_id": customer, "fallback": rec["fallback"], "added": added, "items": items}


def profiles_table(
    model_dir: str | Path,
    events: str | Path | None = None,
    journey: bool = False,
    rejects_path: str | Path | None = None,
    reading: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Profiles of every known customer, after appending `events` (any supported layout).

    Current traits by default (what drives recommendations now); `journey=True` for traits
    averaged over each journey. Also returns what happened to the appended events (see
    `append_file_events`; empty without `events`).
    """
    from funnelrec.models import FunnelModel
    from funnelrec.profiles import full_profiles

    model = FunnelModel.load(model_dir)
    added = (
        append_file_events(model, model_dir, events, rejects_path, reading=reading)
        if events
        else {}
    )
    desc = load_description(model_dir, model)
    # The behavioural block is ranked against the customers the model was described on;
    # the appended events are included.
    return full_profiles(model, reference=desc.reference, journey=journey), added


def write_csv(df: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: df.to_csv(p, index=False))
    return path


def write_report(model_dir: str | Path, out: str | Path, title: str | None = None) -> Path:
    """The self-contained HTML report of a fitted model (computes the description if needed)."""
    from funnelrec.models import FunnelModel
    from funnelrec.profiles import assign_segments, full_profiles
    from funnelrec.report import build_report

    model = FunnelModel.load(model_dir)
    desc = load_description(model_dir, model)
    profiles = full_profiles(model, reference=desc.reference, journey=True)
    labels = assign_segments(profiles[desc.columns], desc.centers)
    return build_report(
        model, desc, profiles, labels, out, title=title or f"funnelrec report: {model_dir}"
    )
