"""What the command line prints: rich tables and summaries of library results.

Kept apart from `funnelrec.cli` so that the commands stay a page of option parsing each.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def print_ingest(ingest: Any, seq_report: Any | None) -> None:
    console.print(
        f"[bold]{ingest.path}[/]: layout [cyan]{ingest.layout}[/]"
        f" ({'detected' if ingest.layout_detected else 'given'}) - "
        f"{ingest.layout_description}",
        highlight=False,
    )
    sessions = f"; sessions: {seq_report.session_source}" if seq_report else ""
    console.print(f"timestamps: {ingest.timestamps}{sessions}", highlight=False)
    console.print(
        f"rows read {ingest.rows_read:,} | used {ingest.rows_used:,} | rejected "
        f"{ingest.n_rejected:,} | duplicates dropped {ingest.duplicates_dropped:,}"
        + (
            f" | truncated events {seq_report.truncated_events:,}"
            if seq_report and seq_report.truncated_events
            else ""
        ),
        highlight=False,
    )
    for reason, n in ingest.rows_rejected.items():
        console.print(f"  rejected: {reason}: {n:,}", highlight=False)
    if ingest.rejects_path:
        console.print(f"  rejected rows written to {ingest.rejects_path}", highlight=False)
    for note in ingest.notes:
        console.print(f"  note: {note}", highlight=False)


def print_tags(read: dict[str, Any], attached: dict[str, Any]) -> None:
    """What became of an item tag file's rows and of the tags."""
    console.print(
        f"[bold]{read['path']}[/]: {read['items']:,} items with {read['tags']:,} tags | items "
        f"of the events with tags {attached['items_with_tags']:,}, without "
        f"{attached['items_without_tags']:,} | tagged items not in the events "
        f"{attached['tagged_items_not_in_data']:,}"
        + (
            f" | tags cut by the per-item limit {attached['tags_cut_by_max_tags']:,}"
            if attached["tags_cut_by_max_tags"]
            else ""
        ),
        highlight=False,
    )
    for reason, n in read["rows_rejected"].items():
        console.print(f"  rejected: {reason}: {n:,}", highlight=False)
    if read["rejects_path"]:
        console.print(f"  rejected rows written to {read['rejects_path']}", highlight=False)


def print_added(added: dict[str, Any]) -> None:
    """What became of events appended to a fitted model's histories."""
    print_ingest(added["ingest"], None)
    console.print(f"events appended: {added['events_appended']:,}", highlight=False)
    for reason, n in added["events_not_used"].items():
        console.print(f"  not used: {reason}: {n:,}", highlight=False)


def print_stats(stats: dict[str, Any]) -> None:
    table = Table(title="funnel", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("customers", f"{stats['customers']:,}")
    table.add_row("items", f"{stats['items']:,}")
    table.add_row("events", f"{stats['events']:,}")
    for name, n in stats["actions"].items():
        table.add_row(f"  {name}", f"{n:,}")
    for name, v in stats["funnel_conversion"].items():
        table.add_row(f"customers {name.replace('_', ' ')}", "-" if v is None else f"{v:.1%}")
    rate = stats["remove_after_cart_rate"]
    table.add_row("carts later removed", "-" if rate is None else f"{rate:.1%}")
    table.add_row("sessions", f"{stats['sessions']:,}")
    for key in ("sessions_per_customer", "events_per_session", "history_length"):
        q = stats[key]
        if q:
            table.add_row(
                key.replace("_", " "),
                f"median {q['median']:g} | p95 {q['p95']:g} | max {q['max']:g}",
            )
    table.add_row(
        "history length buckets",
        " | ".join(f"{k}: {v:,}" for k, v in stats["history_length_buckets"].items()),
    )
    console.print(table)


def print_results(results: dict[str, Any]) -> None:
    """A table of test metrics (and validation NDCG@10) per model."""
    sp = results["split"]
    title = (
        f"{sp['protocol']} split, target {sp['target']}: {sp['test_cases']:,} test cases, "
        f"full ranking over {results.get('n_items', '')} items".replace(" over  items", "")
    )
    table = Table(title=title)
    for col in (
        "model",
        "HR@10",
        "NDCG@10",
        "MRR",
        "HR@20",
        "coverage@10",
        "valid NDCG@10",
        "fit s",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = sorted(results["models"].items(), key=lambda kv: -kv[1]["test"]["metrics"]["NDCG@10"])
    for name, r in rows:
        m = r["test"]["metrics"]
        table.add_row(
            name,
            f"{m['HR@10']:.4f}",
            f"{m['NDCG@10']:.4f}",
            f"{m['MRR']:.4f}",
            f"{m['HR@20']:.4f}",
            f"{m['coverage@10']:.3f}",
            f"{r['valid']['metrics']['NDCG@10']:.4f}",
            f"{r['fit_seconds']:.2f}",
        )
    console.print(table)
    if sp.get("note"):
        console.print(f"note: {sp['note']}", highlight=False)
