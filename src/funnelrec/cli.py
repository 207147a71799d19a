"""Command-line interface. Thin: parse options, call one library function, format the result."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from funnelrec.cli_output import (
    console,
    print_added,
    print_ingest,
    print_results,
    print_stats,
    print_tags,
)
from funnelrec.config import IngestConfig, SplitConfig
from funnelrec.schema import FunnelrecError

app = typer.Typer(
    help="funnelrec: interpretable profiles and recommendations from funnel logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

EventsArg = Annotated[
    Path,
    typer.Argument(
        help="Events file: CSV, CSV.gz, Parquet, JSON Lines or a benchmark sequence file."
    ),
]
LayoutOpt = Annotated[str, typer.Option(help="Layout name or 'auto' to detect it.")]
MapOpt = Annotated[
    list[str] | None,
    typer.Option("--map", help="Column map CANONICAL=COLUMN (repeat, or comma-separate)."),
]
ActionOpt = Annotated[
    list[str] | None,
    typer.Option("--action", help="Action map RAW=CANONICAL (repeat, or comma-separate)."),
]
StrictOpt = Annotated[bool, typer.Option(help="Reject actions that are not canonical or mapped.")]
GapOpt = Annotated[float, typer.Option(help="Inactivity (minutes) that ends a session.")]
MaxHistOpt = Annotated[
    int, typer.Option(min=0, help="Keep each customer's last N events (0 = all).")
]
TsOpt = Annotated[
    str,
    typer.Option(
        help="Timestamp unit: auto, s, ms, us, ns, iso, or a strptime format like '%d/%m/%Y %H:%M'."
    ),
]
DelimOpt = Annotated[str | None, typer.Option(help="Field delimiter (default: sniffed).")]
TagsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Item tags (several per item): a JSON object of item id -> list of tags, or a "
        "table with item_id and tag (one per row) or tags ('a|b|c'). The funnel model reads "
        "them.",
    ),
]
HeaderOpt = Annotated[
    bool | None,
    typer.Option(
        "--header/--no-header",
        help="Whether the first line names the columns (default: detected); without one, "
        "map column0, column1, ... with --map.",
    ),
]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        # Split at a comma only where a new KEY= follows: a column name may hold a comma.
        for part in re.split(r",(?=[^,=]+=)", value.strip().strip(",")):
            if not part.strip():
                continue
            if "=" not in part:
                raise FunnelrecError(f"{what} expects KEY=VALUE, got '{part}'")
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _ingest_config(
    layout: str,
    map_: list[str] | None,
    action: list[str] | None,
    strict: bool,
    session_gap: float,
    max_history: int,
    timestamp_unit: str,
    delimiter: str | None,
    header: bool | None = None,
) -> IngestConfig:
    try:
        return IngestConfig(
            layout=layout,
            column_map=_pairs(map_, "--map"),
            action_map=_pairs(action, "--action"),
            strict_actions=strict,
            session_gap_minutes=session_gap,
            max_history=max_history,
            timestamp_unit=timestamp_unit,
            delimiter=delimiter,
            has_header=header,
        )
    except ValueError as exc:  # a setting out of range
        raise FunnelrecError(str(exc)) from exc


def _reading(
    layout: str,
    map_: list[str] | None,
    action: list[str] | None,
    timestamp_unit: str,
    delimiter: str | None,
    header: bool | None = None,
) -> dict[str, object]:
    """How to read an --events file where it differs from the model's own events (the
    settings saved at fit hold for everything not given here)."""
    out: dict[str, object] = {}
    if layout != "auto" or map_:
        # Another layout: none of the saved reading settings apply, only the ones given.
        out.update(
            layout=layout,
            column_map=_pairs(map_, "--map"),
            timestamp_unit=timestamp_unit,
            delimiter=delimiter,
            has_header=header,
        )
    if action:
        out["action_map"] = _pairs(action, "--action")
    if timestamp_unit != "auto":
        out["timestamp_unit"] = timestamp_unit
    if delimiter is not None:
        out["delimiter"] = delimiter
    if header is not None:
        out["has_header"] = header
    return out


def _attach_tags(seqs, path: Path | None, rejects: Path) -> None:
    """Read `--item-tags` and give the items their tags; print what became of the rows."""
    if path is None:
        return
    from funnelrec.item_tags import attach_item_tags, read_item_tags

    tags, report = read_item_tags(path, rejects_path=rejects)
    print_tags(report, attach_item_tags(seqs, tags))


def _out_file(path: Path) -> None:
    """Refuse an output file that is a folder before any work is done."""
    if path.is_dir():
        raise FunnelrecError(f"--out {path} is a folder; give a file name")


def _out_dir(path: Path) -> None:
    """Refuse an output folder that is a file before any work is done."""
    if path.exists() and not path.is_dir():
        raise FunnelrecError(f"--out {path} is a file; give a folder")


def _make_out_dir(out: Path) -> Path | None:
    """Create the output folder (refusing a file); returns it when this call made it, so
    that a failure can take it away again (see `_fail`)."""
    _out_dir(out)
    made = None if out.exists() else out
    out.mkdir(parents=True, exist_ok=True)
    return made


def _fail(exc: Exception, made: Path | None = None) -> None:
    """Print the error and exit 2; `made` is an output folder this command created, removed
    again when the failure left it empty."""
    if made is not None and made.is_dir() and not any(made.iterdir()):
        made.rmdir()
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def inspect(
    events: EventsArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows.")] = None,
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    strict: StrictOpt = False,
    session_gap: GapOpt = 30.0,
    max_history: MaxHistOpt = 0,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Detected layout, rows read / used / rejected, funnel conversion and distributions."""
    from funnelrec.sequences import load_sequences
    from funnelrec.stats import funnel_stats

    try:
        cfg = _ingest_config(
            layout,
            map_,
            action,
            strict,
            session_gap,
            max_history,
            timestamp_unit,
            delimiter,
            header,
        )
        rejects = rejects or events.with_name(events.name + ".rejects.csv")
        seqs, ingest, seq_report = load_sequences(events, cfg, rejects_path=rejects)
        stats = funnel_stats(seqs)
    except FunnelrecError as exc:
        _fail(exc)
    if as_json:
        out = {"ingest": ingest.to_dict(), "sequences": seq_report.to_dict(), "funnel": stats}
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return
    print_ingest(ingest, seq_report)
    print_stats(stats)


@app.command()
def evaluate(
    events: EventsArg,
    models: Annotated[str, typer.Option(help="Comma-separated model names, or 'all'.")] = "all",
    split: Annotated[str, typer.Option(help="loo (leave-one-out by time) or temporal.")] = "loo",
    target: Annotated[
        str,
        typer.Option(
            help="purchase (next conversion, before its session), any (next interaction), "
            "or an action name."
        ),
    ] = "purchase",
    out: Annotated[Path, typer.Option(help="Results JSON file.")] = Path("results.json"),
    mask_history: Annotated[bool, typer.Option(help="Remove history items from rankings.")] = False,
    plot: Annotated[
        bool, typer.Option(help="Also write a bar chart next to --out (.html).")
    ] = True,
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    strict: StrictOpt = False,
    session_gap: GapOpt = 30.0,
    max_history: MaxHistOpt = 0,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
    item_tags: TagsOpt = None,
) -> None:
    """Fit models on a time-ordered split and score them by full ranking (HR, NDCG, MRR)."""
    from funnelrec.pipeline import evaluate_sequences, flat_results, write_json
    from funnelrec.report import metrics_chart
    from funnelrec.sequences import load_sequences

    try:
        cfg = _ingest_config(
            layout,
            map_,
            action,
            strict,
            session_gap,
            max_history,
            timestamp_unit,
            delimiter,
            header,
        )
        _out_file(out)
        rejects = out.with_name(out.stem + ".rejects.csv")
        seqs, ingest, seq_report = load_sequences(events, cfg, rejects_path=rejects)
        print_ingest(ingest, seq_report)
        _attach_tags(seqs, item_tags, out.with_name(out.stem + ".item_tags.rejects.csv"))
        with console.status("evaluating") as status:
            results = evaluate_sequences(
                seqs,
                models,
                SplitConfig(protocol=split, target=target),
                dataset=str(events),
                mask_history=mask_history,
                progress=lambda m: status.update(f"fitting and scoring [cyan]{m}[/]"),
            )
    except FunnelrecError as exc:
        _fail(exc)
    write_json(flat_results(results), out)
    print_results(results)
    console.print(f"results written to {out}", highlight=False)
    if plot:
        chart = metrics_chart(results, out.with_suffix(".html"))
        console.print(f"chart written to {chart}", highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for every output.")] = Path("funnelrec-demo"),
    customers: Annotated[int, typer.Option(help="Synthetic customers to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs for the funnel model.")] = 30,
) -> None:
    """Run the main job on built-in example data and say where the outputs are."""
    from funnelrec.pipeline import run_demo

    try:
        with console.status("generating example funnels") as status:
            res = run_demo(
                out,
                n_customers=customers,
                seed=seed,
                epochs=epochs,
                progress=lambda m: status.update(f"fitting and scoring [cyan]{m}[/]"),
            )
    except FunnelrecError as exc:
        _fail(exc)
    print_ingest(res["ingest"], res["sequences"])
    print_results(res["results"])
    console.print(
        f"\n[bold green]done[/] in {res['seconds']:.1f} s. Outputs in [bold]{out}/[/]:",
        highlight=False,
    )
    for name, what in (
        ("events.csv", "the generated events (canonical layout)"),
        ("ground_truth_customers.json", "planted traits per customer"),
        ("sequences/", "compact sequences (safetensors + JSON id maps)"),
        ("inspect.json", "ingestion report and funnel statistics"),
        ("results.json", "HR/NDCG/MRR per model, per history-length bucket"),
        ("results.html", "chart of the results (open in a browser)"),
        ("model/", "the fitted funnel model, trait cards (traits.json), segments"),
        ("report.html", "the report: funnel, action weights, traits, segments, examples"),
    ):
        console.print(f"  {name:<30} {what}", highlight=False)


@app.command()
def ingest(
    events: EventsArg,
    out: Annotated[Path, typer.Option(help="Folder for sequences, report and rejects.")],
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    strict: StrictOpt = False,
    session_gap: GapOpt = 30.0,
    max_history: MaxHistOpt = 0,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Read events into compact sequences (safetensors + JSON) with a report and rejects."""
    from funnelrec.pipeline import write_json
    from funnelrec.sequences import load_sequences

    made = None
    try:
        cfg = _ingest_config(
            layout,
            map_,
            action,
            strict,
            session_gap,
            max_history,
            timestamp_unit,
            delimiter,
            header,
        )
        made = _make_out_dir(out)
        seqs, rep, seq_rep = load_sequences(events, cfg, rejects_path=out / "rejects.csv")
    except FunnelrecError as exc:
        _fail(exc, made)
    seqs.save(out)
    write_json(
        {"ingest": rep.to_dict(), "sequences": seq_rep.to_dict(), "config": cfg.to_dict()},
        out / "ingest_report.json",
    )
    print_ingest(rep, seq_rep)
    console.print(f"sequences written to {out}/", highlight=False)


@app.command()
def fit(
    events: EventsArg,
    out: Annotated[Path, typer.Option(help="Model folder (weights, config, histories).")],
    traits: Annotated[int, typer.Option(min=1, help="Number of traits in the profile.")] = 16,
    target: Annotated[str, typer.Option(help="purchase (next conversion) or any.")] = "purchase",
    epochs: Annotated[
        int, typer.Option(min=1, help="Most epochs; early stopping on validation.")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    trait_l2: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Penalty that keeps traits spread between customers; try 0.01 when fit "
            "says traits are flat (order-only data).",
        ),
    ] = 0.0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Any FunnelModel constructor argument NAME=VALUE (repeat), e.g. "
            "-p dropout=0.5 -p item_init=random.",
        ),
    ] = None,
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    strict: StrictOpt = False,
    session_gap: GapOpt = 30.0,
    max_history: MaxHistOpt = 0,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
    item_tags: TagsOpt = None,
) -> None:
    """Fit the funnel model (leave-one-out split; early stopping on validation NDCG@10)."""
    from rich.progress import Progress

    from funnelrec.models import FunnelModel
    from funnelrec.pipeline import fit_funnel
    from funnelrec.sequences import load_sequences

    made = None
    try:
        try:
            params = FunnelModel.params_from_text(_pairs(param, "--param"))
            FunnelModel(**params).check_params()
        except ValueError as exc:
            raise FunnelrecError(f"--param: {exc}") from None
        cfg = _ingest_config(
            layout,
            map_,
            action,
            strict,
            session_gap,
            max_history,
            timestamp_unit,
            delimiter,
            header,
        )
        made = _make_out_dir(out)
        seqs, ingest_rep, seq_rep = load_sequences(events, cfg, rejects_path=out / "rejects.csv")
        print_ingest(ingest_rep, seq_rep)
        _attach_tags(seqs, item_tags, out / "item_tags.rejects.csv")
        with Progress(console=console) as bar:
            task = bar.add_task("training", total=epochs)

            def show(r: dict) -> None:
                bar.update(task, completed=r["epoch"])
                # Epochs are judged with the covisit term at its best weight: say which.
                co = f" (covisit {r['covisit_weight']:g})" if "covisit_weight" in r else ""
                console.print(
                    f"epoch {r['epoch']:>3}  loss {r['loss']:.4f}  valid NDCG@10 "
                    f"{r.get('valid_NDCG@10', float('nan')):.4f}{co}  "
                    f"{r['seconds']:.0f} s",
                    highlight=False,
                )

            report = fit_funnel(
                seqs,
                out,
                n_traits=traits,
                target=target,
                epochs=epochs,
                seed=seed,
                progress=show,
                ingest_config=cfg,
                trait_l2=trait_l2,
                params=params,
            )
    except FunnelrecError as exc:
        _fail(exc, made)
    table = Table(title="learned action weights")
    for col in ("action", "input gate", "history weight"):
        table.add_column(col, justify="left" if col == "action" else "right")
    for name, w in report["action_weights"].items():
        table.add_row(name, f"{w['input_gate']:+.3f}", f"{w['history_weight']:+.3f}")
    console.print(table)
    co = report["covisit"]
    if co["valid_NDCG@10_by_weight"]:
        console.print(
            f"covisit weight {co['weight']:g} (picked on validation; 0 = off)", highlight=False
        )
    sp = report["split"]
    if sp.get("note"):
        console.print(f"note: {sp['note']}", highlight=False)
    if report["test"]:
        m = report["test"]["metrics"]
        scored = (
            f"test ({sp['target']}, {sp['test_cases']:,} cases): "
            f"HR@10 {m['HR@10']:.4f}  NDCG@10 {m['NDCG@10']:.4f}"
        )
    else:
        scored = (
            f"not evaluated: no customer has a '{sp['target']}' test case (an event of that "
            "kind after an earlier session); try --target any"
        )
    console.print(
        f"{scored}; best epoch {report['best_epoch']}; model written to {out}/",
        highlight=False,
    )
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False)


@app.command()
def profiles(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    out: Annotated[
        Path, typer.Option(help="CSV: customer_id, the learned traits, then the behavioural block.")
    ],
    events: Annotated[
        Path | None, typer.Option(help="More events to add before profiling.")
    ] = None,
    journey: Annotated[
        bool, typer.Option(help="Traits averaged over the journey instead of the current state.")
    ] = False,
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Write every customer's profile: learned traits and behavioural block, all in [0, 1].

    --events is read as the model's events were; the reading options are for a file in
    another layout.
    """
    from funnelrec.pipeline import profiles_table, write_csv

    try:
        _out_file(out)
        rejects = out.with_name(out.stem + ".rejects.csv")
        reading = _reading(layout, map_, action, timestamp_unit, delimiter, header)
        table, added = profiles_table(
            model_dir, events, journey=journey, rejects_path=rejects, reading=reading
        )
    except FunnelrecError as exc:
        _fail(exc)
    if added:
        print_added(added)
    write_csv(table.reset_index(), out)
    n_behaviour = sum(c.startswith("behaviour_") for c in table.columns)
    console.print(
        f"{len(table):,} profiles x {table.shape[1] - n_behaviour} learned traits + "
        f"{n_behaviour} behavioural written to {out}",
        highlight=False,
    )


@app.command()
def recommend(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    customer: Annotated[str, typer.Option(help="Customer id.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items.")] = 10,
    explain: Annotated[bool, typer.Option(help="Explain each item (traits and events).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    events: Annotated[
        Path | None,
        typer.Option(
            help="Events file with this customer's newer or first events (read as the "
            "model's were); an unseen customer without usable events gets popular items."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where to write --events rows that were not used (default: beside it)."),
    ] = None,
    layout: LayoutOpt = "auto",
    map_: MapOpt = None,
    action: ActionOpt = None,
    timestamp_unit: TsOpt = "auto",
    delimiter: DelimOpt = None,
    header: HeaderOpt = None,
) -> None:
    """Top-k items for a customer, with scores (and explanations with --explain).

    The reading options are for an --events file in another layout than the model's events.
    """
    from funnelrec.pipeline import recommendations

    try:
        if events and rejects is None:
            rejects = Path(f"{events}.rejects.csv")
        reading = _reading(layout, map_, action, timestamp_unit, delimiter, header)
        res = recommendations(model_dir, customer, k, explain, events, rejects, reading)
    except FunnelrecError as exc:
        _fail(exc)
    added = res.pop("added")
    if as_json:
        sys.stdout.write(json.dumps(res, default=str) + "\n")
        return
    if added:
        print_added(added)
    if res["fallback"]:
        console.print(
            f"no usable events for {customer}: {res['fallback']} fallback (cold start)",
            highlight=False,
        )
    table = Table(title=f"recommendations for {customer}")
    for col in ("rank", "item", "score") + (("why",) if explain else ()):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for i, row in enumerate(res["items"], start=1):
        cells = [str(i), str(row["item_id"]), f"{row['score']:.3f}"]
        if explain and "text" in row:
            cells.append(row["text"].split(" — ", 1)[-1])
        table.add_row(*cells)
    console.print(table)


@app.command()
def traits(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """Print the trait cards: what raises each trait and who has it (saved with the model)."""
    from funnelrec.pipeline import load_description

    try:
        desc = load_description(model_dir)
    except FunnelrecError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(desc.cards) + "\n")
        return
    for c in desc.cards:
        cats = ", ".join(x["name"] for x in c["top_categories"][:3]) or "-"
        tags = ", ".join(x["name"] for x in c.get("top_tags", [])[:3])
        items = ", ".join(x["item_id"] for x in c["top_items"][:5])
        console.print(
            f"[bold]{c['trait']}[/] [cyan]{c['name']}[/]  mean {c['mean']:.2f}\n"
            f"  {c['description']}\n  categories: {cats}\n"
            + (f"  tags: {tags}\n" if tags else "")
            + f"  top items: {items}",
            highlight=False,
        )


@app.command()
def segments(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    out: Annotated[Path, typer.Option(help="CSV: customer_id, segment.")],
    n_segments: Annotated[
        int | None, typer.Option(min=1, help="Number of segments (default: best silhouette).")
    ] = None,
) -> None:
    """Group customers into archetypes; segment cards go to a JSON file beside the CSV."""
    from funnelrec.pipeline import segments_table, write_csv, write_json

    try:
        _out_file(out)
        table, desc = segments_table(model_dir, n_segments)
    except FunnelrecError as exc:
        _fail(exc)
    write_csv(table, out)
    cards_path = out.with_suffix(".json")
    write_json({"segments": desc.segments, "silhouette": desc.silhouette}, cards_path)
    t = Table(title=f"{len(desc.segments)} segments")
    for col in ("segment", "customers", "bought", "removed", "name"):
        t.add_column(col)
    for sc in desc.segments:
        t.add_row(
            str(sc["segment"]),
            f"{sc['size']:,}",
            f"{100 * sc['conversion_rate']:.0f}%",
            f"{100 * sc['removal_rate']:.0f}%",
            sc["name"],
        )
    console.print(t)
    console.print(f"segments written to {out}, cards to {cards_path}", highlight=False)


@app.command()
def report(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (works offline) for a fitted model."""
    from funnelrec.pipeline import write_report

    try:
        _out_file(out)
        with console.status("writing the report"):
            path = write_report(model_dir, out)
    except FunnelrecError as exc:
        _fail(exc)
    console.print(f"report written to {path}", highlight=False)


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `funnelrec fit`.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    store: Annotated[
        Path | None, typer.Option(help="SQLite event store (default MODEL_DIR/events.sqlite).")
    ] = None,
    keyed_reads: Annotated[bool, typer.Option(help="Require the API key on reads too.")] = False,
) -> None:
    """Serve live profiles and recommendations over HTTP, with a dashboard at /.

    Writes need FUNNELREC_API_KEY (sent as X-API-Key). Events are stored durably (SQLite WAL)
    and replayed on restart.
    """
    import uvicorn

    from funnelrec.serve import create_app

    try:
        api = create_app(model_dir, store or model_dir / "events.sqlite", keyed_reads=keyed_reads)
    except FunnelrecError as exc:
        _fail(exc)
    console.print(f"serving {model_dir} on http://{host}:{port}/", highlight=False)
    uvicorn.run(api, host=host, port=port, log_level="warning")


def main() -> None:  # pragma: no cover
    """Console entry point: a file that cannot be read or written is an error message (with
    its path), not a traceback."""
    try:
        app()
    except OSError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
