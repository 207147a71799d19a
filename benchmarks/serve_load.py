"""Load benchmark of the service on loopback (bounded in time): event posts and reads mixed.

    python -m benchmarks.serve_load --seconds 20 --concurrency 16

Fits the funnel model on the built-in generator (3,000 customers), starts `funnelrec serve` in
a subprocess on 127.0.0.1, then runs `concurrency` asyncio clients for `seconds`: 70%
`GET /customers/{id}/recommendations`, 10% `GET /customers/{id}/profile`, 20% single-event
`POST /events` (with `--client wrk`: 3/4 of the connections read - every 8th read a profile -
and 1/4 write; wrk is a C load generator that leaves the two cores to the server).
Reports throughput, p50 / p99 latency per kind and errors; appends the result
to benchmarks/results/serve_load.json. Target (issue 5): >= 500 requests/s, p99 <= 50 ms for
reads and <= 100 ms for writes, zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from funnelrec.datasets import generate_funnel
from funnelrec.pipeline import fit_funnel
from funnelrec.sequences import load_sequences
from funnelrec.serve.process import spawn

from .baselines import ROOT

KEY = "load-key"


async def _client(
    base: str, customers: list[str], items: list[str], until: float, seed: int, out: dict[str, list]
) -> None:
    rng = np.random.default_rng(seed)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=10) as c:
        while time.perf_counter() < until:
            cid = customers[rng.integers(len(customers))]
            u = rng.random()
            started = time.perf_counter()
            if u < 0.7:
                kind, r = "read", await c.get(f"/customers/{cid}/recommendations?k=10")
            elif u < 0.8:
                kind, r = "read", await c.get(f"/customers/{cid}/profile")
            else:
                ev = {
                    "customer_id": cid,
                    "item_id": items[rng.integers(len(items))],
                    "action": ["view", "add_cart", "remove_cart", "purchase"][rng.integers(4)],
                }
                kind, r = "write", await c.post("/events", json=ev)
            ms = (time.perf_counter() - started) * 1000
            out[kind].append(ms)
            if r.status_code != 200:
                out["errors"].append(r.status_code)


async def _load(base: str, customers, items, seconds: float, concurrency: int) -> dict:
    out: dict[str, list] = {"read": [], "write": [], "errors": []}
    until = time.perf_counter() + seconds
    await asyncio.gather(
        *[_client(base, customers, items, until, i, out) for i in range(concurrency)]
    )
    n = len(out["read"]) + len(out["write"])
    res = {
        "seconds": seconds,
        "concurrency": concurrency,
        "requests": n,
        "requests_per_s": n / seconds,
        "errors": len(out["errors"]),
    }
    for kind in ("read", "write"):
        x = np.asarray(out[kind])
        res[kind] = (
            {
                "n": len(x),
                "p50_ms": float(np.percentile(x, 50)),
                "p99_ms": float(np.percentile(x, 99)),
            }
            if len(x)
            else {}
        )
    return res


READ_LUA = """
local ids = {%s}
local i = 0
request = function()
  i = i + 1
  local cid = ids[(i %% #ids) + 1]
  if i %% 8 == 0 then
    return wrk.format("GET", "/customers/" .. cid .. "/profile")
  end
  return wrk.format("GET", "/customers/" .. cid .. "/recommendations?k=10")
end
"""
WRITE_LUA = """
local ids = {%s}
local items = {%s}
local actions = {"view", "add_cart", "remove_cart", "purchase"}
local i = 0
request = function()
  i = i + 1
  local body = string.format('{"customer_id": "%%s", "item_id": "%%s", "action": "%%s"}',
    ids[(i * 7 %% #ids) + 1], items[(i * 13 %% #items) + 1], actions[(i %% 4) + 1])
  return wrk.format("POST", "/events",
    {["Content-Type"] = "application/json", ["X-API-Key"] = "%s"}, body)
end
"""
DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {"requests": %d, "p50_ms": %.3f, "p99_ms": %.3f, '
    .. '"errors": %d}\\n', summary.requests, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def _wrk(
    base: str, customers: list[str], items: list[str], seconds: float, concurrency: int, tmp: Path
) -> dict:
    """Two wrk runs at once (C, epoll: leaves the CPU to the server): reads on 3/4 of the
    connections (recommendations, every 8th a profile), single-event writes on 1/4."""
    quote = lambda xs: ", ".join(f'"{x}"' for x in xs[:2000])  # noqa: E731
    (tmp / "read.lua").write_text(READ_LUA % quote(customers) + DONE_LUA)
    (tmp / "write.lua").write_text(WRITE_LUA % (quote(customers), quote(items), KEY) + DONE_LUA)
    n_write = max(1, concurrency // 4)
    procs = {
        kind: subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{c}",
                f"-d{seconds:.0f}s",
                "--timeout",
                "10s",
                "-s",
                str(tmp / f"{kind}.lua"),
                base,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for kind, c in (("read", concurrency - n_write), ("write", n_write))
    }
    res: dict = {"seconds": seconds, "concurrency": concurrency, "client": "wrk"}
    for kind, p in procs.items():
        out = p.communicate(timeout=seconds + 60)[0]
        line = next(x for x in out.splitlines() if x.startswith("JSON "))
        r = json.loads(line[5:])
        res[kind] = {"n": r["requests"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
        res["errors"] = res.get("errors", 0) + r["errors"]
    res["requests"] = res["read"]["n"] + res["write"]["n"]
    res["requests_per_s"] = res["requests"] / seconds
    return res


def _server_times(text: str) -> dict[str, float]:
    """Mean time inside the server per route, from its Prometheus histogram."""
    sums, counts = {}, {}
    for line in text.splitlines():
        for kind, store in (("_sum{", sums), ("_count{", counts)):
            if line.startswith("funnelrec_request_seconds" + kind):
                labels, value = line.split("{", 1)[1].rsplit("} ", 1)
                store[labels] = float(value)
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    ap.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk (Debian package; light on CPU) or the asyncio/httpx client",
    )
    args = ap.parse_args()
    data = generate_funnel(n_customers=3000, seed=0)
    seqs = load_sequences(data.events)[0]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        fit_funnel(seqs, model_dir, epochs=5)
        proc, base = spawn(model_dir, Path(tmp) / "events.sqlite", KEY, quiet=False)
        try:
            customers = [str(c) for c in seqs.vocab.customer_ids]
            items = [str(i) for i in seqs.vocab.item_ids]
            if args.client == "wrk":
                res = _wrk(base, customers, items, args.seconds, args.concurrency, Path(tmp))
            else:
                res = asyncio.run(_load(base, customers, items, args.seconds, args.concurrency))
                res["client"] = "python"
            metrics = httpx.get(f"{base}/metrics").text
            res["server_mean_ms"] = _server_times(metrics)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    res["command"] = " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]])
    print(json.dumps(res, indent=2))
    runs = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([*runs, res], indent=2))


if __name__ == "__main__":
    main()
