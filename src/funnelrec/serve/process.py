"""Run `funnelrec serve` in a child process on a free loopback port (tests, benchmarks,
notebooks): `spawn(model_dir, store, api_key)` returns once `/health` answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    model_dir: str | Path,
    store: str | Path,
    api_key: str,
    port: int | None = None,
    timeout_s: float = 90.0,
    quiet: bool = True,
) -> tuple[subprocess.Popen, str]:
    """(process, base URL). The caller stops it (`send_signal(SIGTERM)` or SIGKILL)."""
    import httpx

    port = port or free_port()
    cmd = [
        sys.executable,
        "-c",
        "from funnelrec.cli import app; app()",
        "serve",
        str(model_dir),
        "--port",
        str(port),
        "--store",
        str(store),
    ]
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "FUNNELREC_API_KEY": api_key},
        stdout=out,
        stderr=subprocess.PIPE if quiet else None,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"the server exited: {err}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s")
