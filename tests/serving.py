"""Start `funnelrec serve` in a subprocess on a free loopback port (fault and browser tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "test-server-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, store: Path, port: int) -> subprocess.Popen:
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
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "FUNNELREC_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 90 s")
