"""Ingestion benchmark: funnelrec's `load_sequences` against a hand-rolled pandas notebook path.

Why: funnelrec promises to turn a 10-million-event funnel log into per-customer sequences in
under 60 s and 3 GB of memory on a laptop, with validation, reject counting, dense ids and
sessionization on top. This script checks that promise with numbers, and shows what the extra
work costs (or saves) against what most people write first: `pd.read_csv`, sort, group.

How:
* A synthetic CSV in funnelrec's canonical layout is generated once (vectorized numpy, written
  in chunks with pyarrow) and cached in `.bench/`. Timestamps are integer Unix seconds.
  A small share of rows is displaced so the file is not in time order within customers.
* Each measured run starts a fresh Python process (so nothing is cached in memory and peak RSS
  belongs to that one job) and measures its wall time from the parent, plus peak RSS from
  `os.wait4` (the child's own `ru_maxrss`). The child also reports the time of the call alone.
* funnelrec and pandas alternate which goes first in each run; the speed ratio
  pandas / funnelrec is taken per run pair, then its median.
* `--breakdown` adds one diagnostic funnelrec run that times `read_events` and
  `build_sequences` separately and, inside them, every DuckDB statement, with the peak RSS of
  each segment.

Usage:
    .venv/bin/python -m benchmarks.ingest --events 10000000 --runs 3 \
        --out benchmarks/results/ingest.json [--breakdown]

Only the standard library is imported at module level: worker processes import just what their
path needs, so neither side pays for the other's imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
GENERATOR_VERSION = 2
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 3072.0
ACTIONS = ("view", "add_cart", "remove_cart", "purchase")
ACTION_SHARES = (0.85, 0.09, 0.02, 0.04)
MONTH_START = 1_709_251_200  # 2024-03-01 00:00:00 UTC
MONTH_SECONDS = 31 * 86_400


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data generation (not timed)
# --------------------------------------------------------------------------------------------


def dataset_path(n_events: int, n_customers: int, n_items: int, seed: int) -> Path:
    name = f"events_v{GENERATOR_VERSION}_{n_events}_{n_customers}c_{n_items}i_s{seed}.csv"
    return BENCH_DIR / name


def generate(
    path: Path,
    n_events: int,
    n_customers: int,
    n_items: int,
    seed: int,
    unsorted_share: float,
    chunk_rows: int = 1_000_000,
) -> dict[str, Any]:
    """Write a synthetic canonical-layout CSV to `path` (atomically) and describe it.

    Memory: the per-event columns are held as compact numpy arrays (~25 bytes/event, ~250 MB for
    10M events); text is produced and written one chunk at a time.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    n_customers = min(n_customers, n_events)
    n_items = min(n_items, n_events)
    rng = np.random.default_rng(seed)

    # Customers: every customer has at least one event; the rest follow lognormal activity.
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=n_customers)
    extra = rng.choice(n_customers, size=n_events - n_customers, p=activity / activity.sum())
    cust = np.concatenate([np.arange(n_customers), extra]).astype(np.int32)
    del extra
    # Items: Zipf-like popularity; every item appears at least once.
    pop = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    rng.shuffle(pop)
    extra = rng.choice(n_items, size=n_events - n_items, p=pop / pop.sum())
    item = np.concatenate([np.arange(n_items), extra]).astype(np.int32)
    del extra
    rng.shuffle(item)
    action = rng.choice(len(ACTIONS), size=n_events, p=ACTION_SHARES).astype(np.int8)

    # Time: each customer has sessions (about 8 events each) starting uniformly in the month;
    # events fall within 30 minutes of their session's start.
    per_customer = np.bincount(cust, minlength=n_customers)
    n_sessions = np.maximum(1, np.ceil(per_customer / 8.0)).astype(np.int64)
    session_base = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(n_sessions, out=session_base[1:])
    session_start = rng.integers(0, MONTH_SECONDS - 1800, size=int(session_base[-1]))
    pick = (rng.random(n_events) * n_sessions[cust]).astype(np.int64)
    ts = MONTH_START + session_start[session_base[cust] + pick] + rng.integers(0, 1800, n_events)
    del pick, session_start, session_base, n_sessions, per_customer

    # File order: global time order (like a real log), then a share of rows displaced at random.
    order = np.argsort(ts, kind="stable")
    cust, item, action, ts = cust[order], item[order], action[order], ts[order]
    del order
    n_moved = round(unsorted_share * n_events)
    if n_moved > 1:
        moved = np.sort(rng.choice(n_events, size=n_moved, replace=False))
        perm = rng.permutation(moved)
        cust[moved], item[moved] = cust[perm], item[perm]
        action[moved], ts[moved] = action[perm], ts[perm]
        del moved, perm

    # Raw ids: customers and items get random-looking integer ids (not dense, not in order).
    cust_raw = 100_000_000 + rng.choice(900_000_000, size=n_customers, replace=False)
    item_raw = 1_000_000 + rng.choice(99_000_000, size=n_items, replace=False)
    # Item metadata: ~400 categories, ~3000 brands (15% of items without a brand), fixed price.
    top = [
        "electronics",
        "appliances",
        "computers",
        "apparel",
        "furniture",
        "kids",
        "sport",
        "construction",
        "auto",
        "accessories",
        "country_yard",
        "medicine",
        "stationery",
    ]
    cat_names = pa.array([f"{top[k % len(top)]}.sub{k}" for k in range(400)])
    brand_names = pa.array([f"brand{k:04d}" for k in range(3000)])
    item_cat = rng.integers(0, len(cat_names), n_items).astype(np.int32)
    item_brand = rng.integers(0, len(brand_names), n_items).astype(np.int32)
    item_has_brand = rng.random(n_items) >= 0.15
    item_price = np.round(rng.lognormal(3.5, 1.0, n_items), 2)
    action_names = pa.array(list(ACTIONS))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    schema = pa.schema(
        [
            ("customer_id", pa.int64()),
            ("timestamp", pa.int64()),
            ("action", pa.string()),
            ("item_id", pa.int64()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("price", pa.float64()),
        ]
    )
    # No value holds a comma or quote: write plain text, header unquoted, like real exports.
    plain = pacsv.WriteOptions(include_header=False, quoting_style="none")
    try:
        with (
            open(tmp, "wb") as sink,
            pacsv.CSVWriter(sink, schema, write_options=plain) as writer,
        ):
            sink.write((",".join(schema.names) + "\n").encode())
            for lo in range(0, n_events, chunk_rows):
                hi = min(lo + chunk_rows, n_events)
                it = item[lo:hi]
                brand_idx = pa.array(item_brand[it], mask=~item_has_brand[it])
                table = pa.table(
                    [
                        pa.array(cust_raw[cust[lo:hi]]),
                        pa.array(ts[lo:hi]),
                        action_names.take(pa.array(action[lo:hi])),
                        pa.array(item_raw[it]),
                        cat_names.take(pa.array(item_cat[it])),
                        brand_names.take(brand_idx),
                        pa.array(item_price[it]),
                    ],
                    schema=schema,
                )
                writer.write_table(table)
                log(f"  generated {hi:,}/{n_events:,} rows")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

    # Rows out of time order within their customer (what funnelrec must re-sort).
    prev = np.full(n_customers, np.iinfo(np.int64).min, dtype=np.int64)
    back = 0
    for lo in range(0, n_events, chunk_rows):
        hi = min(lo + chunk_rows, n_events)
        c, t = cust[lo:hi], ts[lo:hi]
        order = np.argsort(c, kind="stable")
        cs, tsorted = c[order], t[order]
        first = np.ones(len(cs), dtype=bool)
        first[1:] = cs[1:] != cs[:-1]
        before = np.where(first, prev[cs], np.concatenate([[0], tsorted[:-1]]))
        back += int((tsorted < before).sum())
        last = np.ones(len(cs), dtype=bool)
        last[:-1] = cs[1:] != cs[:-1]
        prev[cs[last]] = tsorted[last]

    meta = {
        "path": str(path),
        "bytes": path.stat().st_size,
        "rows": n_events,
        "customers": n_customers,
        "items": n_items,
        "columns": schema.names,
        "timestamp_format": "integer Unix seconds (UTC), March 2024",
        "action_shares_target": dict(zip(ACTIONS, ACTION_SHARES, strict=True)),
        "action_counts": {
            a: int(n)
            for a, n in zip(ACTIONS, np.bincount(action, minlength=len(ACTIONS)), strict=True)
        },
        "displaced_share": unsorted_share,
        "rows_out_of_time_order_within_customer": back,
        "brand_missing_item_share": round(float(1 - item_has_brand.mean()), 4),
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "generate_seconds": round(time.perf_counter() - started, 1),
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta


def ensure_dataset(args: argparse.Namespace) -> dict[str, Any]:
    path = dataset_path(args.events, args.customers, args.items, args.seed)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            log(f"using cached data {path} ({meta['bytes'] / 1e6:,.0f} MB)")
            return meta
    log(f"generating {args.events:,} events -> {path}")
    meta = generate(path, args.events, args.customers, args.items, args.seed, args.unsorted_share)
    log(f"generated in {meta['generate_seconds']} s ({meta['bytes'] / 1e6:,.0f} MB)")
    return meta


# --------------------------------------------------------------------------------------------
# Workers (each runs in its own fresh process)
# --------------------------------------------------------------------------------------------


def _vm_hwm_mb() -> float | None:
    """Peak RSS of this process so far, from /proc (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def worker_funnelrec(data: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from funnelrec.sequences import load_sequences

    t1 = time.perf_counter()
    seqs, report, seq_report = load_sequences(data)
    t2 = time.perf_counter()
    return {
        "import_s": t1 - t0,
        "call_s": t2 - t1,
        "rows_read": report.rows_read,
        "rows_used": report.rows_used,
        "rows_rejected": report.rows_rejected,
        "duplicates_dropped": report.duplicates_dropped,
        "input_sorted": report.input_sorted,
        "timestamps": report.timestamps,
        "layout": report.layout,
        "n_customers": seq_report.n_customers,
        "n_items": seq_report.n_items,
        "n_events": seqs.n_events,
        "n_sessions": seq_report.n_sessions,
        "self_peak_rss_mb": _vm_hwm_mb(),
    }


def worker_pandas(data: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd

    t1 = time.perf_counter()
    df = pd.read_csv(data)
    t_read = time.perf_counter()
    df = df.sort_values(["customer_id", "timestamp"], kind="stable", ignore_index=True)
    t_sort = time.perf_counter()
    cust_codes, cust_uniques = pd.factorize(df["customer_id"], sort=True)
    item_codes, item_uniques = pd.factorize(df["item_id"], sort=True)
    action_codes, action_uniques = pd.factorize(df["action"])
    bounds = np.flatnonzero(np.diff(cust_codes)) + 1
    items = np.split(item_codes.astype(np.int32), bounds)
    actions = np.split(action_codes.astype(np.int8), bounds)
    stamps = np.split(df["timestamp"].to_numpy(), bounds)
    t2 = time.perf_counter()
    return {
        "import_s": t1 - t0,
        "call_s": t2 - t1,
        "read_csv_s": t_read - t1,
        "sort_s": t_sort - t_read,
        "group_s": t2 - t_sort,
        "rows_read": len(df),
        "n_customers": len(cust_uniques),
        "n_items": len(item_uniques),
        "n_actions": len(action_uniques),
        "n_events": int(sum(len(x) for x in items)),
        "n_lists": [len(items), len(actions), len(stamps)],
        "self_peak_rss_mb": _vm_hwm_mb(),
    }


class _Sampler:
    """Background thread tracking the peak RSS of the current segment (polls /proc)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def start(self) -> None:
        self.peak = self.rss()
        self._thread.start()

    def take(self) -> float:
        """Peak RSS (MB) since the last take; starts a new segment."""
        peak = max(self.peak, self.rss())
        self.peak = self.rss()
        return peak / 2**20

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _TimedConnection:
    """Forwards to a DuckDB connection, cutting a timeline segment at every `execute`.

    A segment runs from one `execute` to the next, so it includes fetching the result and the
    Python work done with it before the next statement.
    """

    def __init__(self, con: Any, mark: Callable[[str], None]) -> None:
        self._con = con
        self._mark = mark

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._mark("sql: " + " ".join(str(sql).split())[:90])
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def worker_breakdown(data: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import duckdb

    from funnelrec.config import IngestConfig
    from funnelrec.ingest import read_events
    from funnelrec.sequences import build_sequences

    import_s = time.perf_counter() - t0
    sampler = _Sampler()
    sampler.start()
    segments: list[dict[str, Any]] = []
    current = {"label": "start", "t": time.perf_counter()}

    def mark(label: str) -> None:
        now = time.perf_counter()
        segments.append(
            {
                "label": current["label"],
                "seconds": round(now - current["t"], 3),
                "peak_rss_mb": round(sampler.take(), 1),
            }
        )
        current["label"], current["t"] = label, now

    config = IngestConfig()
    con = _TimedConnection(duckdb.connect(), mark)
    t_read0 = time.perf_counter()
    mark("read_events: python")
    table = read_events(data, config, con=con)  # type: ignore[arg-type]
    t_read1 = time.perf_counter()
    hwm_read = max(s["peak_rss_mb"] for s in segments) if segments else None
    mark("build_sequences: python")
    n_before = len(segments)
    seqs, seq_report = build_sequences(table, config)
    t_build = time.perf_counter()
    mark("end")
    sampler.stop()
    hwm_build = max(s["peak_rss_mb"] for s in segments[n_before:])
    con._con.close()
    return {
        "import_s": import_s,
        "read_events_s": t_read1 - t_read0,
        "build_sequences_s": t_build - t_read1,
        "read_events_peak_rss_mb": hwm_read,
        "build_sequences_peak_rss_mb": hwm_build,
        "duckdb_memory_limit": config.memory_limit,
        "n_events": seqs.n_events,
        "n_customers": seq_report.n_customers,
        "segments": segments[1:],
        "self_peak_rss_mb": _vm_hwm_mb(),
    }


WORKERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "funnelrec": worker_funnelrec,
    "pandas": worker_pandas,
    "breakdown": worker_breakdown,
}


def run_worker(kind: str, data: str) -> None:
    result = WORKERS[kind](data)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: one fresh process per measurement
# --------------------------------------------------------------------------------------------


def measure(kind: str, data: Path, timeout: float) -> dict[str, Any]:
    """Run one worker in a fresh process; wall time from here, peak RSS from `wait4`."""
    workdir = BENCH_DIR / "work"  # DuckDB may spill into ./.tmp: keep that inside .bench/
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--worker", kind, "--data", str(data)]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=err)
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() - started > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result: dict[str, Any] = {
        "ok": proc.returncode == 0,
        "returncode": proc.returncode,
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),  # ru_maxrss is in KiB on Linux
        "user_cpu_s": round(usage.ru_utime, 2),
        "sys_cpu_s": round(usage.ru_stime, 2),
        "loadavg_1m_before": round(load, 2),
    }
    if wall > timeout:
        result["error"] = f"killed after {timeout:.0f} s timeout"
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        detail = json.loads(lines[-1][len("RESULT ") :])
        result.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in detail.items()})
    if not result["ok"]:
        result.setdefault("error", stderr.strip()[-3000:])
    return result


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(runs: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("funnelrec", "pandas"):
        ok = [r[kind] for r in runs if r[kind]["ok"]]
        wall = [r["wall_s"] for r in ok]
        call = [r["call_s"] for r in ok if "call_s" in r]
        out[kind] = {
            "runs_ok": len(ok),
            "runs_failed": len(runs) - len(ok),
            "median_wall_s": median(wall),
            "median_call_s": median(call),
            "median_peak_rss_mb": median([r["peak_rss_mb"] for r in ok]),
            "max_peak_rss_mb": max((r["peak_rss_mb"] for r in ok), default=None),
            "median_events_per_s_wall": round(rows / statistics.median(wall)) if wall else None,
            "median_events_per_s_call": round(rows / statistics.median(call)) if call else None,
        }
    wall_ratios = [r["ratio_wall"] for r in runs if r.get("ratio_wall") is not None]
    call_ratios = [r["ratio_call"] for r in runs if r.get("ratio_call") is not None]
    out["ratio_pandas_over_funnelrec"] = {
        "per_run_wall": wall_ratios,
        "median_wall": median(wall_ratios),
        "per_run_call": call_ratios,
        "median_call": median(call_ratios),
    }
    f = out["funnelrec"]
    time_ok = (
        f["runs_failed"] == 0
        and f["median_wall_s"] is not None
        and (f["median_wall_s"] < TARGET_SECONDS)
    )
    mem_ok = (
        f["runs_failed"] == 0
        and f["max_peak_rss_mb"] is not None
        and (f["max_peak_rss_mb"] < TARGET_RSS_MB)
    )
    out["targets"] = {
        "time": {
            "target_s": TARGET_SECONDS,
            "measured": "median subprocess wall time",
            "value_s": f["median_wall_s"],
            "pass": bool(time_ok),
        },
        "memory": {
            "target_mb": TARGET_RSS_MB,
            "measured": "max peak RSS over runs",
            "value_mb": f["max_peak_rss_mb"],
            "pass": bool(mem_ok),
        },
    }
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    s, data = result["summary"], result["data"]
    ratio = s["ratio_pandas_over_funnelrec"]
    lines = [
        f"### Ingestion benchmark: {data['rows']:,} events",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"Data: synthetic canonical CSV, {data['bytes'] / 1e6:,.0f} MB, {data['customers']:,} "
        f"customers, {data['items']:,} items, timestamps as {data['timestamp_format']}; "
        f"{data['rows_out_of_time_order_within_customer']:,} rows out of time order within "
        f"their customer. Machine: {result['machine']['cpus']} CPUs, "
        f"{result['machine']['python']}, load avg before runs "
        f"{result['machine']['loadavg_start']}. {result['runs']} runs per path, each in a fresh "
        "process; medians shown.",
        "",
        "| path | wall s (process) | call s | events/s (wall) | peak RSS MB (max) |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "funnelrec": "funnelrec `load_sequences(path)`",
        "pandas": "pandas `read_csv` + sort + factorize + split",
    }
    for kind in ("funnelrec", "pandas"):
        k = s[kind]
        failed = f" ({k['runs_failed']} failed)" if k["runs_failed"] else ""
        lines.append(
            f"| {labels[kind]}{failed} | {_fmt(k['median_wall_s'], '.1f')} | "
            f"{_fmt(k['median_call_s'], '.1f')} | {_fmt(k['median_events_per_s_wall'], ',.0f')} | "
            f"{_fmt(k['max_peak_rss_mb'], ',.0f')} |"
        )
    per_run = ", ".join(f"{r:.2f}" for r in ratio["per_run_wall"])
    lines += [
        "",
        f"Speed ratio pandas / funnelrec (wall, per run pair): {per_run or 'n/a'}; "
        f"median **{_fmt(ratio['median_wall'], '.2f')}** "
        f"(call only: {_fmt(ratio['median_call'], '.2f')}). Above 1 means funnelrec is faster.",
        "",
    ]
    t = s["targets"]
    lines.append(
        f"Targets for funnelrec: time < {TARGET_SECONDS:.0f} s: "
        f"**{'PASS' if t['time']['pass'] else 'FAIL'}** ({_fmt(t['time']['value_s'], '.1f')} s); "
        f"peak memory < {TARGET_RSS_MB:.0f} MB: **{'PASS' if t['memory']['pass'] else 'FAIL'}** "
        f"({_fmt(t['memory']['value_mb'], ',.0f')} MB)."
    )
    bd = result.get("breakdown")
    if bd and bd.get("ok"):
        lines += [
            "",
            f"Breakdown (one extra run): read_events {bd['read_events_s']:.1f} s "
            f"(peak {bd['read_events_peak_rss_mb']:,.0f} MB), build_sequences "
            f"{bd['build_sequences_s']:.1f} s (peak {bd['build_sequences_peak_rss_mb']:,.0f} MB).",
            "",
            "| segment (from this statement to the next) | s | peak RSS MB |",
            "|---|---:|---:|",
        ]
        top = sorted(bd["segments"], key=lambda x: -x["seconds"])[:10]
        for seg in top:
            label = seg["label"].replace("|", "\\|")
            lines.append(f"| `{label}` | {seg['seconds']:.1f} | {seg['peak_rss_mb']:,.0f} |")
    elif bd:
        lines += ["", f"Breakdown run failed: {bd.get('error', '')[:300]}"]
    return "\n".join(lines) + "\n"


def command_line() -> str:
    exe = Path(sys.executable)
    try:
        exe_text = str(exe.relative_to(Path.cwd()))
    except ValueError:
        exe_text = str(exe)
    return f"cd {Path.cwd()} && {exe_text} -m benchmarks.ingest " + shlex.join(sys.argv[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--unsorted-share",
        type=float,
        default=0.02,
        help="share of rows displaced at random in the file (default 0.02)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before a worker process is killed"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="add one diagnostic run timing read_events and build_sequences",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ingest.json"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.data)
        return 0

    command = command_line()
    data = ensure_dataset(args)
    path = Path(data["path"])
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        order = ("funnelrec", "pandas") if i % 2 == 0 else ("pandas", "funnelrec")
        run: dict[str, Any] = {"run": i + 1, "order": list(order)}
        for kind in order:
            log(f"run {i + 1}/{args.runs}: {kind} ...")
            res = measure(kind, path, args.timeout)
            run[kind] = res
            status = "ok" if res["ok"] else f"FAILED ({str(res.get('error'))[-300:]})"
            log(
                f"run {i + 1}/{args.runs}: {kind} {status}: wall {res['wall_s']:.1f} s, "
                f"call {res.get('call_s', float('nan')):.1f} s, peak RSS "
                f"{res['peak_rss_mb']:,.0f} MB"
            )
        f, p = run["funnelrec"], run["pandas"]
        both = f["ok"] and p["ok"]
        run["ratio_wall"] = round(p["wall_s"] / f["wall_s"], 3) if both else None
        run["ratio_call"] = round(p["call_s"] / f["call_s"], 3) if both else None
        runs.append(run)

    result: dict[str, Any] = {
        "benchmark": "ingest",
        "command": command,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "note": "shared machine; other work may run concurrently, so timings are noisy",
        },
        "data": data,
        "runs": args.runs,
        "measurement": {
            "wall_s": "parent-measured wall time of a fresh worker process, including the "
            "interpreter start and imports",
            "call_s": "time of the measured call(s) inside the worker, imports excluded",
            "peak_rss_mb": "ru_maxrss of the worker process from os.wait4, in MiB",
            "events_per_s": "rows in the file / median seconds",
            "ratio": "pandas seconds / funnelrec seconds within the same run; >1 = funnelrec "
            "faster",
        },
        "per_run": runs,
        "summary": summarize(runs, data["rows"]),
    }
    if args.breakdown:
        log("breakdown: one diagnostic funnelrec run ...")
        result["breakdown"] = measure("breakdown", path, args.timeout)
        bd = result["breakdown"]
        if bd["ok"]:
            log(
                f"breakdown: read_events {bd['read_events_s']:.1f} s, build_sequences "
                f"{bd['build_sequences_s']:.1f} s, peak RSS {bd['peak_rss_mb']:,.0f} MB"
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
