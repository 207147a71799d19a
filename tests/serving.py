"""Start `funnelrec serve` in a subprocess on a free loopback port (fault and browser tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from funnelrec.serve.process import free_port, spawn

KEY = "test-server-key"
__all__ = ["KEY", "free_port", "start_server"]


def start_server(model_dir: Path, store: Path, port: int) -> subprocess.Popen:
    return spawn(model_dir, store, KEY, port=port)[0]
